//! Datagram stream throughput of EchoStream against raw quinn sending the same datagrams, side by
//! side in one run, for 1,000-byte and 100 KB frames.
//!
//! Two OS threads, each running a single-threaded tokio runtime, as in the rpc bench: one
//! receives (an EchoStream server whose stream handler counts frames, and a raw quinn server
//! counting datagrams), one sends (an EchoStream client sending on a datagram stream, and a raw
//! quinn client). Both connections use the same TLS configuration and the same QUIC datagram
//! buffers (EchoStream's defaults: 4 MiB to receive, 2 MiB to send); everything else is quinn's
//! default.
//!
//! - *Raw quinn* sends, for each frame, the datagrams EchoStream would send for it (header and
//!   fragments, as `datagram::fragment_in` cuts them), each with `send_datagram_wait`, which
//!   waits while quinn's send buffer is full. Its frames per second are the datagrams received
//!   per second divided by the datagrams per frame. It runs two ways:
//!   - *cut anew*: each frame gets its own seq and timestamp and is cut into datagrams in a
//!     reused 64 KiB arena before it is sent: the job a hand-rolled sender of frames does (a
//!     receiver tells frames apart by their seq), and the baseline of the ratio;
//!   - *resent*: one frame's datagrams, cut once before the measurement, are sent again and
//!     again. No real sender can do this (every frame would carry the same seq), but it is
//!     quinn alone: no header to write, no copy, the same 1,000 bytes hot in the cache for
//!     every datagram. Its ratio is the upper bound of the framework's overhead.
//! - *EchoStream* calls `StreamSender::send` for each frame; a frame the path cannot take is
//!   dropped (counted) rather than waited for, and the sender then yields. Its frames per second
//!   are the complete frames its handler received per second.
//!
//! Raw quinn (both ways) and EchoStream take turns in rounds of 200 ms (`ECHO_BENCH_SECS` of each
//! in total, default 3); a ratio is the median of the per-round ratios, robust to load from
//! other processes.
//!
//! Both sides keep their default congestion controller (quinn's Cubic for raw quinn, BBR for
//! EchoStream) unless `ECHO_BENCH_CONGESTION` (`bbr` or `cubic`) sets the same one on both,
//! which tells the framework's cost from the controller's.
//!
//! `ECHO_BENCH_PROFILE` (`raw`, `raw-resent`, `echostream`, `echostream-send`) runs one side alone for a
//! profiler; with `ECHO_BENCH_FRAMES` it sends exactly that many frames, for instruction counts
//! (`valgrind --tool=callgrind --separate-threads=yes`), and prints QUIC's own counts (datagrams
//! sent and received, packets lost).
//!
//! Run: `cargo bench -p echostream-runtime --bench datagram_throughput`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use echostream_runtime::datagram::{FrameId, fragment, fragment_in};
use echostream_runtime::tls::{ClientTls, Fingerprint, ServerTls};
use echostream_runtime::{
    Client, Config, Congestion, Delivery, Played, Server, Session, StreamHandler, StreamInfo,
    StreamOptions, StreamSender,
};

const RAW_ALPN: &[u8] = b"raw-datagrams";
const ROUND: Duration = Duration::from_millis(200);
/// How long a round waits after sending for the last datagrams to arrive.
const SETTLE: Duration = Duration::from_millis(30);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The same datagram buffers on both sides of the comparison.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(4 * 1024 * 1024))
        .datagram_send_buffer_size(2 * 1024 * 1024);
    if congestion() == Some(Congestion::Bbr) {
        transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    Arc::new(transport)
}

/// The congestion controller of both sides, from `ECHO_BENCH_CONGESTION` (`bbr` or `cubic`);
/// `None`: each side's default (quinn's Cubic for raw quinn, BBR for EchoStream).
fn congestion() -> Option<Congestion> {
    match std::env::var("ECHO_BENCH_CONGESTION").ok()?.as_str() {
        "bbr" => Some(Congestion::Bbr),
        "cubic" => Some(Congestion::Cubic),
        other => panic!("ECHO_BENCH_CONGESTION: {other}? (bbr or cubic)"),
    }
}

