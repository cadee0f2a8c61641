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
    /// An error with no better code, e.g. one translated from another error space.
    Unknown,
    /// The request was malformed, e.g. its data did not decode.
    InvalidArgument,
    /// The deadline expired before the call completed.
    DeadlineExceeded,
    /// No handler is registered under the requested name, or what the request names does not
    /// exist.
    NotFound,
    /// What the request would create exists already, e.g. a user name that is taken.
    AlreadyExists,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// A limit was hit: concurrent calls, a queue, a frame size.
    ResourceExhausted,
    /// The operation needs something the connection lacks, e.g. a datagram stream to a peer
    /// without QUIC datagram support.
    FailedPrecondition,
    /// The operation was aborted by a conflict (e.g. with a concurrent transaction); the caller
    /// may retry at a higher level.
    Aborted,
    /// An argument is past the valid range, e.g. a read past the end.
    OutOfRange,
    /// The callee does not implement or support the operation.
    Unimplemented,
    /// The handler failed unexpectedly (it panicked, or a peer sent an unknown code).
    Internal,
    /// The connection is gone or going away; the call may be retried elsewhere.
    Unavailable,
    /// Data was lost or corrupted beyond recovery.
    DataLoss,
    /// The caller did not prove who it is.
    Unauthenticated,
}

impl Code {
    /// The stable number of this code on the wire.
    pub const fn as_u32(self) -> u32 {
        let code = match self {
            Code::Ok => StatusCode::Ok,
            Code::Cancelled => StatusCode::Cancelled,
            Code::Unknown => StatusCode::Unknown,
            Code::InvalidArgument => StatusCode::InvalidArgument,
            Code::DeadlineExceeded => StatusCode::DeadlineExceeded,
            Code::NotFound => StatusCode::NotFound,
            Code::AlreadyExists => StatusCode::AlreadyExists,
            Code::PermissionDenied => StatusCode::PermissionDenied,
            Code::ResourceExhausted => StatusCode::ResourceExhausted,
            Code::FailedPrecondition => StatusCode::FailedPrecondition,
            Code::Aborted => StatusCode::Aborted,
            Code::OutOfRange => StatusCode::OutOfRange,
            Code::Unimplemented => StatusCode::Unimplemented,
            Code::Internal => StatusCode::Internal,
            Code::Unavailable => StatusCode::Unavailable,
            Code::DataLoss => StatusCode::DataLoss,
            Code::Unauthenticated => StatusCode::Unauthenticated,
        };
        code as u32
    }

    /// The code for a number received from a peer; `None` for numbers this version does not know.
    pub fn from_u32(value: u32) -> Option<Code> {
        let code = StatusCode::try_from(i32::try_from(value).ok()?).ok()?;
        Some(match code {
            StatusCode::Ok => Code::Ok,
            StatusCode::Cancelled => Code::Cancelled,
            StatusCode::Unknown => Code::Unknown,
            StatusCode::InvalidArgument => Code::InvalidArgument,
            StatusCode::DeadlineExceeded => Code::DeadlineExceeded,
            StatusCode::NotFound => Code::NotFound,
            StatusCode::AlreadyExists => Code::AlreadyExists,
            StatusCode::PermissionDenied => Code::PermissionDenied,
            StatusCode::ResourceExhausted => Code::ResourceExhausted,
            StatusCode::FailedPrecondition => Code::FailedPrecondition,
            StatusCode::Aborted => Code::Aborted,
            StatusCode::OutOfRange => Code::OutOfRange,
            StatusCode::Unimplemented => Code::Unimplemented,
            StatusCode::Internal => Code::Internal,
            StatusCode::Unavailable => Code::Unavailable,
            StatusCode::DataLoss => Code::DataLoss,
            StatusCode::Unauthenticated => Code::Unauthenticated,
        })
    }

    /// The protocol's name of the code, e.g. `"DEADLINE_EXCEEDED"`.
    pub const fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
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

    /// [`Code::Unknown`] with a message.
    pub fn unknown(message: impl Into<String>) -> Status {
        Status::new(Code::Unknown, message)
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

    /// [`Code::AlreadyExists`] with a message.
    pub fn already_exists(message: impl Into<String>) -> Status {
        Status::new(Code::AlreadyExists, message)
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

    /// [`Code::Aborted`] with a message.
    pub fn aborted(message: impl Into<String>) -> Status {
        Status::new(Code::Aborted, message)
    }

    /// [`Code::OutOfRange`] with a message.
    pub fn out_of_range(message: impl Into<String>) -> Status {
        Status::new(Code::OutOfRange, message)
    }

    /// [`Code::Unimplemented`] with a message.
    pub fn unimplemented(message: impl Into<String>) -> Status {
        Status::new(Code::Unimplemented, message)
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

    /// [`Code::DataLoss`] with a message.
    pub fn data_loss(message: impl Into<String>) -> Status {
        Status::new(Code::DataLoss, message)
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

    /// All 17 of gRPC's codes, in the order of their numbers.
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    #[test]
    fn numbers_are_grpcs_and_round_trip() {
        let numbers: Vec<u32> = ALL.iter().map(|c| c.as_u32()).collect();
        assert_eq!(numbers, (0..=16).collect::<Vec<u32>>());
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
        let status = Status::from_wire(17, "boom");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "unknown status code 17: boom");
        assert_eq!(Code::from_u32(u32::MAX), None);
    }

    #[test]
    fn constructors_give_their_code() {
        let made = [
            (Status::cancelled("m"), Code::Cancelled),
            (Status::unknown("m"), Code::Unknown),
            (Status::invalid_argument("m"), Code::InvalidArgument),
            (Status::deadline_exceeded("m"), Code::DeadlineExceeded),
            (Status::not_found("m"), Code::NotFound),
            (Status::already_exists("m"), Code::AlreadyExists),
            (Status::permission_denied("m"), Code::PermissionDenied),
            (Status::resource_exhausted("m"), Code::ResourceExhausted),
            (Status::failed_precondition("m"), Code::FailedPrecondition),
            (Status::aborted("m"), Code::Aborted),
            (Status::out_of_range("m"), Code::OutOfRange),
            (Status::unimplemented("m"), Code::Unimplemented),
            (Status::internal("m"), Code::Internal),
            (Status::unavailable("m"), Code::Unavailable),
            (Status::data_loss("m"), Code::DataLoss),
            (Status::unauthenticated("m"), Code::Unauthenticated),
        ];
        for (status, code) in made {
            assert_eq!((status.code(), status.message()), (code, "m"));
        }
        assert_eq!(
            Status::from_wire(6, "taken"),
            Status::already_exists("taken")
        );
        assert_eq!(Code::AlreadyExists.to_string(), "ALREADY_EXISTS");
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
