//! Lifecycle: plugins, context hooks and state, session state, groups and broadcast, keepalive,
//! idle timeout, closing and graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use echostream_runtime::proto::v1::ErrorCode;
use echostream_runtime::tls::ClientTls;
use echostream_runtime::{
    Client, ClientBuilder, CloseReason, Code, Context, Error, Plugin, Router, Server,
    ServerBuilder, Session, Status,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::{Pair, connect, eventually, pair, server_tls, within};

/// Records every callback as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Plugin for Recorder {
    fn on_server_start(&self, ctx: &Context) {
        let name = ctx.get::<&str>("name").map(|n| *n).unwrap_or("?");
        self.0.lock().unwrap().push(format!("start {name}"));
    }

    fn on_new_session(&self, session: &Session) {
        session.state().insert(format!("user-{}", session.id()));
        self.0.lock().unwrap().push(format!("new {}", session.id()));
    }

    fn on_session_closed(&self, session: &Session) {
        let reason = session.close_reason().expect("a close reason");
        self.0
            .lock()
            .unwrap()
            .push(format!("closed {} {reason:?}", session.id()));
    }

    fn on_connection_refused(&self, _: SocketAddr, error: &Error) {
        self.0.lock().unwrap().push(format!("refused {error}"));
    }
}

fn named(name: &'static str) -> Context {
    let ctx = Context::new();
    ctx.set("name", name);
    ctx
}

