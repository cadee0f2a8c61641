//! Real quinn endpoints on 127.0.0.1 talking through the network simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::datagram::{self, FrameId, Reassembler, ReassemblerConfig};
use echostream_runtime::netsim::{self, LinkConfig, NetSim, NetSimConfig};
use echostream_runtime::pacer::{Admission, Pacer, PacerConfig};
use quinn::{ClientConfig, Connection, Endpoint, ServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::time::timeout;

const LOOPBACK: &str = "127.0.0.1:0";
const LIMIT: Duration = Duration::from_secs(10);

fn configs() -> (ServerConfig, ClientConfig) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let server = ServerConfig::with_single_cert(vec![cert.clone()], private).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    (server, client)
}

struct Pair {
    server: Endpoint,
    client: Endpoint,
    client_sim: NetSim,
    server_sim: Option<NetSim>,
}

/// A plain server endpoint and a simulated client endpoint, or both simulated.
fn pair(client: NetSimConfig, server: Option<NetSimConfig>) -> Pair {
    let (server_config, client_config) = configs();
    let addr: SocketAddr = LOOPBACK.parse().unwrap();
    let (server, server_sim) = match server {
        Some(cfg) => {
            let (e, sim) = netsim::endpoint(addr, cfg, Some(server_config)).unwrap();
            (e, Some(sim))
        }
        None => (Endpoint::server(server_config, addr).unwrap(), None),
    };
    let (mut client, client_sim) = netsim::endpoint(addr, client, None).unwrap();
    client.set_default_client_config(client_config);
    Pair {
        server,
        client,
        client_sim,
        server_sim,
    }
}

async fn connect(p: &Pair) -> (Connection, Connection) {
    let server_addr = p.server.local_addr().unwrap();
    let accept = async {
        let incoming = p.server.accept().await.expect("endpoint open");
        incoming.await.expect("server side of the handshake")
    };
    let connect = async {
        p.client
            .connect(server_addr, "localhost")
            .unwrap()
            .await
            .expect("client side of the handshake")
    };
    timeout(LIMIT, async { tokio::join!(connect, accept) })
        .await
        .expect("handshake within the time limit")
}

/// Sends `n` datagrams of `size` bytes (first 4 bytes: index) at about 10 per millisecond,
/// gentle enough that the receiving socket's kernel buffer never overflows on a busy machine,
/// and collects what arrives until all did or the link has been quiet for a while after the
/// last send.
async fn datagrams(client: &Connection, server: &Connection, n: u32, size: usize) -> Vec<u32> {
    let done = tokio::sync::Notify::new();
    let send = async {
        for i in 0..n {
            let mut data = vec![0u8; size];
            data[..4].copy_from_slice(&i.to_be_bytes());
            client.send_datagram_wait(Bytes::from(data)).await.unwrap();
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        done.notify_one();
    };
    let recv = async {
        let mut got = Vec::new();
        let mut sent_all = std::pin::pin!(done.notified());
        loop {
            tokio::select! {
                d = server.read_datagram() => {
                    let d = d.expect("connection open");
                    assert_eq!(d.len(), size);
                    got.push(u32::from_be_bytes(d[..4].try_into().unwrap()));
                    if got.len() == n as usize {
                        break;
                    }
                }
                () = &mut sent_all => break,
            }
        }
        while got.len() < n as usize {
            match timeout(Duration::from_millis(300), server.read_datagram()).await {
                Ok(d) => got.push(u32::from_be_bytes(
                    d.expect("connection open")[..4].try_into().unwrap(),
                )),
                Err(_) => break,
            }
        }
        got
    };
    let ((), got) = timeout(LIMIT, async { tokio::join!(send, recv) })
        .await
        .expect("datagram exchange within the time limit");
    got
}

#[tokio::test]
async fn observed_loss_matches_the_configured_loss() {
    let link = LinkConfig {
        loss: 0.10,
        ..LinkConfig::default()
    };
    let p = pair(
        NetSimConfig {
            outbound: link,
            inbound: LinkConfig::default(),
            seed: 7,
        },
        None,
    );
    let (client, server) = connect(&p).await;
    let n = 2_000;
    let got = datagrams(&client, &server, n, 1_000).await;
    // Datagrams the simulator passed but the receiving socket's kernel buffer dropped (only on
    // a very busy machine) are not the simulator's doing.
    let delivered = p.client_sim.stats().outbound.delivered;
    let kernel_lost = delivered.saturating_sub(server.stats().udp_rx.datagrams);
    let observed = 1.0 - (got.len() as f64 + kernel_lost as f64) / f64::from(n);
    assert!((observed - 0.10).abs() < 0.03, "observed loss {observed}");
    let s = p.client_sim.stats().outbound;
    let simulated = s.dropped as f64 / s.datagrams as f64;
    assert!(
        (simulated - 0.10).abs() < 0.03,
        "simulated loss {simulated} ({s:?})"
    );
    assert_eq!(s.delivered + s.dropped, s.datagrams);
    assert_eq!(p.client_sim.stats().inbound.dropped, 0);
}

#[tokio::test]
async fn duplicated_datagrams_are_discarded_by_quic_and_counted_by_the_simulator() {
    let p = pair(
        NetSimConfig {
            outbound: LinkConfig {
                duplicate: 0.20,
                ..LinkConfig::default()
            },
            inbound: LinkConfig::default(),
            seed: 11,
        },
        None,
    );
    let (client, server) = connect(&p).await;
    let n = 1_000;
    let mut got = datagrams(&client, &server, n, 800).await;
    got.sort_unstable();
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "each datagram exactly once"
    );
    let s = p.client_sim.stats().outbound;
    let rate = s.duplicated as f64 / s.datagrams as f64;
    assert!((rate - 0.20).abs() < 0.04, "duplication {rate} ({s:?})");
    assert_eq!(s.delivered, s.datagrams + s.duplicated);
}

