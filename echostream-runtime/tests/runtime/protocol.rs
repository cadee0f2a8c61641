//! The wire protocol against raw quinn peers: a peer written from `docs/protocol.md` alone
//! interoperates; other versions are refused on both sides; protocol violations close only the
//! offending connection, with the documented error code.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use echostream_runtime::proto::v1::{ErrorCode, Frame, Hello, RpcRequest, frame::Payload};
use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, Config, Error, Plugin, Server, Session};
use prost::Message;
use quinn::ConnectionError;

use crate::common::{WAIT, connect, eventually, server_tls, within};

/// Records why incoming connections were refused.
#[derive(Clone, Default)]
struct Refusals(Arc<Mutex<Vec<String>>>);

impl Plugin for Refusals {
    fn on_connection_refused(&self, _: SocketAddr, error: &Error) {
        let kind = match error {
            Error::VersionMismatch { .. } => "version mismatch",
            Error::HandshakeTimeout(_) => "handshake timeout",
            Error::Protocol(_) => "protocol error",
            _ => "other",
        };
        self.0.lock().unwrap().push(format!("{kind}: {error}"));
    }
}

async fn echo_server(plugin: Refusals, config: Config) -> Server {
    within(
        Server::builder()
            .tls(server_tls())
            .config(config)
            .plugin(plugin)
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap()
}

/// A raw quinn connection to `server` offering ALPN `alpn`.
async fn raw_connect(server: &Server, alpn: &[u8]) -> Result<quinn::Connection, ConnectionError> {
    let tls = ClientTls::pinned(server.fingerprint());
    let config = quinn::ClientConfig::new(tls.quic_config(&[alpn]).unwrap());
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    within(
        endpoint
            .connect_with(config, server.local_addr(), "localhost")
            .unwrap(),
    )
    .await
}

/// `frame` length-prefixed, as on the wire.
fn wire(frame: &Frame) -> Vec<u8> {
    frame.encode_length_delimited_to_vec()
}

fn hello(version: u32) -> Frame {
    Frame {
        metadata: Default::default(),
        payload: Some(Payload::Hello(Hello {
            version,
            agent: "raw-test-peer".into(),
            max_frame_size: 0,
            max_concurrent_calls: 0,
        })),
    }
}

/// Opens the control stream and sends a hello of `version`; returns the stream (kept open).
async fn send_hello(conn: &quinn::Connection, version: u32) -> quinn::SendStream {
    let mut control = within(conn.open_uni()).await.unwrap();
    let mut bytes = vec![0u8];
    bytes.extend(wire(&hello(version)));
    within(control.write_all(&bytes)).await.unwrap();
    control
}

/// The application close code a connection ended with.
async fn close_code(conn: &quinn::Connection) -> (u64, String) {
    match within(conn.closed()).await {
        ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other}"),
    }
}

