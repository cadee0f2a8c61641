//! Errors of endpoints and connections ([`Error`]) and why a session ended ([`CloseReason`]).
//! The errors of calls are [`Status`](crate::Status) values.

use std::fmt;
use std::net::SocketAddr;

use quinn::ConnectionError;

use crate::context::HookError;
use crate::proto::v1::ErrorCode;
use crate::protocol::{self, ALPN};
use crate::tls::TlsError;

/// The TLS alert `no_application_protocol` (RFC 8446 §6) as a QUIC crypto error code: what a
/// handshake ends with when the peers share no ALPN protocol, i.e. no protocol version.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// Why an endpoint could not start or a connection could not become a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was not given a TLS configuration.
    #[error("no TLS configuration: call `.tls(...)` on the builder")]
    NoTls,
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address could not be resolved.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The address to connect to was not usable.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The peer speaks another protocol version: it offered no ALPN of ours, or its hello
    /// carried another version number.
    #[error(
        "protocol version mismatch: we speak {} (version {}), {detail}",
        String::from_utf8_lossy(ALPN),
        protocol::PROTOCOL_VERSION
    )]
    VersionMismatch {
        /// What was seen of the peer's version.
        detail: String,
    },
    /// The TLS handshake failed: certificate not trusted, client certificate missing, ...
    #[error("TLS handshake failed: {reason}")]
    Handshake {
        /// The TLS stack's explanation.
        reason: String,
    },
    /// The peer's hello did not arrive in time.
    #[error("the peer sent no hello within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// The peer broke the protocol during the handshake.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection failed or was closed before it became a session.
    #[error("connection failed: {0}")]
    Connection(ConnectionError),
    /// A start hook of the endpoint's context failed.
    #[error("context start hook failed: {0}")]
    Start(HookError),
}

impl Error {
    /// Classifies a connection error seen while connecting or during the handshake.
    pub(crate) fn from_connection(error: ConnectionError) -> Error {
        match &error {
            ConnectionError::ConnectionClosed(close)
                if u64::from(close.error_code) == NO_APPLICATION_PROTOCOL =>
            {
                Error::VersionMismatch {
                    detail: format!(
                        "the peer refused our ALPN (TLS alert no_application_protocol: {})",
                        String::from_utf8_lossy(&close.reason)
                    ),
                }
            }
            ConnectionError::TransportError(e) if u64::from(e.code) == NO_APPLICATION_PROTOCOL => {
                Error::VersionMismatch {
                    detail: format!("the peer offered no ALPN of ours ({})", e.reason),
                }
            }
            ConnectionError::ApplicationClosed(close)
                if close.error_code.into_inner() == ErrorCode::VersionMismatch as u64 =>
            {
                Error::VersionMismatch {
                    detail: format!(
                        "the peer closed with VERSION_MISMATCH: {}",
                        String::from_utf8_lossy(&close.reason)
                    ),
                }
            }
            ConnectionError::TransportError(e) if is_crypto(u64::from(e.code)) => {
                Error::Handshake {
                    reason: e.reason.clone(),
                }
            }
            ConnectionError::ConnectionClosed(close) if is_crypto(u64::from(close.error_code)) => {
                Error::Handshake {
                    reason: format!("the peer refused the handshake: {close}"),
                }
            }
            _ => Error::Connection(error),
        }
    }
}

/// Whether a QUIC transport error code is a TLS alert.
fn is_crypto(code: u64) -> bool {
    (0x100..0x200).contains(&code)
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed it (`Session::close`, a shutdown, or a protocol error of the peer), with
    /// this code and reason.
    Local {
        /// The application error code sent.
        code: u64,
        /// The reason sent.
        reason: String,
    },
    /// The peer closed it with this application error code and reason.
    Peer {
        /// The code received.
        code: u64,
        /// The reason received.
        reason: String,
    },
    /// Nothing was heard from the peer for the idle timeout: it is gone (killed, unplugged).
    IdleTimeout,
    /// The QUIC layer failed (a transport error, a stateless reset, ...).
    Transport(String),
}

impl CloseReason {
    /// The application error code sent or received, if the close carried one.
    pub fn code(&self) -> Option<u64> {
        match self {
            CloseReason::Local { code, .. } | CloseReason::Peer { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The reason for a connection error; `local` is the close this side made, if any.
    pub(crate) fn from_connection(
        error: &ConnectionError,
        local: Option<&CloseReason>,
    ) -> CloseReason {
        match error {
            ConnectionError::LocallyClosed => local.cloned().unwrap_or(CloseReason::Local {
                code: ErrorCode::NoError as u64,
                reason: String::new(),
            }),
            ConnectionError::ApplicationClosed(close) => CloseReason::Peer {
                code: close.error_code.into_inner(),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            ConnectionError::TimedOut => CloseReason::IdleTimeout,
            other => CloseReason::Transport(other.to_string()),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local { code, reason } => write!(
                f,
                "closed locally with {} ({code:#x}): {reason}",
                protocol::close_code_name(*code)
            ),
            CloseReason::Peer { code, reason } => write!(
                f,
                "closed by the peer with {} ({code:#x}): {reason}",
                protocol::close_code_name(*code)
            ),
            CloseReason::IdleTimeout => f.write_str("the peer went silent (idle timeout)"),
            CloseReason::Transport(e) => write!(f, "transport failure: {e}"),
        }
    }
}
