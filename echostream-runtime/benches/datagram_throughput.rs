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
//!   fragments, cut by `datagram::fragment` once, before the measurement), each with
//!   `send_datagram_wait`, which waits while quinn's send buffer is full. Its frames per second
//!   are the datagrams received per second divided by the datagrams per frame.
//! - *EchoStream* calls `StreamSender::send` for each frame; a frame the path cannot take is
//!   dropped (counted) rather than waited for, and the sender then yields. Its frames per second
//!   are the complete frames its handler received per second.
//!
//! Raw and EchoStream alternate in rounds of 200 ms (`ECHO_BENCH_SECS` of each in total, default
//! 3); the ratio is the median of the per-round ratios, robust to load from other processes.
//!
//! Run: `cargo bench -p echostream-runtime --bench datagram_throughput`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::datagram::{FrameId, fragment};
use echostream_runtime::tls::{ClientTls, Fingerprint, ServerTls};
use echostream_runtime::{
    Client, Delivery, Played, Server, Session, StreamHandler, StreamInfo, StreamOptions,
    StreamSender,
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
    Arc::new(transport)
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
    datagrams: &[Bytes],
    received: &Received,
) -> (f64, Duration) {
    let base = received.raw_datagrams.load(Ordering::Relaxed);
    let start = Instant::now();
    while start.elapsed() < ROUND {
        for d in datagrams {
            conn.send_datagram_wait(d.clone()).await.unwrap();
        }
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let got = received.raw_datagrams.load(Ordering::Relaxed) - base;
    (got as f64 / datagrams.len() as f64, elapsed)
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

/// Frames per second of both, and the median of per-round ratios.
async fn compare(
    conn: &quinn::Connection,
    stream: &StreamSender,
    size: usize,
    secs: f64,
    received: &Received,
    mode: Mode,
) -> (f64, f64, f64, u64, usize) {
    let frame = Bytes::from(vec![0x5a; size]);
    let max = conn.max_datagram_size().unwrap();
    let id = FrameId {
        stream_id: stream.id(),
        seq: 1_000_000,
        timestamp: 1_735_689_600_000_000,
    };
    let datagrams: Vec<Bytes> = fragment(id, &frame, max, usize::MAX).unwrap().collect();
    // Warm-up: path MTU discovery, congestion window.
    raw_round(conn, &datagrams, received).await;
    echostream_round(stream, &frame, received, mode).await;
    let (mut raw_total, mut es_total) = ((0.0, Duration::ZERO), (0.0, Duration::ZERO));
    let mut ratios = Vec::new();
    let mut refused = 0;
    for _ in 0..((secs / ROUND.as_secs_f64()).ceil() as usize).max(1) {
        let (raw_frames, raw_time) = raw_round(conn, &datagrams, received).await;
        let (es_frames, es_time, es_refused) =
            echostream_round(stream, &frame, received, mode).await;
        refused += es_refused;
        raw_total = (raw_total.0 + raw_frames, raw_total.1 + raw_time);
        es_total = (es_total.0 + es_frames, es_total.1 + es_time);
        ratios.push((es_frames / es_time.as_secs_f64()) / (raw_frames / raw_time.as_secs_f64()));
    }
    ratios.sort_by(f64::total_cmp);
    let raw_rate = raw_total.0 / raw_total.1.as_secs_f64();
    let es_rate = es_total.0 / es_total.1.as_secs_f64();
    (
        raw_rate,
        es_rate,
        ratios[ratios.len() / 2],
        refused,
        datagrams.len(),
    )
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
            // One side alone, for a profiler: `raw` or `echostream`, with ECHO_BENCH_SIZE bytes.
            let size: usize = std::env::var("ECHO_BENCH_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
            let frame = Bytes::from(vec![0x5a; size]);
            let max = conn.max_datagram_size().unwrap();
            let id = FrameId { stream_id: 1, seq: 0, timestamp: 1 };
            let datagrams: Vec<Bytes> = fragment(id, &frame, max, usize::MAX).unwrap().collect();
            let mut total = 0.0;
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < secs {
                total += match which.as_str() {
                    "raw" => raw_round(&conn, &datagrams, &received).await.0,
                    "echostream-send" => echostream_round(&stream, &frame, &received, Mode::Drop).await.0,
                    _ => echostream_round(&stream, &frame, &received, Mode::Wait).await.0,
                };
            }
            println!(
                "{which}: {:.0} frames/s received; raw datagrams received: {}; {:?}",
                total / start.elapsed().as_secs_f64(),
                received.raw_datagrams.load(Ordering::Relaxed),
                stream.stats()
            );

            return;
        }
        println!("| frames | EchoStream sends with | raw quinn | EchoStream | ratio |");
        println!("| --- | --- | --- | --- | --- |");
        let mut notes = Vec::new();
        for (size, label) in [(1_000, "1,000 B"), (100_000, "100 KB")] {
            for (mode, how) in [(Mode::Wait, "send_wait"), (Mode::Drop, "send (drops)")] {
                let (raw, es, ratio, refused, per_frame) =
                    compare(&conn, &stream, size, secs, &received, mode).await;
                println!(
                    "| {label} | {how} | {raw:.0} frames/s ({:.1} MB/s) | {es:.0} frames/s ({:.1} MB/s) | {ratio:.2}x |",
                    raw * size as f64 / 1e6,
                    es * size as f64 / 1e6,
                );
                if mode == Mode::Drop {
                    notes.push(format!(
                        "{label}: {per_frame} datagram(s) per frame; with send, {refused} frames were dropped for congestion"
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
