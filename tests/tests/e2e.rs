//! Two peers over real QUIC on loopback, using only generated code: the server serves `Lobby`
//! and calls the client's `Peer`; the client serves `Peer` and calls the server's `Lobby`. Rpcs
//! in both directions (nested too), events, reliable streams both ways, a datagram stream, the
//! schema's options reaching the runtime, and what happens to input that does not decode.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Greeting, Hello, Mood, Note, Ping, Sample};
use echostream_runtime::{
    Bytes, CallContext, Client, Code, Frame, Middleware, Payload, Played, Server, Session, Status,
    StreamEnd, StreamInfo, StreamOptions, async_trait,
};
use echostream_tests::schemas::common::Attachment;
use echostream_tests::schemas::e2e::v1 as e2e;
use tokio::sync::mpsc;

use common::{Pair, eventually, next, pair, within};

/// What a handler saw of a stream.
#[derive(Debug, PartialEq)]
enum Seen {
    Open(String),
    Frame {
        seq: u64,
        lost_before: u64,
        sample: Sample,
    },
    End(StreamEnd),
}

/// The server's implementation of `Lobby`.
struct Lobby {
    notes: mpsc::UnboundedSender<String>,
    samples: mpsc::UnboundedSender<Seen>,
    live: mpsc::UnboundedSender<Seen>,
    metadata: mpsc::UnboundedSender<Option<String>>,
}

#[async_trait]
impl e2e::Lobby for Lobby {
    async fn hello(&self, session: &Session, request: Hello) -> Result<Greeting, Status> {
        let trace = CallContext::current().and_then(|c| c.metadata().get("trace").cloned());
        let _ = self.metadata.send(trace);
        // An rpc back to the caller, from inside the handler.
        let pong = e2e::PeerClient::new(session.clone())
            .ping(Ping { seq: 41 })
            .await?;
        let avatar = request.avatar.map(|a| a.url).unwrap_or_default();
        Ok(Greeting {
            text: format!("hello {} ({}) {avatar}", request.name, pong.seq),
            mood: request.mood,
        })
    }

    async fn fail(&self, _session: &Session, request: Ping) -> Result<Ping, Status> {
        Err(Status::permission_denied(format!("no {}", request.seq)))
    }

    async fn slow(&self, _session: &Session, request: Ping) -> Result<Ping, Status> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(request)
    }

    async fn patient(&self, _session: &Session, request: Ping) -> Result<Ping, Status> {
        Ok(Ping {
            seq: request.seq + 1,
        })
    }

    async fn note(&self, _session: &Session, event: Note) {
        let _ = self.notes.send(event.text);
    }

    async fn samples(&self, _session: &Session, _stream: &StreamInfo, frame: Played<Sample>) {
        let _ = self.samples.send(Seen::Frame {
            seq: frame.seq,
            lost_before: frame.lost_before,
            sample: frame.payload,
        });
    }

    async fn on_samples_open(&self, _session: &Session, stream: &StreamInfo) {
        let _ = self.samples.send(Seen::Open(stream.name().to_string()));
    }

    async fn on_samples_end(&self, _session: &Session, _stream: &StreamInfo, end: StreamEnd) {
        let _ = self.samples.send(Seen::End(end));
    }

    async fn live(&self, _session: &Session, _stream: &StreamInfo, frame: Played<Sample>) {
        let _ = self.live.send(Seen::Frame {
            seq: frame.seq,
            lost_before: frame.lost_before,
            sample: frame.payload,
        });
    }
}

/// The client's implementation of `Peer`.
struct Peer {
    notices: mpsc::UnboundedSender<String>,
    feed: mpsc::UnboundedSender<Seen>,
}

#[async_trait]
impl e2e::Peer for Peer {
    async fn ping(&self, _session: &Session, request: Ping) -> Result<Ping, Status> {
        Ok(Ping {
            seq: request.seq + 1,
        })
    }

