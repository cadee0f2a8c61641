//! Time to the first RPC reply on a new connection over a simulated 50 ms round trip: a full
//! handshake against a 0-RTT resumption, for EchoStream and for raw quinn doing the same, side
//! by side in one run.
//!
//! The client's endpoint runs on the network simulator with 25 ms each way and nothing else;
//! the server is on loopback. A round connects and makes one echo call (64 bytes), timed from
//! the call to `connect` to the answer:
//!
//! - *EchoStream, full*: a new `Client` with a new `ClientTls` (no ticket), `connect`, `request`.
//! - *EchoStream, 0-RTT*: the same `Client` as the rounds before, `connect`, `request_with` an
//!   idempotent call.
//! - *Raw quinn, full*: a new endpoint and TLS configuration, `connect().await`, a bi-stream
//!   with the payload, read to the end.
//! - *Raw quinn, 0-RTT*: a configuration that has a ticket, `into_0rtt()`, then the same
//!   bi-stream at once; the raw server answers in 0.5-RTT (`into_0rtt` on its side too).
//!
//! The four kinds are interleaved, `ECHO_BENCH_ROUNDS` rounds each (default 20); the table gives
//! the medians, in milliseconds and in round trips.
//!
//! Run: `cargo bench -p echostream-runtime --bench zero_rtt`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::netsim::{self, LinkConfig, NetSimConfig};
use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{CallOptions, Client, Server};

const RAW_ALPN: &[u8] = b"raw-echo";
const ONE_WAY: Duration = Duration::from_millis(25);

fn simulated() -> NetSimConfig {
    NetSimConfig::symmetric(
        LinkConfig {
            delay: ONE_WAY,
            ..LinkConfig::default()
        },
        1,
    )
}

/// A raw quinn echo server answering each bi-stream, in 0.5-RTT.
fn raw_server(tls: &ServerTls) -> SocketAddr {
    let config = quinn::ServerConfig::with_crypto(tls.quic_config(&[RAW_ALPN]).unwrap());
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connecting) = incoming.accept() else {
                    return;
                };
                let Ok((conn, _)) = connecting.into_0rtt() else {
                    return;
                };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let data = recv.read_to_end(1 << 16).await.unwrap_or_default();
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    addr
}

/// One raw call on a new connection from `tls`, early if it can; returns the time it took.
async fn raw_call(tls: &ClientTls, addr: SocketAddr, early: bool) -> Duration {
    let (mut endpoint, _) =
        netsim::endpoint("127.0.0.1:0".parse().unwrap(), simulated(), None).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(
        tls.quic_config(&[RAW_ALPN]).unwrap(),
    ));
    let start = Instant::now();
    let connecting = endpoint.connect(addr, "localhost").unwrap();
    let conn = match connecting.into_0rtt() {
        Ok((conn, _)) => {
            assert!(early, "a fresh configuration had a ticket");
            conn
        }
        Err(connecting) => {
            assert!(!early, "no ticket for 0-RTT");
            connecting.await.unwrap()
        }
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0xa5; 64]).await.unwrap();
    send.finish().unwrap();
    let answer = recv.read_to_end(1 << 16).await.unwrap();
    let took = start.elapsed();
    assert_eq!(answer.len(), 64);
    // Stay until the server's new tickets have arrived, for the next early round.
    tokio::time::sleep(4 * ONE_WAY * 2).await;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    took
}

/// One EchoStream call on a new connection of `client`; returns the time it took and whether it
/// used 0-RTT.
async fn echostream_call(client: &Client, addr: SocketAddr) -> (Duration, bool) {
    let start = Instant::now();
    let session = client.connect(addr, "localhost").await.unwrap();
    let early = !session.handshake_confirmed();
    let answer = session
        .request_with(
            "echo",
            Bytes::from(vec![0xa5; 64]),
            &CallOptions::new().idempotent(true),
        )
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(answer.len(), 64);
    tokio::time::sleep(4 * ONE_WAY * 2).await;
    session.close(0, "done");
    session.closed().await;
    (took, early)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ECHO_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tls = ServerTls::self_signed(["localhost"]).unwrap();
        let server = Server::builder()
            .tls(tls.clone())
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            })
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let raw_addr = raw_server(&tls);
        let fingerprint = server.fingerprint();

        let warm = Client::builder()
            .tls(ClientTls::pinned(fingerprint))
            .netsim(simulated())
            .build()
            .await
            .unwrap();
        echostream_call(&warm, server.local_addr()).await;
        let raw_warm = ClientTls::pinned(fingerprint);
        raw_call(&raw_warm, raw_addr, false).await;

        let mut times: [Vec<Duration>; 4] = Default::default();
        for _ in 0..rounds {
            let cold = Client::builder()
                .tls(ClientTls::pinned(fingerprint))
                .netsim(simulated())
                .build()
                .await
                .unwrap();
            let (took, early) = echostream_call(&cold, server.local_addr()).await;
            assert!(!early);
            times[0].push(took);
            let (took, early) = echostream_call(&warm, server.local_addr()).await;
            assert!(early, "the warm client resumes with 0-RTT");
            times[1].push(took);
            times[2].push(raw_call(&ClientTls::pinned(fingerprint), raw_addr, false).await);
            times[3].push(raw_call(&raw_warm, raw_addr, true).await);
        }
        let rtt = (2 * ONE_WAY).as_secs_f64();
        let [es_full, es_early, raw_full, raw_early] = times.map(median);
        let row = |what: &str, full: Duration, early: Duration| {
            println!(
                "| {what} | {:.1} ms ({:.2} RTT) | {:.1} ms ({:.2} RTT) | {:.2} RTT |",
                full.as_secs_f64() * 1e3,
                full.as_secs_f64() / rtt,
                early.as_secs_f64() * 1e3,
                early.as_secs_f64() / rtt,
                (full.as_secs_f64() - early.as_secs_f64()) / rtt,
            )
        };
        println!(
            "| connect + first reply, 50 ms RTT | full handshake | 0-RTT resumption | saved |"
        );
        println!("| --- | --- | --- | --- |");
        row("raw quinn", raw_full, raw_early);
        row("EchoStream", es_full, es_early);
        println!();
        println!("(Medians of {rounds} rounds of each, interleaved.)");
        server.shutdown(Duration::from_secs(1)).await;
    });
}
