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
//! time per throughput measurement, default 3). For profiling one side alone (e.g. under
//! `perf record` or `valgrind --tool=callgrind`), `ECHO_BENCH_PROFILE=raw`, `=echostream` or
//! `=echostream-no-deadline` runs only that implementation's 64 B calls at concurrency 64, for
//! `ECHO_BENCH_SECS` or, with `ECHO_BENCH_CALLS`, for that many calls.
//!
//! `ECHO_BENCH_CONGESTION=cubic` runs EchoStream with the congestion controller raw quinn uses
//! (EchoStream's default is BBR). `ECHO_BENCH_SERVER_WORKERS=N` gives the serving side a
//! multi-threaded runtime of N workers, where EchoStream spawns a task for every call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::tls::{ClientTls, Fingerprint, ServerTls};
use echostream_runtime::{Client, Config, Congestion, Server, Session};

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

/// Latency percentiles of sequential calls, raw and framework interleaved call by call so both
/// see the same machine (the cores are shared with other work).
async fn latency(raw: &impl Echo, es: &impl Echo, size: usize) -> [(Duration, Duration); 2] {
    let data = Bytes::from(vec![0xa5; size]);
    for _ in 0..WARMUP_CALLS {
        assert_eq!(raw.call(data.clone()).await.len(), size);
        assert_eq!(es.call(data.clone()).await.len(), size);
    }
    let mut samples = [
        Vec::with_capacity(LATENCY_CALLS),
        Vec::with_capacity(LATENCY_CALLS),
    ];
    for _ in 0..LATENCY_CALLS {
        let start = Instant::now();
        assert_eq!(raw.call(data.clone()).await.len(), size);
        samples[0].push(start.elapsed());
        let start = Instant::now();
        assert_eq!(es.call(data.clone()).await.len(), size);
        samples[1].push(start.elapsed());
    }
    samples.map(|mut s| {
        s.sort_unstable();
        (s[s.len() / 2], s[s.len() * 99 / 100])
    })
}

/// Completed calls and elapsed time of `CONCURRENCY` callers running for `duration`.
async fn burst(echo: &impl Echo, data: &Bytes, duration: Duration) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
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
    for task in tasks {
        task.await.unwrap();
    }
    (done.load(Ordering::Relaxed), start.elapsed())
}

/// Completed calls and elapsed time of `CONCURRENCY` callers making `each` calls each.
async fn fixed(echo: &impl Echo, data: &Bytes, each: u64) -> (u64, Duration) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let echo = echo.clone();
            let data = data.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    assert_eq!(echo.call(data.clone()).await.len(), data.len());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (each * CONCURRENCY as u64, start.elapsed())
}