#[tokio::test]
async fn plugins_follow_both_endpoints_and_see_why_sessions_closed() {
    let server_plugin = Recorder::default();
    let client_plugin = Recorder::default();
    let p = pair(
        Server::builder()
            .plugin(server_plugin.clone())
            .context(named("server")),
        Client::builder()
            .plugin(client_plugin.clone())
            .context(named("client")),
    )
    .await;
    assert_eq!(server_plugin.take(), ["start server", "new 1"]);
    assert_eq!(client_plugin.take(), ["start client", "new 1"]);
    assert_eq!(*p.to_client.state().get::<String>().unwrap(), "user-1");

    p.to_server.close(0x100, "bye");
    assert_eq!(
        within(p.to_client.closed()).await,
        CloseReason::Peer {
            code: 0x100,
            reason: "bye".into()
        }
    );
    assert_eq!(
        within(p.to_server.closed()).await,
        CloseReason::Local {
            code: 0x100,
            reason: "bye".into()
        }
    );
    assert_eq!(
        server_plugin.take(),
        [r#"closed 1 Peer { code: 256, reason: "bye" }"#]
    );
    assert_eq!(
        client_plugin.take(),
        [r#"closed 1 Local { code: 256, reason: "bye" }"#]
    );
    assert!(p.server.sessions().is_empty());
    assert!(p.client.sessions().is_empty());
}

#[tokio::test]
async fn handlers_reach_session_state_and_the_shared_context() {
    let router = |r: &mut Router| {
        r.rpc("whoami", |session: Session, _| async move {
            let user = session.state().get::<String>().unwrap();
            let motd = session.context().get::<String>("motd").unwrap();
            Ok(Bytes::from(format!("{user} {motd}")))
        });
    };
    let ctx = Context::new();
    ctx.set("motd", "hi".to_string());
    let p = pair(
        Server::builder()
            .plugin(Recorder::default())
            .context(ctx.clone())
            .routes(router),
        Client::builder(),
    )
    .await;
    let answer = within(p.to_server.request("whoami", Bytes::new())).await;
    assert_eq!(answer.unwrap(), "user-1 hi");
    assert!(Arc::ptr_eq(
        &p.server.context().get::<String>("motd").unwrap(),
        &ctx.get::<String>("motd").unwrap()
    ));
}

#[tokio::test]
async fn context_hooks_run_at_start_and_shutdown_and_a_failing_start_fails_bind() {
    let ctx = Context::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start_tx = tx.clone();
    ctx.on_start(move |_| {
        let tx = start_tx.clone();
        async move {
            tx.send("start").unwrap();
            Ok(())
        }
    });
    ctx.on_stop(move |_| {
        let tx = tx.clone();
        async move {
            tx.send("stop").unwrap();
            Ok(())
        }
    });
    let server = within(
        Server::builder()
            .tls(server_tls())
            .context(ctx)
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    assert_eq!(within(rx.recv()).await, Some("start"));
    within(server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(within(rx.recv()).await, Some("stop"));

    let failing = Context::new();
    failing.on_start(|_| async { Err("no database".into()) });
    let err = within(
        Server::builder()
            .tls(server_tls())
            .context(failing)
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Start(_)), "{err}");
    assert_eq!(err.to_string(), "context start hook failed: no database");
}

#[tokio::test]
async fn groups_and_broadcast_reach_exactly_their_members() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, String)>();
    let server = within(Server::builder().tls(server_tls()).bind("127.0.0.1:0"))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for n in 0..3u32 {
        let tx = tx.clone();
        let session = connect(
            &server,
            Client::builder().routes(move |r| {
                r.event("news", move |_, e| {
                    let tx = tx.clone();
                    async move {
                        tx.send((n, String::from_utf8(e.data.to_vec()).unwrap()))
                            .unwrap()
                    }
                });
            }),
        )
        .await;
        clients.push(session);
    }
    eventually("three sessions", || server.sessions().len() == 3).await;
    let sessions = server.sessions().list();
    sessions[0].join("room");
    sessions[2].join("room");
    sessions[2].join("other");
    assert_eq!(sessions[2].groups(), ["other", "room"]);
    assert_eq!(server.sessions().groups(), ["other", "room"]);
    let ids: Vec<u64> = server
        .sessions()
        .group("room")
        .iter()
        .map(Session::id)
        .collect();
    assert_eq!(ids, [sessions[0].id(), sessions[2].id()]);
    assert_eq!(
        server.sessions().get(sessions[1].id()).unwrap().id(),
        sessions[1].id()
    );

    let outcome = within(server.sessions().broadcast_to(
        "room",
        "news",
        Bytes::from_static(b"room"),
    ))
    .await;
    assert_eq!((outcome.sent, outcome.failed.len()), (2, 0));
    let mut got = vec![
        within(rx.recv()).await.unwrap(),
        within(rx.recv()).await.unwrap(),
    ];
    got.sort();
    assert_eq!(got, [(0, "room".to_string()), (2, "room".to_string())]);

    let outcome = within(
        server
            .sessions()
            .broadcast("news", Bytes::from_static(b"all")),
    )
    .await;
    assert_eq!(outcome.sent, 3);
    let mut got: Vec<u32> = Vec::new();
    for _ in 0..3 {
        got.push(within(rx.recv()).await.unwrap().0);
    }
    got.sort();
    assert_eq!(got, [0, 1, 2]);

    sessions[0].leave("room");
    clients[2].close(0, "leaving");
    eventually("the closed session leaves everything", || {
        server.sessions().len() == 2
    })
    .await;
    assert!(server.sessions().group("room").is_empty());
    assert!(server.sessions().groups().is_empty());
    let outcome = within(server.sessions().broadcast_to("room", "news", Bytes::new())).await;
    assert_eq!(outcome.sent, 0);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn keepalive_measures_the_round_trip_on_both_sides() {
    let p = pair(
        Server::builder().keepalive_interval(Duration::from_millis(20)),
        Client::builder().keepalive_interval(Duration::from_millis(20)),
    )
    .await;
    for session in [&p.to_server, &p.to_client] {
        eventually("a pong arrives", || session.rtt().is_some()).await;
        let rtt = session.rtt().unwrap();
        assert!(rtt < Duration::from_millis(200), "{rtt:?} on loopback");
        let sample = session.last_pong().unwrap();
        assert!(sample.t1 <= sample.t4 && sample.t2 <= sample.t3);
    }
}

#[tokio::test]
async fn keepalive_holds_an_idle_connection_open_and_silence_times_it_out() {
    // The live pair has ample slack (30 pings per idle timeout), so a scheduling stall on a
    // loaded machine cannot close it; the quiet one pings too rarely to survive 300 ms.
    let alive = pair(
        Server::builder()
            .keepalive_interval(Duration::from_millis(100))
            .idle_timeout(Duration::from_secs(3)),
        Client::builder()
            .keepalive_interval(Duration::from_millis(100))
            .idle_timeout(Duration::from_secs(3)),
    )
    .await;
    let quiet = pair(
        Server::builder()
            .keepalive_interval(Duration::from_secs(10))
            .idle_timeout(Duration::from_millis(300)),
        Client::builder()
            .keepalive_interval(Duration::from_secs(10))
            .idle_timeout(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(
        within(quiet.to_server.closed()).await,
        CloseReason::IdleTimeout
    );
    assert_eq!(
        within(quiet.to_client.closed()).await,
        CloseReason::IdleTimeout
    );
    // Silent for longer than the quiet pair's idle timeout, the live pair is still open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alive.to_server.is_closed() && !alive.to_client.is_closed());
    assert!(alive.to_server.rtt().is_some(), "pings were answered");
}

fn slow(router: &mut Router, tx: mpsc::UnboundedSender<()>) {
    router.rpc("slow", move |_, _| {
        let tx = tx.clone();
        async move {
            tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Bytes::from_static(b"finished"))
        }
    });
}

/// A pair whose server serves `slow`, with one slow call from the client in flight (its
/// handler started).
async fn slow_call_in_flight(
    server: ServerBuilder,
    client: ClientBuilder,
) -> (Pair, JoinHandle<Result<Bytes, Status>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = pair(server.routes(move |r| slow(r, tx)), client).await;
    let call = tokio::spawn({
        let s = p.to_server.clone();
        async move { s.request("slow", Bytes::new()).await }
    });
    within(rx.recv()).await.unwrap();
    (p, call)
}

#[tokio::test]
async fn graceful_shutdown_lets_calls_in_flight_finish_and_refuses_new_ones() {
    let stopped = Arc::new(Mutex::new(false));
    let ctx = Context::new();
    let flag = stopped.clone();
    ctx.on_stop(move |_| {
        let flag = flag.clone();
        async move {
            *flag.lock().unwrap() = true;
            Ok(())
        }
    });
    let plugin = Recorder::default();
    let (p, call) = slow_call_in_flight(
        Server::builder().context(ctx),
        Client::builder().plugin(plugin.clone()),
    )
    .await;
    let shutdown = tokio::spawn({
        let server = p.server.clone();
        async move { server.shutdown(Duration::from_secs(5)).await }
    });
    eventually("the client hears the go-away", || {
        p.to_server.peer_going_away()
    })
    .await;
    let refused = within(p.to_server.request("slow", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused}");
    assert_eq!(within(call).await.unwrap().unwrap(), "finished");
    within(shutdown).await.unwrap();
    let reason = within(p.to_server.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode::Shutdown as u64), "{reason}");
    assert!(*stopped.lock().unwrap());
    assert!(p.server.sessions().is_empty());
    let err = within(
        Client::builder()
            .tls(ClientTls::pinned(p.server.fingerprint()))
            .idle_timeout(Duration::from_millis(300))
            .connect(p.server.local_addr(), "localhost"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err}");
}

#[tokio::test]
async fn a_short_grace_period_cuts_slow_calls_off() {
    let (p, call) = slow_call_in_flight(Server::builder(), Client::builder()).await;
    // The slow call (300 ms) is cut off by the 50 ms grace: it fails instead of finishing.
    within(p.server.shutdown(Duration::from_millis(50))).await;
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn a_grace_of_duration_max_waits_for_the_calls_without_a_deadline() {
    let (p, call) = slow_call_in_flight(Server::builder(), Client::builder()).await;
    within(p.server.shutdown(Duration::MAX)).await;
    assert_eq!(within(call).await.unwrap().unwrap(), "finished");
}

#[tokio::test]
async fn dropping_the_server_closes_its_sessions() {
    let p = pair(Server::builder(), Client::builder()).await;
    let crate::common::Pair {
        server,
        to_server,
        to_client,
        ..
    } = p;
    drop(to_client);
    drop(server);
    let reason = within(to_server.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode::Shutdown as u64), "{reason}");
}

/// Panics in every callback.
struct Faulty;

impl Plugin for Faulty {
    fn on_new_session(&self, _: &Session) {
        panic!("plugin bug");
    }

    fn on_session_closed(&self, _: &Session) {
        panic!("plugin bug");
    }
}

#[tokio::test]
async fn a_panicking_plugin_does_not_stop_the_others_or_the_session() {
    let recorder = Recorder::default();
    let p = pair(
        Server::builder()
            .plugin(Faulty)
            .plugin(recorder.clone())
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            }),
        Client::builder(),
    )
    .await;
    let answer = within(p.to_server.request("echo", Bytes::from_static(b"x"))).await;
    assert_eq!(answer.unwrap(), "x");
    p.to_server.close(0, "done");
    within(p.to_client.closed()).await;
    eventually("the recorder saw the close", || {
        recorder.0.lock().unwrap().len() == 3
    })
    .await;
    let id = p.to_client.id();
    assert_eq!(
        recorder.take(),
        [
            "start ?".to_string(),
            format!("new {id}"),
            format!(
                "closed {id} {:?}",
                CloseReason::Peer {
                    code: 0,
                    reason: "done".into()
                }
            ),
        ]
    );
    assert!(p.server.sessions().is_empty());
}

/// A client that records the sizes of the "bye" events it receives.
fn bye_recorder(tx: mpsc::UnboundedSender<usize>) -> impl FnOnce(&mut Router) {
    move |r: &mut Router| {
        r.event("bye", move |_, e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.data.len());
            }
        });
    }
}