/// EchoStream's configuration: its defaults, with the congestion controller asked for.
fn echostream_config() -> Config {
    match congestion() {
        Some(congestion) => Config::default().congestion(congestion),
        None => Config::default(),
    }
}

/// What the receiving thread tells the sending thread.
struct Served {
    echostream: SocketAddr,
    raw: SocketAddr,
    fingerprint: Fingerprint,
}

/// Counters of the receiving side: EchoStream frames and bytes, raw datagrams.
#[derive(Default)]
struct Received {
    frames: AtomicU64,
    raw_datagrams: AtomicU64,
}

/// Counts the frames of the streams named "media", as a generated stream handler would.
struct Media(Arc<Received>);

#[echostream_runtime::async_trait]
impl StreamHandler for Media {
    fn name(&self) -> &str {
        "media"
    }

    async fn handle(&self, _: &Session, _: &StreamInfo, _: Played<Bytes>) {
        self.0.frames.fetch_add(1, Ordering::Relaxed);
    }
}

fn receive(
    received: Arc<Received>,
    ready: std::sync::mpsc::Sender<Served>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    current_thread().block_on(async move {
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let server = Server::builder()
            .config(echostream_config())
            .tls(tls.clone())
            .routes(|r| {
                r.add_stream(Media(received.clone()));
            })
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let mut config = quinn::ServerConfig::with_crypto(tls.quic_config(&[RAW_ALPN]).unwrap());
        config.transport_config(transport());
        let raw = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        ready
            .send(Served {
                echostream: server.local_addr(),
                raw: raw.local_addr().unwrap(),
                fingerprint: server.fingerprint(),
            })
            .unwrap();
        let raw_server = tokio::spawn(async move {
            while let Some(incoming) = raw.accept().await {
                let conn = incoming.await.unwrap();
                let received = received.clone();
                tokio::spawn(async move {
                    while conn.read_datagram().await.is_ok() {
                        received.raw_datagrams.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let _ = stop.await;
        if std::env::var_os("ECHO_BENCH_PROFILE").is_some() {
            for session in server.sessions().list() {
                eprintln!("receiver: {:?}", session.stats());
                eprintln!(
                    "receiver: QUIC datagram frames received: {}",
                    session.transport_stats().frame_rx.datagram
                );
                for stream in session.inbound_streams() {
                    eprintln!("receiver stream: {:?}", stream.stats());
                }
            }
        }
        raw_server.abort();
        server.shutdown(Duration::from_secs(1)).await;
    });
}

/// Sends frames for one round and returns how many frames arrived and how long it took.
async fn raw_round(
    conn: &quinn::Connection,
    raw: &mut RawFrame,
    received: &Received,
) -> (f64, Duration) {
    let base = received.raw_datagrams.load(Ordering::Relaxed);
    let start = Instant::now();
    while start.elapsed() < ROUND {
        raw.send(conn).await;
    }
    let datagrams = &raw.datagrams;
    let elapsed = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let got = received.raw_datagrams.load(Ordering::Relaxed) - base;
    (got as f64 / datagrams.len() as f64, elapsed)
}

/// How raw quinn gets the datagrams of each frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Each frame with its own seq and timestamp, cut anew: a hand-rolled sender's job.
    CutAnew,
    /// One frame's datagrams, cut once, sent again and again: quinn alone.
    Resent,
}

/// Frames cut into datagrams as EchoStream cuts them, for raw quinn to send.
struct RawFrame {
    id: FrameId,
    frame: Bytes,
    how: Raw,
    /// The largest datagram, as of the last cut.
    max: usize,
    /// The datagrams of the frame to send.
    datagrams: Vec<Bytes>,
    /// Where frames cut anew are written, 64 KiB at a time.
    arena: BytesMut,
}

impl RawFrame {
    fn new(conn: &quinn::Connection, id: FrameId, frame: &Bytes, how: Raw) -> RawFrame {
        let max = conn.max_datagram_size().unwrap();
        let datagrams = fragment(id, frame, max, usize::MAX).unwrap().collect();
        RawFrame {
            id,
            frame: frame.clone(),
            how,
            max,
            datagrams,
            arena: BytesMut::new(),
        }
    }

    /// Cuts the frame into datagrams of at most `max` bytes in the arena, with the current id.
    fn cut(&mut self) {
        let arena = std::mem::take(&mut self.arena);
        let mut fragments =
            fragment_in(self.id, &self.frame, self.max, usize::MAX, arena, 64 * 1024).unwrap();
        self.datagrams.clear();
        self.datagrams.extend(&mut fragments);
        self.arena = fragments.into_arena();
    }

    /// Sends the next frame's datagrams, waiting for room. Should the path MTU shrink under it
    /// (quinn takes heavy loss for a black hole), the frame is cut again to the new size and
    /// sent again, as EchoStream's `send_wait` does.
    async fn send(&mut self, conn: &quinn::Connection) {
        if self.how == Raw::CutAnew {
            self.id.seq += 1;
            self.id.timestamp = unix_micros();
            self.cut();
        }
        for _ in 0..3 {
            let mut refused = false;
            for d in &self.datagrams {
                match conn.send_datagram_wait(d.clone()).await {
                    Ok(()) => {}
                    Err(quinn::SendDatagramError::TooLarge) => {
                        refused = true;
                        break;
                    }
                    Err(e) => panic!("raw datagram refused: {e}"),
                }
            }
            if !refused {
                return;
            }
            self.max = conn.max_datagram_size().unwrap();
            self.cut();
        }
        panic!("the path MTU kept shrinking");
    }
}

/// How the EchoStream sender sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `send_wait`: waits for room, as raw quinn's `send_datagram_wait` does.
    Wait,
    /// `send`: drops a frame the path cannot take (live media); the sender then yields.
    Drop,
}

async fn echostream_round(
    stream: &StreamSender,
    frame: &Bytes,
    received: &Received,
    mode: Mode,
) -> (f64, Duration, u64) {
    let base = received.frames.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < ROUND {
        match mode {
            Mode::Wait => stream.send_wait(frame.clone()).await.unwrap(),
            Mode::Drop => {
                if stream.send(frame.clone()).await.is_err() {
                    refused += 1;
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let got = received.frames.load(Ordering::Relaxed) - base;
    (got as f64, elapsed, refused)
}

/// The frames per second of each over all its rounds, and the medians of the per-round ratios.
struct Comparison {
    cut_anew: f64,
    resent: f64,
    echostream: f64,
    /// EchoStream over raw quinn cutting each frame anew.
    ratio: f64,
    /// EchoStream over raw quinn resending one frame's datagrams.
    ratio_resent: f64,
    /// Frames EchoStream's `send` dropped for congestion.
    refused: u64,
    /// Datagrams per frame.
    per_frame: usize,
}

/// Runs raw quinn both ways and EchoStream in turns, for `secs` of rounds each.
async fn compare(
    conn: &quinn::Connection,
    stream: &StreamSender,
    size: usize,
    secs: f64,
    received: &Received,
    mode: Mode,
) -> Comparison {
    let frame = Bytes::from(vec![0x5a; size]);
    let id = FrameId {
        stream_id: stream.id(),
        seq: 1_000_000,
        timestamp: 1_735_689_600_000_000,
    };
    let mut cut_anew = RawFrame::new(conn, id, &frame, Raw::CutAnew);
    let mut resent = RawFrame::new(conn, id, &frame, Raw::Resent);
    let per_frame = resent.datagrams.len();
    // Warm-up: path MTU discovery, congestion window.
    raw_round(conn, &mut cut_anew, received).await;
    raw_round(conn, &mut resent, received).await;
    echostream_round(stream, &frame, received, mode).await;
    // (frames, seconds) of each.
    let (mut totals, mut ratios, mut ratios_resent) = ([(0.0, 0.0); 3], Vec::new(), Vec::new());
    let mut refused = 0;
    for _ in 0..((secs / ROUND.as_secs_f64()).ceil() as usize).max(1) {
        let (a, a_time) = raw_round(conn, &mut cut_anew, received).await;
        let (r, r_time) = raw_round(conn, &mut resent, received).await;
        let (e, e_time, e_refused) = echostream_round(stream, &frame, received, mode).await;
        refused += e_refused;
        let rounds = [(a, a_time), (r, r_time), (e, e_time)];
        for (total, (frames, time)) in totals.iter_mut().zip(rounds) {
            *total = (total.0 + frames, total.1 + time.as_secs_f64());
        }
        let rate = |(frames, time): (f64, Duration)| frames / time.as_secs_f64();
        ratios.push(rate(rounds[2]) / rate(rounds[0]));
        ratios_resent.push(rate(rounds[2]) / rate(rounds[1]));
    }
    let [cut_anew, resent, echostream] = totals.map(|(frames, secs)| frames / secs);
    Comparison {
        cut_anew,
        resent,
        echostream,
        ratio: median(ratios),
        ratio_resent: median(ratios_resent),
        refused,
        per_frame,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Microseconds since the Unix epoch, a frame's timestamp.
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One side alone, for a profiler: `raw` (cut anew), `raw-resent`, `echostream` (`send_wait`)
/// or `echostream-send`, with
/// frames of `ECHO_BENCH_SIZE` bytes (default 1,000). With `ECHO_BENCH_FRAMES`, exactly that
/// many frames are sent and waited for (for instruction counts, e.g. under callgrind, where
/// time means little); else rounds run for `secs`.
async fn profile(
    which: &str,
    conn: &quinn::Connection,
    stream: &StreamSender,
    received: &Received,
    secs: f64,
) {
    let size: usize = std::env::var("ECHO_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let frame = Bytes::from(vec![0x5a; size]);
    let id = FrameId {
        stream_id: stream.id(),
        seq: 0,
        timestamp: 1,
    };
    let how = match which {
        "raw-resent" => Raw::Resent,
        _ => Raw::CutAnew,
    };
    let mut raw = RawFrame::new(conn, id, &frame, how);
    let start = Instant::now();
    let total = match std::env::var("ECHO_BENCH_FRAMES")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(frames) => fixed_count(which, conn, stream, &frame, &mut raw, received, frames).await,
        None => {
            let mut total = 0.0;
            while start.elapsed().as_secs_f64() < secs {
                total += match which {
                    "raw" | "raw-resent" => raw_round(conn, &mut raw, received).await.0,
                    "echostream-send" => {
                        echostream_round(stream, &frame, received, Mode::Drop)
                            .await
                            .0
                    }
                    _ => {
                        echostream_round(stream, &frame, received, Mode::Wait)
                            .await
                            .0
                    }
                };
            }
            total
        }
    };
    println!(
        "{which}: {total:.0} frames received, {:.0} frames/s; raw datagrams received: {}; {:?}",
        total / start.elapsed().as_secs_f64(),
        received.raw_datagrams.load(Ordering::Relaxed),
        stream.stats()
    );
}

/// Sends exactly `frames` frames (raw datagrams or `send_wait`) and waits until they arrived
/// or none arrived for a second; returns the frames received.
async fn fixed_count(
    which: &str,
    conn: &quinn::Connection,
    stream: &StreamSender,
    frame: &Bytes,
    raw: &mut RawFrame,
    received: &Received,
    frames: u64,
) -> f64 {
    let per_frame = raw.datagrams.len() as f64;
    let count = |received: &Received| match which {
        "raw" | "raw-resent" => received.raw_datagrams.load(Ordering::Relaxed) as f64 / per_frame,
        _ => received.frames.load(Ordering::Relaxed) as f64,
    };
    let base = count(received);
    for _ in 0..frames {
        match which {
            "raw" | "raw-resent" => raw.send(conn).await,
            _ => stream.send_wait(frame.clone()).await.unwrap(),
        }
    }
    let (mut last, mut idle) = (count(received), 0);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count(received);
        idle = if now == last { idle + 1 } else { 0 };
        if now - base >= frames as f64 || idle >= 10 {
            break;
        }
        last = now;
    }
    count(received) - base
}

fn main() {
    let secs: f64 = std::env::var("ECHO_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let received = Arc::new(Received::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let receiver = std::thread::spawn({
        let received = received.clone();
        move || receive(received, ready_tx, stop_rx)
    });
    let served = ready_rx.recv().unwrap();

    current_thread().block_on(async move {
        let tls = ClientTls::pinned(served.fingerprint);
        // Bound to 127.0.0.1 like the raw client (the default binds a dual-stack IPv6 socket,
        // whose sends to an IPv4 address take the kernel's longer IPv6 path).
        let session = Client::builder()
            .config(echostream_config())
            .tls(tls.clone())
            .bind_addr("127.0.0.1:0".parse().unwrap())
            .connect(served.echostream, "localhost")
            .await
            .unwrap();
        let stream = session
            .open_stream(
                "media",
                StreamOptions::new()
                    .delivery(Delivery::Datagram)
                    .max_frame_bytes(200_000),
            )
            .await
            .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut config = quinn::ClientConfig::new(tls.quic_config(&[RAW_ALPN]).unwrap());
        config.transport_config(transport());
        let conn = endpoint
            .connect_with(config, served.raw, "localhost")
            .unwrap()
            .await
            .unwrap();
        if let Ok(which) = std::env::var("ECHO_BENCH_PROFILE") {
            profile(&which, &conn, &stream, &received, secs).await;
            let quic = match which.as_str() {
                "raw" | "raw-resent" => conn.stats(),
                _ => session.transport_stats(),
            };
            println!(
                "sender: QUIC datagram frames sent: {}, packets lost: {}, congestion events: {}",
                quic.frame_tx.datagram, quic.path.lost_packets, quic.path.congestion_events
            );
            return;
        }
        println!(
            "| frames | EchoStream sends with | raw quinn, cut anew | raw quinn, resent | EchoStream | ratio | ratio to resent |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        let mut notes = Vec::new();
        for (size, label) in [(1_000, "1,000 B"), (100_000, "100 KB")] {
            for (mode, how) in [(Mode::Wait, "send_wait"), (Mode::Drop, "send (drops)")] {
                let c = compare(&conn, &stream, size, secs, &received, mode).await;
                let rate = |frames: f64| {
                    format!("{frames:.0} frames/s ({:.1} MB/s)", frames * size as f64 / 1e6)
                };
                println!(
                    "| {label} | {how} | {} | {} | {} | {:.2}x | {:.2}x |",
                    rate(c.cut_anew),
                    rate(c.resent),
                    rate(c.echostream),
                    c.ratio,
                    c.ratio_resent,
                );
                if mode == Mode::Drop {
                    notes.push(format!(
                        "{label}: {} datagram(s) per frame; with send, {} frames were dropped for congestion",
                        c.per_frame, c.refused
                    ));
                }
            }
        }
        println!();
        println!("({}; ratios are medians of per-round ratios over alternating 200 ms rounds.)", notes.join("; "));
        let stats = stream.stats();
        println!(
            "(EchoStream stream: {} frames sent, {} dropped, {} datagrams.)",
            stats.sent, stats.dropped, stats.datagrams
        );
    });
    stop_tx.send(()).unwrap();
    receiver.join().unwrap();
}
