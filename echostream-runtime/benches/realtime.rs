//! Costs of the real-time building blocks on the hot path, and the network simulator's
//! overhead against raw quinn in the same run.
//!
//! Run: `cargo bench -p echostream-runtime --bench realtime`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::clock::{ClockSample, ClockSync};
use echostream_runtime::datagram::{FrameId, Reassembler, ReassemblerConfig, fragment};
use echostream_runtime::jitter::{JitterBuffer, JitterConfig};
use echostream_runtime::netsim::{self, NetSimConfig};
use echostream_runtime::pacer::{Pacer, PacerConfig};
use quinn::{ClientConfig, Connection, Endpoint, ServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Runs `f` `iters` times after a warm-up and returns the time per iteration.
fn per_iter(iters: u64, mut f: impl FnMut(u64)) -> Duration {
    for i in 0..iters / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed() / iters as u32
}

fn fragment_and_reassemble(len: usize, iters: u64) {
    let payload = vec![7u8; len];
    let mut r = Reassembler::new(ReassemblerConfig {
        max_frame_bytes: 1 << 20,
        ..Default::default()
    });
    let now = Instant::now();
    let mut next_seq = 0;
    let ours = per_iter(iters, |_| {
        let seq = next_seq;
        next_seq += 1;
        let id = FrameId {
            stream_id: 1,
            seq,
            timestamp: 1_735_689_600_000_000,
        };
        let mut out = None;
        for d in fragment(id, &payload, 1_200, 1 << 20).unwrap() {
            out = r.push(d, now).unwrap();
        }
        black_box(out.unwrap());
    });
    // The floor: copying the payload into datagram-sized buffers and back into one frame.
    let copy = per_iter(iters, |_| {
        let chunks: Vec<Bytes> = payload.chunks(1_180).map(Bytes::copy_from_slice).collect();
        let mut frame = Vec::with_capacity(len);
        for c in &chunks {
            frame.extend_from_slice(c);
        }
        black_box(frame);
    });
    println!(
        "fragment+reassemble {len:>7} B: {:>9.0} ns/frame, {:>6.2} GB/s  (copy floor {:>9.0} ns, ratio {:.2}x)",
        ours.as_nanos(),
        len as f64 / ours.as_nanos() as f64,
        copy.as_nanos(),
        ours.as_nanos() as f64 / copy.as_nanos() as f64
    );
}

fn jitter_buffer(iters: u64) {
    let t0 = Instant::now();
    let mut b: JitterBuffer<u64> =
        JitterBuffer::new(JitterConfig::with_target(Duration::from_millis(80)));
    let mut next = 0;
    let ns = per_iter(iters, |_| {
        let s = next;
        next += 1;
        // Every 10th frame swapped with its successor: a reordering stream.
        let seq = if s % 10 == 8 {
            s + 1
        } else if s % 10 == 9 {
            s - 1
        } else {
            s
        };
        let at = t0 + Duration::from_micros(s * 20_000);
        b.push(seq, 1_735_689_600_000_000 + seq * 20_000, seq, at);
        while let Some(p) = b.poll_ready(at) {
            black_box(p);
        }
    });
    println!(
        "jitter buffer push+poll:       {:>9} ns/frame",
        ns.as_nanos()
    );
}

fn pacer(iters: u64) {
    let t0 = Instant::now();
    let mut p = Pacer::new(PacerConfig::default());
    let mut tick = 0;
    let ns = per_iter(iters, |_| {
        tick += 1;
        black_box(p.admit(1_200, t0 + Duration::from_micros(tick)));
    });
    println!(
        "pacer admit:                   {:>9} ns/call",
        ns.as_nanos()
    );
}

fn clock_sync(iters: u64) {
    let t0 = Instant::now();
    let mut s = ClockSync::default();
    let ns = per_iter(iters, |i| {
        let sample =
            ClockSample::from_timestamps(i, i + 5_000 + (i % 7), i + 5_100, i + 10_000).unwrap();
        s.add_sample(sample, t0);
        black_box(s.estimate(t0));
    });
    println!(
        "clock sync sample+estimate:    {:>9} ns/sample",
        ns.as_nanos()
    );
}

fn tls() -> (ServerConfig, ClientConfig) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let server = ServerConfig::with_single_cert(vec![cert.clone()], private).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    (
        server,
        ClientConfig::with_root_certificates(Arc::new(roots)).unwrap(),
    )
}

/// Sends `n` 1,000-byte datagrams as fast as quinn takes them and returns how many arrived
/// per second.
async fn datagram_rate(client: Endpoint, server: Endpoint, n: u32) -> f64 {
    let addr = server.local_addr().unwrap();
    let (c, s): (Connection, Connection) = tokio::join!(
        async { client.connect(addr, "localhost").unwrap().await.unwrap() },
        async { server.accept().await.unwrap().await.unwrap() }
    );
    let start = Instant::now();
    let send = async {
        for _ in 0..n {
            c.send_datagram_wait(Bytes::from_static(&[0u8; 1_000]))
                .await
                .unwrap();
        }
    };
    let recv = async {
        let mut got = 0u32;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read_datagram()).await
        {
            got += 1;
            if got == n {
                break;
            }
        }
        got
    };
    let ((), got) = tokio::join!(send, recv);
    f64::from(got) / start.elapsed().as_secs_f64()
}

fn netsim_overhead() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let n = 50_000;
        let mut raw = Vec::new();
        let mut sim = Vec::new();
        for _ in 0..3 {
            let (sc, cc) = tls();
            let server = Endpoint::server(sc, addr).unwrap();
            let mut client = Endpoint::client(addr).unwrap();
            client.set_default_client_config(cc);
            raw.push(datagram_rate(client, server, n).await);

            let (sc, cc) = tls();
            let server = Endpoint::server(sc, addr).unwrap();
            let (mut client, _) = netsim::endpoint(addr, NetSimConfig::default(), None).unwrap();
            client.set_default_client_config(cc);
            sim.push(datagram_rate(client, server, n).await);
        }
        let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!(
            "1,000-byte datagrams received/s, best of 3: raw quinn {:.0}, through a perfect netsim link {:.0} ({:.2}x)",
            best(&raw),
            best(&sim),
            best(&sim) / best(&raw)
        );
    });
}

fn main() {
    // `cargo test --benches` runs this binary too: keep that quick.
    let quick = std::env::args().any(|a| a == "--test");
    let scale = if quick { 1 } else { 100 };
    fragment_and_reassemble(1_000, 2_000 * scale);
    fragment_and_reassemble(100_000, 20 * scale);
    jitter_buffer(10_000 * scale);
    pacer(10_000 * scale);
    clock_sync(10_000 * scale);
    if !quick {
        netsim_overhead();
    }
}
