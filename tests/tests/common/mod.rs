//! Helpers shared by the end-to-end tests: bounded waits and a connected pair of peers.

#![allow(dead_code)] // Each test binary uses a part of these helpers.

use std::future::Future;
use std::time::Duration;

use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, ClientBuilder, Server, ServerBuilder, Session};
use tokio::sync::mpsc;

/// The longest any single step of a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("step timed out")
}

/// The next message of `rx`, failing the test after [`WAIT`].
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    within(rx.recv()).await.expect("channel open")
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server and a client connected on loopback, with each side's session.
pub struct Pair {
    pub server: Server,
    pub client: Client,
    /// The client's session (calls the server).
    pub to_server: Session,
    /// The server's session (calls the client).
    pub to_client: Session,
}

/// Binds `server` on 127.0.0.1 with a fresh self-signed certificate and connects `client` to
/// it, pinning that certificate.
pub async fn pair(server: ServerBuilder, client: ClientBuilder) -> Pair {
    let tls = ServerTls::self_signed(["localhost"]).expect("self-signed certificate");
    let server = within(server.tls(tls).bind("127.0.0.1:0"))
        .await
        .expect("server binds");
    let client = within(client.tls(ClientTls::pinned(server.fingerprint())).build())
        .await
        .expect("client builds");
    let to_server = within(client.connect(server.local_addr(), "localhost"))
        .await
        .expect("client connects");
    eventually("the server registers the session", || {
        !server.sessions().is_empty()
    })
    .await;
    let to_client = server.sessions().list().pop().expect("a session");
    Pair {
        server,
        client,
        to_server,
        to_client,
    }
}
