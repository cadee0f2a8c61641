//! Middleware in both directions: pass (and change), drop, fail, and their order.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use echostream_runtime::{
    CallContext, Client, Code, Frame, Middleware, Payload, Router, Server, Session, Status,
};

use crate::common::{eventually, pair, within};

/// Server-side authentication: requests must carry `token: secret`; the middleware replaces it
/// with the user's name, which handlers read from the call context.
struct Auth;

#[async_trait]
impl Middleware for Auth {
    async fn on_frame_inbound(
        &self,
        _: &Session,
        mut frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        if !matches!(frame.payload, Some(Payload::Request(_))) {
            return Ok(Some(frame));
        }
        match frame.metadata.remove("token").as_deref() {
            Some("secret") => {
                frame.metadata.insert("user".into(), "ann".into());
                Ok(Some(frame))
            }
            Some(_) => Err(Status::permission_denied("bad token")),
            None => Err(Status::unauthenticated("no token")),
        }
    }
}

/// Client-side: adds the token to every outbound request.
struct Token(&'static str);

#[async_trait]
impl Middleware for Token {
    async fn on_frame_outbound(
        &self,
        _: &Session,
        mut frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        if matches!(frame.payload, Some(Payload::Request(_))) {
            frame.metadata.insert("token".into(), self.0.into());
        }
        Ok(Some(frame))
    }
}

/// Drops or fails frames whose RPC, event or stream name starts with "drop" / "fail", inbound
/// or outbound as configured.
struct Filter {
    inbound: bool,
}

fn name(frame: &Frame) -> &str {
    match &frame.payload {
        Some(Payload::Request(r)) => &r.name,
        Some(Payload::Event(e)) => &e.name,
        Some(Payload::StreamOpen(o)) => &o.name,
        _ => "",
    }
}

impl Filter {
    fn apply(&self, frame: Frame) -> Result<Option<Frame>, Status> {
        let name = name(&frame);
        if name.starts_with("drop") {
            Ok(None)
        } else if name.starts_with("fail") {
            Err(Status::permission_denied(format!("{name} filtered")))
        } else {
            Ok(Some(frame))
        }
    }
}

#[async_trait]
impl Middleware for Filter {
    async fn on_frame_inbound(&self, _: &Session, frame: Frame) -> Result<Option<Frame>, Status> {
        if self.inbound {
            self.apply(frame)
        } else {
            Ok(Some(frame))
        }
    }

    async fn on_frame_outbound(&self, _: &Session, frame: Frame) -> Result<Option<Frame>, Status> {
        if self.inbound {
            Ok(Some(frame))
        } else {
            self.apply(frame)
        }
    }
}

fn whoami(router: &mut Router) {
    router.rpc("whoami", |_, _| async move {
        let ctx = CallContext::current().unwrap();
        Ok(Bytes::from(
            ctx.metadata().get("user").cloned().unwrap_or_default(),
        ))
    });
}

#[tokio::test]
async fn auth_middleware_passes_changes_and_fails_requests() {
    let p = pair(
        Server::builder().middleware(Auth).routes(whoami),
        Client::builder(),
    )
    .await;
    let err = within(p.to_server.request("whoami", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err, Status::unauthenticated("no token"));
    assert_eq!(p.to_client.stats().middleware_dropped, 1);

    let with_token = pair(
        Server::builder().middleware(Auth).routes(whoami),
        Client::builder().middleware(Token("secret")),
    )
    .await;
    let user = within(with_token.to_server.request("whoami", Bytes::new())).await;
    assert_eq!(user.unwrap(), "ann");

    let wrong = pair(
        Server::builder().middleware(Auth).routes(whoami),
        Client::builder().middleware(Token("guess")),
    )
    .await;
    let err = within(wrong.to_server.request("whoami", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// Handlers for every name the filter tests use; events and streams are recorded in `log`.
fn sinks(router: &mut Router, log: Arc<Mutex<Vec<String>>>) {
    for name in ["drop.rpc", "fail.rpc", "pass.rpc"] {
        router.rpc(name, |_, _| async move { Ok(Bytes::from_static(b"ran")) });
    }
    for name in ["drop.ev", "fail.ev", "pass.ev"] {
        let log = log.clone();
        router.event(name, move |_, e| {
            let log = log.clone();
            async move { log.lock().unwrap().push(e.name) }
        });
    }
    for name in ["drop.st", "fail.st", "pass.st"] {
        let log = log.clone();
        router.stream(name, move |_, info, _| {
            let log = log.clone();
            async move { log.lock().unwrap().push(info.name().to_owned()) }
        });
    }
}

async fn filter_cases(
    caller: &Session,
    callee: &Session,
    log: &Arc<Mutex<Vec<String>>>,
    inbound: bool,
) {
    let ok = within(caller.request("pass.rpc", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(ok, "ran");
    let dropped = within(caller.request("drop.rpc", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(dropped.code(), Code::Cancelled, "{dropped}");
    let failed = within(caller.request("fail.rpc", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(failed, Status::permission_denied("fail.rpc filtered"));

    within(caller.emit("drop.ev", Bytes::new())).await.unwrap();
    let failed = within(caller.emit("fail.ev", Bytes::new())).await;
    if inbound {
        assert!(
            failed.is_ok(),
            "inbound failures are not reported to the sender"
        );
    } else {
        assert_eq!(failed.unwrap_err().code(), Code::PermissionDenied);
    }
    within(caller.emit("pass.ev", Bytes::new())).await.unwrap();

    let opened = within(caller.open_stream("fail.st", Default::default())).await;
    if inbound {
        within(opened.unwrap().send(Bytes::new())).await.unwrap();
    } else {
        assert_eq!(opened.unwrap_err().code(), Code::PermissionDenied);
    }
    let pass = within(caller.open_stream("pass.st", Default::default()))
        .await
        .unwrap();
    within(pass.send(Bytes::new())).await.unwrap();

    eventually("the passing event and stream frame arrive", || {
        log.lock().unwrap().len() == 2
    })
    .await;
    // Events arrive in order, so the filtered ones before "pass.ev" were handled already; the
    // filtered stream was refused (inbound) or never opened (outbound).
    if inbound {
        eventually("the filtered stream is refused", || {
            callee.stats().streams_refused == 1
        })
        .await;
    }
    let mut seen = log.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["pass.ev", "pass.st"]);
    let counted = if inbound {
        callee.stats()
    } else {
        caller.stats()
    };
    // drop.rpc, fail.rpc, drop.ev, fail.ev and the opening of fail.st.
    assert_eq!(counted.middleware_dropped, 5, "{counted:?}");
}

#[tokio::test]
async fn inbound_middleware_drops_and_fails_both_ways() {
    let server_log = Arc::new(Mutex::new(Vec::new()));
    let client_log = Arc::new(Mutex::new(Vec::new()));
    let (s, c) = (server_log.clone(), client_log.clone());
    let p = pair(
        Server::builder()
            .middleware(Filter { inbound: true })
            .routes(move |r| sinks(r, s)),
        Client::builder()
            .middleware(Filter { inbound: true })
            .routes(move |r| sinks(r, c)),
    )
    .await;
    filter_cases(&p.to_server, &p.to_client, &server_log, true).await;
    filter_cases(&p.to_client, &p.to_server, &client_log, true).await;
}

#[tokio::test]
async fn outbound_middleware_drops_and_fails_both_ways() {
    let server_log = Arc::new(Mutex::new(Vec::new()));
    let client_log = Arc::new(Mutex::new(Vec::new()));
    let (s, c) = (server_log.clone(), client_log.clone());
    let p = pair(
        Server::builder()
            .middleware(Filter { inbound: false })
            .routes(move |r| sinks(r, s)),
        Client::builder()
            .middleware(Filter { inbound: false })
            .routes(move |r| sinks(r, c)),
    )
    .await;
    filter_cases(&p.to_server, &p.to_client, &server_log, false).await;
    filter_cases(&p.to_client, &p.to_server, &client_log, false).await;
}

/// Appends its tag to a log on every request and response it sees.
struct Tag(&'static str, Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Middleware for Tag {
    async fn on_frame_inbound(&self, _: &Session, frame: Frame) -> Result<Option<Frame>, Status> {
        self.1.lock().unwrap().push(format!("in {}", self.0));
        Ok(Some(frame))
    }

    async fn on_frame_outbound(&self, _: &Session, frame: Frame) -> Result<Option<Frame>, Status> {
        self.1.lock().unwrap().push(format!("out {}", self.0));
        Ok(Some(frame))
    }
}

#[tokio::test]
async fn layers_run_inbound_in_order_and_outbound_in_reverse() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let p = pair(
        Server::builder()
            .middleware(Tag("first", log.clone()))
            .middleware(Tag("second", log.clone()))
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            }),
        Client::builder(),
    )
    .await;
    within(p.to_server.request("echo", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["in first", "in second", "out second", "out first"]
    );
}

/// Panics on every request named "boom".
struct Faulty;

#[async_trait]
impl Middleware for Faulty {
    async fn on_frame_inbound(&self, _: &Session, frame: Frame) -> Result<Option<Frame>, Status> {
        if name(&frame) == "boom" {
            panic!("middleware bug");
        }
        Ok(Some(frame))
    }
}

#[tokio::test]
async fn a_panicking_middleware_fails_its_frame_and_nothing_else() {
    let p = pair(
        Server::builder()
            .middleware(Faulty)
            .routes(|r: &mut Router| {
                r.rpc("boom", |_, _| async move { Ok(Bytes::new()) });
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            }),
        Client::builder(),
    )
    .await;
    let err = within(p.to_server.request("boom", Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err, Status::internal("middleware panicked"));
    let ok = within(p.to_server.request("echo", Bytes::from_static(b"ok"))).await;
    assert_eq!(ok.unwrap(), "ok");
}

/// Stamps a trace id on every outbound frame, and grows stream frames' data by 100 bytes.
struct Grow;

#[async_trait]
impl Middleware for Grow {
    async fn on_frame_outbound(
        &self,
        _: &Session,
        mut frame: Frame,
    ) -> Result<Option<Frame>, Status> {
        frame
            .metadata
            .insert("traceparent".into(), format!("00-{}", "a".repeat(100)));
        if let Some(Payload::Stream(f)) = &mut frame.payload {
            let mut data = f.data.to_vec();
            data.extend_from_slice(&[0; 100]);
            f.data = data.into();
        }
        Ok(Some(frame))
    }
}

/// A receiver of stream "s": the sizes of the frames it got, and how the stream ended.
fn sizes_and_end(router: &mut Router, log: Arc<Mutex<Vec<String>>>) {
    struct Sink(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl echostream_runtime::StreamHandler for Sink {
        fn name(&self) -> &str {
            "s"
        }
        async fn handle(
            &self,
            _: &Session,
            _: &echostream_runtime::StreamInfo,
            frame: echostream_runtime::Played<Bytes>,
        ) {
            self.0.lock().unwrap().push(frame.payload.len().to_string());
        }
        async fn on_end(
            &self,
            _: &Session,
            _: &echostream_runtime::StreamInfo,
            end: echostream_runtime::StreamEnd,
        ) {
            self.0.lock().unwrap().push(format!("{end:?}"));
        }
    }
    router.add_stream(Sink(log));
}

#[tokio::test]
async fn a_stream_frame_grown_past_the_peers_limit_fails_the_stream_not_the_connection() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let p = pair(
        Server::builder()
            .max_frame_size(16 * 1024)
            .routes(move |r| {
                sizes_and_end(r, sink);
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            }),
        Client::builder().middleware(Grow),
    )
    .await;
    let stream = within(p.to_server.open_stream("s", Default::default()))
        .await
        .unwrap();
    within(stream.send(Bytes::from(vec![1; 1000])))
        .await
        .unwrap();
    // The largest frame `send` allows, before middleware.
    let max = p.to_server.peer_max_frame_size() - 48;
    within(stream.send(Bytes::from(vec![2; max])))
        .await
        .unwrap();
    eventually("the sender learns the stream failed", || {
        stream.stats().dropped == 1
    })
    .await;
    let err = within(stream.send(Bytes::from_static(b"more")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("after outbound middleware"), "{err}");
    // What was sent before it arrives; the stream ends there.
    eventually("the receiver sees the stream end", || {
        log.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(*log.lock().unwrap(), ["1100", "Finished"]);
    assert_eq!(stream.stats().sent, 1);
    // The connection is fine.
    let answer = within(p.to_server.request("echo", Bytes::from_static(b"ok"))).await;
    assert_eq!(answer.unwrap(), "ok");
    assert!(!p.to_server.is_closed());
}

#[tokio::test]
async fn a_datagram_frame_grown_past_its_max_frame_bytes_is_refused_to_its_sender() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let p = pair(
        Server::builder().routes(move |r| sizes_and_end(r, sink)),
        Client::builder().middleware(Grow),
    )
    .await;
    let options = echostream_runtime::StreamOptions::new()
        .delivery(echostream_runtime::Delivery::Datagram)
        .max_frame_bytes(1000);
    let stream = within(p.to_server.open_stream("s", options)).await.unwrap();
    within(stream.send(Bytes::from(vec![1; 500])))
        .await
        .unwrap();
    let err = within(stream.send(Bytes::from(vec![2; 1000])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("after outbound middleware"), "{err}");
    within(stream.send(Bytes::from(vec![3; 500])))
        .await
        .unwrap();
    assert_eq!((stream.stats().sent, stream.stats().dropped), (2, 1));
    stream.finish();
    eventually("the stream ends", || log.lock().unwrap().len() == 3).await;
    assert_eq!(*log.lock().unwrap(), ["600", "600", "Finished"]);
}
