//! The runtime over real QUIC on loopback: every feature in both directions, limits, lifecycle,
//! protocol violations by raw peers, and TLS trust as sessions see it.
//!
//! One test binary (so quinn and rustls link once), one module per area.

mod client;
mod clock;
mod common;
mod connect;
mod datagrams;
mod early;
mod events;
mod lifecycle;
mod limits;
mod middleware;
mod protocol;
mod rpc;
mod sessions;
mod status;
mod streams;
mod tls;