#[tokio::test]
async fn delay_applies_each_way_without_blocking() {
    let delay = Duration::from_millis(25);
    let p = pair(
        NetSimConfig::symmetric(
            LinkConfig {
                delay,
                ..LinkConfig::default()
            },
            1,
        ),
        None,
    );
    let started = Instant::now();
    let (client, server) = connect(&p).await;
    // The handshake takes at least one round trip: 50 ms.
    assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    let rtt = client.rtt();
    // Generous above: a busy machine adds scheduling delay of its own.
    assert!(
        rtt >= 2 * delay && rtt < 2 * delay + Duration::from_millis(200),
        "rtt {rtt:?}"
    );
    // Many datagrams in flight at once: delayed in a queue, not one after another.
    let sent = Instant::now();
    let got = datagrams(&client, &server, 200, 500).await;
    assert_eq!(got.len(), 200);
    let s = p.client_sim.stats();
    assert_eq!((s.outbound.dropped, s.inbound.dropped), (0, 0));
    for link in [s.outbound, s.inbound] {
        assert!(link.datagrams > 0);
        assert_eq!(link.delivered + link.in_flight, link.datagrams, "{s:?}");
    }
    // 200 datagrams each delayed 25 ms would take 5 s if delays were serial.
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_reliable_stream_is_delivered_intact_through_loss_reordering_and_duplication() {
    let link = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(2),
        reorder: 0.10,
        reorder_delay: Duration::from_millis(8),
        duplicate: 0.02,
        ..LinkConfig::default()
    };
    let p = pair(
        NetSimConfig::symmetric(link.clone(), 3),
        Some(NetSimConfig::symmetric(link, 4)),
    );
    let (client, server) = connect(&p).await;
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let send = async {
        let mut s = client.open_uni().await.unwrap();
        s.write_all(&data).await.unwrap();
        s.finish().unwrap();
        s.stopped().await.ok();
    };
    let recv = async {
        let mut r = server.accept_uni().await.unwrap();
        r.read_to_end(1 << 20).await.unwrap()
    };
    let ((), received) = timeout(LIMIT, async { tokio::join!(send, recv) })
        .await
        .expect("stream delivered within the time limit");
    assert_eq!(received.len(), data.len());
    assert!(received == data, "stream content differs");
    let c = p.client_sim.stats();
    let s = p.server_sim.as_ref().unwrap().stats();
    assert!(
        c.outbound.dropped > 0 && s.outbound.dropped > 0,
        "{c:?} {s:?}"
    );
    assert!(
        c.outbound.reordered + s.inbound.reordered > 0,
        "{c:?} {s:?}"
    );
    assert!(
        c.outbound.duplicated + s.inbound.duplicated > 0,
        "{c:?} {s:?}"
    );
}

