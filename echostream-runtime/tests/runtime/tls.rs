//! TLS trust as sessions see it: pinned, unpinned and wrong fingerprints, CA chains trusted and
//! untrusted, mutual TLS accepted and refused, and the proven identity on the `Session`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use echostream_runtime::tls::{ClientTls, Identity, ServerTls, Trust};
use echostream_runtime::{Client, Error, Plugin, Server, Session};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::common::{eventually, server_session, within};

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn trust(&self) -> Trust {
        Trust::roots_pem(self.issuer.pem().as_bytes()).unwrap()
    }

    fn issue(&self, names: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }
}

/// Counts refused connections.
#[derive(Clone, Default)]
struct Refusals(Arc<Mutex<Vec<String>>>);

impl Plugin for Refusals {
    fn on_connection_refused(&self, _: SocketAddr, error: &Error) {
        self.0.lock().unwrap().push(error.to_string());
    }
}

async fn serve(tls: ServerTls, refusals: &Refusals) -> Server {
    within(
        Server::builder()
            .tls(tls)
            .plugin(refusals.clone())
            .bind("127.0.0.1:0"),
    )
    .await
    .unwrap()
}

async fn dial(server: &Server, tls: ClientTls, name: &str) -> Result<Session, Error> {
    within(
        Client::builder()
            .tls(tls)
            .connect(server.local_addr(), name),
    )
    .await
}

#[tokio::test]
async fn a_pinned_self_signed_server_is_trusted_and_identified() {
    let refusals = Refusals::default();
    let server = serve(ServerTls::self_signed(["localhost"]).unwrap(), &refusals).await;
    let session = dial(
        &server,
        ClientTls::pinned(server.fingerprint()),
        "localhost",
    )
    .await
    .unwrap();
    let identity = session
        .peer_identity()
        .expect("the server proved an identity");
    assert_eq!(identity.fingerprint, server.fingerprint());
    assert!(
        identity.names.iter().any(|n| n == "localhost"),
        "{:?}",
        identity.names
    );
    assert!(
        server_session(&server).await.peer_identity().is_none(),
        "no client certificate"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_pin_is_refused() {
    let refusals = Refusals::default();
    let server = serve(ServerTls::self_signed(["localhost"]).unwrap(), &refusals).await;
    let other = Identity::self_signed(["localhost"]).unwrap().fingerprint();
    let err = dial(&server, ClientTls::pinned(other), "localhost")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    // Unpinned: verified against a CA that never signed it.
    let err = dial(
        &server,
        ClientTls::new(Ca::new("some CA").trust()),
        "localhost",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    eventually("the server saw both refusals", || {
        refusals.0.lock().unwrap().len() == 2
    })
    .await;
    assert!(server.sessions().is_empty());
}

#[tokio::test]
async fn a_ca_issued_chain_is_accepted_and_an_untrusted_one_refused() {
    let ca = Ca::new("EchoStream test CA");
    let identity = ca.issue(
        &["echo.test"],
        "echo.test",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let refusals = Refusals::default();
    let server = serve(ServerTls::new(identity), &refusals).await;
    let session = dial(&server, ClientTls::new(ca.trust()), "echo.test")
        .await
        .unwrap();
    assert_eq!(session.peer_identity().unwrap().chain.len(), 1);
    let err = dial(&server, ClientTls::new(ca.trust()), "other.test")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "wrong name: {err}");
    let err = dial(
        &server,
        ClientTls::new(Ca::new("another CA").trust()),
        "echo.test",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Handshake { .. }),
        "untrusted CA: {err}"
    );
}

#[tokio::test]
async fn mutual_tls_shows_the_client_identity_and_refuses_strangers() {
    let ca = Ca::new("device CA");
    let refusals = Refusals::default();
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(ca.trust());
    let server = serve(server_tls, &refusals).await;
    let pin = ClientTls::pinned(server.fingerprint());

    let device = ca.issue(
        &["device-7.local"],
        "device-7",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let fingerprint = device.fingerprint();
    // Kept: a client session the application drops is closed.
    let _device = dial(&server, pin.clone().identity(device), "localhost")
        .await
        .unwrap();
    let session = server_session(&server).await;
    let identity = session
        .peer_identity()
        .expect("the client proved an identity");
    assert_eq!(identity.fingerprint, fingerprint);
    assert_eq!(identity.names, ["device-7.local", "device-7"]);

    let err = dial(&server, pin.clone(), "localhost").await.unwrap_err();
    assert!(
        matches!(err, Error::Handshake { .. }),
        "no certificate: {err}"
    );
    let stranger = Ca::new("stranger CA").issue(&["x"], "x", ExtendedKeyUsagePurpose::ClientAuth);
    let err = dial(&server, pin.identity(stranger), "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake { .. }),
        "untrusted certificate: {err}"
    );
    eventually("the server saw both refusals", || {
        refusals.0.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(server.sessions().len(), 1);
}
