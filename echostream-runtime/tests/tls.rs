//! TLS configuration: fingerprints, PEM handling, and real QUIC handshakes on loopback with
//! pinned, CA-issued, mutual and insecure trust, plus session resumption with 0-RTT.

use std::net::SocketAddr;
use std::time::Duration;

use echostream_runtime::tls::{
    ClientTls, Fingerprint, Identity, PeerIdentity, ServerTls, TlsError, Trust,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const ALPN: &[&[u8]] = &[b"echostream-tls-test"];
const WAIT: Duration = Duration::from_secs(5);

/// A test certificate authority issuing leaf identities.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (SANs) and `cn`, as PEM certificate and PEM key.
    fn issue_pem(
        &self,
        names: &[&str],
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn issue(&self, names: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose) -> Identity {
        let (cert, key) = self.issue_pem(names, cn, usage);
        Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
    }
}

/// What the server saw of one handshake: the client's proven identity, or the handshake error.
type Accepted = Result<Option<PeerIdentity>, quinn::ConnectionError>;

struct TestServer {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
}

impl TestServer {
    fn start(tls: &ServerTls) -> TestServer {
        let config = quinn::ServerConfig::with_crypto(tls.quic_config(ALPN).unwrap());
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        TestServer { endpoint, addr }
    }

    /// Accepts one connection; once it is established, sends one byte on a uni-stream so the
    /// client can be sure the server accepted it (and so TLS session tickets reach the client),
    /// then waits for the client to close.
    fn accept_one(&self) -> tokio::task::JoinHandle<Accepted> {
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.expect("endpoint open");
            let conn = incoming.await?;
            let identity = PeerIdentity::of(&conn);
            let mut send = conn.open_uni().await?;
            send.write_all(b"!")
                .await
                .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
            send.finish().ok();
            let _ = tokio::time::timeout(WAIT, conn.closed()).await;
            Ok(identity)
        })
    }
}

