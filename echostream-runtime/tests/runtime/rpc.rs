//! RPC in both directions: answers, errors, concurrency, typed calls, panics, deadlines,
//! cancellation and lost connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use echostream_runtime::proto::v1::{Ping, Pong};
use echostream_runtime::{CallContext, CallOptions, Client, Code, Router, Server, Session, Status};
use tokio::sync::mpsc;

use crate::common::{WAIT, eventually, pair, within};

/// Handlers every test peer serves: echo, fail, double, panic.
fn basic(router: &mut Router) {
    router.rpc("echo", |_, req| async move { Ok(req.data) });
    router.rpc("fail", |_, _| async move {
        Err::<Bytes, _>(Status::permission_denied("not you"))
    });
    router.rpc("double", |_, req| async move {
        let n = u64::from_le_bytes(req.data[..8].try_into().unwrap());
        Ok(Bytes::copy_from_slice(&(2 * n).to_le_bytes()))
    });
    router.rpc("panic", |_, _| async move {
        if true {
            panic!("handler bug");
        }
        Ok(Bytes::new())
    });
    router.rpc("whoami", |session: Session, _| async move {
        Ok(Bytes::from(session.id().to_string()))
    });
}

async fn basic_pair() -> crate::common::Pair {
    pair(
        Server::builder().routes(basic),
        Client::builder().routes(basic),
    )
    .await
}

/// The two directions of a pair: (caller session, callee session).
fn directions(p: &crate::common::Pair) -> [(Session, Session); 2] {
    [
        (p.to_server.clone(), p.to_client.clone()),
        (p.to_client.clone(), p.to_server.clone()),
    ]
}

#[tokio::test]
async fn echo_both_ways() {
    let p = basic_pair().await;
    for (caller, callee) in directions(&p) {
        let answer = within(caller.request("echo", Bytes::from_static(b"hello"))).await;
        assert_eq!(answer.unwrap(), "hello");
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let answer = within(caller.request("echo", big.clone())).await.unwrap();
        assert_eq!(answer, big);
        let whoami = within(caller.request("whoami", Bytes::new()))
            .await
            .unwrap();
        assert_eq!(
            whoami,
            callee.id().to_string(),
            "the handler got its own session"
        );
    }
    assert_eq!(p.to_server.stats().calls_sent, 3);
    assert_eq!(p.to_client.stats().calls_received, 3);
}

