//! TLS 1.3 for EchoStream connections: certificates, how a peer is trusted, and who the peer is.
//!
//! Every connection is encrypted and authenticated. A server presents an [`Identity`] (a
//! certificate chain and its key); a client decides how to verify it with a [`Trust`]:
//!
//! - [`Trust::pinned`]: exactly one known certificate, identified by its SHA-256 [`Fingerprint`].
//!   This is how a self-signed certificate (from [`Identity::self_signed`]) is trusted.
//! - [`Trust::roots_pem`] / [`Trust::system_roots`]: a CA-issued chain, verified (including the
//!   server name) against given roots or the operating system's store.
//! - [`Trust::insecure_skip_verification_for_local_development`]: no verification of the
//!   certificate at all. It exists for throwaway local setups and says so in its name.
//!
//! Mutual TLS is the same in the other direction: a [`ClientTls`] carries an [`Identity`] and a
//! [`ServerTls`] requires (or accepts) client certificates verified by a [`Trust`]. The identity
//! a peer proved is available as a [`PeerIdentity`], for authorization in middleware.
//!
//! Only TLS 1.3 is offered, with the `ring` provider. Configurations are 0-RTT capable: clients
//! built from the same [`ClientTls`] (or its clones) share one configuration and its session
//! tickets, so a reconnection to a server they have talked to can resume with early data.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// How many TLS sessions a client remembers (one per server name) for resumption and 0-RTT.
const CLIENT_SESSION_CACHE: usize = 256;
/// How many TLS sessions a server keeps for resuming clients.
const SERVER_SESSION_CACHE: usize = 1024;

/// Errors building TLS configuration: unreadable or malformed certificates and keys, keys that
/// do not match their certificate, an empty trust store.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PEM data could not be parsed.
    #[error("malformed PEM in {what}: {source}")]
    Pem {
        /// What was being parsed (e.g. "certificate chain").
        what: &'static str,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// PEM data held no certificate where at least one was needed.
    #[error("no certificate found in {what}")]
    NoCertificate {
        /// What was being parsed.
        what: &'static str,
    },
    /// PEM data held no private key.
    #[error("no private key found in the key PEM")]
    NoPrivateKey,
    /// A root certificate could not be added to a trust store.
    #[error("invalid root certificate: {0}")]
    InvalidRoot(rustls::Error),
    /// The operating system's trust store could not be loaded or was empty.
    #[error("cannot load the system's root certificates: {0}")]
    SystemRoots(String),
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A certificate verifier could not be built from the given roots.
    #[error("invalid certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The crypto provider lacks the cipher suite QUIC requires for its initial packets.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// [`Trust::pinned_any`] was given no fingerprint: it would trust no certificate at all
    /// (an empty or misread list of pins, most likely).
    #[error("no fingerprint to pin: an empty list of pins trusts no certificate")]
    NoPins,
}

/// The SHA-256 digest of a certificate's DER encoding: what a client pins to trust a self-signed
/// server (and a server pins to trust a self-signed client).
///
/// Displayed as 32 lowercase hex pairs joined by `:`; parsed from that form or from 64 plain hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// The 32 raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Fingerprint {
    fn from(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a string is not a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid SHA-256 fingerprint {input:?}: expected 64 hex digits, optionally in pairs separated by ':'"
)]
pub struct ParseFingerprintError {
    input: String,
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFingerprintError {
            input: s.to_owned(),
        };
        let trimmed = s.trim();
        let hex: Vec<u8> = if trimmed.contains(':') {
            let pairs: Vec<&str> = trimmed.split(':').collect();
            if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
                return Err(err());
            }
            pairs.concat().into_bytes()
        } else {
            trimmed.as_bytes().to_vec()
        };
        if hex.len() != 64 {
            return Err(err());
        }
        let mut bytes = [0; 32];
        for (out, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digits = std::str::from_utf8(pair).map_err(|_| err())?;
            *out = u8::from_str_radix(digits, 16).map_err(|_| err())?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// A certificate chain (leaf first) and the leaf's private key: what a peer presents in the TLS
/// handshake.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh self-signed certificate (ECDSA P-256) valid for the given DNS names or IP
    /// addresses, and its key. Peers trust it by pinning [`Identity::fingerprint`].
    pub fn self_signed<I, S>(names: I) -> Result<Identity, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Identity {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        })
    }

    /// An identity from PEM text: the certificate chain (leaf first, then intermediates) and the
    /// private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Identity, TlsError> {
        let chain = parse_certs(cert_chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
            source => TlsError::Pem {
                what: "private key",
                source,
            },
        })?;
        Ok(Identity { chain, key })
    }

    /// An identity from a PEM certificate-chain file and a PEM private-key file.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Identity, TlsError> {
        Identity::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// The fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.chain[0])
    }

    /// The certificate chain as PEM text (leaf first), e.g. to hand to the other peer as a root.
    pub fn cert_chain_pem(&self) -> String {
        self.chain.iter().map(|der| to_pem(der)).collect()
    }
}

