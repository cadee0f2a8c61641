//! `Client::shutdown`: a client leaves gracefully, as a server does: what it emitted is
//! delivered, the calls it serves finish within the grace period, then it closes with
//! `SHUTDOWN`, refuses new connections, and runs its stop hooks once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use echostream_runtime::proto::v1::ErrorCode;
use echostream_runtime::{Client, Code, Context, Error, Router, Server};
use tokio::sync::mpsc;

use crate::common::{pair, within};

/// A client rpc "slow" that says it started, then answers "finished" after `delay`.
fn slow(delay: Duration, started: mpsc::UnboundedSender<()>) -> impl FnOnce(&mut Router) {
    move |r| {
        r.rpc("slow", move |_, _| {
            let started = started.clone();
            async move {
                let _ = started.send(());
                tokio::time::sleep(delay).await;
                Ok(Bytes::from_static(b"finished"))
            }
        });
    }
}

#[tokio::test]
async fn shutdown_delivers_queued_events_and_finishes_the_calls_it_serves() {
    let (events_tx, mut events) = mpsc::unbounded_channel::<usize>();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder().routes(move |r| {
            r.event("bye", move |_, e| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(e.data.len());
                }
            });
        }),
        Client::builder().routes(slow(Duration::from_millis(200), started_tx)),
    )
    .await;
    // The server calls the client; the client then queues more than one round trip can carry.
    let call = tokio::spawn({
        let s = p.to_client.clone();
        async move { s.request("slow", Bytes::new()).await }
    });
    within(started.recv()).await.unwrap();
    within(p.to_server.emit("bye", Bytes::from(vec![0u8; 512 * 1024])))
        .await
        .unwrap();
    within(p.to_server.emit("bye", Bytes::from_static(b"last")))
        .await
        .unwrap();
    within(p.client.shutdown(Duration::from_secs(5))).await;
    assert_eq!(within(events.recv()).await, Some(512 * 1024));
    assert_eq!(within(events.recv()).await, Some(4));
    assert_eq!(p.to_server.stats().events_dropped, 0);
    assert_eq!(within(call).await.unwrap().unwrap(), "finished");
    let reason = within(p.to_client.closed()).await;
    assert_eq!(reason.code(), Some(ErrorCode::Shutdown as u64), "{reason}");
    assert!(p.client.sessions().is_empty());
}

#[tokio::test]
async fn a_short_grace_cuts_the_calls_it_serves_off() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let p = pair(
        Server::builder(),
        Client::builder().routes(slow(Duration::from_secs(60), started_tx)),
    )
    .await;
    let call = tokio::spawn({
        let s = p.to_client.clone();
        async move { s.request("slow", Bytes::new()).await }
    });
    within(started.recv()).await.unwrap();
    within(p.client.shutdown(Duration::from_millis(50))).await;
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn after_shutdown_a_client_refuses_to_connect_and_its_stop_hooks_ran_once() {
    let stops = Arc::new(AtomicUsize::new(0));
    let context = Context::new();
    let counter = stops.clone();
    context.on_stop(move |_| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, SeqCst);
            Ok(())
        }
    });
    let p = pair(Server::builder(), Client::builder().context(context)).await;
    within(p.client.shutdown(Duration::from_secs(1))).await;
    within(p.client.shutdown(Duration::from_secs(1))).await;
    within(p.client.close()).await;
    assert_eq!(stops.load(SeqCst), 1);
    let err = within(p.client.connect(p.server.local_addr(), "localhost"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                source: quinn::ConnectError::EndpointStopping,
                ..
            }
        ),
        "{err}"
    );
}