#[tokio::test]
async fn errors_and_unknown_methods_both_ways() {
    let p = basic_pair().await;
    for (caller, _) in directions(&p) {
        let err = within(caller.request("fail", Bytes::new()))
            .await
            .unwrap_err();
        assert_eq!(err, Status::permission_denied("not you"));
        let err = within(caller.request("nope", Bytes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().contains("nope"), "{err}");
    }
}

#[tokio::test]
async fn a_thousand_concurrent_calls_on_one_session() {
    let p = basic_pair().await;
    for (caller, _) in directions(&p) {
        let calls = (0..1000u64).map(|i| {
            let caller = caller.clone();
            tokio::spawn(async move {
                let answer = caller
                    .request("double", Bytes::copy_from_slice(&i.to_le_bytes()))
                    .await
                    .unwrap();
                assert_eq!(u64::from_le_bytes(answer[..].try_into().unwrap()), 2 * i);
            })
        });
        let calls: Vec<_> = calls.collect();
        within(async {
            for call in calls {
                call.await.unwrap();
            }
        })
        .await;
    }
}

#[tokio::test]
async fn typed_calls_decode_and_validate() {
    let router = |r: &mut Router| {
        r.unary("clock", |_, ping: Ping| async move {
            Ok(Pong {
                t1: ping.t1,
                t2: ping.t1 + 1,
                t3: ping.t1 + 2,
            })
        });
    };
    let p = pair(
        Server::builder().routes(router),
        Client::builder().routes(router),
    )
    .await;
    for (caller, _) in directions(&p) {
        let pong: Pong = within(caller.call("clock", &Ping { t1: 40 }, &CallOptions::new()))
            .await
            .unwrap();
        assert_eq!((pong.t1, pong.t2, pong.t3), (40, 41, 42));
        let err = within(caller.request("clock", Bytes::from_static(&[0xff, 0xff])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = within(caller.call::<Ping, Pong>("nope", &Ping { t1: 1 }, &CallOptions::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_session_goes_on() {
    let p = basic_pair().await;
    for (caller, callee) in directions(&p) {
        let err = within(caller.request("panic", Bytes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("panicked"), "{err}");
        assert_eq!(callee.stats().handler_panics, 1);
        let answer = within(caller.request("echo", Bytes::from_static(b"still here"))).await;
        assert_eq!(answer.unwrap(), "still here");
    }
}

/// Reports, through `tx`, what the handler saw of its call: the deadline, then whether it was
/// cancelled (from a task the handler spawned) and whether its future was dropped.
fn observing(router: &mut Router, tx: mpsc::UnboundedSender<&'static str>) {
    router.rpc("slow", move |_, _| {
        let tx = tx.clone();
        async move {
            let ctx = CallContext::current().expect("a call context");
            tx.send("started").unwrap();
            if ctx.deadline().is_some() {
                tx.send("has deadline").unwrap();
            }
            let watcher = tx.clone();
            tokio::spawn(async move {
                ctx.cancelled().await;
                watcher.send("cancelled").unwrap();
            });
            struct OnDrop(mpsc::UnboundedSender<&'static str>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    let _ = self.0.send("dropped");
                }
            }
            let _guard = OnDrop(tx);
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Bytes::new())
        }
    });
}

async fn next(rx: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    within(rx.recv()).await.expect("an observation")
}

#[tokio::test]
async fn deadlines_fail_the_caller_and_cancel_the_handler_both_ways() {
    let (stx, mut srx) = mpsc::unbounded_channel();
    let (ctx_, mut crx) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(|r| observing(r, stx)),
        Client::builder().routes(|r| observing(r, ctx_)),
    )
    .await;
    for (caller, rx) in [(&p.to_server, &mut srx), (&p.to_client, &mut crx)] {
        let start = tokio::time::Instant::now();
        let options = CallOptions::new().timeout(Duration::from_millis(150));
        let err = within(caller.request_with("slow", Bytes::new(), &options))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert_eq!(next(rx).await, "started");
        assert_eq!(next(rx).await, "has deadline");
        let mut seen = [next(rx).await, next(rx).await];
        seen.sort();
        assert_eq!(seen, ["cancelled", "dropped"]);
    }
}

#[tokio::test]
async fn the_endpoint_default_timeout_applies_and_can_be_lifted() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(|r| observing(r, tx)),
        Client::builder().default_timeout(Some(Duration::from_millis(100))),
    )
    .await;
    let err = within(p.to_server.request("slow", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(next(&mut rx).await, "started");
    assert_eq!(next(&mut rx).await, "has deadline");
    let mut seen = [next(&mut rx).await, next(&mut rx).await];
    seen.sort();
    assert_eq!(seen, ["cancelled", "dropped"]);
    // Lifted: the handler sees no deadline (it would report "has deadline" before anything
    // else); dropping the call then cancels it.
    let lifted = CallOptions::new().no_deadline();
    let call = p.to_server.request_with("slow", Bytes::new(), &lifted);
    tokio::select! {
        _ = call => panic!("the slow call answered"),
        seen = rx.recv() => assert_eq!(seen, Some("started")),
    }
    let mut seen = [next(&mut rx).await, next(&mut rx).await];
    seen.sort();
    assert_eq!(seen, ["cancelled", "dropped"], "no deadline was seen");
}

#[tokio::test]
async fn dropping_the_callers_future_cancels_the_handler_both_ways() {
    let (stx, mut srx) = mpsc::unbounded_channel();
    let (ctx_, mut crx) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(|r| observing(r, stx)),
        Client::builder().routes(|r| observing(r, ctx_)),
    )
    .await;
    for (caller, callee, rx) in [
        (&p.to_server, &p.to_client, &mut srx),
        (&p.to_client, &p.to_server, &mut crx),
    ] {
        let options = CallOptions::new().no_deadline();
        let call = caller.request_with("slow", Bytes::new(), &options);
        // Drop the call once the handler is running.
        tokio::select! {
            _ = call => panic!("the slow call answered"),
            seen = rx.recv() => assert_eq!(seen, Some("started")),
        }
        let mut seen = [next(rx).await, next(rx).await];
        seen.sort();
        assert_eq!(seen, ["cancelled", "dropped"]);
        eventually("the callee forgets the call", || {
            callee.calls_in_flight() == 0
        })
        .await;
    }
}

#[tokio::test]
async fn metadata_reaches_the_handler() {
    let router = |r: &mut Router| {
        r.rpc("meta", |_, _| async move {
            let ctx = CallContext::current().unwrap();
            let value = ctx.metadata().get("trace").cloned().unwrap_or_default();
            Ok(Bytes::from(format!("{}:{}", ctx.name(), value)))
        });
    };
    let p = pair(
        Server::builder().routes(router),
        Client::builder().routes(router),
    )
    .await;
    for (caller, _) in directions(&p) {
        let options = CallOptions::new().metadata("trace", "abc");
        let answer = within(caller.request_with("meta", Bytes::new(), &options)).await;
        assert_eq!(answer.unwrap(), "meta:abc");
    }
}

#[tokio::test]
async fn a_lost_connection_fails_every_pending_call_at_once() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let p = pair(
        Server::builder().routes(move |r| {
            r.rpc("hang", move |_, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            });
        }),
        Client::builder(),
    )
    .await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let s = p.to_server.clone();
            tokio::spawn(async move { s.request("hang", Bytes::new()).await })
        })
        .collect();
    eventually("all calls reach the handler", || {
        started.load(Ordering::SeqCst) == 20
    })
    .await;
    let start = tokio::time::Instant::now();
    p.to_client.close(0x100, "gone");
    for call in calls {
        let err = within(call).await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("gone"), "{err}");
    }
    // All at once: well within one step's bound, however loaded the machine.
    assert!(start.elapsed() < WAIT, "{:?}", start.elapsed());
    let err = within(p.to_server.request("hang", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_peer_killed_mid_call_fails_the_caller_promptly() {
    // The server runs on its own runtime and thread, so it can die without closing anything.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(started_tx));
    let server_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(async {
            Server::builder()
                .tls(crate::common::server_tls())
                .routes(move |r| {
                    r.rpc("hang", move |_, _| {
                        let _ = started_tx.lock().unwrap().send(());
                        std::future::pending()
                    });
                })
                .bind("127.0.0.1:0")
                .await
                .unwrap()
        });
        addr_tx
            .send((server.local_addr(), server.fingerprint()))
            .unwrap();
        kill_rx.recv_timeout(WAIT).unwrap();
        // Dropping the handle would close the connections politely; a killed process does not.
        std::mem::forget(server);
        runtime.shutdown_background();
    });
    let (addr, fingerprint) = addr_rx.recv_timeout(WAIT).unwrap();
    let session = within(
        Client::builder()
            .tls(echostream_runtime::tls::ClientTls::pinned(fingerprint))
            .idle_timeout(Duration::from_millis(400))
            .keepalive_interval(Duration::from_millis(100))
            .connect(addr, "localhost"),
    )
    .await
    .unwrap();
    let call = tokio::spawn({
        let session = session.clone();
        async move { session.request("hang", Bytes::new()).await }
    });
    // Killed once the call is in its handler: mid-call.
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the call reached the handler");
    kill_tx.send(()).unwrap();
    // Promptly: after about the 400 ms idle timeout, long before the call's 30 s deadline.
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_eq!(
        within(session.closed()).await,
        echostream_runtime::CloseReason::IdleTimeout
    );
    server_thread.join().unwrap();
}