/// How the certificate a peer presents is verified.
#[derive(Clone)]
pub struct Trust(TrustKind);

#[derive(Clone)]
enum TrustKind {
    Pinned(Vec<Fingerprint>),
    Roots(Arc<RootCertStore>),
    Insecure,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            TrustKind::Pinned(fps) => f.debug_tuple("Trust::Pinned").field(fps).finish(),
            TrustKind::Roots(roots) => write!(f, "Trust::Roots({} roots)", roots.len()),
            TrustKind::Insecure => f.write_str("Trust::InsecureSkipVerification"),
        }
    }
}

impl Trust {
    /// Trust exactly the certificate with this fingerprint, whatever names it carries: the way to
    /// trust a self-signed peer.
    pub fn pinned(fingerprint: Fingerprint) -> Trust {
        Trust(TrustKind::Pinned(vec![fingerprint]))
    }

    /// Trust any of these certificates (e.g. during a certificate rotation).
    ///
    /// Errors: [`TlsError::NoPins`] for an empty list, which would trust nothing: pins read from
    /// an empty or misparsed configuration must not pass for a working trust setting (and never
    /// mean "trust anything"; that is
    /// [`Trust::insecure_skip_verification_for_local_development`]).
    pub fn pinned_any(
        fingerprints: impl IntoIterator<Item = Fingerprint>,
    ) -> Result<Trust, TlsError> {
        let fingerprints: Vec<Fingerprint> = fingerprints.into_iter().collect();
        if fingerprints.is_empty() {
            return Err(TlsError::NoPins);
        }
        Ok(Trust(TrustKind::Pinned(fingerprints)))
    }

    /// Trust chains issued by these PEM root certificates; a server's name is verified too.
    pub fn roots_pem(pem: &[u8]) -> Result<Trust, TlsError> {
        let mut store = RootCertStore::empty();
        for cert in parse_certs(pem, "root certificates")? {
            store.add(cert).map_err(TlsError::InvalidRoot)?;
        }
        Ok(Trust(TrustKind::Roots(Arc::new(store))))
    }

    /// [`Trust::roots_pem`] from a file.
    pub fn roots_pem_file(path: impl AsRef<Path>) -> Result<Trust, TlsError> {
        Trust::roots_pem(&read(path.as_ref())?)
    }

    /// Trust chains issued by the operating system's root certificates (honouring
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn system_roots() -> Result<Trust, TlsError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let why = match loaded.errors.first() {
                Some(e) => e.to_string(),
                None => "the store holds no usable certificate".to_owned(),
            };
            return Err(TlsError::SystemRoots(why));
        }
        Ok(Trust(TrustKind::Roots(Arc::new(store))))
    }

    /// Accept any certificate without verifying it. The handshake is still encrypted and the peer
    /// still proves it holds the key of the certificate it shows, but anyone can show one: an
    /// active attacker can impersonate the peer. For local development only.
    pub fn insecure_skip_verification_for_local_development() -> Trust {
        Trust(TrustKind::Insecure)
    }
}

/// The TLS side of a server: its identity and, optionally, how client certificates are verified.
#[derive(Clone, Debug)]
pub struct ServerTls {
    identity: Identity,
    client_auth: Option<(Trust, bool)>,
    sessions: Arc<ServerSessionMemoryCache>,
}

