//! Helpers shared by the runtime tests: bounded waits and connected server/client pairs.

use std::future::Future;
use std::time::Duration;

use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, ClientBuilder, Server, ServerBuilder, Session};

/// The longest any single step of a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("step timed out")
}

/// Polls `condition` every few milliseconds until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A self-signed server TLS configuration for "localhost".
pub fn server_tls() -> ServerTls {
    ServerTls::self_signed(["localhost"]).expect("self-signed certificate")
}

/// A connected server and client, with each side's session.
pub struct Pair {
    pub server: Server,
    pub client: Client,
    /// The client's session (the client's view of the connection).
    pub to_server: Session,
    /// The server's session (the server's view of the connection).
    pub to_client: Session,
}

/// Binds `server` on loopback with a fresh self-signed identity and connects `client` to it,
/// pinning the server's certificate.
pub async fn pair(server: ServerBuilder, client: ClientBuilder) -> Pair {
    let server = within(server.tls(server_tls()).bind("127.0.0.1:0"))
        .await
        .expect("server binds");
    let client = within(client.tls(ClientTls::pinned(server.fingerprint())).build())
        .await
        .expect("client builds");
    let to_server = within(client.connect(server.local_addr(), "localhost"))
        .await
        .expect("client connects");
    let to_client = server_session(&server).await;
    Pair {
        server,
        client,
        to_server,
        to_client,
    }
}

/// The server's newest session, once its handshake is done.
pub async fn server_session(server: &Server) -> Session {
    eventually("the server registers the session", || {
        !server.sessions().is_empty()
    })
    .await;
    server.sessions().list().pop().expect("a session")
}

/// Connects one more client to `server`.
pub async fn connect(server: &Server, client: ClientBuilder) -> Session {
    within(
        client
            .tls(ClientTls::pinned(server.fingerprint()))
            .connect(server.local_addr(), "localhost"),
    )
    .await
    .expect("client connects")
}