#[tokio::test]
async fn graceful_shutdown_delivers_the_events_emitted_before_it() {
    // Large events take many round trips to deliver: closing at once would discard them.
    for _ in 0..3 {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = pair(
            Server::builder(),
            Client::builder().routes(bye_recorder(tx)),
        )
        .await;
        let big = Bytes::from(vec![0u8; 512 * 1024]);
        let sent = p.server.sessions().broadcast("bye", big.clone()).await;
        assert_eq!(sent.sent, 1);
        within(p.to_client.emit("bye", Bytes::from_static(b"last")))
            .await
            .unwrap();
        within(p.server.shutdown(Duration::from_secs(5))).await;
        assert_eq!(within(rx.recv()).await, Some(512 * 1024));
        assert_eq!(within(rx.recv()).await, Some(4));
        assert_eq!(p.to_client.stats().events_dropped, 0);
        let reason = within(p.to_server.closed()).await;
        assert_eq!(reason.code(), Some(ErrorCode::Shutdown as u64), "{reason}");
    }
}

#[tokio::test]
async fn a_client_session_shuts_down_gracefully_too() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (calls_tx, mut calls_rx) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(move |r| {
            bye_recorder(tx)(r);
            slow(r, calls_tx);
        }),
        Client::builder().routes(|r| {
            r.rpc("echo", |_, req| async move { Ok(req.data) });
        }),
    )
    .await;
    let call = tokio::spawn({
        let s = p.to_server.clone();
        async move { s.request("slow", Bytes::new()).await }
    });
    within(calls_rx.recv()).await.unwrap();
    within(p.to_server.emit("bye", Bytes::from(vec![1u8; 256 * 1024])))
        .await
        .unwrap();
    // The client leaves: the server hears the go-away and stops calling it; events sent get
    // there; the client's own call in flight is the server's to answer (closing cuts it).
    let shutdown = tokio::spawn({
        let s = p.to_server.clone();
        async move { s.shutdown(Duration::from_secs(5)).await }
    });
    eventually("the server hears the go-away", || {
        p.to_client.peer_going_away()
    })
    .await;
    within(shutdown).await.unwrap();
    assert_eq!(within(rx.recv()).await, Some(256 * 1024));
    let err = within(p.to_server.emit("bye", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let reason = within(p.to_client.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode::Shutdown as u64), "{reason}");
    let _ = within(call).await.unwrap();
}