#[tokio::test]
async fn a_peer_written_from_the_spec_can_call() {
    let server = echo_server(Refusals::default(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let mut peer_control = within(conn.accept_uni()).await.unwrap();
    let mut first = [0u8; 1];
    within(peer_control.read_exact(&mut first)).await.unwrap();
    assert_eq!(
        first,
        [0],
        "the server's first uni-stream is its control stream"
    );

    let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
    let request = Frame {
        metadata: Default::default(),
        payload: Some(Payload::Request(RpcRequest {
            id: 42,
            name: "echo".into(),
            timeout_us: 1_000_000,
            idempotent: false,
            data: Bytes::from_static(b"from python"),
        })),
    };
    within(send.write_all(&wire(&request))).await.unwrap();
    send.finish().unwrap();
    let answer = within(recv.read_to_end(1 << 20)).await.unwrap();
    let frame = Frame::decode_length_delimited(&answer[..]).unwrap();
    let Some(Payload::Response(response)) = frame.payload else {
        panic!("not a response: {frame:?}")
    };
    assert_eq!((response.id, response.code), (42, 0));
    assert_eq!(response.data, "from python");
}

#[tokio::test]
async fn another_alpn_is_refused_on_both_sides() {
    // A raw client offering only version 2 against our server.
    let refusals = Refusals::default();
    let server = echo_server(refusals.clone(), Config::new()).await;
    let err = raw_connect(&server, b"echostream/2").await.unwrap_err();
    match &err {
        ConnectionError::ConnectionClosed(close) => {
            assert_eq!(
                u64::from(close.error_code),
                0x100 + 120,
                "no_application_protocol: {err}"
            );
        }
        other => panic!("expected a TLS alert, got {other}"),
    }
    eventually("the server reports the refusal", || {
        !refusals.0.lock().unwrap().is_empty()
    })
    .await;
    let seen = refusals.0.lock().unwrap()[0].clone();
    assert!(
        seen.starts_with("version mismatch: protocol version mismatch: we speak echostream/1"),
        "{seen}"
    );

    // Our client against a raw server speaking only version 2.
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let config = quinn::ServerConfig::with_crypto(tls.quic_config(&[b"echostream/2"]).unwrap());
    let raw = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = raw.local_addr().unwrap();
    let accepted = tokio::spawn(async move { raw.accept().await.unwrap().await.map(|_| ()) });
    let err = within(
        Client::builder()
            .tls(ClientTls::pinned(tls.fingerprint()))
            .connect(addr, "localhost"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err}");
    assert!(err.to_string().contains("echostream/1"), "{err}");
    let server_side = within(accepted).await.unwrap().unwrap_err();
    match server_side {
        ConnectionError::TransportError(e) => {
            assert_eq!(
                u64::from(e.code),
                0x100 + 120,
                "no_application_protocol: {e}"
            );
        }
        other => panic!("expected a TLS alert on the raw server, got {other}"),
    }
}

#[tokio::test]
async fn another_hello_version_is_refused_on_both_sides() {
    // A raw client that negotiated our ALPN but says version 2 in its hello.
    let refusals = Refusals::default();
    let server = echo_server(refusals.clone(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 2).await;
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::VersionMismatch as u64);
    assert!(reason.contains("version 2"), "{reason}");
    eventually("the server reports the refusal", || {
        !refusals.0.lock().unwrap().is_empty()
    })
    .await;
    assert!(refusals.0.lock().unwrap()[0].starts_with("version mismatch"));

    // Our client against a raw server whose hello says version 2.
    let tls = ServerTls::self_signed(["localhost"]).unwrap();
    let config = quinn::ServerConfig::with_crypto(tls.quic_config(&[b"echostream/1"]).unwrap());
    let raw = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = raw.local_addr().unwrap();
    let raw_side = tokio::spawn(async move {
        let conn = raw.accept().await.unwrap().await.unwrap();
        let _control = send_hello(&conn, 2).await;
        close_code(&conn).await
    });
    let err = within(
        Client::builder()
            .tls(ClientTls::pinned(tls.fingerprint()))
            .connect(addr, "localhost"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err}");
    let (code, _) = within(raw_side).await.unwrap();
    assert_eq!(code, ErrorCode::VersionMismatch as u64);
}

/// Connects a raw peer that completes the handshake, then runs `misbehave` on it; returns the
/// close code it got. A well-behaved session on the same server must keep working.
async fn violation(misbehave: impl AsyncFnOnce(&quinn::Connection)) -> u64 {
    let server = echo_server(Refusals::default(), Config::new()).await;
    violation_on(server, misbehave).await
}

/// [`violation`] against a given server, which must serve `echo`.
async fn violation_on(server: Server, misbehave: impl AsyncFnOnce(&quinn::Connection)) -> u64 {
    let good: Session = connect(&server, Client::builder()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    eventually("the raw session is up", || server.sessions().len() == 2).await;
    misbehave(&conn).await;
    let (code, _) = close_code(&conn).await;
    let answer = within(good.request("echo", Bytes::from_static(b"fine"))).await;
    assert_eq!(answer.unwrap(), "fine", "other sessions are unaffected");
    eventually("the bad session is gone", || server.sessions().len() == 1).await;
    code
}

#[tokio::test]
async fn an_undecodable_request_closes_only_that_connection() {
    let code = violation(async |conn| {
        let (mut send, _recv) = within(conn.open_bi()).await.unwrap();
        within(send.write_all(&[3, 0xff, 0xff, 0xff]))
            .await
            .unwrap();
        send.finish().unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_frame_too_large() {
    let code = violation(async |conn| {
        let (mut send, _recv) = within(conn.open_bi()).await.unwrap();
        // A length prefix of 1 GiB.
        within(send.write_all(&[0x80, 0x80, 0x80, 0x80, 0x04]))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::FrameTooLarge as u64);
}

#[tokio::test]
async fn a_wrong_frame_kind_or_stream_type_is_a_protocol_error() {
    let code = violation(async |conn| {
        let (mut send, _recv) = within(conn.open_bi()).await.unwrap();
        within(send.write_all(&wire(&hello(1)))).await.unwrap();
        send.finish().unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
    let code = violation(async |conn| {
        let mut send = within(conn.open_uni()).await.unwrap();
        within(send.write_all(&[9])).await.unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn a_peer_without_hello_is_closed_after_the_handshake_timeout() {
    let refusals = Refusals::default();
    let server = echo_server(
        refusals.clone(),
        Config::new().handshake_timeout(Duration::from_millis(200)),
    )
    .await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let (code, _) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::HandshakeTimeout as u64);
    eventually("the server reports it", || {
        !refusals.0.lock().unwrap().is_empty()
    })
    .await;
    assert!(refusals.0.lock().unwrap()[0].starts_with("handshake timeout"));
}

#[tokio::test]
async fn a_stream_of_an_unknown_delivery_is_refused() {
    use echostream_runtime::proto::v1::StreamOpen;
    let server = within(
        Server::builder()
            .tls(server_tls())
            .routes(|r| {
                r.stream("video", |_, _, _| async {});
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let mut stream = within(conn.open_uni()).await.unwrap();
    let open = Frame {
        metadata: Default::default(),
        payload: Some(Payload::StreamOpen(StreamOpen {
            stream_id: 1,
            name: "video".into(),
            delivery: 7,
            max_frame_bytes: 0,
        })),
    };
    let mut bytes = vec![2u8];
    bytes.extend(wire(&open));
    within(stream.write_all(&bytes)).await.unwrap();
    let code = within(stream.stopped()).await.unwrap();
    assert_eq!(code, Some(quinn::VarInt::from_u32(3)), "INVALID_ARGUMENT");
    let session = server.sessions().list().pop().unwrap();
    assert_eq!(session.stats().streams_refused, 1);
    assert!(!session.is_closed());
}

#[tokio::test]
async fn a_peer_written_from_the_spec_streams_datagrams_even_ahead_of_their_announcement() {
    use echostream_runtime::datagram::{FrameId, fragment};
    use echostream_runtime::proto::v1::{Delivery, StreamOpen};

    let frames: Arc<Mutex<Vec<(u64, Bytes)>>> = Arc::default();
    let seen = frames.clone();
    let config = Config::new().reassembly(echostream_runtime::datagram::ReassemblerConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let server = within(
        Server::builder()
            .tls(server_tls())
            .config(config)
            .routes(move |r| {
                r.stream("video", move |_, _, frame| {
                    seen.lock().unwrap().push((frame.seq, frame.payload));
                    async {}
                });
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let send = |stream_id: u64, seq: u64, payload: &[u8]| {
        let id = FrameId {
            stream_id,
            seq,
            timestamp: 1_700_000_000_000_000 + seq * 20_000,
        };
        for datagram in fragment(id, payload, 1_200, usize::MAX).unwrap() {
            conn.send_datagram(datagram).unwrap();
        }
    };
    // Frames 0 and 1 (in three fragments) of stream 1 before its announcement; a frame of a
    // stream never announced; a datagram of another format version.
    send(1, 0, b"hello");
    send(1, 1, &[7; 3_000]);
    send(9, 0, b"nobody");
    conn.send_datagram(Bytes::from_static(&[0x20, 1, 0, 0]))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut announcement = within(conn.open_uni()).await.unwrap();
    let open = Frame {
        metadata: Default::default(),
        payload: Some(Payload::StreamOpen(StreamOpen {
            stream_id: 1,
            name: "video".into(),
            delivery: Delivery::Datagram as i32,
            max_frame_bytes: 0,
        })),
    };
    let mut bytes = vec![2u8];
    bytes.extend(wire(&open));
    within(announcement.write_all(&bytes)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    send(1, 2, b"after");
    eventually("the three frames are delivered", || {
        frames.lock().unwrap().len() == 3
    })
    .await;
    let got = frames.lock().unwrap().clone();
    assert_eq!(got[0], (0, Bytes::from_static(b"hello")));
    assert_eq!(got[1], (1, Bytes::from(vec![7; 3_000])));
    assert_eq!(got[2], (2, Bytes::from_static(b"after")));
    let session = server.sessions().list().pop().unwrap();
    eventually("the unannounced frame is dropped after the timeout", || {
        session.stats().datagram_frames_unrouted == 1
    })
    .await;
    let stats = session.stats();
    assert_eq!(stats.datagrams_malformed, 1);
    assert_eq!(stats.datagrams_received, 7);
    assert!(
        !session.is_closed(),
        "bad datagrams do not close the connection"
    );
    // Ending the announcement ends the stream.
    assert_eq!(session.inbound_streams().len(), 1);
    announcement.finish().unwrap();
    eventually("the stream ends", || session.inbound_streams().is_empty()).await;
}

#[tokio::test]
async fn a_datagram_stream_to_an_endpoint_without_datagrams_is_refused() {
    use echostream_runtime::proto::v1::{Delivery, StreamOpen};
    let server = within(
        Server::builder()
            .tls(server_tls())
            .datagrams(false)
            .routes(|r| {
                r.stream("video", |_, _, _| async {});
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    assert_eq!(
        conn.max_datagram_size(),
        None,
        "the server does not offer datagrams"
    );
    let _control = send_hello(&conn, 1).await;
    let mut stream = within(conn.open_uni()).await.unwrap();
    let open = Frame {
        metadata: Default::default(),
        payload: Some(Payload::StreamOpen(StreamOpen {
            stream_id: 1,
            name: "video".into(),
            delivery: Delivery::Datagram as i32,
            max_frame_bytes: 0,
        })),
    };
    let mut bytes = vec![2u8];
    bytes.extend(wire(&open));
    within(stream.write_all(&bytes)).await.unwrap();
    let code = within(stream.stopped()).await.unwrap();
    assert_eq!(
        code,
        Some(quinn::VarInt::from_u32(9)),
        "FAILED_PRECONDITION"
    );
}

/// Reads the next length-prefixed frame from `recv`, buffering in `buf`.
async fn next_frame(recv: &mut quinn::RecvStream, buf: &mut Vec<u8>) -> Frame {
    loop {
        let mut slice = &buf[..];
        if let Ok(len) = prost::decode_length_delimiter(&mut slice) {
            let prefix = buf.len() - slice.len();
            if slice.len() >= len {
                let frame = Frame::decode(&slice[..len]).unwrap();
                buf.drain(..prefix + len);
                return frame;
            }
        }
        let chunk = within(recv.read_chunk(1 << 16, true))
            .await
            .unwrap()
            .expect("the stream goes on");
        buf.extend_from_slice(&chunk.bytes);
    }
}

#[tokio::test]
async fn a_pong_that_answers_no_ping_is_ignored() {
    use echostream_runtime::proto::v1::Pong;
    let server = echo_server(Refusals::default(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let mut control = send_hello(&conn, 1).await;
    // Unsolicited: it answers no ping, and its timestamps would make a round trip of decades.
    let forged = Frame {
        metadata: Default::default(),
        payload: Some(Payload::Pong(Pong {
            t1: 0,
            t2: 0,
            t3: 0,
        })),
    };
    within(control.write_all(&wire(&forged))).await.unwrap();
    let session = crate::common::server_session(&server).await;
    // Answer the server's first ping honestly, after the forged pong.
    let mut peer_control = within(conn.accept_uni()).await.unwrap();
    let mut kind = [0u8; 1];
    within(peer_control.read_exact(&mut kind)).await.unwrap();
    let mut buf = Vec::new();
    let ping = loop {
        if let Some(Payload::Ping(ping)) = next_frame(&mut peer_control, &mut buf).await.payload {
            break ping;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let answer = Frame {
        metadata: Default::default(),
        payload: Some(Payload::Pong(Pong {
            t1: ping.t1,
            t2: now,
            t3: now,
        })),
    };
    within(control.write_all(&wire(&answer))).await.unwrap();
    eventually("the honest pong is taken", || session.last_pong().is_some()).await;
    assert_eq!(session.last_pong().unwrap().t1, ping.t1);
    let rtt = session.rtt().expect("a round trip");
    assert!(rtt < WAIT, "the forged pong counted: {rtt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_requests_are_bounded_by_the_sessions_budget() {
    let limit = 8 << 20;
    let server = echo_server(
        Refusals::default(),
        Config::new()
            .max_frame_size(4 << 20)
            .max_incomplete_bytes(limit),
    )
    .await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let session = crate::common::server_session(&server).await;
    // Each stream announces a frame of 4 MiB - 1 and sends 1 MiB of it, then nothing more.
    let chunk = vec![0x41u8; 1 << 20];
    let mut held = Vec::new();
    for _ in 0..12 {
        let (mut send, recv) = within(conn.open_bi()).await.unwrap();
        let mut prefix = Vec::new();
        prost::encoding::encode_varint((4 << 20) - 1, &mut prefix);
        within(send.write_all(&prefix)).await.unwrap();
        // A refused stream may be stopped before all of it is written.
        let _ = within(send.write_all(&chunk)).await;
        held.push((send, recv));
    }
    eventually("calls past the budget are refused", || {
        session.stats().calls_rejected >= 4
    })
    .await;
    assert!(
        session.incomplete_bytes() <= limit,
        "{} bytes held",
        session.incomplete_bytes()
    );
    // A refused call learns why; the connection goes on.
    let mut refused = 0;
    for (_, recv) in &mut held {
        if let Ok(Err(quinn::ReadError::Reset(code))) = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            recv.read_chunk(1, true),
        )
        .await
        .map(|r| r.map(|_| ()))
        {
            assert_eq!(code.into_inner(), 8, "RESOURCE_EXHAUSTED");
            refused += 1;
        }
    }
    assert!(refused >= 4, "{refused} calls saw a reset");
    assert!(conn.close_reason().is_none());
    // Requests the caller abandons (resets) give their bytes back.
    for (mut send, _) in held {
        let _ = send.reset(quinn::VarInt::from_u32(1));
    }
    eventually("the budget is released", || session.incomplete_bytes() == 0).await;
    assert!(conn.close_reason().is_none());
}

#[tokio::test]
async fn pongs_a_peer_does_not_read_are_dropped_and_counted() {
    use echostream_runtime::proto::v1::Ping;
    let server = echo_server(Refusals::default(), Config::new()).await;
    // A peer that lets the server write almost nothing to it, and then pings a lot.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(1024));
    let mut config = quinn::ClientConfig::new(
        ClientTls::pinned(server.fingerprint())
            .quic_config(&[b"echostream/1"])
            .unwrap(),
    );
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = within(
        endpoint
            .connect_with(config, server.local_addr(), "localhost")
            .unwrap(),
    )
    .await
    .unwrap();
    let mut control = send_hello(&conn, 1).await;
    let session = crate::common::server_session(&server).await;
    let ping = wire(&Frame {
        metadata: Default::default(),
        payload: Some(Payload::Ping(Ping { t1: 1 })),
    });
    let pings: Vec<u8> = std::iter::repeat_n(ping, 2000).flatten().collect();
    within(control.write_all(&pings)).await.unwrap();
    eventually("pongs are dropped and counted", || {
        session.stats().control_frames_dropped > 0
    })
    .await;
    assert!(!session.is_closed(), "the connection goes on");
}

/// A frame carrying `payload`, length-prefixed, after `prefix` bytes (a stream type).
fn typed(prefix: &[u8], payloads: &[Payload]) -> Vec<u8> {
    let mut bytes = prefix.to_vec();
    for payload in payloads {
        bytes.extend(wire(&Frame {
            metadata: Default::default(),
            payload: Some(payload.clone()),
        }));
    }
    bytes
}

fn request(id: u64, name: &str, timeout_us: u64) -> Payload {
    Payload::Request(RpcRequest {
        id,
        name: name.into(),
        timeout_us,
        idempotent: false,
        data: Bytes::new(),
    })
}

#[tokio::test]
async fn a_second_control_or_events_stream_is_a_protocol_error() {
    let code = violation(async |conn| {
        let mut send = within(conn.open_uni()).await.unwrap();
        within(send.write_all(&typed(&[0], &[hello(1).payload.unwrap()])))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
    let code = violation(async |conn| {
        for _ in 0..2 {
            let mut send = within(conn.open_uni()).await.unwrap();
            within(send.write_all(&[1])).await.unwrap();
        }
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn a_second_frame_on_an_rpc_stream_is_a_protocol_error() {
    let code = violation(async |conn| {
        let (mut send, _recv) = within(conn.open_bi()).await.unwrap();
        let two = typed(&[], &[request(1, "echo", 0), request(1, "echo", 0)]);
        within(send.write_all(&two)).await.unwrap();
        send.finish().unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn the_control_stream_ending_is_a_protocol_error() {
    let server = echo_server(Refusals::default(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let mut control = send_hello(&conn, 1).await;
    crate::common::server_session(&server).await;
    control.finish().unwrap();
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
    assert!(reason.contains("control stream ended"), "{reason}");
}

#[tokio::test]
async fn a_first_stream_that_is_not_control_is_a_protocol_error() {
    let server = echo_server(Refusals::default(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let mut events = within(conn.open_uni()).await.unwrap();
    within(events.write_all(&[1])).await.unwrap();
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
    assert!(
        reason.contains("first stream must be the control stream"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_stream_frame_of_another_stream_is_a_protocol_error() {
    use echostream_runtime::proto::v1::{StreamFrame, StreamOpen};
    let server = within(
        Server::builder()
            .tls(server_tls())
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
                r.stream("s", |_, _, _| async {});
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let code = violation_on(server, async |conn| {
        let mut send = within(conn.open_uni()).await.unwrap();
        let open = Payload::StreamOpen(StreamOpen {
            stream_id: 1,
            name: "s".into(),
            ..Default::default()
        });
        let foreign = Payload::Stream(StreamFrame {
            stream_id: 2,
            seq: 0,
            timestamp: 0,
            data: Bytes::new(),
        });
        within(send.write_all(&typed(&[2], &[open, foreign])))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn a_response_with_another_id_is_a_protocol_error() {
    use echostream_runtime::proto::v1::RpcResponse;
    let server = echo_server(Refusals::default(), Config::new()).await;
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let session = crate::common::server_session(&server).await;
    // The server calls the raw peer, which answers another call's id.
    let call = tokio::spawn({
        let session = session.clone();
        async move { session.request("anything", Bytes::new()).await }
    });
    let (mut send, mut recv) = within(conn.accept_bi()).await.unwrap();
    let asked = within(recv.read_to_end(1 << 16)).await.unwrap();
    let Some(Payload::Request(asked)) = Frame::decode_length_delimited(&asked[..]).unwrap().payload
    else {
        panic!("not a request")
    };
    let answer = Payload::Response(RpcResponse {
        id: asked.id + 1,
        ..Default::default()
    });
    within(send.write_all(&typed(&[], &[answer])))
        .await
        .unwrap();
    send.finish().unwrap();
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), echostream_runtime::Code::Unavailable, "{err}");
    let (code, _) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::ProtocolError as u64);
}

#[tokio::test]
async fn the_callee_enforces_the_callers_deadline_itself() {
    use echostream_runtime::proto::v1::RpcResponse;
    let server = within(
        Server::builder()
            .tls(server_tls())
            .routes(|r| {
                r.rpc("slow", |_, _| async move {
                    tokio::time::sleep(WAIT * 2).await;
                    Ok(Bytes::new())
                });
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    // A raw caller that never gives up: only the callee can end the call at its deadline.
    let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
    within(send.write_all(&typed(&[], &[request(9, "slow", 100_000)])))
        .await
        .unwrap();
    send.finish().unwrap();
    let answer = within(recv.read_to_end(1 << 16)).await.unwrap();
    let Some(Payload::Response(RpcResponse {
        id, code, message, ..
    })) = Frame::decode_length_delimited(&answer[..]).unwrap().payload
    else {
        panic!("not a response")
    };
    assert_eq!(
        (id, code),
        (9, echostream_runtime::Code::DeadlineExceeded.as_u32())
    );
    assert!(message.contains("deadline"), "{message}");
}

#[tokio::test]
async fn incomplete_stream_frames_past_the_budget_stop_their_stream() {
    use echostream_runtime::StreamEnd;
    use echostream_runtime::proto::v1::StreamOpen;
    let (ends_tx, mut ends) = tokio::sync::mpsc::unbounded_channel();
    struct Ends(tokio::sync::mpsc::UnboundedSender<StreamEnd>);
    #[echostream_runtime::async_trait]
    impl echostream_runtime::StreamHandler for Ends {
        fn name(&self) -> &str {
            "s"
        }
        async fn handle(
            &self,
            _: &Session,
            _: &echostream_runtime::StreamInfo,
            _: echostream_runtime::Played<Bytes>,
        ) {
        }
        async fn on_end(&self, _: &Session, _: &echostream_runtime::StreamInfo, end: StreamEnd) {
            let _ = self.0.send(end);
        }
    }
    // A budget of two frames of 64 KiB.
    let server = within(
        Server::builder()
            .tls(server_tls())
            .max_frame_size(64 * 1024)
            .max_incomplete_bytes(0)
            .routes(move |r| {
                r.add_stream(Ends(ends_tx));
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let conn = raw_connect(&server, b"echostream/1").await.unwrap();
    let _control = send_hello(&conn, 1).await;
    let session = crate::common::server_session(&server).await;
    let mut streams = Vec::new();
    for id in 1..=3 {
        let mut send = within(conn.open_uni()).await.unwrap();
        let open = Payload::StreamOpen(StreamOpen {
            stream_id: id,
            name: "s".into(),
            ..Default::default()
        });
        let mut bytes = typed(&[2], &[open]);
        // A frame of 64 KiB - 1 announced, 60 KiB of it sent.
        prost::encoding::encode_varint(64 * 1024 - 1, &mut bytes);
        bytes.extend(std::iter::repeat_n(0u8, 60 * 1024));
        within(send.write_all(&bytes)).await.unwrap();
        streams.push(send);
    }
    assert_eq!(
        within(ends.recv()).await,
        Some(StreamEnd::Stopped(
            echostream_runtime::Code::ResourceExhausted.as_u32()
        ))
    );
    assert!(session.incomplete_bytes() <= 128 * 1024);
    assert!(!session.is_closed(), "the connection goes on");
    let mut stopped = 0;
    for send in &streams {
        if let Ok(Ok(Some(code))) =
            tokio::time::timeout(Duration::from_millis(100), send.stopped()).await
        {
            assert_eq!(code.into_inner(), 8);
            stopped += 1;
        }
    }
    assert_eq!(stopped, 1, "only the stream past the budget is stopped");
}
