//! [`Config`]: the limits and timers of an endpoint, shared by all its sessions.

use std::sync::Arc;
use std::time::Duration;

use quinn::{TransportConfig, VarInt};

use crate::clock::ClockSyncConfig;
use crate::codec::DEFAULT_MAX_FRAME_SIZE;
use crate::datagram::ReassemblerConfig;
use crate::pacer::PacerConfig;
use crate::queue::QueueLimits;

/// Limits and timers of an endpoint. Every value has a default suited to a server on the open
/// internet; the builders of [`Server`](crate::Server) and [`Client`](crate::Client) take a
/// `Config` or set its fields one by one.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) max_frame_size: usize,
    pub(crate) max_concurrent_calls: u32,
    pub(crate) max_inbound_streams: u32,
    pub(crate) max_incomplete_bytes: usize,
    pub(crate) event_queue: QueueLimits,
    pub(crate) stream_queue: QueueLimits,
    pub(crate) keepalive_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) stream_receive_window: u32,
    pub(crate) clock_sync: ClockSyncConfig,
    pub(crate) datagrams: bool,
    pub(crate) datagram_receive_buffer: usize,
    pub(crate) datagram_send_buffer: usize,
    pub(crate) reassembly: ReassemblerConfig,
    pub(crate) pacer: PacerConfig,
    pub(crate) congestion: Congestion,
}

/// QUIC's congestion controller for the connections of an endpoint.
///
/// It decides how fast the connection sends, and so what the pacer of datagram streams lets
/// through. The default is [`Congestion::Bbr`], for real-time media: a loss-based controller
/// (Cubic, NewReno) takes every lost packet for congestion, so on a path with random loss (Wi-Fi,
/// mobile) its window collapses and live frames wait or are dropped at the sender. On a
/// simulated path of 30 ms ± 10 ms with 5% loss, a 30 fps video and 50 fps audio stream played
/// 96–100% of what arrived in time with BBR, and 9–22% with Cubic, the rest late (the
/// `examples/video` program, `--simulate`). The other side of it: BBR (v1, as quinn has it)
/// does not slow down for loss at all, so when the loss is its own doing (a receiver too slow
/// to drain its socket, a shallow buffer) it keeps sending into it; a bulk datagram transfer to
/// a CPU-bound receiver lost half its packets on loopback where Cubic lost under 1%. quinn also
/// labels its BBR experimental. Choose [`Congestion::Cubic`], the standard one, for bulk
/// transfers, slow receivers, or where fairness with TCP matters more than latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// BBR: models the path's bandwidth and round-trip time; random loss does not shrink it.
    #[default]
    Bbr,
    /// Cubic (RFC 9438), the usual TCP controller and quinn's default: halves on loss.
    Cubic,
    /// NewReno (RFC 6582), the simplest loss-based controller.
    NewReno,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_timeout: Some(Duration::from_secs(30)),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_concurrent_calls: 128,
            max_inbound_streams: 64,
            max_incomplete_bytes: 64 * 1024 * 1024,
            event_queue: QueueLimits {
                frames: 4096,
                bytes: 8 * 1024 * 1024,
            },
            stream_queue: QueueLimits {
                frames: 256,
                bytes: 8 * 1024 * 1024,
            },
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            stream_receive_window: 2 * 1024 * 1024,
            clock_sync: ClockSyncConfig::default(),
            datagrams: true,
            datagram_receive_buffer: 4 * 1024 * 1024,
            datagram_send_buffer: 2 * 1024 * 1024,
            reassembly: ReassemblerConfig::default(),
            pacer: PacerConfig::default(),
            congestion: Congestion::default(),
        }
    }
}

impl Config {
    /// The defaults.
    pub fn new() -> Config {
        Config::default()
    }

    /// Deadline of outbound calls that set none themselves (default 30 s); `None` for none.
    pub fn default_timeout(mut self, timeout: Option<Duration>) -> Config {
        self.default_timeout = timeout;
        self
    }