#[tokio::test]
async fn impairments_can_change_while_connected() {
    let p = pair(NetSimConfig::default(), None);
    let (client, server) = connect(&p).await;
    assert_eq!(datagrams(&client, &server, 50, 200).await.len(), 50);
    // Link down for datagrams the client sends: nothing arrives.
    let down = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    p.client_sim.set_links(down, LinkConfig::default());
    assert!(datagrams(&client, &server, 50, 200).await.is_empty());
    assert_eq!(p.client_sim.config().outbound.loss, 1.0);
    // Back up.
    p.client_sim
        .set_links(LinkConfig::default(), LinkConfig::default());
    let got = datagrams(&client, &server, 50, 200).await;
    assert_eq!(got.len(), 50);
}

/// The frame of seq `seq`: its content depends on the seq, so a mixed or shifted frame shows.
fn frame_payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq * 7) as u8)
        .collect()
}

#[tokio::test]
async fn large_frames_cross_as_fragments_and_incomplete_ones_are_dropped_never_corrupt() {
    let p = pair(
        NetSimConfig {
            outbound: LinkConfig {
                loss: 0.002,
                ..LinkConfig::default()
            },
            inbound: LinkConfig::default(),
            seed: 5,
        },
        None,
    );
    let (client, server) = connect(&p).await;
    const FRAMES: u64 = 60;
    const LEN: usize = 100_000;
    let send = async {
        let mut pacer = Pacer::new(PacerConfig {
            rate: 8_000_000,
            burst: 128 * 1024,
            max_delay: Duration::from_millis(100),
            ..PacerConfig::default()
        });
        for seq in 0..FRAMES {
            let data = frame_payload(seq, LEN);
            let id = FrameId {
                stream_id: 2,
                seq,
                timestamp: 1_735_689_600_000_000 + seq * 33_333,
            };
            let mtu = client.max_datagram_size().expect("datagrams supported");
            let frags = datagram::fragment(id, &data, mtu, 1 << 20).unwrap();
            assert!(frags.fragment_count() > 50);
            loop {
                match pacer.admit(frags.wire_len(), Instant::now()) {
                    Admission::Send => break,
                    Admission::Wait(at) => tokio::time::sleep_until(at.into()).await,
                    Admission::Drop => panic!("the pacer is configured not to drop here"),
                }
            }
            for d in frags {
                client.send_datagram_wait(d).await.unwrap();
            }
        }
    };
    let recv = async {
        let mut r = Reassembler::new(ReassemblerConfig {
            timeout: Duration::from_millis(300),
            ..ReassemblerConfig::default()
        });
        let mut delivered = Vec::new();
        while let Ok(d) = timeout(Duration::from_millis(500), server.read_datagram()).await {
            if let Some(f) = r.push(d.unwrap(), Instant::now()).unwrap() {
                assert_eq!(f.id.stream_id, 2);
                assert!(
                    f.payload == frame_payload(f.id.seq, LEN),
                    "frame {} corrupt",
                    f.id.seq
                );
                delivered.push(f.id.seq);
            }
        }
        r.expire(Instant::now() + Duration::from_secs(1));
        (delivered, r.stats())
    };
    let ((), (delivered, stats)) = timeout(LIMIT, async { tokio::join!(send, recv) })
        .await
        .expect("frames exchanged within the time limit");
    let dropped_fragments = p.client_sim.stats().outbound.dropped;
    assert!(dropped_fragments > 0, "the link lost something");
    assert!(stats.timed_out > 0, "{stats:?}");
    // Besides the simulator's losses, a busy machine may overflow the receiving socket's
    // kernel buffer or quinn's datagram receive buffer (which drops the oldest): count those.
    let sim = p.client_sim.stats().outbound;
    let server_stats = server.stats();
    let kernel_lost = sim.delivered.saturating_sub(server_stats.udp_rx.datagrams);
    let quinn_dropped = server_stats
        .frame_rx
        .datagram
        .saturating_sub(stats.datagrams);
    let lost = dropped_fragments + kernel_lost + quinn_dropped;
    // Every frame is delivered exactly, dropped as incomplete and counted, or never seen at
    // all, which takes the loss of every one of its (more than 50) fragments.
    let unseen = FRAMES
        .checked_sub(delivered.len() as u64 + stats.timed_out + stats.evicted)
        .expect("no frame delivered or dropped twice");
    assert!(
        unseen * 50 <= lost,
        "{unseen} frames unseen; {stats:?} {sim:?}"
    );
    // Each lost datagram spoils at most one frame.
    assert!(stats.timed_out <= lost, "{stats:?} {sim:?}");
    assert!(delivered.len() as u64 >= FRAMES / 2, "{stats:?}");
}