/// Calls per second of raw and framework with `CONCURRENCY` callers, measured in alternating
/// rounds of 200 ms for `secs` each. Returns both overall rates and the median of the per-round
/// ratios, which is robust to load that other processes put on the machine in bursts.
async fn throughput(raw: &impl Echo, es: &impl Echo, size: usize, secs: f64) -> (f64, f64, f64) {
    let data = Bytes::from(vec![0x5a; size]);
    let round = Duration::from_millis(200);
    burst(raw, &data, round).await;
    burst(es, &data, round).await;
    let mut totals = [(0u64, Duration::ZERO); 2];
    let mut ratios = Vec::new();
    for _ in 0..((secs / round.as_secs_f64()).ceil() as usize).max(1) {
        let (raw_calls, raw_time) = burst(raw, &data, round).await;
        let (es_calls, es_time) = burst(es, &data, round).await;
        totals[0] = (totals[0].0 + raw_calls, totals[0].1 + raw_time);
        totals[1] = (totals[1].0 + es_calls, totals[1].1 + es_time);
        ratios.push(
            (es_calls as f64 / es_time.as_secs_f64()) / (raw_calls as f64 / raw_time.as_secs_f64()),
        );
    }
    ratios.sort_by(f64::total_cmp);
    let [raw_rate, es_rate] = totals.map(|(calls, time)| calls as f64 / time.as_secs_f64());
    (raw_rate, es_rate, ratios[ratios.len() / 2])
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

/// EchoStream's configuration: the default, or with `ECHO_BENCH_CONGESTION=cubic` the congestion
/// controller raw quinn uses (EchoStream's default is BBR).
fn config() -> Config {
    match std::env::var("ECHO_BENCH_CONGESTION").as_deref() {
        Ok("cubic") => Config::default().congestion(Congestion::Cubic),
        Ok("bbr") | Err(_) => Config::default(),
        Ok(other) => panic!("ECHO_BENCH_CONGESTION={other}: expected cubic or bbr"),
    }
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
    let workers = std::env::var("ECHO_BENCH_SERVER_WORKERS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok());
    let runtime = match workers {
        Some(n) if n > 1 => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        _ => current_thread(),
    };
    runtime.block_on(async move {
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let server = Server::builder()
            .tls(tls.clone())
            .config(config())
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
            .config(config())
            .connect(served.echostream, "localhost")
            .await
            .unwrap();
        // The same without the default 30 s deadline, to show what the per-call timer costs.
        let no_deadline = Client::builder()
            .tls(tls.clone())
            .config(config())
            .default_timeout(None)
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
        if let Ok(which) = std::env::var("ECHO_BENCH_PROFILE") {
            let data = Bytes::from(vec![0xa5; 64]);
            let calls_each = std::env::var("ECHO_BENCH_CALLS")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(|calls| calls / CONCURRENCY as u64);
            let nd = EchoStream(no_deadline.clone());
            let (calls, elapsed) = match (which.as_str(), calls_each) {
                ("raw", None) => burst(&raw, &data, Duration::from_secs_f64(secs)).await,
                ("raw", Some(n)) => fixed(&raw, &data, n).await,
                ("echostream-no-deadline", None) => {
                    burst(&nd, &data, Duration::from_secs_f64(secs)).await
                }
                ("echostream-no-deadline", Some(n)) => fixed(&nd, &data, n).await,
                (_, None) => burst(&es, &data, Duration::from_secs_f64(secs)).await,
                (_, Some(n)) => fixed(&es, &data, n).await,
            };
            println!("{which}: {:.0} calls/s, {calls} calls", calls as f64 / elapsed.as_secs_f64());
            let stats = if which == "raw" { conn.stats() } else { session.transport_stats() };
            println!("{stats:#?}");
            return;
        }
        println!("| measurement | raw quinn | EchoStream | ratio |");
        println!("| --- | --- | --- | --- |");
        let [(raw_p50, raw_p99), (es_p50, es_p99)] = latency(&raw, &es, 64).await;
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
        for (size, label) in [(64, "64 B"), (16 * 1024, "16 KiB")] {
            let (raw_rate, es_rate, median) = throughput(&raw, &es, size, secs).await;
            println!(
                "| {label} RPC throughput, concurrency {CONCURRENCY} | {raw_rate:.0} calls/s | {es_rate:.0} calls/s | {median:.2}x |"
            );
        }
        let (raw_rate, es_rate, median) =
            throughput(&raw, &EchoStream(no_deadline), 64, secs).await;
        println!(
            "| 64 B RPC throughput, concurrency {CONCURRENCY}, no default deadline | {raw_rate:.0} calls/s | {es_rate:.0} calls/s | {median:.2}x |"
        );
        let count = (secs * 100_000.0) as u64;
        events_raw(&conn, &raw_events, count / 10).await;
        events_echostream(&session, &events, count / 10).await;
        let (mut raw_time, mut es_time, mut full) = (0.0, 0.0, 0);
        for _ in 0..3 {
            raw_time += count as f64 / events_raw(&conn, &raw_events, count).await;
            let (rate, refused) = events_echostream(&session, &events, count).await;
            es_time += count as f64 / rate;
            full += refused;
        }
        let (raw_rate, es_rate) = (3.0 * count as f64 / raw_time, 3.0 * count as f64 / es_time);
        println!(
            "| {EVENT_SIZE} B events, one sender | {raw_rate:.0} events/s | {es_rate:.0} events/s | {} |",
            ratio(es_rate, raw_rate)
        );
        println!();
        println!(
            "(Throughput ratios are medians of per-round ratios over alternating 200 ms rounds; \
             3 x {count} events; the EchoStream sender met its full queue {full} times and \
             yielded to let it drain.)"
        );
    });
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
