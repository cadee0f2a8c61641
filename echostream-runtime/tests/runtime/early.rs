//! 0-RTT: a client reconnecting to a server it has talked to sends its idempotent calls in its
//! first flight; everything else waits for the handshake; early data the server rejects is sent
//! again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::netsim::{LinkConfig, NetSimConfig};
use echostream_runtime::tls::{ClientTls, Identity, ServerTls};
use echostream_runtime::{
    CallContext, CallOptions, Client, ClientBuilder, EarlyData, Server, ServerBuilder, Session,
};

use crate::common::{eventually, within};

/// How each call was received: (method, arrived as early data, handshake confirmed then).
type Seen = Arc<Mutex<Vec<(String, bool, bool)>>>;

fn recording_server(seen: &Seen) -> ServerBuilder {
    let (idem, plain) = (seen.clone(), seen.clone());
    let events = seen.clone();
    Server::builder().routes(move |r| {
        for (name, seen) in [("idem", idem), ("plain", plain)] {
            r.rpc(name, move |session: Session, req| {
                let early = CallContext::current().unwrap().early_data();
                let confirmed = session.handshake_confirmed();
                seen.lock().unwrap().push((name.into(), early, confirmed));
                async move { Ok(req.data) }
            });
        }
        r.event("note", move |session: Session, _| {
            let confirmed = session.handshake_confirmed();
            events
                .lock()
                .unwrap()
                .push(("note".into(), false, confirmed));
            async {}
        });
    })
}

/// A client on a simulated path of 25 ms each way, so that a round trip is visible.
fn slow_client(tls: ClientTls) -> ClientBuilder {
    let link = LinkConfig {
        delay: Duration::from_millis(25),
        ..LinkConfig::default()
    };
    Client::builder()
        .tls(tls)
        .netsim(NetSimConfig::symmetric(link, 1))
}

fn idempotent() -> CallOptions {
    CallOptions::new().idempotent(true)
}

/// Connects once and makes a call, so that the client has a session ticket and the server's
/// hello; then closes.
async fn first_visit(client: &Client, addr: std::net::SocketAddr) {
    let session = within(client.connect(addr, "localhost")).await.unwrap();
    assert_eq!(session.early_data(), EarlyData::NotAttempted);
    assert!(session.handshake_confirmed());
    within(session.request("plain", Bytes::from_static(b"1")))
        .await
        .unwrap();
    session.close(0, "bye");
    within(session.closed()).await;
}

#[tokio::test]
async fn a_reconnection_sends_idempotent_calls_in_0rtt_and_holds_the_others_for_the_handshake() {
    let seen = Seen::default();
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = within(recording_server(&seen).tls(server_tls).bind("127.0.0.1:0"))
        .await
        .unwrap();
    let client = within(slow_client(ClientTls::pinned(server.fingerprint())).build())
        .await
        .unwrap();
    first_visit(&client, server.local_addr()).await;
    seen.lock().unwrap().clear();

    // The reconnection returns at once, before any round trip.
    let start = Instant::now();
    let session = within(client.connect(server.local_addr(), "localhost"))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(session.early_data(), EarlyData::Pending);
    assert!(!session.handshake_confirmed());
    let timed = |name: &'static str, options: CallOptions| {
        let session = session.clone();
        async move {
            let answer = session
                .request_with(name, Bytes::from_static(b"x"), &options)
                .await;
            (answer, start.elapsed())
        }
    };
    within(session.emit("note", Bytes::new())).await.unwrap();
    let ((idem, idem_took), (plain, plain_took)) = within(async {
        tokio::join!(
            timed("idem", idempotent()),
            timed("plain", CallOptions::new())
        )
    })
    .await;
    assert_eq!(idem.unwrap(), "x");
    assert_eq!(plain.unwrap(), "x");
    // One round trip (50 ms) for the early call; the other waited for the handshake first.
    assert!(
        idem_took + Duration::from_millis(40) <= plain_took,
        "{idem_took:?} vs {plain_took:?}"
    );
    assert_eq!(session.early_data(), EarlyData::Accepted);
    assert!(session.handshake_confirmed());
    eventually("the event arrives", || seen.lock().unwrap().len() == 3).await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("idem".to_owned(), true, false),
            ("note".to_owned(), false, true),
            ("plain".to_owned(), false, true),
        ],
        "only the idempotent call was served as early data"
    );
    let server_side = server.sessions().list().pop().unwrap();
    assert_eq!(server_side.early_data(), EarlyData::Accepted);
    assert!(server_side.handshake_confirmed());
}

#[tokio::test]
async fn early_data_a_restarted_server_rejects_is_sent_again() {
    let seen = Seen::default();
    let identity = Identity::self_signed(["localhost"]).unwrap();
    let first = within(
        recording_server(&seen)
            .tls(ServerTls::new(identity.clone()))
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap();
    let addr = first.local_addr();
    let client = within(slow_client(ClientTls::pinned(identity.fingerprint())).build())
        .await
        .unwrap();
    first_visit(&client, addr).await;
    within(first.shutdown(Duration::ZERO)).await;
    drop(first);

    // The same identity on the same port, but the session tickets are gone: the server takes
    // the connection with a full handshake and ignores the early data.
    let mut second = None;
    for _ in 0..50 {
        let tls = ServerTls::new(identity.clone());
        match recording_server(&seen).tls(tls).bind(addr).await {
            Ok(server) => {
                second = Some(server);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let second = second.expect("the port is free again");
    seen.lock().unwrap().clear();
    let session = within(client.connect(addr, "localhost")).await.unwrap();
    assert_eq!(session.early_data(), EarlyData::Pending);
    let answer = within(session.request_with("idem", Bytes::from_static(b"y"), &idempotent()))
        .await
        .unwrap();
    assert_eq!(answer, "y");
    assert_eq!(session.early_data(), EarlyData::Rejected);
    // The hello went again: the session works as any other.
    within(session.request("plain", Bytes::from_static(b"z")))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("idem".to_owned(), false, true),
            ("plain".to_owned(), false, true)
        ]
    );
    let server_side = second.sessions().list().pop().unwrap();
    assert_eq!(server_side.early_data(), EarlyData::NotAttempted);
    eventually("the client's pings are answered", || {
        session.rtt().is_some()
    })
    .await;
}

#[tokio::test]
async fn a_server_that_authenticates_clients_serves_nothing_before_the_handshake() {
    let seen = Seen::default();
    let device = Identity::self_signed(["device"]).unwrap();
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(echostream_runtime::tls::Trust::pinned(device.fingerprint()));
    let server = within(recording_server(&seen).tls(server_tls).bind("127.0.0.1:0"))
        .await
        .unwrap();
    let tls = ClientTls::pinned(server.fingerprint()).identity(device);
    let client = within(slow_client(tls).build()).await.unwrap();
    first_visit(&client, server.local_addr()).await;
    seen.lock().unwrap().clear();
    let session = within(client.connect(server.local_addr(), "localhost"))
        .await
        .unwrap();
    within(session.request_with("idem", Bytes::from_static(b"y"), &idempotent()))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [("idem".to_owned(), false, true)]);
    let server_side = server.sessions().list().pop().unwrap();
    assert!(server_side.peer_identity().is_some());
}
