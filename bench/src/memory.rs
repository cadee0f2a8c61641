//! Memory per idle session: the growth of the resident set (VmRSS) of a process while it opens
//! N sessions from one client endpoint to one server endpoint, both in that process, divided by
//! N; so each session counts both of its ends, client and server.
//!
//! Each side runs in a fresh child process (this binary with `--memory-probe`), so neither
//! inherits the other's freed-but-kept heap or the throughput measurements' buffers. In it,
//! one single-threaded runtime runs both endpoints; one session is opened first and kept, so
//! that the baseline includes everything paid once per endpoint (TLS configuration, runtime,
//! first-use allocations). Sessions are then opened 50 at a time, left idle for a while (the
//! clock sync's first burst of pings is over), and the resident set is read again.
//!
//! - EchoStream: a server with one rpc registered and a client endpoint, default
//!   configuration (keepalive pings every 5 s, clock sync).
//! - Raw quinn: the same TLS and transport settings; the server keeps each connection with the
//!   three tasks a server needs to take rpcs, events and datagrams on it (accepting bi-streams,
//!   uni-streams and datagrams); the client keeps the `Connection`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, Server};
use tokio::task::JoinSet;

use crate::compare::Side;
use crate::peers::{ECHO, current_thread, raw_client, raw_server};

/// Sessions opened at once.
const BATCH: usize = 50;
/// The longest a probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(180);

/// What one probe measured.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// Resident set growth per session, in bytes.
    pub per_session: f64,
    /// The resident set before opening the sessions, in bytes.
    pub before: u64,
    /// The time it took to open all the sessions.
    pub connect: Duration,
}

/// The resident set size of this process, from `/proc/self/status` (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// Runs a probe of `side` with `sessions` sessions in a child process and reads its answer.
pub fn measure(side: Side, sessions: usize, idle: Duration) -> Probe {
    let exe = std::env::current_exe().expect("this program's path");
    let mut child = Command::new(exe)
        .args([
            "--memory-probe",
            match side {
                Side::Raw => "raw",
                Side::EchoStream => "echostream",
            },
            "--sessions",
            &sessions.to_string(),
            "--idle-ms",
            &idle.as_millis().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the memory probe starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the memory probe") {
            break status;
        }
        if start.elapsed() > PROBE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the memory probe ({side:?}) ran longer than {PROBE_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("probe output")
        .read_to_string(&mut out)
        .expect("probe output");
    assert!(
        status.success(),
        "the memory probe ({side:?}) failed: {status}\n{out}"
    );
    let fields: Vec<f64> = out
        .split_whitespace()
        .map(|f| f.parse().expect("probe output: numbers"))
        .collect();
    let [before, after, connect] = fields[..] else {
        panic!("probe output: three numbers expected, got {out:?}")
    };
    Probe {
        per_session: (after - before) / sessions as f64,
        before: before as u64,
        connect: Duration::from_secs_f64(connect),
    }
}

/// The child's side of [`measure`]: prints `rss_before rss_after connect_seconds`.
pub fn probe(side: Side, sessions: usize, idle: Duration) {
    current_thread().block_on(async move {
        let (before, after, connect) = match side {
            Side::EchoStream => echostream(sessions, idle).await,
            Side::Raw => raw(sessions, idle).await,
        };
        println!("{before} {after} {}", connect.as_secs_f64());
    });
}

async fn echostream(sessions: usize, idle: Duration) -> (u64, u64, Duration) {
    let tls = ServerTls::self_signed(["localhost"]).expect("certificate");
    let server = Server::builder()
        .tls(tls)
        .routes(|r| {
            r.rpc(ECHO, |_, request| async move { Ok(request.data) });
        })
        .bind("127.0.0.1:0")
        .await
        .expect("server binds");
    let client = Client::builder()
        .tls(ClientTls::pinned(server.fingerprint()))
        .bind_addr("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .expect("client");
    let addr = server.local_addr();
    let first = client.connect(addr, "localhost").await.expect("connects");
    tokio::time::sleep(idle).await;
    let before = rss_bytes();
    let start = Instant::now();
    let mut open = Vec::with_capacity(sessions);
    while open.len() < sessions {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(sessions - open.len()) {
            let client = client.clone();
            batch.spawn(async move { client.connect(addr, "localhost").await });
        }
        while let Some(session) = batch.join_next().await {
            open.push(session.expect("connect task").expect("connects"));
        }
    }
    let connect = start.elapsed();
    let limit = Instant::now() + Duration::from_secs(30);
    while server.sessions().len() < sessions + 1 {
        assert!(
            Instant::now() < limit,
            "the server registered {} sessions",
            server.sessions().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(idle).await;
    let after = rss_bytes();
    assert!(
        open.iter().chain([&first]).all(|s| !s.is_closed()),
        "sessions stayed open"
    );
    (before, after, connect)
}

async fn raw(sessions: usize, idle: Duration) -> (u64, u64, Duration) {
    let tls = ServerTls::self_signed(["localhost"]).expect("certificate");
    let server = raw_server(&tls);
    let addr = server.local_addr().expect("raw address");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let bi = conn.clone();
            tokio::spawn(async move { while bi.accept_bi().await.is_ok() {} });
            let uni = conn.clone();
            tokio::spawn(async move { while uni.accept_uni().await.is_ok() {} });
            let datagrams = conn.clone();
            tokio::spawn(async move { while datagrams.read_datagram().await.is_ok() {} });
            held.push(conn);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (endpoint, config) = raw_client(tls.fingerprint());
    let first = endpoint
        .connect_with(config.clone(), addr, "localhost")
        .expect("connect")
        .await
        .expect("connects");
    tokio::time::sleep(idle).await;
    let before = rss_bytes();
    let start = Instant::now();
    let mut open = Vec::with_capacity(sessions);
    while open.len() < sessions {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(sessions - open.len()) {
            let connecting = endpoint
                .connect_with(config.clone(), addr, "localhost")
                .expect("connect");
            batch.spawn(connecting);
        }
        while let Some(conn) = batch.join_next().await {
            open.push(conn.expect("connect task").expect("connects"));
        }
    }
    let connect = start.elapsed();
    let limit = Instant::now() + Duration::from_secs(30);
    while accepted.load(std::sync::atomic::Ordering::Relaxed) < sessions + 1 {
        assert!(
            Instant::now() < limit,
            "the raw server accepted too few connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(idle).await;
    let after = rss_bytes();
    assert!(
        open.iter()
            .chain([&first])
            .all(|c| c.close_reason().is_none()),
        "connections stayed open"
    );
    accept.abort();
    (before, after, connect)
}
