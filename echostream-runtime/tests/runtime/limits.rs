//! Limits: frame size, concurrent calls, outbound event and stream queues. Each refuses with a
//! clear status, counts what it dropped, and leaves the session usable.

use std::sync::Arc;

use bytes::Bytes;
use echostream_runtime::{Client, Code, Server, StreamOptions};
use tokio::sync::{Semaphore, mpsc};

use crate::common::{eventually, pair, within};

#[tokio::test]
async fn frames_over_the_peers_limit_are_refused_before_sending() {
    let p = pair(
        Server::builder().max_frame_size(64 * 1024).routes(|r| {
            r.rpc("echo", |_, req| async move { Ok(req.data) });
        }),
        Client::builder().max_frame_size(32 * 1024).routes(|r| {
            r.rpc("echo", |_, req| async move { Ok(req.data) });
        }),
    )
    .await;
    assert_eq!(p.to_server.peer_max_frame_size(), 64 * 1024);
    assert_eq!(p.to_client.peer_max_frame_size(), 32 * 1024);
    for (caller, limit) in [(&p.to_server, 64 * 1024), (&p.to_client, 32 * 1024)] {
        let err = within(caller.request("echo", Bytes::from(vec![0; limit])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("exceeds the peer's limit"), "{err}");
        let err = within(caller.emit("echo", Bytes::from(vec![0; limit])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        // Under both limits, since the answer comes back the other way.
        let fits = 32 * 1024 - 100;
        let ok = within(caller.request("echo", Bytes::from(vec![1; fits]))).await;
        assert_eq!(ok.unwrap().len(), fits, "the session is still usable");
    }
}

#[tokio::test]
async fn an_answer_over_the_callers_limit_becomes_resource_exhausted() {
    let p = pair(
        Server::builder().routes(|r| {
            r.rpc(
                "big",
                |_, _| async move { Ok(Bytes::from(vec![0; 100 * 1024])) },
            );
        }),
        Client::builder().max_frame_size(16 * 1024),
    )
    .await;
    let err = within(p.to_server.request("big", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(!p.to_server.is_closed());
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_refused_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler_gate = gate.clone();
    let p = pair(
        Server::builder().max_concurrent_calls(4).routes(move |r| {
            r.rpc("wait", move |_, _| {
                let gate = handler_gate.clone();
                let tx = tx.clone();
                async move {
                    tx.send(()).unwrap();
                    gate.acquire().await.unwrap().forget();
                    Ok(Bytes::from_static(b"done"))
                }
            });
        }),
        Client::builder(),
    )
    .await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let s = p.to_server.clone();
            tokio::spawn(async move { s.request("wait", Bytes::new()).await })
        })
        .collect();
    for _ in 0..4 {
        within(rx.recv()).await.unwrap();
    }
    for _ in 0..6 {
        let err = within(p.to_server.request("wait", Bytes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("limit 4"), "{err}");
    }
    assert_eq!(p.to_client.stats().calls_rejected, 6);
    gate.add_permits(4);
    for call in calls {
        assert_eq!(within(call).await.unwrap().unwrap(), "done");
    }
    gate.add_permits(1);
    assert_eq!(
        within(p.to_server.request("wait", Bytes::new()))
            .await
            .unwrap(),
        "done"
    );
}

#[tokio::test]
async fn a_full_event_queue_refuses_and_counts() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let p = pair(
        Server::builder().routes(move |r| {
            r.event("e", move |_, e| {
                let tx = tx.clone();
                async move { tx.send(e.data).unwrap() }
            });
        }),
        Client::builder().event_queue(8, 1 << 20),
    )
    .await;
    // Without yielding, the writer task cannot drain the queue: 8 fit, the rest are refused.
    let mut refused = 0;
    for i in 0..100u8 {
        match p.to_server.emit("e", Bytes::copy_from_slice(&[i])).await {
            Ok(()) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(status.message().contains("event queue full"), "{status}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 92);
    assert_eq!(p.to_server.stats().events_dropped, 92);
    for i in 0..8u8 {
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            Bytes::copy_from_slice(&[i])
        );
    }
    within(p.to_server.emit("e", Bytes::from_static(b"later")))
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "later");
}

#[tokio::test]
async fn a_full_stream_queue_refuses_counts_and_leaves_a_seq_gap() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, u64)>();
    let p = pair(
        Server::builder().routes(move |r| {
            r.stream("s", move |_, _, frame| {
                let tx = tx.clone();
                async move { tx.send((frame.seq, frame.lost_before)).unwrap() }
            });
        }),
        Client::builder(),
    )
    .await;
    let stream = within(
        p.to_server
            .open_stream("s", StreamOptions::new().queue(4, 1 << 20)),
    )
    .await
    .unwrap();
    let mut refused = 0;
    for _ in 0..10 {
        if let Err(status) = stream.send(Bytes::from_static(b"x")).await {
            assert_eq!(status.code(), Code::ResourceExhausted);
            refused += 1;
        }
    }
    assert_eq!(refused, 6);
    assert_eq!(stream.stats().dropped, 6);
    assert_eq!(p.to_server.stats().stream_frames_dropped, 6);
    for expected in 0..4 {
        assert_eq!(within(rx.recv()).await.unwrap(), (expected, 0));
    }
    within(stream.send(Bytes::from_static(b"y"))).await.unwrap();
    assert_eq!(
        within(rx.recv()).await.unwrap(),
        (10, 6),
        "the dropped frames left a gap, reported to the receiver as lost"
    );
    eventually("all written", || stream.stats().sent == 5).await;
}
