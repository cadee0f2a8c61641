//! The endpoint's session registry as a handler reaches it through its own `Session`: fan-out
//! from inside a handler, with no handle to the server stashed anywhere.

use bytes::Bytes;
use echostream_runtime::{Client, Server};
use tokio::sync::mpsc;

use crate::common::{connect, eventually, pair, server_tls, within};

#[tokio::test]
async fn a_handler_broadcasts_to_a_group_through_its_session() {
    let server = within(
        Server::builder()
            .tls(server_tls())
            .routes(|r| {
                r.rpc("join", |session, req| async move {
                    session.join(std::str::from_utf8(&req.data).unwrap_or("lobby"));
                    Ok(Bytes::new())
                });
                r.rpc("say", |session, req| async move {
                    let outcome = session
                        .sessions()
                        .broadcast_to("room", "said", req.data)
                        .await;
                    Ok(Bytes::from(outcome.sent.to_string()))
                });
            })
            .bind("127.0.0.1:0"),
    )
    .await
    .expect("server binds");
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Bytes)>();
    let mut members = Vec::new();
    for n in 0..3 {
        let tx = tx.clone();
        let session = connect(
            &server,
            Client::builder().routes(move |r| {
                r.event("said", move |_, e| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send((n, e.data));
                    }
                });
            }),
        )
        .await;
        members.push(session);
    }
    // Two of three join the room; the third stays in the lobby.
    for (session, group) in members.iter().zip(["room", "room", "lobby"]) {
        within(session.request("join", Bytes::from(group)))
            .await
            .expect("joined");
    }
    let sent = within(members[2].request("say", Bytes::from_static(b"hello")))
        .await
        .expect("said");
    assert_eq!(sent, "2", "the handler reached both members of the room");
    let mut got = vec![
        within(rx.recv()).await.unwrap(),
        within(rx.recv()).await.unwrap(),
    ];
    got.sort();
    assert_eq!(
        got,
        [
            (0, Bytes::from_static(b"hello")),
            (1, Bytes::from_static(b"hello"))
        ]
    );
    assert!(rx.try_recv().is_err(), "the lobby got nothing");
}

#[tokio::test]
async fn a_session_reaches_the_registry_of_its_own_endpoint() {
    let p = pair(Server::builder(), Client::builder()).await;
    // The client's session sees the client's registry, the server's the server's.
    let client_side: Vec<u64> = p
        .to_server
        .sessions()
        .list()
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(client_side, [p.to_server.id()]);
    assert_eq!(p.client.sessions().len(), 1);
    eventually("the server's registry lists the session", || {
        p.to_client
            .sessions()
            .get(p.to_client.id())
            .is_some_and(|s| s.remote_address() == p.to_client.remote_address())
    })
    .await;
    assert_eq!(p.to_client.sessions().len(), p.server.sessions().len());
}
