//! What servers and clients share: the endpoint state every session points to, the builder
//! parts common to both, and turning a fresh QUIC connection into a [`Session`] (the hello
//! exchange).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, SendStream, ZeroRttAccepted};

use crate::clock::{Clock, SystemClock};
use crate::codec::Encoder;
use crate::config::Config;
use crate::context::Context;
use crate::early::{EarlyData, Handshake, handshake_complete};
use crate::error::Error;
use crate::io::{FrameReader, ReadFrameError};
use crate::middleware::{Middleware, Middlewares};
use crate::netsim::NetSimConfig;
use crate::plugin::Plugin;
use crate::proto::v1::{ErrorCode, Frame, frame::Payload};
use crate::protocol::PeerHello;
use crate::protocol::{self, STREAM_CONTROL};
use crate::router::{Router, Service};
use crate::session::{HelloHook, Session, Start, codec_close_code};
use crate::sessions::Sessions;

/// Which side of connections an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

impl Side {
    /// "server" or "client", for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// The state of an endpoint, shared by all its sessions.
pub(crate) struct Shared {
    pub(crate) side: Side,
    pub(crate) router: Router,
    pub(crate) middleware: Middlewares,
    pub(crate) plugins: Vec<Arc<dyn Plugin>>,
    pub(crate) context: Context,
    pub(crate) config: Config,
    pub(crate) sessions: Sessions,
    /// Where timestamps (pings, stream frames) come from and playout is scheduled against.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Most pings a second an endpoint sends, all its sessions together. The clock sync's first
/// samples are taken 50 ms apart on both sides of every session; a thousand sessions opening
/// together would send 40,000 pings a second (and as many pongs), a storm that starved the
/// handshakes of the sessions still opening until they timed out. Past this budget, every
/// session's pings are spaced out evenly: clocks then take longer to sync, nothing else changes.
pub(crate) const PING_BUDGET: u64 = 2_000;

impl Shared {
    /// A session's next ping interval, `wanted`, stretched so that the endpoint's sessions
    /// together stay within [`PING_BUDGET`].
    pub(crate) fn paced_ping_interval(&self, wanted: Duration) -> Duration {
        wanted.max(ping_spacing(self.sessions.len()))
    }
}

/// The interval between one session's pings that keeps `sessions` sessions within
/// [`PING_BUDGET`].
fn ping_spacing(sessions: usize) -> Duration {
    Duration::from_micros((sessions as u64).saturating_mul(1_000_000) / PING_BUDGET)
}

/// The parts of a builder that servers and clients share.
#[derive(Default)]
pub(crate) struct Parts {
    pub(crate) router: Router,
    pub(crate) middleware: Middlewares,
    pub(crate) plugins: Vec<Arc<dyn Plugin>>,
    pub(crate) context: Context,
    pub(crate) config: Config,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) netsim: Option<NetSimConfig>,
}

impl Parts {
    pub(crate) fn into_shared(self, side: Side) -> Arc<Shared> {
        Arc::new(Shared {
            side,
            router: self.router,
            middleware: self.middleware,
            plugins: self.plugins,
            context: self.context,
            config: self.config,
            sessions: Sessions::default(),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

/// Adds the builder methods both endpoints share to a builder with a `parts: Parts` field.
macro_rules! endpoint_builder_methods {
    ($builder:ty) => {
        impl $builder {
            /// Registers a service's handlers (e.g. a generated `ChatServiceServer`).
            pub fn service(mut self, service: impl $crate::router::Service) -> Self {
                self.parts.add_service(service);
                self
            }

            /// Adds the handlers of `router` to the endpoint's router.
            ///
            /// # Panics
            /// If a method or stream name is registered twice.
            pub fn router(mut self, router: $crate::router::Router) -> Self {
                self.parts.add_service(router);
                self
            }

            /// Lets `f` register handlers directly on the endpoint's router.
            pub fn routes(mut self, f: impl FnOnce(&mut $crate::router::Router)) -> Self {
                f(&mut self.parts.router);
                self
            }

            /// Adds a middleware layer (see [`Middleware`](crate::Middleware) for the order).
            pub fn middleware(mut self, middleware: impl $crate::middleware::Middleware) -> Self {
                self.parts.add_middleware(middleware);
                self
            }

            /// Adds a plugin.
            pub fn plugin(mut self, plugin: impl $crate::plugin::Plugin) -> Self {
                self.parts.plugins.push(::std::sync::Arc::new(plugin));
                self
            }

            /// Uses `context` (e.g. one shared with other endpoints) instead of a new one.
            pub fn context(mut self, context: $crate::context::Context) -> Self {
                self.parts.context = context;
                self
            }

            /// Replaces all limits and timers.
            pub fn config(mut self, config: $crate::config::Config) -> Self {
                self.parts.config = config;
                self
            }

            /// See [`Config::default_timeout`](crate::Config::default_timeout).
            pub fn default_timeout(mut self, timeout: Option<::std::time::Duration>) -> Self {
                self.parts.config = self.parts.config.default_timeout(timeout);
                self
            }

            /// See [`Config::max_frame_size`](crate::Config::max_frame_size).
            pub fn max_frame_size(mut self, bytes: usize) -> Self {
                self.parts.config = self.parts.config.max_frame_size(bytes);
                self
            }

            /// See [`Config::max_concurrent_calls`](crate::Config::max_concurrent_calls).
            pub fn max_concurrent_calls(mut self, calls: u32) -> Self {
                self.parts.config = self.parts.config.max_concurrent_calls(calls);
                self
            }

            /// See [`Config::event_queue`](crate::Config::event_queue).
            pub fn event_queue(mut self, frames: usize, bytes: usize) -> Self {
                self.parts.config = self.parts.config.event_queue(frames, bytes);
                self
            }

            /// See [`Config::stream_queue`](crate::Config::stream_queue).
            pub fn stream_queue(mut self, frames: usize, bytes: usize) -> Self {
                self.parts.config = self.parts.config.stream_queue(frames, bytes);
                self
            }

            /// See [`Config::keepalive_interval`](crate::Config::keepalive_interval).
            pub fn keepalive_interval(mut self, interval: ::std::time::Duration) -> Self {
                self.parts.config = self.parts.config.keepalive_interval(interval);
                self
            }

            /// The clock this endpoint reads (default [`SystemClock`](crate::clock::SystemClock)):
            /// the wall-clock time of pings and stream frame timestamps, against which the clock
            /// offset to each peer is estimated and frames are played out. Its
            /// [`instant`](crate::clock::Clock::instant) must be the real monotonic time (as
            /// with `SystemClock` and [`OffsetClock`](crate::clock::OffsetClock)), since the
            /// runtime sleeps on tokio's timers; its wall clock may be anything, e.g. skewed on
            /// purpose in a test.
            pub fn clock(mut self, clock: ::std::sync::Arc<dyn $crate::clock::Clock>) -> Self {
                self.parts.clock = Some(clock);
                self
            }

            /// Runs the endpoint on the deterministic network simulator instead of a plain UDP
            /// socket: the datagrams it sends (`outbound`) and receives (`inbound`) are lost,
            /// delayed, jittered, reordered and duplicated as `config` says, from its seed. For
            /// tests, benchmarks and demonstrations; the endpoint's `netsim()` gives the
            /// simulator's handle (counters, changing the impairments).
            pub fn netsim(mut self, config: $crate::netsim::NetSimConfig) -> Self {
                self.parts.netsim = Some(config);
                self
            }

            /// See [`Config::datagrams`](crate::Config::datagrams).
            pub fn datagrams(mut self, enabled: bool) -> Self {
                self.parts.config = self.parts.config.datagrams(enabled);
                self
            }

            /// See [`Config::idle_timeout`](crate::Config::idle_timeout).
            pub fn idle_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.parts.config = self.parts.config.idle_timeout(timeout);
                self
            }

            /// See [`Config::handshake_timeout`](crate::Config::handshake_timeout).
            pub fn handshake_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.parts.config = self.parts.config.handshake_timeout(timeout);
                self
            }

            /// See [`Config::max_inbound_streams`](crate::Config::max_inbound_streams).
            pub fn max_inbound_streams(mut self, streams: u32) -> Self {
                self.parts.config = self.parts.config.max_inbound_streams(streams);
                self
            }

            /// See [`Config::stream_receive_window`](crate::Config::stream_receive_window).
            pub fn stream_receive_window(mut self, bytes: u32) -> Self {
                self.parts.config = self.parts.config.stream_receive_window(bytes);
                self
            }

            /// See [`Config::max_incomplete_bytes`](crate::Config::max_incomplete_bytes).
            pub fn max_incomplete_bytes(mut self, bytes: usize) -> Self {
                self.parts.config = self.parts.config.max_incomplete_bytes(bytes);
                self
            }
        }
    };
}
pub(crate) use endpoint_builder_methods;

impl Parts {
    pub(crate) fn add_service(&mut self, service: impl Service) {
        service.register(&mut self.router);
    }

    pub(crate) fn add_middleware(&mut self, middleware: impl Middleware) {
        self.middleware.push(Arc::new(middleware));
    }
}

impl Service for Router {
    /// Moves every handler of this router into `router`.
    fn register(self, router: &mut Router) {
        router.merge(self);
    }
}

/// Runs the start hooks and tells the plugins the endpoint started.
pub(crate) async fn start(shared: &Shared) -> Result<(), Error> {
    shared.context.start().await.map_err(Error::Start)?;
    crate::plugin::notify(&shared.plugins, "on_server_start", |p| {
        p.on_server_start(&shared.context)
    });
    Ok(())
}

/// Opens this side's control stream and writes its hello on it (as 0-RTT early data when the
/// handshake is not done yet).
pub(crate) async fn open_control(
    conn: &Connection,
    max_frame_size: usize,
    max_concurrent_calls: u32,
) -> Result<SendStream, Error> {
    let mut control = conn.open_uni().await.map_err(Error::from_connection)?;
    let mut encoder = Encoder::new();
    encoder.put_byte(STREAM_CONTROL);
    let hello = Frame {
        metadata: Default::default(),
        payload: Some(Payload::Hello(protocol::hello(
            max_frame_size,
            max_concurrent_calls,
        ))),
    };
    let mut hello = encoder
        .encode_frame(hello, usize::MAX)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    if let Err(e) = control.write_all_chunks(hello.chunks()).await {
        return Err(match e {
            quinn::WriteError::ConnectionLost(e) => Error::from_connection(e),
            other => Error::Protocol(format!("cannot write the hello: {other}")),
        });
    }
    Ok(control)
}

/// Exchanges hellos on a fresh connection and starts its session. `accepted` is given when the
/// TLS handshake may not be complete yet (a server answering in 0.5-RTT): it resolves when it
/// is.
pub(crate) async fn establish(
    conn: Connection,
    shared: Arc<Shared>,
    accepted: Option<ZeroRttAccepted>,
) -> Result<Session, Error> {
    let config = &shared.config;
    let timeout = config.handshake_timeout;
    let exchange = async {
        let control =
            open_control(&conn, config.max_frame_size, config.max_concurrent_calls).await?;
        let recv = conn.accept_uni().await.map_err(Error::from_connection)?;
        let mut reader = FrameReader::new(recv, config.max_frame_size);
        let protocol_error = |code: ErrorCode, detail: String| {
            conn.close(protocol::close_code(code), detail.as_bytes());
            Error::Protocol(detail)
        };
        match reader.read_stream_type().await {
            Ok(Some(STREAM_CONTROL)) => {}
            Ok(Some(other)) => {
                return Err(protocol_error(
                    ErrorCode::ProtocolError,
                    format!("the first stream must be the control stream, got type {other}"),
                ));
            }
            Ok(None) => {
                return Err(protocol_error(
                    ErrorCode::ProtocolError,
                    "the control stream ended before its hello".into(),
                ));
            }
            Err(quinn::ReadError::ConnectionLost(e)) => return Err(Error::from_connection(e)),
            Err(e) => {
                return Err(protocol_error(
                    ErrorCode::ProtocolError,
                    format!("the control stream failed: {e}"),
                ));
            }
        }
        let hello = match reader.next().await {
            Ok(Some(Frame {
                payload: Some(Payload::Hello(hello)),
                ..
            })) => hello,
            Ok(_) => {
                return Err(protocol_error(
                    ErrorCode::ProtocolError,
                    "the control stream must start with a hello".into(),
                ));
            }
            Err(ReadFrameError::Codec(e)) => {
                return Err(protocol_error(
                    codec_close_code(&e),
                    format!("bad hello frame: {e}"),
                ));
            }
            Err(ReadFrameError::Read(quinn::ReadError::ConnectionLost(e))) => {
                return Err(Error::from_connection(e));
            }
            Err(ReadFrameError::Read(e)) => {
                return Err(protocol_error(
                    ErrorCode::ProtocolError,
                    format!("the control stream failed: {e}"),
                ));
            }
            // (The control stream's reader has no budget.)
            Err(ReadFrameError::OverBudget { limit }) => {
                return Err(Error::Protocol(format!(
                    "the hello exceeds the budget of {limit} bytes"
                )));
            }
        };
        let peer = match protocol::check_hello(hello, crate::codec::DEFAULT_MAX_FRAME_SIZE) {
            Ok(peer) => peer,
            Err(version) => {
                let detail = format!(
                    "the peer speaks protocol version {version}, this endpoint speaks {}",
                    protocol::PROTOCOL_VERSION
                );
                conn.close(
                    protocol::close_code(ErrorCode::VersionMismatch),
                    detail.as_bytes(),
                );
                return Err(Error::VersionMismatch { detail });
            }
        };
        Ok((peer, control, reader))
    };
    let (peer, control, reader) = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            conn.close(
                protocol::close_code(ErrorCode::HandshakeTimeout),
                b"no hello within the handshake timeout",
            );
            return Err(Error::HandshakeTimeout(timeout));
        }
    };
    // A hello read before the handshake completed came as early data: the client resumed with
    // 0-RTT and this server accepted it.
    let (handshake, accepted) = match accepted {
        Some(accepted) if !handshake_complete(&conn) => {
            (Handshake::pending(EarlyData::Accepted), Some(accepted))
        }
        _ => (Handshake::confirmed(EarlyData::NotAttempted), None),
    };
    let start = Start {
        peer,
        control_send: control,
        control_recv: Some(reader),
        handshake,
        accepted,
        on_peer_hello: None,
    };
    Ok(Session::start(conn, shared, start))
}

/// Starts the session of a client connection resuming with 0-RTT: its hello goes as early data
/// and the session starts at once, on the hello `remembered` from the last connection to this
/// server (the server's own hello, on its way, then replaces it and goes to `on_peer_hello`).
pub(crate) async fn establish_early(
    conn: Connection,
    shared: Arc<Shared>,
    accepted: ZeroRttAccepted,
    remembered: PeerHello,
    on_peer_hello: HelloHook,
) -> Result<Session, Error> {
    let config = &shared.config;
    let control = open_control(&conn, config.max_frame_size, config.max_concurrent_calls).await?;
    let start = Start {
        peer: remembered,
        control_send: control,
        control_recv: None,
        handshake: Handshake::pending(EarlyData::Pending),
        accepted: Some(accepted),
        on_peer_hello: Some(on_peer_hello),
    };
    Ok(Session::start(conn, shared, start))
}

/// What an endpoint asks of its UDP socket's receive and send buffers: room for the bursts of
/// many connections opening at once. The usual default (about 208 KiB on Linux) holds only some
/// hundred datagrams: fifty handshakes at once, each with its 0.5-RTT hello and first ping,
/// overflow it, and each handshake packet the kernel drops costs its connection a probe
/// timeout (a second, from QUIC's initial RTT estimate of 333 ms). The kernel grants at most
/// its maximum (`net.core.rmem_max` / `wmem_max` on Linux); the memory is used only while
/// datagrams wait.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// A quinn endpoint on a UDP socket bound to `addr` by [`bind_socket`]; a server if
/// `server_config` is given.
pub(crate) fn quinn_endpoint(
    addr: SocketAddr,
    server_config: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_socket(addr)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no tokio runtime"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server_config,
        socket,
        runtime,
    )
}