fn client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Connects and waits for the server's confirmation byte. Returns the server's proven identity.
async fn connect(
    tls: &ClientTls,
    addr: SocketAddr,
    name: &str,
) -> Result<Option<PeerIdentity>, String> {
    let endpoint = client_endpoint();
    let config = quinn::ClientConfig::new(tls.quic_config(ALPN).map_err(|e| e.to_string())?);
    let connecting = endpoint
        .connect_with(config, addr, name)
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(WAIT, connecting)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let confirmed = tokio::time::timeout(WAIT, async {
        let mut recv = conn.accept_uni().await.map_err(|e| e.to_string())?;
        recv.read_to_end(16).await.map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "no confirmation from the server".to_owned())?;
    confirmed?;
    let identity = PeerIdentity::of(&conn);
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(identity)
}

async fn server_result(handle: tokio::task::JoinHandle<Accepted>) -> Accepted {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("server side finished")
        .expect("server task did not panic")
}

#[test]
fn fingerprint_displays_and_parses() {
    let fp = Fingerprint::of_der(b"abc");
    let text = fp.to_string();
    assert_eq!(
        text,
        "ba:78:16:bf:8f:01:cf:ea:41:41:40:de:5d:ae:22:23:b0:03:61:a3:96:17:7a:9c:b4:10:ff:61:f2:00:15:ad"
    );
    assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    assert_eq!(text.replace(':', "").parse::<Fingerprint>().unwrap(), fp);
    assert_eq!(text.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
    for bad in [
        "",
        "ba:78",
        &text[..text.len() - 1],
        &text.replace("ba", "zz"),
        &format!("{text}:00"),
    ] {
        let err = bad.parse::<Fingerprint>().unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}

#[test]
fn identity_pem_round_trip_and_errors() {
    let ca = Ca::new("Round Trip CA");
    let id = ca.issue(
        &["localhost"],
        "server",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let pem = id.cert_chain_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(matches!(
        Identity::from_pem(b"not pem", b"not pem"),
        Err(TlsError::NoCertificate { .. })
    ));
    assert!(matches!(
        Identity::from_pem(pem.as_bytes(), b""),
        Err(TlsError::NoPrivateKey)
    ));
    let err =
        Identity::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
    assert!(matches!(err, TlsError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    assert!(matches!(
        Trust::roots_pem(b"garbage"),
        Err(TlsError::NoCertificate { .. })
    ));
    assert!(matches!(
        Trust::roots_pem_file("/nonexistent/roots.pem"),
        Err(TlsError::Io { .. })
    ));
}

#[test]
fn identity_from_pem_files_matches_fingerprint() {
    let dir = std::env::temp_dir().join(format!("echostream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "file");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let id = Identity::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    assert_eq!(id.fingerprint(), Fingerprint::of_der(cert.der()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_key_is_refused() {
    let a = Identity::self_signed(["localhost"]).unwrap();
    let b = Identity::self_signed(["localhost"]).unwrap();
    let b_key = {
        // The key of `b` with the certificate of `a`: rustls must refuse the pair.
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let _ = params.self_signed(&key).unwrap();
        key.serialize_pem()
    };
    let mixed = Identity::from_pem(a.cert_chain_pem().as_bytes(), b_key.as_bytes()).unwrap();
    let Err(err) = ServerTls::new(mixed).quic_config(ALPN) else {
        panic!("a certificate with another certificate's key must be refused");
    };
    assert!(matches!(err, TlsError::Config(_)), "{err}");
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[tokio::test]
async fn pinned_self_signed_server_is_accepted() {
    let server_tls = ServerTls::self_signed(["localhost", "127.0.0.1"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let seen = connect(
        &ClientTls::pinned(server_tls.fingerprint()),
        server.addr,
        "localhost",
    )
    .await
    .unwrap()
    .expect("the server presented a certificate");
    assert_eq!(seen.fingerprint, server_tls.fingerprint());
    assert!(
        seen.names.contains(&"localhost".to_owned()),
        "{:?}",
        seen.names
    );
    assert!(
        seen.names.contains(&"127.0.0.1".to_owned()),
        "{:?}",
        seen.names
    );
    // The client presented no certificate.
    assert_eq!(server_result(accepted).await.unwrap(), None);
}

#[tokio::test]
async fn pinning_ignores_the_server_name() {
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    connect(
        &ClientTls::pinned(server_tls.fingerprint()),
        server.addr,
        "other.example",
    )
    .await
    .unwrap();
    server_result(accepted).await.unwrap();
}

#[tokio::test]
async fn wrong_fingerprint_is_refused() {
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let other = Identity::self_signed(["localhost"]).unwrap().fingerprint();
    let err = connect(&ClientTls::pinned(other), server.addr, "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn any_of_several_pins_is_accepted() {
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let other = Identity::self_signed(["localhost"]).unwrap().fingerprint();
    let trust = Trust::pinned_any([other, server_tls.fingerprint()]).unwrap();
    connect(&ClientTls::new(trust), server.addr, "localhost")
        .await
        .unwrap();
    server_result(accepted).await.unwrap();
}

#[tokio::test]
async fn an_empty_list_of_pins_is_an_error_not_trust_in_everything() {
    // Pins read from an empty or misparsed file must not switch verification off.
    let err = Trust::pinned_any(Vec::new()).unwrap_err();
    assert!(matches!(err, TlsError::NoPins), "{err:?}");
    assert!(err.to_string().contains("no fingerprint"), "{err}");
}

#[tokio::test]
async fn unpinned_self_signed_server_is_refused_by_roots() {
    // A client verifying against CA roots does not accept a self-signed certificate.
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let ca = Ca::new("Unrelated CA");
    let trust = Trust::roots_pem(ca.root_pem().as_bytes()).unwrap();
    let err = connect(&ClientTls::new(trust), server.addr, "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn ca_issued_chain_is_accepted_and_name_checked() {
    let ca = Ca::new("Test Root CA");
    let server_tls = ServerTls::new(ca.issue(
        &["localhost"],
        "server",
        ExtendedKeyUsagePurpose::ServerAuth,
    ));
    let server = TestServer::start(&server_tls);
    let trust = Trust::roots_pem(ca.root_pem().as_bytes()).unwrap();

    let accepted = server.accept_one();
    connect(&ClientTls::new(trust.clone()), server.addr, "localhost")
        .await
        .unwrap();
    server_result(accepted).await.unwrap();

    // The same chain under a name it was not issued for is refused.
    let accepted = server.accept_one();
    let err = connect(&ClientTls::new(trust), server.addr, "evil.example")
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn chain_from_an_untrusted_ca_is_refused() {
    let issuing = Ca::new("Issuing CA");
    let trusted = Ca::new("Trusted CA");
    let server_tls = ServerTls::new(issuing.issue(
        &["localhost"],
        "server",
        ExtendedKeyUsagePurpose::ServerAuth,
    ));
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let trust = Trust::roots_pem(trusted.root_pem().as_bytes()).unwrap();
    let err = connect(&ClientTls::new(trust), server.addr, "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn mutual_tls_with_a_ca_issued_client_certificate() {
    let ca = Ca::new("Client CA");
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(Trust::roots_pem(ca.root_pem().as_bytes()).unwrap());
    let server = TestServer::start(&server_tls);
    let client_id = ca.issue(
        &["device-17.example"],
        "device-17",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let client_fp = client_id.fingerprint();

    let accepted = server.accept_one();
    let client = ClientTls::pinned(server_tls.fingerprint()).identity(client_id);
    connect(&client, server.addr, "localhost").await.unwrap();
    let seen = server_result(accepted)
        .await
        .unwrap()
        .expect("the client proved an identity");
    assert_eq!(seen.fingerprint, client_fp);
    assert_eq!(seen.names, ["device-17.example", "device-17"]);
    assert_eq!(seen.chain.len(), 1);
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_certificate() {
    let ca = Ca::new("Client CA");
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(Trust::roots_pem(ca.root_pem().as_bytes()).unwrap());
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let err = connect(
        &ClientTls::pinned(server_tls.fingerprint()),
        server.addr,
        "localhost",
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    let server_err = server_result(accepted).await.unwrap_err();
    assert!(
        server_err.to_string().contains("certificate"),
        "{server_err}"
    );
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    let ca = Ca::new("Client CA");
    let rogue = Ca::new("Rogue CA");
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(Trust::roots_pem(ca.root_pem().as_bytes()).unwrap());
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let client = ClientTls::pinned(server_tls.fingerprint()).identity(rogue.issue(
        &["device"],
        "device",
        ExtendedKeyUsagePurpose::ClientAuth,
    ));
    assert!(connect(&client, server.addr, "localhost").await.is_err());
    let server_err = server_result(accepted).await.unwrap_err();
    assert!(
        server_err.to_string().contains("certificate"),
        "{server_err}"
    );
}

#[tokio::test]
async fn mutual_tls_with_pinned_self_signed_clients() {
    let client_id = Identity::self_signed(["sensor-1"]).unwrap();
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .require_client_cert(Trust::pinned(client_id.fingerprint()));
    let server = TestServer::start(&server_tls);

    let accepted = server.accept_one();
    let client = ClientTls::pinned(server_tls.fingerprint()).identity(client_id.clone());
    connect(&client, server.addr, "localhost").await.unwrap();
    let seen = server_result(accepted).await.unwrap().unwrap();
    assert_eq!(seen.fingerprint, client_id.fingerprint());

    let accepted = server.accept_one();
    let stranger = ClientTls::pinned(server_tls.fingerprint())
        .identity(Identity::self_signed(["sensor-2"]).unwrap());
    assert!(connect(&stranger, server.addr, "localhost").await.is_err());
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn optional_client_certificate() {
    let ca = Ca::new("Optional CA");
    let server_tls = ServerTls::self_signed(["localhost"])
        .unwrap()
        .optional_client_cert(Trust::roots_pem(ca.root_pem().as_bytes()).unwrap());
    let server = TestServer::start(&server_tls);

    // Anonymous clients are let in, without identity.
    let accepted = server.accept_one();
    connect(
        &ClientTls::pinned(server_tls.fingerprint()),
        server.addr,
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(server_result(accepted).await.unwrap(), None);

    // A presented certificate must still verify.
    let accepted = server.accept_one();
    let client = ClientTls::pinned(server_tls.fingerprint()).identity(ca.issue(
        &["user"],
        "user",
        ExtendedKeyUsagePurpose::ClientAuth,
    ));
    connect(&client, server.addr, "localhost").await.unwrap();
    assert!(server_result(accepted).await.unwrap().is_some());

    let accepted = server.accept_one();
    let bad = ClientTls::pinned(server_tls.fingerprint())
        .identity(Identity::self_signed(["user"]).unwrap());
    assert!(connect(&bad, server.addr, "localhost").await.is_err());
    assert!(server_result(accepted).await.is_err());
}

#[tokio::test]
async fn insecure_mode_accepts_any_certificate() {
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let accepted = server.accept_one();
    let client = ClientTls::new(Trust::insecure_skip_verification_for_local_development());
    let seen = connect(&client, server.addr, "anything")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.fingerprint, server_tls.fingerprint());
    server_result(accepted).await.unwrap();
}

#[tokio::test]
async fn a_clone_of_client_tls_resumes_with_0rtt() {
    let server_tls = ServerTls::self_signed(["localhost"]).unwrap();
    let server = TestServer::start(&server_tls);
    let client_tls = ClientTls::pinned(server_tls.fingerprint());

    // First connection: full handshake; the server's confirmation byte arrives after its
    // session tickets, so the client has a ticket when `connect` returns.
    let accepted = server.accept_one();
    connect(&client_tls, server.addr, "localhost")
        .await
        .unwrap();
    server_result(accepted).await.unwrap();

    // Second connection from a new endpoint and a config built from a clone: 0-RTT.
    let accepted = server.accept_one();
    let endpoint = client_endpoint();
    let config = quinn::ClientConfig::new(client_tls.clone().quic_config(ALPN).unwrap());
    let connecting = endpoint
        .connect_with(config, server.addr, "localhost")
        .unwrap();
    let (conn, zero_rtt_accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("the client should be able to send 0-RTT data"));
    assert!(
        tokio::time::timeout(WAIT, zero_rtt_accepted).await.unwrap(),
        "the server should accept the early data"
    );
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    let _ = server_result(accepted).await;
}

/// `Trust::system_roots` reads the store named by `SSL_CERT_FILE`; the variable is set on a child
/// process (this test binary, re-run for `system_roots_child`) so no test mutates its own
/// environment.
#[test]
fn system_roots_honour_ssl_cert_file() {
    let dir = std::env::temp_dir().join(format!("echostream-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("System CA");
    let (cert, key) = ca.issue_pem(
        &["localhost"],
        "server",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(dir.join("roots.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("empty.pem"), "").unwrap();

    let run = |roots: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "system_roots_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SSL_CERT_FILE", dir.join(roots))
            .env_remove("SSL_CERT_DIR")
            .env("ECHOSTREAM_TLS_CHILD_DIR", &dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let trusted = run("roots.pem");
    assert!(trusted.contains("child: connected"), "{trusted}");
    let empty = run("empty.pem");
    assert!(
        empty.contains("child: cannot load the system's root certificates"),
        "{empty}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs only as the child of `system_roots_honour_ssl_cert_file` (it returns at once otherwise):
/// serves the chain the parent wrote and connects to it trusting the system roots.
#[test]
fn system_roots_child() {
    let Some(dir) = std::env::var_os("ECHOSTREAM_TLS_CHILD_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let trust = match Trust::system_roots() {
        Ok(trust) => trust,
        Err(err) => {
            println!("child: {err}");
            return;
        }
    };
    let identity = Identity::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = TestServer::start(&ServerTls::new(identity));
        let accepted = server.accept_one();
        connect(&ClientTls::new(trust), server.addr, "localhost")
            .await
            .unwrap();
        server_result(accepted).await.unwrap();
    });
    println!("child: connected");
}