#[tokio::test]
async fn a_client_session_closes_when_the_application_drops_it() {
    let p = pair(Server::builder(), Client::builder()).await;
    let crate::common::Pair {
        server,
        client,
        to_server,
        to_client,
    } = p;
    // Handles from the registry and clones keep it open; dropping the last one closes it.
    let from_registry = client.sessions().list().pop().unwrap();
    let clone = to_server.clone();
    drop(to_server);
    drop(from_registry);
    assert!(!clone.is_closed());
    drop(clone);
    let reason = within(to_client.closed()).await;
    assert_eq!(reason.code(), Some(0), "{reason}");
    eventually("both sides forget it", || {
        server.sessions().is_empty() && client.sessions().is_empty()
    })
    .await;
}

#[tokio::test]
async fn an_open_stream_sender_keeps_its_client_session_open() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(move |r| {
            r.stream("s", move |_, _, frame| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(frame.payload.len());
                }
            });
        }),
        Client::builder(),
    )
    .await;
    let stream = within(p.to_server.open_stream("s", Default::default()))
        .await
        .unwrap();
    let crate::common::Pair {
        server: _server,
        to_server,
        to_client,
        ..
    } = p;
    drop(to_server);
    within(stream.send(Bytes::from_static(b"still here")))
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await, Some(10));
    assert!(!to_client.is_closed());
    drop(stream);
    within(to_client.closed()).await;
}

