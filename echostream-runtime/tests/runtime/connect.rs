//! Connection set-up at scale: many sessions opening at once, from one client endpoint (which
//! resumes with 0-RTT where it has tickets) and from many client endpoints (a server's real
//! load), all open promptly and all usable.
//!
//! Each handshake packet lost to a full socket buffer costs its connection a probe timeout (a
//! second); these bounds are generous (debug builds, a shared machine) yet well below what a
//! burst of lost handshakes used to cost (several seconds at 200 sessions).

use std::time::Duration;

use bytes::Bytes;
use echostream_runtime::tls::ClientTls;
use echostream_runtime::{Client, Server, Session};
use tokio::task::JoinSet;

use crate::common::{eventually, server_tls, within};

/// The bound on opening every session of a test.
const OPEN_ALL: Duration = Duration::from_secs(20);

async fn echo_server() -> Server {
    within(
        Server::builder()
            .tls(server_tls())
            .routes(|r| {
                r.rpc("echo", |_, req| async move { Ok(req.data) });
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .expect("server binds")
}

/// Every session answers an echo of its own index.
async fn all_answer(sessions: &[Session]) {
    let mut calls = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let session = session.clone();
        calls.spawn(async move {
            let data = Bytes::from(i.to_string());
            (session.request("echo", data.clone()).await, data)
        });
    }
    within(async {
        while let Some(call) = calls.join_next().await {
            let (answer, sent) = call.expect("call task");
            assert_eq!(answer.expect("echo answered"), sent);
        }
    })
    .await;
}

#[tokio::test]
async fn one_client_opens_150_sessions_at_once() {
    const SESSIONS: usize = 150;
    let server = echo_server().await;
    let client = within(
        Client::builder()
            .tls(ClientTls::pinned(server.fingerprint()))
            .bind_addr("127.0.0.1:0".parse().unwrap())
            .build(),
    )
    .await
    .expect("client builds");
    let addr = server.local_addr();
    // A first session, so the others may resume with 0-RTT as a reconnecting client would.
    let first = within(client.connect(addr, "localhost"))
        .await
        .expect("connects");
    let mut opening = JoinSet::new();
    for _ in 0..SESSIONS {
        let client = client.clone();
        opening.spawn(async move { client.connect(addr, "localhost").await });
    }
    let sessions = tokio::time::timeout(OPEN_ALL, async {
        let mut sessions = Vec::with_capacity(SESSIONS);
        while let Some(session) = opening.join_next().await {
            sessions.push(session.expect("connect task").expect("connects"));
        }
        sessions
    })
    .await
    .expect("all sessions open within the bound");
    assert_eq!(sessions.len(), SESSIONS);
    eventually("the server registers every session", || {
        server.sessions().len() == SESSIONS + 1
    })
    .await;
    all_answer(&sessions).await;
    assert!(sessions.iter().chain([&first]).all(|s| !s.is_closed()));
}

#[tokio::test]
async fn many_clients_connect_to_one_server_at_once() {
    const CLIENTS: usize = 100;
    let server = echo_server().await;
    let addr = server.local_addr();
    let fingerprint = server.fingerprint();
    let mut opening = JoinSet::new();
    for _ in 0..CLIENTS {
        opening.spawn(async move {
            let client = Client::builder()
                .tls(ClientTls::pinned(fingerprint))
                .bind_addr("127.0.0.1:0".parse().unwrap())
                .build()
                .await?;
            let session = client.connect(addr, "localhost").await?;
            Ok::<_, echostream_runtime::Error>((client, session))
        });
    }
    let opened = tokio::time::timeout(OPEN_ALL, async {
        let mut opened = Vec::with_capacity(CLIENTS);
        while let Some(result) = opening.join_next().await {
            opened.push(result.expect("connect task").expect("connects"));
        }
        opened
    })
    .await
    .expect("every client connects within the bound");
    eventually("the server registers every client", || {
        server.sessions().len() == CLIENTS
    })
    .await;
    let remotes: std::collections::HashSet<_> = server
        .sessions()
        .list()
        .iter()
        .map(|s| s.remote_address())
        .collect();
    assert_eq!(remotes.len(), CLIENTS, "one session per client endpoint");
    let sessions: Vec<Session> = opened.iter().map(|(_, s)| s.clone()).collect();
    all_answer(&sessions).await;
}
