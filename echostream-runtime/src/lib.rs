//! The EchoStream runtime: endpoints, sessions, RPC, events and real-time streams carried over a
//! single QUIC connection, where either peer can call, emit and stream to the other.

pub mod clock;
pub mod datagram;
#[cfg(feature = "mdns")]
pub mod discovery;
pub mod jitter;
pub mod netsim;
pub mod pacer;
pub mod tls;