    /// Largest frame accepted from the peer, in bytes without the length prefix (default 4 MiB,
    /// at least 1 KiB). A larger frame closes the connection with `FRAME_TOO_LARGE`; the peer
    /// learns the limit from the hello and refuses to send larger frames with
    /// `RESOURCE_EXHAUSTED`.
    pub fn max_frame_size(mut self, bytes: usize) -> Config {
        self.max_frame_size = bytes.max(1024);
        self
    }

    /// Most RPCs served at once per session (default 128, at least 1); calls beyond it are
    /// answered `RESOURCE_EXHAUSTED` at once. Each allowed call costs memory even when idle:
    /// quinn keeps a table slot for every stream the peer may open, in tables that double in
    /// size (about 21 KiB per session, both ends, at the defaults), so raise it only as far as
    /// a session needs.
    pub fn max_concurrent_calls(mut self, calls: u32) -> Config {
        self.max_concurrent_calls = calls.max(1);
        self
    }

    /// Most named streams the peer may have open towards this side at once (default 64, at
    /// least 1; QUIC stream credit). Past it, the peer's `open_stream` still returns, but the
    /// new stream's frames wait in its queue (and `send` fails `RESOURCE_EXHAUSTED` once the
    /// queue is full) until one of its other streams ends. Like
    /// [`Config::max_concurrent_calls`], each allowed stream costs a little memory per session.
    pub fn max_inbound_streams(mut self, streams: u32) -> Config {
        self.max_inbound_streams = streams.max(1);
        self
    }

    /// Most bytes of the peer's incomplete frames held per session (default 64 MiB, and never
    /// less than two frames of `max_frame_size`): requests not fully received yet and frames of
    /// named streams on their way. What a peer may pin by starting large frames and never
    /// finishing them. A request that would go past it is refused with a reset
    /// (`RESOURCE_EXHAUSTED`, counted in `calls_rejected`), a named stream is stopped with
    /// `RESOURCE_EXHAUSTED`; the connection goes on.
    pub fn max_incomplete_bytes(mut self, bytes: usize) -> Config {
        self.max_incomplete_bytes = bytes;
        self
    }

    /// The budget of incomplete frames' bytes per session.
    pub(crate) fn incomplete_frame_budget(&self) -> usize {
        self.max_incomplete_bytes
            .max(self.max_frame_size.saturating_mul(2))
    }

    /// Bound of each session's outbound event queue (default 4096 events or 8 MiB; at least one
    /// event, and one event of any size fits an empty queue); `emit` fails
    /// `RESOURCE_EXHAUSTED` and counts the event as dropped when it is full.
    pub fn event_queue(mut self, frames: usize, bytes: usize) -> Config {
        self.event_queue = QueueLimits {
            frames: frames.max(1),
            bytes,
        };
        self
    }

    /// Default bound of each outbound named stream's queue (default 256 frames or 8 MiB; at
    /// least one frame, and one frame of any size fits an empty queue).
    pub fn stream_queue(mut self, frames: usize, bytes: usize) -> Config {
        self.stream_queue = QueueLimits {
            frames: frames.max(1),
            bytes,
        };
        self
    }

