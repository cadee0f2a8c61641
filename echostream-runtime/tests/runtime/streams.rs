//! Named real-time streams in both directions: routing by name, order, sequence numbers, open
//! metadata, ends, refusals, limits and aborts.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use echostream_runtime::{
    Client, Code, Played, Router, Server, Session, StreamEnd, StreamHandler, StreamInfo,
    StreamOptions,
};

use crate::common::{WAIT, eventually, pair, within};

/// Everything a stream handler saw, as text.
type Log = Arc<Mutex<Vec<String>>>;

struct Recorder {
    log: Log,
}

#[async_trait]
impl StreamHandler for Recorder {
    fn name(&self) -> &str {
        "video"
    }

    async fn on_open(&self, _: &Session, stream: &StreamInfo) {
        let codec = stream.metadata().get("codec").cloned().unwrap_or_default();
        self.log.lock().unwrap().push(format!(
            "open {} {} {} {}",
            stream.id(),
            stream.name(),
            stream.max_frame_bytes(),
            codec
        ));
    }

    async fn handle(&self, _: &Session, _: &StreamInfo, frame: Played<Bytes>) {
        assert!(frame.timestamp > 0);
        self.log.lock().unwrap().push(format!(
            "frame {} {} lost {}",
            frame.seq,
            String::from_utf8_lossy(&frame.payload),
            frame.lost_before
        ));
    }

    async fn on_end(&self, _: &Session, _: &StreamInfo, end: StreamEnd) {
        self.log.lock().unwrap().push(format!("end {end:?}"));
    }
}

async fn recording_pair() -> (crate::common::Pair, Log, Log) {
    let server_log = Log::default();
    let client_log = Log::default();
    let (s, c) = (server_log.clone(), client_log.clone());
    let p = pair(
        Server::builder().routes(move |r: &mut Router| {
            r.add_stream(Recorder { log: s });
        }),
        Client::builder().routes(move |r: &mut Router| {
            r.add_stream(Recorder { log: c });
        }),
    )
    .await;
    (p, server_log, client_log)
}

fn senders(
    p: &crate::common::Pair,
    server_log: &Log,
    client_log: &Log,
) -> [(Session, Session, Log); 2] {
    [
        (p.to_server.clone(), p.to_client.clone(), server_log.clone()),
        (p.to_client.clone(), p.to_server.clone(), client_log.clone()),
    ]
}

#[tokio::test]
async fn a_named_stream_delivers_in_order_then_ends_both_ways() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, receiver, log) in senders(&p, &server_log, &client_log) {
        let options = StreamOptions::new()
            .max_frame_bytes(1000)
            .metadata("codec", "h264");
        let stream = within(sender.open_stream("video", options)).await.unwrap();
        for i in 0..100 {
            within(stream.send(Bytes::from(format!("f{i}"))))
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        stream.finish();
        eventually("the stream ends", || {
            log.lock()
                .unwrap()
                .last()
                .is_some_and(|l| l.starts_with("end"))
        })
        .await;
        let mut expected = vec![format!("open {} video 1000 h264", stream.id())];
        expected.extend((0..100).map(|i| format!("frame {i} f{i} lost 0")));
        expected.push("end Finished".into());
        assert_eq!(*log.lock().unwrap(), expected);
        assert_eq!(stream.stats().sent, 100);
        assert_eq!(receiver.stats().stream_frames_received, 100);
        let err = within(stream.send(Bytes::new())).await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled);
    }
}