/// Sets a flag when dropped: stored in a session's state, it tells when the session is freed.
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `stuck` (which makes the server run a handler that never returns), closes the client,
/// and checks that the server's session is freed all the same.
async fn a_stuck_handler_does_not_keep_a_closed_session(
    router: impl FnOnce(&mut Router) + Send + 'static,
    stuck: impl AsyncFnOnce(&Session),
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let p = pair(
        Server::builder().routes(move |r| {
            router(r);
            r.rpc("ready", move |_, _| {
                let _ = tx.send(());
                async { Ok(Bytes::new()) }
            });
        }),
        Client::builder(),
    )
    .await;
    let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    p.to_client.state().insert(DropFlag(freed.clone()));
    stuck(&p.to_server).await;
    within(p.to_server.request("ready", Bytes::new()))
        .await
        .unwrap();
    within(rx.recv()).await.unwrap();
    let crate::common::Pair {
        server: _server,
        to_server,
        to_client,
        ..
    } = p;
    to_server.close(0x100, "bye");
    within(to_client.closed()).await;
    drop(to_client);
    eventually("the server frees the closed session", || {
        freed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn a_stuck_event_handler_is_cancelled_when_the_connection_closes() {
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    a_stuck_handler_does_not_keep_a_closed_session(
        move |r| {
            r.event("stuck", move |_, _| {
                let _ = started_tx.send(());
                std::future::pending::<()>()
            });
        },
        async |session| {
            within(session.emit("stuck", Bytes::new())).await.unwrap();
            within(started.recv()).await.unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_stuck_stream_handler_is_cancelled_when_the_connection_closes() {
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    a_stuck_handler_does_not_keep_a_closed_session(
        move |r| {
            r.stream("stuck", move |_, _, _| {
                let _ = started_tx.send(());
                std::future::pending::<()>()
            });
        },
        async |session| {
            let stream = within(session.open_stream("stuck", Default::default()))
                .await
                .unwrap();
            within(stream.send(Bytes::from_static(b"x"))).await.unwrap();
            within(started.recv()).await.unwrap();
            // Finishing it changes nothing: its handler is still stuck in `handle`.
            drop(stream);
        },
    )
    .await;
}

#[tokio::test]
async fn an_application_cannot_close_with_a_protocol_code() {
    let p = pair(Server::builder(), Client::builder()).await;
    // 2 is PROTOCOL_ERROR: the peer must not believe the protocol was broken.
    p.to_server.close(ErrorCode::ProtocolError as u32, "mine");
    let reason = within(p.to_client.closed()).await;
    assert_eq!(
        reason.code(),
        Some(u64::from(
            echostream_runtime::protocol::FIRST_APPLICATION_CLOSE_CODE
        )),
        "{reason}"
    );
}
