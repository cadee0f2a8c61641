//! RPC and event throughput and latency of EchoStream against raw quinn doing the same exchange,
//! side by side in one run.
//!
//! Two OS threads, each running a single-threaded tokio runtime: one serves (an EchoStream server
//! and a raw quinn server), one calls (an EchoStream client and a raw quinn client). The raw
//! quinn peers use the same TLS configuration and quinn's default transport settings; an RPC is
//! a bi-stream per request whose payload is echoed back, an event stream is one uni-stream of
//! length-prefixed messages. EchoStream runs with its default configuration.
//!
//! Run: `cargo bench -p echostream-runtime --bench rpc` (set `ECHO_BENCH_SECS` to change the
//! time per throughput measurement, default 3).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::tls::{ClientTls, Fingerprint, ServerTls};
use echostream_runtime::{Client, Server, Session};

const RAW_ALPN: &[u8] = b"raw-echo";
const LATENCY_CALLS: usize = 20_000;
const WARMUP_CALLS: usize = 2_000;
const CONCURRENCY: usize = 64;
const EVENT_SIZE: usize = 64;

/// Something that echoes a payload across the connection.
trait Echo: Clone + Send + Sync + 'static {
    fn call(&self, data: Bytes) -> impl Future<Output = Bytes> + Send;
}

#[derive(Clone)]
struct RawEcho(quinn::Connection);

impl Echo for RawEcho {
    fn call(&self, data: Bytes) -> impl Future<Output = Bytes> + Send {
        let conn = self.0.clone();
        async move {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
            Bytes::from(recv.read_to_end(1 << 24).await.unwrap())
        }
    }
}

#[derive(Clone)]
struct EchoStream(Session);

impl Echo for EchoStream {
    fn call(&self, data: Bytes) -> impl Future<Output = Bytes> + Send {
        let session = self.0.clone();
        async move { session.request("echo", data).await.unwrap() }
    }
}

/// Latency percentiles of sequential calls.
async fn latency(echo: &impl Echo, size: usize) -> (Duration, Duration) {
    let data = Bytes::from(vec![0xa5; size]);
    for _ in 0..WARMUP_CALLS {
        assert_eq!(echo.call(data.clone()).await.len(), size);
    }
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    for _ in 0..LATENCY_CALLS {
        let start = Instant::now();
        let answer = echo.call(data.clone()).await;
        samples.push(start.elapsed());
        assert_eq!(answer.len(), size);
    }
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// Calls per second with `CONCURRENCY` callers for `secs`.
async fn throughput(echo: &impl Echo, size: usize, secs: f64) -> f64 {
    let data = Bytes::from(vec![0x5a; size]);
    let run = |duration: Duration| {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let echo = echo.clone();
                let data = data.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        assert_eq!(echo.call(data.clone()).await.len(), data.len());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        async move {
            let start = Instant::now();
            for task in tasks {
                task.await.unwrap();
            }
            done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        }
    };
    run(Duration::from_secs_f64(secs / 4.0)).await;
    run(Duration::from_secs_f64(secs)).await
}

/// Events per second from one sender, counted when the receiver has handled them all.
async fn events_raw(conn: &quinn::Connection, received: &AtomicU64, count: u64) -> f64 {
    let base = received.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut send = conn.open_uni().await.unwrap();
    let mut frame = vec![EVENT_SIZE as u8];
    frame.extend_from_slice(&[0x11; EVENT_SIZE]);
    for _ in 0..count {
        send.write_all(&frame).await.unwrap();
    }
    send.finish().unwrap();
    while received.load(Ordering::Relaxed) < base + count {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

async fn events_echostream(session: &Session, received: &AtomicU64, count: u64) -> (f64, u64) {
    let base = received.load(Ordering::Relaxed);
    let data = Bytes::from(vec![0x11; EVENT_SIZE]);
    let start = Instant::now();
    let mut full = 0;
    let mut sent = 0;
    while sent < count {
        match session.emit("tick", data.clone()).await {
            Ok(()) => sent += 1,
            // A full queue refuses at once; let the writer drain it.
            Err(_) => {
                full += 1;
                tokio::task::yield_now().await;
            }
        }
    }
    while received.load(Ordering::Relaxed) < base + count {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    (count as f64 / start.elapsed().as_secs_f64(), full)
}

/// What the serving thread tells the calling thread.
struct Served {
    echostream: SocketAddr,
    raw: SocketAddr,
    fingerprint: Fingerprint,
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Serves both the EchoStream and the raw quinn echo until `stop` fires.
fn serve(
    events: Arc<AtomicU64>,
    raw_events: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<Served>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    current_thread().block_on(async move {
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let server = Server::builder()
            .tls(tls.clone())
            .routes(move |r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
                r.event("tick", move |_, _| {
                    events.fetch_add(1, Ordering::Relaxed);
                    async {}
                });
            })
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let config = quinn::ServerConfig::with_crypto(tls.quic_config(&[RAW_ALPN]).unwrap());
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
                tokio::spawn(raw_uni(conn.clone(), raw_events.clone()));
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let data = recv.read_to_end(1 << 24).await.unwrap();
                            send.write_all(&data).await.unwrap();
                            send.finish().unwrap();
                        });
                    }
                });
            }
        });
        let _ = stop.await;
        raw_server.abort();
        server.shutdown(Duration::from_secs(1)).await;
    });
}