/// Binds a UDP socket to `addr`, dual-stack if `addr` is an IPv6 address (where the system
/// allows), asking for buffers of [`SOCKET_BUFFER`] both ways. If the system grants less, says
/// so once per process: bursts of new connections may then wait a second on lost handshakes.
pub(crate) fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    static WARNED: std::sync::Once = std::sync::Once::new();
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6()
        && let Err(error) = socket.set_only_v6(false)
    {
        tracing::debug!(%error, "the socket cannot be dual-stack");
    }
    // Failing to enlarge a buffer is not fatal: the socket works, only bursts suffer.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < SOCKET_BUFFER {
        WARNED.call_once(|| {
            tracing::warn!(
                granted,
                wanted = SOCKET_BUFFER,
                "the UDP receive buffer is smaller than wanted: many connections opening at \
                 once may lose handshake packets and wait a second each (on Linux, raise \
                 net.core.rmem_max)"
            );
        });
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_spaced_out_past_the_endpoints_budget() {
        let fast = Duration::from_millis(50);
        // Up to a hundred sessions ping as fast as the clock sync wants.
        assert_eq!(fast.max(ping_spacing(1)), fast);
        assert_eq!(fast.max(ping_spacing(100)), fast);
        // A thousand: one ping each every half second, 2,000 a second in all.
        assert_eq!(ping_spacing(1_000), Duration::from_millis(500));
        assert_eq!(ping_spacing(10_000), Duration::from_secs(5));
        assert_eq!(ping_spacing(usize::MAX).max(fast), ping_spacing(usize::MAX));
    }

    /// The most the system grants a socket's receive buffer, where it says (Linux).
    fn system_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn sockets_get_the_receive_buffer_bursts_of_handshakes_need() {
        let socket = bind_socket("127.0.0.1:0".parse().unwrap()).expect("binds");
        let granted = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("buffer size");
        // Linux grants min(asked, rmem_max), and reports twice that (for its bookkeeping).
        let floor = system_max().map_or(0, |max| SOCKET_BUFFER.min(max));
        assert!(
            granted >= floor,
            "granted {granted} bytes, the system allows {floor}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_ipv6_socket_is_dual_stack_where_the_system_allows() {
        let Ok(socket) = bind_socket("[::]:0".parse().unwrap()) else {
            return; // No IPv6 on this machine.
        };
        let port = socket.local_addr().unwrap().port();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = socket
            .recv_from(&mut buf)
            .expect("an IPv4 datagram arrives");
        assert_eq!(&buf[..n], b"v4");
        assert_eq!(
            from.ip(),
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        );
    }
}