#[tokio::test]
async fn a_timeout_of_duration_max_means_no_deadline() {
    let router = |r: &mut Router| {
        r.rpc("deadline", |_, _| async move {
            let ctx = CallContext::current().unwrap();
            Ok(Bytes::from(format!("{:?}", ctx.deadline().is_some())))
        });
    };
    let p = pair(
        Server::builder().routes(router),
        Client::builder()
            .routes(router)
            .default_timeout(Some(Duration::MAX)),
    )
    .await;
    // Through the endpoint's default, and through the call's own options.
    let answer = within(p.to_server.request("deadline", Bytes::new())).await;
    assert_eq!(answer.unwrap(), "false");
    let options = CallOptions::new().timeout(Duration::MAX);
    let answer = within(p.to_client.request_with("deadline", Bytes::new(), &options)).await;
    assert_eq!(answer.unwrap(), "false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_busy_before_its_first_await_does_not_hold_up_other_calls() {
    // The "busy" handler blocks its thread, before any await, until the test lets it go: a
    // call that only got in after it would never be answered while it blocks.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(started_tx));
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let p = pair(
        Server::builder().routes(move |r| {
            r.rpc("busy", move |_, _| {
                let started = started_tx.clone();
                let release = release_rx.clone();
                async move {
                    started.lock().unwrap().send(()).unwrap();
                    let _ = release.lock().unwrap().recv_timeout(WAIT);
                    Ok(Bytes::new())
                }
            });
            r.rpc(
                "fast",
                |_, _| async move { Ok(Bytes::from_static(b"fast")) },
            );
        }),
        Client::builder(),
    )
    .await;
    let busy = tokio::spawn({
        let s = p.to_server.clone();
        async move { s.request("busy", Bytes::new()).await }
    });
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the busy handler started");
    let fast = tokio::time::timeout(WAIT / 2, p.to_server.request("fast", Bytes::new())).await;
    release_tx.send(()).unwrap();
    assert_eq!(
        fast.expect("the fast call waited for the busy one")
            .unwrap(),
        "fast"
    );
    within(busy).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_handler_sees_whether_the_call_was_marked_idempotent() {
    let router = |r: &mut Router| {
        r.rpc("flags", |_, _| async move {
            let ctx = CallContext::current().unwrap();
            Ok(Bytes::from(format!(
                "{} {}",
                ctx.idempotent(),
                ctx.early_data()
            )))
        });
    };
    let p = pair(
        Server::builder().routes(router),
        Client::builder().routes(router),
    )
    .await;
    for (caller, _) in directions(&p) {
        let marked = CallOptions::new().idempotent(true);
        let answer = within(caller.request_with("flags", Bytes::new(), &marked)).await;
        assert_eq!(
            answer.unwrap(),
            "true false",
            "a full handshake: no early data"
        );
        let answer = within(caller.request("flags", Bytes::new())).await;
        assert_eq!(answer.unwrap(), "false false");
    }
}

#[tokio::test]
async fn a_handler_failing_with_code_ok_answers_internal_not_success() {
    let p = pair(
        Server::builder().routes(|r| {
            r.rpc("odd", |_, _| async move {
                Err::<Bytes, _>(Status::new(Code::Ok, "not really ok"))
            });
        }),
        Client::builder(),
    )
    .await;
    let err = within(p.to_server.request("odd", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.message().contains("not really ok"), "{err}");
}
