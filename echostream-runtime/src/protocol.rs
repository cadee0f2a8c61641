//! Constants and rules of the wire protocol that are not messages: the ALPN, the version, the
//! stream type bytes, the application error codes and the hello exchange. `docs/protocol.md` is
//! the prose version of this module.

use quinn::VarInt;

use crate::proto::v1::{ErrorCode, Hello, StreamType};

/// The protocol version this runtime speaks, as carried in `Hello.version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The TLS ALPN protocol name of this version. A peer offering only other names is refused
/// during the TLS handshake (alert `no_application_protocol`).
pub const ALPN: &[u8] = b"echostream/1";

/// Name and version of this implementation, sent in `Hello.agent`.
pub const AGENT: &str = concat!("echostream-rust/", env!("CARGO_PKG_VERSION"));

/// The first byte of a control stream.
pub(crate) const STREAM_CONTROL: u8 = StreamType::Control as u8;
/// The first byte of an events stream.
pub(crate) const STREAM_EVENTS: u8 = StreamType::Events as u8;
/// The first byte of a named-stream stream.
pub(crate) const STREAM_STREAM: u8 = StreamType::Stream as u8;

/// The smallest application close code an application may pass to `Session::close`; the codes
/// below it are the protocol's own ([`ErrorCode`]).
pub const FIRST_APPLICATION_CLOSE_CODE: u32 = 0x100;

/// An [`ErrorCode`] as a QUIC error code.
pub(crate) fn close_code(code: ErrorCode) -> VarInt {
    VarInt::from_u32(code as u32)
}

/// The protocol's name of a close code ("PROTOCOL_ERROR"), or "APPLICATION" for codes an
/// application chose.
pub fn close_code_name(code: u64) -> &'static str {
    i32::try_from(code)
        .ok()
        .and_then(|c| ErrorCode::try_from(c).ok())
        .map_or("APPLICATION", |c| {
            c.as_str_name().trim_start_matches("ERROR_CODE_")
        })
}

/// What a peer said about itself in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerHello {
    pub(crate) agent: String,
    pub(crate) max_frame_size: usize,
    pub(crate) max_concurrent_calls: u32,
}

/// The hello this endpoint sends.
pub(crate) fn hello(max_frame_size: usize, max_concurrent_calls: u32) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        agent: AGENT.to_owned(),
        max_frame_size: max_frame_size as u64,
        max_concurrent_calls,
    }
}

/// Checks a peer's hello: the version must be ours. Returns the peer's version when it is not.
pub(crate) fn check_hello(hello: Hello, default_max_frame_size: usize) -> Result<PeerHello, u32> {
    if hello.version != PROTOCOL_VERSION {
        return Err(hello.version);
    }
    let max_frame_size = match hello.max_frame_size {
        0 => default_max_frame_size,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    Ok(PeerHello {
        agent: hello.agent,
        max_frame_size,
        max_concurrent_calls: hello.max_concurrent_calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_hello_passes_our_check() {
        let peer = check_hello(hello(1000, 7), 5).unwrap();
        assert_eq!(peer.max_frame_size, 1000);
        assert_eq!(peer.max_concurrent_calls, 7);
        assert!(peer.agent.starts_with("echostream-rust/"));
    }

    #[test]
    fn another_version_is_refused_with_its_number() {
        let mut other = hello(1000, 7);
        other.version = 2;
        assert_eq!(check_hello(other, 5), Err(2));
    }

    #[test]
    fn zero_max_frame_size_means_the_default() {
        let mut h = hello(0, 0);
        h.max_frame_size = 0;
        assert_eq!(check_hello(h, 4096).unwrap().max_frame_size, 4096);
    }

    #[test]
    fn alpn_names_the_version() {
        assert_eq!(ALPN, format!("echostream/{PROTOCOL_VERSION}").as_bytes());
    }

    #[test]
    fn close_codes_have_names() {
        assert_eq!(
            close_code_name(ErrorCode::ProtocolError as u64),
            "PROTOCOL_ERROR"
        );
        assert_eq!(
            close_code_name(ErrorCode::VersionMismatch as u64),
            "VERSION_MISMATCH"
        );
        assert_eq!(close_code_name(0x100), "APPLICATION");
        assert_eq!(close_code_name(u64::MAX), "APPLICATION");
    }
}
