//! The EchoStream runtime: endpoints, sessions, RPC, events and real-time streams carried over a
//! single QUIC connection, where either peer can call, emit and stream to the other.
//!
//! A [`Server`] accepts connections and a [`Client`] makes them; each connection is a
//! [`Session`], and both sides of a session are peers: each serves the handlers of its own
//! [`Router`] and calls the other's with [`Session::request`], [`Session::emit`] and
//! [`Session::open_stream`]. The wire protocol is in `docs/protocol.md` and `proto/`.
//!
//! ```no_run
//! use echostream_runtime::{Bytes, Client, Server, Status};
//! use echostream_runtime::tls::{ClientTls, ServerTls};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ServerTls::self_signed(["localhost"])?;
//! let server = Server::builder()
//!     .tls(tls)
//!     .routes(|r| {
//!         r.rpc("echo", |_session, req| async move { Ok::<_, Status>(req.data) });
//!     })
//!     .bind("127.0.0.1:0")
//!     .await?;
//! let session = Client::builder()
//!     .tls(ClientTls::pinned(server.fingerprint()))
//!     .connect(server.local_addr(), "localhost")
//!     .await?;
//! let answer = session.request("echo", Bytes::from_static(b"hi")).await?;
//! assert_eq!(answer, "hi");
//! # Ok(()) }
//! ```

pub mod call;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod context;
pub mod datagram;
#[cfg(feature = "mdns")]
pub mod discovery;
pub mod early;
mod endpoint;
pub mod error;
mod io;
pub mod jitter;
pub mod keepalive;
mod macros;
pub mod middleware;
pub mod netsim;
pub mod pacer;
mod panic;
pub mod playout;
pub mod plugin;
pub mod proto;
pub mod protocol;
mod queue;
pub mod router;
pub mod server;
pub mod session;
pub mod sessions;
pub mod state;
pub mod status;
pub mod stream;
pub mod tls;
pub mod typed;
pub mod unreliable;

pub use call::{CallContext, CallKind, CallOptions, Metadata};
pub use client::{Client, ClientBuilder};
pub use config::{Config, Congestion};
pub use context::Context;
pub use early::EarlyData;
pub use error::{CloseReason, Error};
pub use jitter::Played;
pub use middleware::Middleware;
pub use playout::{Playout, ReceiveStats};
pub use plugin::Plugin;
pub use proto::v1::{EventPack, Frame, RpcRequest, RpcResponse, StreamFrame, frame::Payload};
pub use router::{EventHandler, Router, RpcHandler, Service, StreamHandler};
pub use server::{Server, ServerBuilder};
pub use session::{Session, SessionStats};
pub use sessions::{Broadcast, Sessions};
pub use state::State;
pub use status::{Code, Status};
pub use stream::{Delivery, StreamEnd, StreamInfo, StreamOptions, StreamSender, StreamStats};
pub use typed::{EventMethod, RpcMethod, StreamMethod, TypedStreamSender};

/// Re-exported so generated code and applications need only this crate.
pub use async_trait::async_trait;
/// Re-exported so generated code and applications need only this crate.
pub use bytes::{self, Bytes};
/// Re-exported so generated code and applications need only this crate.
pub use prost;
