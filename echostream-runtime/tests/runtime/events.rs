//! Events in both directions: order, fan-out to several handlers, typed events, unhandled and
//! undecodable events, panics and metadata.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use echostream_runtime::proto::v1::Ping;
use echostream_runtime::{CallContext, Client, Metadata, Router, Server, Session};
use tokio::sync::mpsc;

use crate::common::{eventually, pair, within};

type Log = Arc<Mutex<Vec<String>>>;

fn recording(router: &mut Router, log: Log) {
    let first = log.clone();
    router.event("tick", move |_, event| {
        let log = first.clone();
        async move {
            log.lock()
                .unwrap()
                .push(String::from_utf8(event.data.to_vec()).unwrap());
        }
    });
    let second = log.clone();
    router.event("fanout", move |_, _| {
        let log = second.clone();
        async move { log.lock().unwrap().push("a".into()) }
    });
    let third = log.clone();
    router.event("fanout", move |_, _| {
        let log = third.clone();
        async move { log.lock().unwrap().push("b".into()) }
    });
    let typed = log.clone();
    router.event_message("typed", move |_, ping: Ping| {
        let log = typed.clone();
        async move { log.lock().unwrap().push(format!("ping {}", ping.t1)) }
    });
    let meta = log.clone();
    router.event("meta", move |_, _| {
        let log = meta.clone();
        async move {
            let ctx = CallContext::current().unwrap();
            log.lock()
                .unwrap()
                .push(format!("{} {}", ctx.name(), ctx.metadata()["k"]));
        }
    });
    router.event("boom", |_, _| async move { panic!("event handler bug") });
}

async fn recording_pair() -> (crate::common::Pair, Log, Log) {
    let server_log = Log::default();
    let client_log = Log::default();
    let (s, c) = (server_log.clone(), client_log.clone());
    let p = pair(
        Server::builder().routes(move |r| recording(r, s)),
        Client::builder().routes(move |r| recording(r, c)),
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
async fn events_arrive_in_emission_order_both_ways() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, receiver, log) in senders(&p, &server_log, &client_log) {
        for i in 0..2000 {
            // Yield now and then so the bounded queue drains instead of refusing events.
            if i % 500 == 0 {
                tokio::task::yield_now().await;
            }
            within(sender.emit("tick", Bytes::from(i.to_string())))
                .await
                .unwrap();
        }
        eventually("all events arrive", || log.lock().unwrap().len() == 2000).await;
        let expected: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        assert_eq!(*log.lock().unwrap(), expected);
        assert_eq!(receiver.stats().events_received, 2000);
        eventually("the sender counts them sent", || {
            sender.stats().events_sent == 2000
        })
        .await;
        assert_eq!(sender.stats().events_dropped, 0);
    }
}

#[tokio::test]
async fn every_handler_of_a_name_gets_the_event_and_unknown_names_are_counted() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, receiver, log) in senders(&p, &server_log, &client_log) {
        within(sender.emit("nobody", Bytes::new())).await.unwrap();
        within(sender.emit("fanout", Bytes::new())).await.unwrap();
        eventually("both handlers ran", || log.lock().unwrap().len() == 2).await;
        assert_eq!(*log.lock().unwrap(), ["a", "b"]);
        assert_eq!(receiver.stats().events_unhandled, 1);
    }
}

#[tokio::test]
async fn typed_events_decode_and_bad_ones_are_counted() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, receiver, log) in senders(&p, &server_log, &client_log) {
        within(sender.emit("typed", Bytes::from_static(&[0xff])))
            .await
            .unwrap();
        within(sender.emit_message("typed", &Ping { t1: 9 }))
            .await
            .unwrap();
        eventually("the good one arrives", || log.lock().unwrap().len() == 1).await;
        assert_eq!(*log.lock().unwrap(), ["ping 9"]);
        assert_eq!(receiver.stats().events_undecodable, 1);
    }
}

#[tokio::test]
async fn a_panicking_event_handler_does_not_stop_later_events() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, receiver, log) in senders(&p, &server_log, &client_log) {
        within(sender.emit("boom", Bytes::new())).await.unwrap();
        within(sender.emit("tick", Bytes::from_static(b"after")))
            .await
            .unwrap();
        eventually("the later event arrives", || log.lock().unwrap().len() == 1).await;
        assert_eq!(*log.lock().unwrap(), ["after"]);
        assert_eq!(receiver.stats().handler_panics, 1);
    }
}

#[tokio::test]
async fn event_metadata_reaches_the_handler() {
    let (p, server_log, client_log) = recording_pair().await;
    for (sender, _, log) in senders(&p, &server_log, &client_log) {
        let metadata: Metadata = [("k".to_string(), "v".to_string())].into();
        within(sender.emit_with("meta", Bytes::new(), metadata))
            .await
            .unwrap();
        eventually("the event arrives", || log.lock().unwrap().len() == 1).await;
        assert_eq!(*log.lock().unwrap(), ["meta v"]);
    }
}

#[tokio::test]
async fn emit_on_a_closed_session_is_unavailable() {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let p = pair(
        Server::builder().routes(move |r| {
            r.event("x", move |_, _| {
                let tx = tx.clone();
                async move { tx.send(()).unwrap() }
            });
        }),
        Client::builder(),
    )
    .await;
    within(p.to_server.emit("x", Bytes::new())).await.unwrap();
    within(rx.recv()).await.unwrap();
    p.to_server.close(0, "done");
    let err = within(p.to_server.emit("x", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), echostream_runtime::Code::Unavailable);
}

/// A server taking at most one named stream of the client at once, which counts its events.
async fn one_stream_server(events: Arc<std::sync::atomic::AtomicUsize>) -> crate::common::Pair {
    pair(
        Server::builder().max_inbound_streams(1).routes(move |r| {
            r.stream("media", |_, _, _| async {});
            r.event("tick", move |_, _| {
                let events = events.clone();
                async move {
                    events.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }),
        Client::builder(),
    )
    .await
}

/// Opens two named streams (one more than the server takes) and sends a frame on each.
async fn open_media(session: &Session) -> Vec<echostream_runtime::StreamSender> {
    let mut streams = Vec::new();
    for _ in 0..2 {
        let s = within(session.open_stream("media", Default::default()))
            .await
            .unwrap();
        within(s.send(Bytes::from_static(b"frame"))).await.unwrap();
        streams.push(s);
    }
    streams
}

#[tokio::test]
async fn events_are_not_starved_of_stream_credit_by_named_streams() {
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = one_stream_server(events.clone()).await;
    let _streams = open_media(&p.to_server).await;
    within(p.to_server.emit("tick", Bytes::from_static(b"1")))
        .await
        .unwrap();
    eventually("the event arrives while the streams stay open", || {
        events.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn every_event_emitted_is_counted_sent_or_dropped_when_the_session_closes() {
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = one_stream_server(events).await;
    let _streams = open_media(&p.to_server).await;
    for i in 0..3 {
        within(p.to_server.emit("tick", Bytes::from(vec![i; 10])))
            .await
            .unwrap();
    }
    tokio::task::yield_now().await;
    p.to_server.close(0, "bye");
    within(p.to_server.closed()).await;
    eventually("the writer counts its events", || {
        let stats = p.to_server.stats();
        stats.events_sent + stats.events_dropped == 3
    })
    .await;
}