    async fn notice(&self, _session: &Session, event: Note) {
        let _ = self.notices.send(event.text);
    }

    async fn feed(&self, _session: &Session, _stream: &StreamInfo, frame: Played<Sample>) {
        let _ = self.feed.send(Seen::Frame {
            seq: frame.seq,
            lost_before: frame.lost_before,
            sample: frame.payload,
        });
    }

    async fn on_feed_end(&self, _session: &Session, _stream: &StreamInfo, end: StreamEnd) {
        let _ = self.feed.send(Seen::End(end));
    }
}

/// Records the rpc requests a side receives: name, timeout and idempotent flag.
#[derive(Clone, Default)]
struct Requests(Arc<Mutex<Vec<(String, u64, bool)>>>);

#[async_trait]
impl Middleware for Requests {
    async fn on_frame_inbound(
        &self,
        _session: &Session,
        frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        if let Some(Payload::Request(request)) = &frame.payload {
            self.0.lock().unwrap().push((
                request.name.clone(),
                request.timeout_us,
                request.idempotent,
            ));
        }
        Ok(Some(frame))
    }
}

/// The receiving ends of everything the two implementations see.
struct Peers {
    pair: Pair,
    notes: mpsc::UnboundedReceiver<String>,
    samples: mpsc::UnboundedReceiver<Seen>,
    live: mpsc::UnboundedReceiver<Seen>,
    metadata: mpsc::UnboundedReceiver<Option<String>>,
    notices: mpsc::UnboundedReceiver<String>,
    feed: mpsc::UnboundedReceiver<Seen>,
    server_requests: Requests,
    client_requests: Requests,
}

/// A server serving `Lobby` and a client serving `Peer`, connected.
async fn peers() -> Peers {
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let (samples_tx, samples) = mpsc::unbounded_channel();
    let (live_tx, live) = mpsc::unbounded_channel();
    let (metadata_tx, metadata) = mpsc::unbounded_channel();
    let (notices_tx, notices) = mpsc::unbounded_channel();
    let (feed_tx, feed) = mpsc::unbounded_channel();
    let server_requests = Requests::default();
    let client_requests = Requests::default();
    let lobby = Lobby {
        notes: notes_tx,
        samples: samples_tx,
        live: live_tx,
        metadata: metadata_tx,
    };
    let peer = Peer {
        notices: notices_tx,
        feed: feed_tx,
    };
    let pair = pair(
        Server::builder()
            .service(e2e::LobbyServer::new(lobby))
            .middleware(server_requests.clone()),
        Client::builder()
            .service(e2e::PeerServer::new(peer))
            .middleware(client_requests.clone()),
    )
    .await;
    Peers {
        pair,
        notes,
        samples,
        live,
        metadata,
        notices,
        feed,
        server_requests,
        client_requests,
    }
}