impl ServerTls {
    /// A server presenting `identity`, not asking clients for certificates.
    pub fn new(identity: Identity) -> ServerTls {
        ServerTls {
            identity,
            client_auth: None,
            sessions: ServerSessionMemoryCache::new(SERVER_SESSION_CACHE),
        }
    }

    /// A server with a fresh self-signed certificate for `names`; clients pin
    /// [`ServerTls::fingerprint`].
    pub fn self_signed<I, S>(names: I) -> Result<ServerTls, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(ServerTls::new(Identity::self_signed(names)?))
    }

    /// Mutual TLS: every client must present a certificate that `trust` accepts.
    pub fn require_client_cert(mut self, trust: Trust) -> ServerTls {
        self.client_auth = Some((trust, true));
        self
    }

    /// Clients may present a certificate; when they do, `trust` must accept it.
    pub fn optional_client_cert(mut self, trust: Trust) -> ServerTls {
        self.client_auth = Some((trust, false));
        self
    }

    /// The fingerprint of the server's leaf certificate, for clients to pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// Whether clients are asked for a certificate (mutual TLS, mandatory or optional). Such a
    /// server sends nothing before the client's certificate is verified: no 0.5-RTT data.
    pub fn authenticates_clients(&self) -> bool {
        self.client_auth.is_some()
    }

    /// The server's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The QUIC server crypto configuration offering the ALPN protocols `alpn`, accepting 0-RTT
    /// from resuming clients. The endpoint builders call it; it is public for use with a raw
    /// quinn endpoint.
    pub fn quic_config(&self, alpn: &[&[u8]]) -> Result<Arc<QuicServerConfig>, TlsError> {
        let provider = provider();
        let verifier: Arc<dyn ClientCertVerifier> = match &self.client_auth {
            None => Arc::new(NoClientAuth),
            Some((trust, mandatory)) => client_verifier(trust, *mandatory, &provider)?,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.identity.chain.clone(), self.identity.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.session_storage = self.sessions.clone();
        // QUIC requires either no early data or the maximum; the application decides what may
        // be sent early (only replay-safe requests).
        config.max_early_data_size = u32::MAX;
        Ok(Arc::new(QuicServerConfig::try_from(config)?))
    }
}

/// The TLS side of a client: how the server is verified and, for mutual TLS, the client's own
/// identity.
#[derive(Clone)]
pub struct ClientTls {
    trust: Trust,
    identity: Option<Identity>,
    /// The last configuration built, shared by clones. rustls resumes a session only with the
    /// verifier and client-certificate resolver that made it, so reusing one configuration is
    /// what lets a reconnection (from any clone) resume and send 0-RTT data.
    built: Arc<Mutex<Option<BuiltClientConfig>>>,
}

struct BuiltClientConfig {
    alpn: Vec<Vec<u8>>,
    config: Arc<QuicClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// A client verifying servers with `trust`.
    pub fn new(trust: Trust) -> ClientTls {
        ClientTls {
            trust,
            identity: None,
            built: Arc::default(),
        }
    }

    /// A client trusting exactly the server certificate with this fingerprint.
    pub fn pinned(fingerprint: Fingerprint) -> ClientTls {
        ClientTls::new(Trust::pinned(fingerprint))
    }

    /// Present `identity` when the server asks for a client certificate (mutual TLS).
    pub fn identity(mut self, identity: Identity) -> ClientTls {
        self.identity = Some(identity);
        self.built = Arc::default();
        self
    }

    /// The QUIC client crypto configuration offering the ALPN protocols `alpn`, with early data
    /// enabled. This value and its clones hand out one shared configuration (rebuilt only when
    /// `alpn` changes), whose session-ticket store lets reconnections resume and use 0-RTT. The
    /// endpoint builders call it; it is public for use with a raw quinn endpoint.
    pub fn quic_config(&self, alpn: &[&[u8]]) -> Result<Arc<QuicClientConfig>, TlsError> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(b) = built.as_ref().filter(|b| b.alpn.iter().eq(alpn.iter())) {
            return Ok(b.config.clone());
        }
        let provider = provider();
        let verifier = server_verifier(&self.trust, &provider)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::in_memory_sessions(CLIENT_SESSION_CACHE);
        config.enable_early_data = true;
        let config = Arc::new(QuicClientConfig::try_from(config)?);
        *built = Some(BuiltClientConfig {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            config: config.clone(),
        });
        Ok(config)
    }
}