#[tokio::test]
async fn write_stream_finds_open_streams_by_id() {
    let (p, server_log, _) = recording_pair().await;
    let stream = within(p.to_server.open_stream("video", StreamOptions::new()))
        .await
        .unwrap();
    within(
        p.to_server
            .write_stream(stream.id(), Bytes::from_static(b"x")),
    )
    .await
    .unwrap();
    eventually("the frame arrives", || {
        server_log.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(server_log.lock().unwrap()[1], "frame 0 x lost 0");
    let err = within(p.to_server.write_stream(999, Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    drop(stream);
    eventually("dropping the last sender finishes the stream", || {
        server_log.lock().unwrap().last().map(String::as_str) == Some("end Finished")
    })
    .await;
    let err = within(p.to_server.write_stream(1, Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_stream_without_handler_is_refused_and_the_sender_learns_it() {
    let (p, _, _) = recording_pair().await;
    for (sender, receiver, _) in senders(&p, &Log::default(), &Log::default()) {
        let stream = within(sender.open_stream("audio", StreamOptions::new()))
            .await
            .unwrap();
        within(stream.send(Bytes::from_static(b"a"))).await.unwrap();
        eventually("the receiver refuses it", || {
            receiver.stats().streams_refused == 1
        })
        .await;
        // The writer learns of the refusal without writing again: once it has, sends fail.
        let start = tokio::time::Instant::now();
        let status = loop {
            match stream.send(Bytes::from_static(b"b")).await {
                Err(status) => break status,
                Ok(()) => {
                    assert!(
                        start.elapsed() < WAIT,
                        "the sender never learned of the refusal"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        };
        assert_eq!(status.code(), Code::NotFound, "{status}");
    }
}

#[tokio::test]
async fn oversized_frames_are_refused_by_the_sender() {
    let (p, _, _) = recording_pair().await;
    let stream = within(
        p.to_server
            .open_stream("video", StreamOptions::new().max_frame_bytes(10)),
    )
    .await
    .unwrap();
    let err = within(stream.send(Bytes::from(vec![0; 11])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    within(stream.send(Bytes::from(vec![0; 10]))).await.unwrap();
}

#[tokio::test]
async fn an_aborted_stream_ends_with_a_reset() {
    let (p, server_log, _) = recording_pair().await;
    let stream = within(p.to_server.open_stream("video", StreamOptions::new()))
        .await
        .unwrap();
    within(stream.send(Bytes::from_static(b"x"))).await.unwrap();
    eventually("the frame arrives", || {
        server_log.lock().unwrap().len() == 2
    })
    .await;
    stream.abort();
    eventually("the stream ends", || server_log.lock().unwrap().len() == 3).await;
    assert_eq!(server_log.lock().unwrap()[2], "end Reset(1)");
    let err = within(stream.send(Bytes::new())).await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled);
}

#[tokio::test]
async fn a_reliable_stream_can_be_played_out_through_a_jitter_buffer() {
    use echostream_runtime::Playout;
    use std::time::{Duration, Instant};

    type Seen = Arc<Mutex<Vec<(u64, Instant, Instant, Instant)>>>;
    let seen = Seen::default();
    let log = seen.clone();
    let p = pair(
        Server::builder().routes(move |r: &mut Router| {
            r.stream_with_playout(
                "paced",
                Playout::jitter_buffer(Duration::from_millis(40)),
                move |_, _, frame| {
                    let now = Instant::now();
                    log.lock()
                        .unwrap()
                        .push((frame.seq, frame.arrival, frame.playout, now));
                    async {}
                },
            );
        }),
        Client::builder(),
    )
    .await;
    let stream = within(p.to_server.open_stream("paced", StreamOptions::new()))
        .await
        .unwrap();
    for i in 0..20u8 {
        within(stream.send(Bytes::from(vec![i]))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let info = p
        .to_client
        .inbound_streams()
        .pop()
        .expect("the stream is listed");
    assert_eq!(
        info.playout().jitter_target(),
        Some(Duration::from_millis(40))
    );
    stream.finish();
    // Every frame plays, the last ones after the end of the stream, each at its time.
    eventually("all frames play", || seen.lock().unwrap().len() == 20).await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    for (seq, arrival, playout, handled) in seen {
        assert!(handled >= playout, "frame {seq} early");
        assert!(arrival <= playout, "frame {seq} late");
        assert!(
            playout - arrival <= Duration::from_millis(40),
            "frame {seq} held too long"
        );
    }
    let stats = info.stats();
    assert_eq!((stats.played, stats.lost, stats.late), (20, 0, 0));
    assert_eq!(stats.target_delay, Duration::from_millis(40));
}

/// A typed stream service: records the pings it gets and how many were lost before each.
struct PingSink(Mutex<Vec<(u64, u64)>>);

fn ping_frame<'a>(
    sink: &'a PingSink,
    _: &'a Session,
    _: &'a echostream_runtime::StreamInfo,
    frame: echostream_runtime::Played<echostream_runtime::proto::v1::Ping>,
) -> echostream_runtime::typed::BoxFuture<'a, ()> {
    Box::pin(async move {
        sink.0
            .lock()
            .unwrap()
            .push((frame.payload.t1, frame.lost_before));
    })
}

fn no_open<'a>(
    _: &'a PingSink,
    _: &'a Session,
    _: &'a echostream_runtime::StreamInfo,
) -> echostream_runtime::typed::BoxFuture<'a, ()> {
    Box::pin(async {})
}

fn no_end<'a>(
    _: &'a PingSink,
    _: &'a Session,
    _: &'a echostream_runtime::StreamInfo,
    _: StreamEnd,
) -> echostream_runtime::typed::BoxFuture<'a, ()> {
    Box::pin(async {})
}

#[tokio::test]
async fn undecodable_frames_of_a_typed_stream_are_counted_where_the_user_can_read_them() {
    use echostream_runtime::StreamMethod;
    use prost::Message;
    const PINGS: StreamMethod = StreamMethod::new("test.v1.Svc/pings");
    let sink = Arc::new(PingSink(Mutex::new(Vec::new())));
    let served = sink.clone();
    let p = pair(
        Server::builder().routes(move |r| {
            PINGS.serve(
                r,
                &served,
                echostream_runtime::typed::StreamFns {
                    open: no_open,
                    frame: ping_frame,
                    end: no_end,
                },
            );
        }),
        Client::builder(),
    )
    .await;
    let stream = within(p.to_server.open_stream(PINGS.name(), StreamOptions::new()))
        .await
        .unwrap();
    let ping = |t1| Bytes::from(echostream_runtime::proto::v1::Ping { t1 }.encode_to_vec());
    within(stream.send(ping(1))).await.unwrap();
    // Not a Ping: field 1 with a wire type protobuf cannot take there.
    within(stream.send(Bytes::from_static(&[0x0f, 0xff])))
        .await
        .unwrap();
    within(stream.send(ping(3))).await.unwrap();
    eventually("two pings arrive", || sink.0.lock().unwrap().len() == 2).await;
    assert_eq!(*sink.0.lock().unwrap(), [(1, 0), (3, 1)]);
    let info = p
        .to_client
        .inbound_streams()
        .pop()
        .expect("the stream is open");
    assert_eq!(info.stats().undecodable, 1);
    assert_eq!(info.stats().played, 3);
    assert_eq!(p.to_client.stats().stream_frames_undecodable, 1);
}