#[tokio::test]
async fn rpcs_in_both_directions() {
    let mut p = peers().await;
    let lobby = e2e::LobbyClient::new(p.pair.to_server.clone());
    let mut hello = Hello {
        name: "ann".into(),
        avatar: Some(Attachment {
            url: "https://a/ann.png".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    hello.set_mood(Mood::Grumpy);
    // The server's handler calls the client's `ping` before it answers.
    let greeting = within(lobby.hello(&hello)).await.expect("hello answered");
    assert_eq!(greeting.text, "hello ann (42) https://a/ann.png");
    assert_eq!(greeting.mood(), Mood::Grumpy);
    assert_eq!(next(&mut p.metadata).await, None);

    // The server calls the client directly.
    let peer = e2e::PeerClient::new(p.pair.to_client.clone());
    let pong = within(peer.ping(Ping { seq: 9 }))
        .await
        .expect("ping answered");
    assert_eq!(pong.seq, 10);
}

#[tokio::test]
async fn rpc_errors_deadlines_and_options() {
    let mut p = peers().await;
    let lobby = e2e::LobbyClient::new(p.pair.to_server.clone());

    let failed = within(lobby.fail(Ping { seq: 3 })).await.unwrap_err();
    assert_eq!(failed.code(), Code::PermissionDenied);
    assert_eq!(failed.message(), "no 3");

    // `slow` has `timeout_ms = 50`; the handler takes 300 ms.
    let started = std::time::Instant::now();
    let late = within(lobby.slow(Ping { seq: 1 })).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_millis(250));
    // The schema's options are a default: one call can wait longer.
    let options = e2e::lobby::SLOW
        .call_options()
        .timeout(Duration::from_secs(3));
    let answered = within(lobby.slow_with(Ping { seq: 1 }, options)).await;
    assert_eq!(answered.expect("answered in time").seq, 1);

    // `patient` has the longest timeout a schema can give (2^31 - 1 ms, 24.8 days).
    let pong = within(lobby.patient(Ping { seq: 5 }))
        .await
        .expect("answered");
    assert_eq!(pong.seq, 6);

    // Metadata added to the schema's options reaches the handler.
    let options = e2e::lobby::HELLO.call_options().metadata("trace", "t-1");
    within(lobby.hello_with(Hello::default(), options))
        .await
        .expect("answered");
    assert_eq!(next(&mut p.metadata).await.as_deref(), Some("t-1"));

    // What travelled: timeouts from the schema and the idempotent flag of `Peer/ping`.
    let server_saw = p.server_requests.0.lock().unwrap().clone();
    let by_name = |name: &str| {
        server_saw
            .iter()
            .find(|(n, ..)| n == name)
            .cloned()
            .unwrap_or_else(|| panic!("no request {name} in {server_saw:?}"))
    };
    let (_, timeout_us, idempotent) = by_name("e2e.v1.Lobby/hello");
    assert!(
        (1_000_000..=2_000_000).contains(&timeout_us),
        "{timeout_us}"
    );
    assert!(!idempotent);
    let (_, timeout_us, _) = by_name("e2e.v1.Lobby/patient");
    assert!(timeout_us > 2_147_000_000_000, "{timeout_us}");
    let client_saw = p.client_requests.0.lock().unwrap().clone();
    assert!(
        client_saw
            .iter()
            .any(|(name, _, idempotent)| name == "e2e.v1.Peer/ping" && *idempotent),
        "{client_saw:?}"
    );
}

#[tokio::test]
async fn events_in_both_directions_in_order() {
    let mut p = peers().await;
    let lobby = e2e::LobbyClient::new(p.pair.to_server.clone());
    for i in 0..50 {
        lobby
            .note(Note {
                text: format!("n{i}"),
            })
            .await
            .expect("queued");
    }
    for i in 0..50 {
        assert_eq!(next(&mut p.notes).await, format!("n{i}"));
    }
    let peer = e2e::PeerClient::new(p.pair.to_client.clone());
    let note = Note {
        text: "to the client".into(),
    };
    peer.notice(&note).await.expect("queued");
    assert_eq!(next(&mut p.notices).await, "to the client");
}

fn sample(index: u32, len: usize) -> Sample {
    Sample {
        index,
        payload: Bytes::from(vec![index as u8; len]),
    }
}

#[tokio::test]
async fn reliable_streams_in_both_directions() {
    let mut p = peers().await;
    let lobby = e2e::LobbyClient::new(p.pair.to_server.clone());
    let samples = within(lobby.samples()).await.expect("opened");
    assert_eq!(samples.name(), "e2e.v1.Lobby/samples");
    for i in 0..20 {
        samples.send(sample(i, 100)).await.expect("queued");
    }
    // `max_frame_bytes = 4096` in the schema: a larger frame is refused before it is sent.
    let too_big = samples.send(sample(99, 5000)).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    samples.finish();

    assert_eq!(
        next(&mut p.samples).await,
        Seen::Open("e2e.v1.Lobby/samples".into())
    );
    for i in 0..20u32 {
        assert_eq!(
            next(&mut p.samples).await,
            Seen::Frame {
                seq: u64::from(i),
                lost_before: 0,
                sample: sample(i, 100),
            }
        );
    }
    assert_eq!(next(&mut p.samples).await, Seen::End(StreamEnd::Finished));

    // The server streams to the client.
    let feed = within(e2e::PeerClient::new(p.pair.to_client.clone()).feed())
        .await
        .expect("opened");
    feed.send(&sample(7, 10)).await.expect("queued");
    feed.finish();
    assert_eq!(
        next(&mut p.feed).await,
        Seen::Frame {
            seq: 0,
            lost_before: 0,
            sample: sample(7, 10),
        }
    );
    assert_eq!(next(&mut p.feed).await, Seen::End(StreamEnd::Finished));
}

/// `stream live(Sample) [delivery = datagram, jitter_ms = 40]`: frames as datagrams, played
/// out through a 40 ms jitter buffer.
#[tokio::test]
async fn datagram_stream_with_jitter_buffer() {
    let mut p = peers().await;
    let lobby = e2e::LobbyClient::new(p.pair.to_server.clone());
    let live = within(lobby.live()).await.expect("opened");
    let start = std::time::Instant::now();
    for i in 0..10 {
        live.send(sample(i, 500)).await.expect("queued");
    }
    for i in 0..10u32 {
        match next(&mut p.live).await {
            Seen::Frame { seq, sample: s, .. } => {
                assert_eq!((seq, s), (u64::from(i), sample(i, 500)));
            }
            other => panic!("expected frame {i}, got {other:?}"),
        }
    }
    // Played out no earlier than the schema's 40 ms jitter delay.
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn input_that_does_not_decode() {
    let mut p = peers().await;
    let garbage = Bytes::from_static(&[0xff]);

    // An rpc: the caller gets INVALID_ARGUMENT; the handler is not called.
    let status = within(
        p.pair
            .to_server
            .request(e2e::lobby::HELLO.name(), garbage.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // An event: dropped and counted; the events after it are handled.
    p.pair
        .to_server
        .emit(e2e::lobby::NOTE.name(), garbage.clone())
        .await
        .expect("queued");
    e2e::LobbyClient::new(p.pair.to_server.clone())
        .note(Note {
            text: "after".into(),
        })
        .await
        .expect("queued");
    assert_eq!(next(&mut p.notes).await, "after");
    assert_eq!(p.pair.to_client.stats().events_undecodable, 1);

    // A stream frame: dropped, and counted as lost before the next frame.
    let raw = within(
        p.pair
            .to_server
            .open_stream(e2e::lobby::SAMPLES.name(), StreamOptions::new()),
    )
    .await
    .expect("opened");
    let encode = |s: &Sample| Bytes::from(echostream_runtime::prost::Message::encode_to_vec(s));
    raw.send(encode(&sample(1, 3))).await.expect("queued");
    raw.send(garbage.clone()).await.expect("queued");
    raw.send(garbage).await.expect("queued");
    raw.send(encode(&sample(4, 3))).await.expect("queued");
    raw.finish();
    assert!(matches!(next(&mut p.samples).await, Seen::Open(_)));
    assert_eq!(
        next(&mut p.samples).await,
        Seen::Frame {
            seq: 0,
            lost_before: 0,
            sample: sample(1, 3),
        }
    );
    assert_eq!(
        next(&mut p.samples).await,
        Seen::Frame {
            seq: 3,
            lost_before: 2,
            sample: sample(4, 3),
        }
    );
    assert_eq!(next(&mut p.samples).await, Seen::End(StreamEnd::Finished));
    // The connection is unharmed.
    let pong = within(e2e::PeerClient::new(p.pair.to_client.clone()).ping(Ping { seq: 1 })).await;
    assert_eq!(pong.expect("answered").seq, 2);
    eventually("the stream's frames are counted", || {
        p.pair.to_client.stats().stream_frames_received == 4
    })
    .await;
}