/// Counts the length-prefixed messages on the raw client's uni-streams.
async fn raw_uni(conn: quinn::Connection, count: Arc<AtomicU64>) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let count = count.clone();
        tokio::spawn(async move {
            let mut pending = 0usize;
            while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
                let mut bytes = &chunk.bytes[..];
                let mut frames = 0;
                while !bytes.is_empty() {
                    if pending == 0 {
                        pending = 1 + bytes[0] as usize;
                    }
                    let take = pending.min(bytes.len());
                    bytes = &bytes[take..];
                    pending -= take;
                    if pending == 0 {
                        frames += 1;
                    }
                }
                count.fetch_add(frames, Ordering::Relaxed);
            }
        });
    }
}

fn ratio(framework: f64, raw: f64) -> String {
    format!("{:.2}x", framework / raw)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let secs: f64 = std::env::var("ECHO_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let events = Arc::new(AtomicU64::new(0));
    let raw_events = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let server = std::thread::spawn({
        let events = events.clone();
        let raw_events = raw_events.clone();
        move || serve(events, raw_events, ready_tx, stop_rx)
    });
    let served = ready_rx.recv().unwrap();

    current_thread().block_on(async move {
        let tls = ClientTls::pinned(served.fingerprint);
        let session = Client::builder()
            .tls(tls.clone())
            .connect(served.echostream, "localhost")
            .await
            .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let config = quinn::ClientConfig::new(tls.quic_config(&[RAW_ALPN]).unwrap());
        let conn = endpoint
            .connect_with(config, served.raw, "localhost")
            .unwrap()
            .await
            .unwrap();
        let raw = RawEcho(conn.clone());
        let es = EchoStream(session.clone());

        println!("| measurement | raw quinn | EchoStream | ratio |");
        println!("| --- | --- | --- | --- |");
        let (raw_p50, raw_p99) = latency(&raw, 64).await;
        let (es_p50, es_p99) = latency(&es, 64).await;
        println!(
            "| 64 B RPC latency p50, concurrency 1 | {} | {} | {} |",
            micros(raw_p50),
            micros(es_p50),
            ratio(es_p50.as_secs_f64(), raw_p50.as_secs_f64())
        );
        println!(
            "| 64 B RPC latency p99, concurrency 1 | {} | {} | {} |",
            micros(raw_p99),
            micros(es_p99),
            ratio(es_p99.as_secs_f64(), raw_p99.as_secs_f64())
        );
        for size in [64, 16 * 1024] {
            let raw_rate = throughput(&raw, size, secs).await;
            let es_rate = throughput(&es, size, secs).await;
            println!(
                "| {} RPC throughput, concurrency {CONCURRENCY} | {:.0} calls/s | {:.0} calls/s | {} |",
                if size == 64 { "64 B".to_string() } else { "16 KiB".to_string() },
                raw_rate,
                es_rate,
                ratio(es_rate, raw_rate)
            );
        }
        let count = (secs * 300_000.0) as u64;
        events_raw(&conn, &raw_events, count / 10).await;
        events_echostream(&session, &events, count / 10).await;
        let raw_rate = events_raw(&conn, &raw_events, count).await;
        let (es_rate, full) = events_echostream(&session, &events, count).await;
        println!(
            "| {EVENT_SIZE} B events, one sender | {:.0} events/s | {:.0} events/s | {} |",
            raw_rate,
            es_rate,
            ratio(es_rate, raw_rate)
        );
        println!();
        println!(
            "({count} events; the EchoStream sender met a full queue {full} times and yielded; \
             session stats: {:?})",
            session.stats()
        );
    });
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
