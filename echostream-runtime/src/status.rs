//! The outcome of a call: [`Code`] and [`Status`], the typed error of every RPC.
//!
//! The numeric values are gRPC's (see `StatusCode` in `proto/echostream/v1/frame.proto`); they
//! travel in `RpcResponse.code` and as the error code of a reset RPC stream.

use std::fmt;

use crate::proto::v1::StatusCode;

/// Why a call did not succeed (or [`Code::Ok`] when it did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Success.
    Ok,
    /// The call was cancelled, normally by its caller (or dropped by middleware).
    Cancelled,
    /// The request was malformed, e.g. its data did not decode.
    InvalidArgument,
    /// The deadline expired before the call completed.
    DeadlineExceeded,
    /// No handler is registered under the requested name.
    NotFound,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// A limit was hit: concurrent calls, a queue, a frame size.
    ResourceExhausted,
    /// The operation needs something the connection lacks, e.g. a datagram stream to a peer
    /// without QUIC datagram support.
    FailedPrecondition,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The connection is gone or going away; the call may be retried elsewhere.
    Unavailable,
    /// The handler failed unexpectedly (it panicked, or a peer sent an unknown code).
    Internal,
}

impl Code {
    /// The stable number of this code on the wire.
    pub const fn as_u32(self) -> u32 {
        let code = match self {
            Code::Ok => StatusCode::Ok,
            Code::Cancelled => StatusCode::Cancelled,
            Code::InvalidArgument => StatusCode::InvalidArgument,
            Code::DeadlineExceeded => StatusCode::DeadlineExceeded,
            Code::NotFound => StatusCode::NotFound,
            Code::PermissionDenied => StatusCode::PermissionDenied,
            Code::ResourceExhausted => StatusCode::ResourceExhausted,
            Code::FailedPrecondition => StatusCode::FailedPrecondition,
            Code::Unauthenticated => StatusCode::Unauthenticated,
            Code::Unavailable => StatusCode::Unavailable,
            Code::Internal => StatusCode::Internal,
        };
        code as u32
    }

    /// The code for a number received from a peer; `None` for numbers this version does not know.
    pub fn from_u32(value: u32) -> Option<Code> {
        let code = StatusCode::try_from(i32::try_from(value).ok()?).ok()?;
        Some(match code {
            StatusCode::Ok => Code::Ok,
            StatusCode::Cancelled => Code::Cancelled,
            StatusCode::InvalidArgument => Code::InvalidArgument,
            StatusCode::DeadlineExceeded => Code::DeadlineExceeded,
            StatusCode::NotFound => Code::NotFound,
            StatusCode::PermissionDenied => Code::PermissionDenied,
            StatusCode::ResourceExhausted => Code::ResourceExhausted,
            StatusCode::FailedPrecondition => Code::FailedPrecondition,
            StatusCode::Unauthenticated => Code::Unauthenticated,
            StatusCode::Unavailable => Code::Unavailable,
            StatusCode::Internal => Code::Internal,
        })
    }

    /// The protocol's name of the code, e.g. `"DEADLINE_EXCEEDED"`.
    pub const fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of a call: a [`Code`] a program can match on and a message a person can read.
///
/// Handlers return it to fail a call (`Err(Status::not_found("no such room"))`); callers receive
/// it for everything that went wrong, remote or local (deadline, lost connection, limits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Status {
    code: Code,
    message: String,
}

impl Status {
    /// A status with this code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }

    /// The status a peer sent as a numeric code and a message; unknown codes become
    /// [`Code::Internal`] with the number kept in the message.
    pub fn from_wire(code: u32, message: impl Into<String>) -> Status {
        match Code::from_u32(code) {
            Some(known) => Status::new(known, message),
            None => Status::new(
                Code::Internal,
                format!("unknown status code {code}: {}", message.into()),
            ),
        }
    }

    /// What went wrong, for programs.
    pub fn code(&self) -> Code {
        self.code
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// [`Code::Cancelled`] with a message.
    pub fn cancelled(message: impl Into<String>) -> Status {
        Status::new(Code::Cancelled, message)
    }

    /// [`Code::InvalidArgument`] with a message.
    pub fn invalid_argument(message: impl Into<String>) -> Status {
        Status::new(Code::InvalidArgument, message)
    }

    /// [`Code::DeadlineExceeded`] with a message.
    pub fn deadline_exceeded(message: impl Into<String>) -> Status {
        Status::new(Code::DeadlineExceeded, message)
    }

    /// [`Code::NotFound`] with a message.
    pub fn not_found(message: impl Into<String>) -> Status {
        Status::new(Code::NotFound, message)
    }

    /// [`Code::PermissionDenied`] with a message.
    pub fn permission_denied(message: impl Into<String>) -> Status {
        Status::new(Code::PermissionDenied, message)
    }

    /// [`Code::ResourceExhausted`] with a message.
    pub fn resource_exhausted(message: impl Into<String>) -> Status {
        Status::new(Code::ResourceExhausted, message)
    }

    /// [`Code::FailedPrecondition`] with a message.
    pub fn failed_precondition(message: impl Into<String>) -> Status {
        Status::new(Code::FailedPrecondition, message)
    }

    /// [`Code::Unauthenticated`] with a message.
    pub fn unauthenticated(message: impl Into<String>) -> Status {
        Status::new(Code::Unauthenticated, message)
    }

    /// [`Code::Unavailable`] with a message.
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(Code::Unavailable, message)
    }

    /// [`Code::Internal`] with a message.
    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(Code::Internal, message)
    }
}

impl From<prost::DecodeError> for Status {
    /// A message that did not decode is the caller's fault: [`Code::InvalidArgument`].
    fn from(error: prost::DecodeError) -> Status {
        Status::invalid_argument(format!("message does not decode: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Code; 11] = [
        Code::Ok,
        Code::Cancelled,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Unauthenticated,
        Code::Unavailable,
        Code::Internal,
    ];

    #[test]
    fn numbers_are_grpcs_and_round_trip() {
        let numbers: Vec<u32> = ALL.iter().map(|c| c.as_u32()).collect();
        assert_eq!(numbers, [0, 1, 3, 4, 5, 7, 8, 9, 16, 14, 13]);
        for code in ALL {
            assert_eq!(Code::from_u32(code.as_u32()), Some(code));
        }
    }

    #[test]
    fn names_match_the_proto_enum() {
        for code in ALL {
            let proto = StatusCode::try_from(code.as_u32() as i32).unwrap();
            assert_eq!(format!("STATUS_CODE_{}", code.name()), proto.as_str_name());
        }
    }

    #[test]
    fn unknown_wire_codes_become_internal_and_keep_the_number() {
        let status = Status::from_wire(2, "boom");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "unknown status code 2: boom");
        assert_eq!(Code::from_u32(u32::MAX), None);
    }

    #[test]
    fn display_shows_code_and_message() {
        assert_eq!(
            Status::not_found("no such method").to_string(),
            "NOT_FOUND: no such method"
        );
    }

    #[test]
    fn decode_errors_are_invalid_argument() {
        use prost::Message;
        let err = crate::proto::v1::Hello::decode(&[0xff][..]).unwrap_err();
        assert_eq!(Status::from(err).code(), Code::InvalidArgument);
    }
}