/// Who is on the other end of a connection, as proven in the TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Fingerprint of the peer's leaf certificate.
    pub fingerprint: Fingerprint,
    /// The leaf's subject alternative names (DNS names and IP addresses) followed by its subject
    /// common name, when present.
    pub names: Vec<String>,
    /// The whole chain the peer presented, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// The identity the peer of `conn` proved, or `None` when it presented no certificate.
    pub fn of(conn: &quinn::Connection) -> Option<PeerIdentity> {
        let any = conn.peer_identity()?;
        let chain = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
        PeerIdentity::from_chain(*chain)
    }

    fn from_chain(chain: Vec<CertificateDer<'static>>) -> Option<PeerIdentity> {
        let leaf = chain.first()?;
        Some(PeerIdentity {
            fingerprint: Fingerprint::of_der(leaf),
            names: cert_names(leaf),
            chain,
        })
    }
}

/// Names in a certificate: SAN DNS names and IP addresses, then the subject CN.
fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        names.push(cn.to_owned());
    }
    names
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_verifier(
    trust: &Trust,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let algorithms = provider.signature_verification_algorithms;
    Ok(match &trust.0 {
        TrustKind::Pinned(fps) => Arc::new(PinnedVerifier {
            pins: Pins::Only(fps.clone()),
            algorithms,
            mandatory: true,
        }),
        TrustKind::Insecure => Arc::new(InsecureVerifier { algorithms }),
        TrustKind::Roots(roots) => {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?
        }
    })
}

fn client_verifier(
    trust: &Trust,
    mandatory: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let algorithms = provider.signature_verification_algorithms;
    Ok(match &trust.0 {
        TrustKind::Pinned(fps) => Arc::new(PinnedVerifier {
            pins: Pins::Only(fps.clone()),
            algorithms,
            mandatory,
        }),
        TrustKind::Insecure => Arc::new(PinnedVerifier {
            pins: Pins::Any,
            algorithms,
            mandatory,
        }),
        TrustKind::Roots(roots) => {
            let builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            if mandatory {
                builder.build()?
            } else {
                builder.allow_unauthenticated().build()?
            }
        }
    })
}

/// Which certificates a [`PinnedVerifier`] accepts.
#[derive(Debug)]
enum Pins {
    /// Exactly these (none, if the list is empty).
    Only(Vec<Fingerprint>),
    /// Any: the insecure client-certificate mode, named so it cannot happen by accident.
    Any,
}

/// Accepts the certificates its [`Pins`] name, and checks the handshake signature with the
/// certificate's key so the peer proves it holds that key.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Pins,
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl PinnedVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fingerprint = Fingerprint::of_der(end_entity);
        let accepted = match &self.pins {
            Pins::Only(fingerprints) => fingerprints.contains(&fingerprint),
            Pins::Any => true,
        };
        if accepted {
            Ok(())
        } else {
            tracing::warn!(%fingerprint, "peer certificate does not match the pinned fingerprint");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts any server certificate (but still checks the handshake signature).
#[derive(Debug)]
struct InsecureVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(pins: Pins) -> PinnedVerifier {
        PinnedVerifier {
            pins,
            algorithms: provider().signature_verification_algorithms,
            mandatory: true,
        }
    }

    #[test]
    fn pins_accept_exactly_the_pinned_certificates_and_an_empty_list_accepts_none() {
        let identity = Identity::self_signed(["localhost"]).unwrap();
        let cert = identity.chain[0].clone();
        let other = Identity::self_signed(["localhost"]).unwrap().fingerprint();
        assert!(
            verifier(Pins::Only(vec![identity.fingerprint()]))
                .check(&cert)
                .is_ok()
        );
        assert!(verifier(Pins::Only(vec![other])).check(&cert).is_err());
        assert!(verifier(Pins::Only(Vec::new())).check(&cert).is_err());
        assert!(verifier(Pins::Any).check(&cert).is_ok());
    }
}