    /// Interval between pings on an otherwise quiet or busy connection (default 5 s, at least
    /// 1 ms). Pings keep
    /// NAT bindings and the idle timer alive and measure the round-trip time.
    pub fn keepalive_interval(mut self, interval: Duration) -> Config {
        self.keepalive_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A connection from which nothing arrives for this long is considered lost (default 30 s,
    /// at least 10 ms).
    /// The smaller of both peers' values applies. Keep it a few keepalive intervals long.
    pub fn idle_timeout(mut self, timeout: Duration) -> Config {
        self.idle_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Time the peer has, once TLS is done, to send its hello (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Config {
        self.handshake_timeout = timeout;
        self
    }

    /// QUIC flow-control window of each stream, in bytes (default 2 MiB, at least 16 KiB): how
    /// much of one frame
    /// the peer may send before this side reads it.
    pub fn stream_receive_window(mut self, bytes: u32) -> Config {
        self.stream_receive_window = bytes.max(16 * 1024);
        self
    }

    /// How the clock offset to the peer is estimated from pings: window of samples, ping pace
    /// until and after the window is full (default [`ClockSyncConfig::default`]). The fast pings
    /// at the start also serve as keepalives; the keepalive interval still applies when it is
    /// shorter.
    pub fn clock_sync(mut self, config: ClockSyncConfig) -> Config {
        self.clock_sync = config;
        self
    }

    /// Whether this endpoint accepts QUIC datagrams (default: yes), which datagram streams need
    /// in both directions. Without, it opens no datagram stream (`FAILED_PRECONDITION`) and
    /// refuses the peer's, and the peer learns it from the transport parameters.
    pub fn datagrams(mut self, enabled: bool) -> Config {
        self.datagrams = enabled;
        self
    }

    /// QUIC's buffers of datagrams (default 4 MiB received, 2 MiB to send; each at least 64 KiB):
    /// received datagrams
    /// wait in the first until the session reads them (the oldest are dropped beyond it);
    /// datagrams to send wait in the second for congestion window. The runtime's pacing keeps
    /// far less than the send buffer queued, so that media never delays calls and events.
    pub fn datagram_buffers(mut self, receive: usize, send: usize) -> Config {
        self.datagram_receive_buffer = receive.max(64 * 1024);
        self.datagram_send_buffer = send.max(64 * 1024);
        self
    }

    /// Limits of the reassembly of fragmented datagram frames, per connection: partial frames
    /// and bytes held, how long a frame waits for a missing fragment before it is dropped and
    /// counted (default 500 ms), the largest frame of streams without their own limit.
    pub fn reassembly(mut self, config: ReassemblerConfig) -> Config {
        self.reassembly = config;
        self
    }

    /// The pacing of datagram streams, per connection: the token bucket's burst, how long a
    /// frame may wait for tokens before it is dropped (default 20 ms), and how the rate follows
    /// the congestion controller. The starting `rate` is replaced by the path's as soon as it is
    /// measured.
    pub fn pacer(mut self, config: PacerConfig) -> Config {
        self.pacer = config;
        self
    }

    /// The congestion controller of this endpoint's connections (default [`Congestion::Bbr`]).
    pub fn congestion(mut self, congestion: Congestion) -> Config {
        self.congestion = congestion;
        self
    }

    /// The QUIC transport parameters these settings call for.
    pub(crate) fn transport(&self) -> Arc<TransportConfig> {
        let mut transport = TransportConfig::default();
        // An eighth more bi-streams than calls served (and 8), so calls past the limit reach
        // this side and are answered RESOURCE_EXHAUSTED instead of waiting silently for stream
        // credit; no more, because quinn keeps a table slot per allowed stream from the start:
        // at the defaults, 152 bi + 66 uni fit a table of 256 that 176 + 66 overflowed into
        // one of 512 (about 13 KiB more per session, both ends).
        let bidi = self
            .max_concurrent_calls
            .saturating_add(self.max_concurrent_calls / 8 + 8);
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
            // The peer's control and events streams come on top of its named streams.
            .max_concurrent_uni_streams(VarInt::from_u32(
                self.max_inbound_streams.saturating_add(2),
            ))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .datagram_receive_buffer_size(self.datagrams.then_some(self.datagram_receive_buffer))
            .datagram_send_buffer_size(self.datagram_send_buffer)
            .keep_alive_interval(None);
        match self.congestion {
            Congestion::Bbr => transport
                .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default())),
            Congestion::Cubic => transport
                .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default())),
            Congestion::NewReno => transport.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            )),
        };
        let idle =
            quinn::IdleTimeout::try_from(self.idle_timeout).unwrap_or_else(|_| VarInt::MAX.into());
        transport.max_idle_timeout(Some(idle));
        Arc::new(transport)
    }
}
