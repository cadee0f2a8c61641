//! Finding EchoStream endpoints on the local network with mDNS / DNS-SD (feature `mdns`).
//!
//! An endpoint (a game host, an IoT device, a media node) publishes an [`Advertisement`]: an
//! instance name, the UDP port its QUIC endpoint listens on, its addresses, and TXT properties
//! giving the protocol version, the SHA-256 fingerprint of its certificate and any properties of
//! the application. Peers watch the network with a [`Browser`], which reports each endpoint as
//! [`DiscoveryEvent::Found`] when it appears (and again when what it advertises changes) and as
//! [`DiscoveryEvent::Lost`] when it withdraws or expires; [`discover`] waits for the first
//! endpoint matching a [`Filter`] and gives up with [`DiscoveryError::Timeout`].
//!
//! ```no_run
//! # async fn example(identity: echostream_runtime::tls::Identity) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use echostream_runtime::discovery::{discover, Advertisement, Filter};
//!
//! // On the host: advertise until `advertiser` is dropped or stopped.
//! let advertiser = Advertisement::new("Ann's game", "echostream/1", 4433)
//!     .fingerprint(identity.fingerprint())
//!     .property("map", "harbour")
//!     .start()?;
//!
//! // On a peer: the first host speaking our protocol, within two seconds.
//! let found = discover(Filter::any().protocol("echostream/1"), Duration::from_secs(2)).await?;
//! println!("{} at {:?}, fingerprint {:?}", found.instance, found.addrs, found.fingerprint);
//! # advertiser.stop()?;
//! # Ok(()) }
//! ```
//!
//! # What is advertised
//!
//! A DNS-SD service of type [`SERVICE_TYPE`] (`_echostream._udp.local.`): a PTR record naming the
//! instance, an SRV record with the host name and port, A/AAAA records with the addresses and a
//! TXT record with these keys, in this order:
//!
//! | key | value |
//! | --- | --- |
//! | `txtvers` | `1`, the version of this TXT layout ([`TXT_VERSION`]) |
//! | `proto` | the protocol (ALPN) string, e.g. `echostream/1` |
//! | `fp` | the certificate's SHA-256 fingerprint as 64 lowercase hex digits (only if given) |
//! | others | the application's properties, keys lowercased, sorted |
//!
//! # Security: what a fingerprint learned from mDNS is worth
//!
//! mDNS is unauthenticated multicast. Anyone on the link can answer with any name, address,
//! port and fingerprint, or withdraw someone else's endpoint. The TLS handshake still proves
//! that the peer holds the key of the fingerprint you pin, so an attacker cannot impersonate an
//! endpoint *whose fingerprint you already know*; but a fingerprint you learn from the
//! advertisement itself only tells you that you talk to *whoever answered first*. Pinning it is
//! trust on first use (TOFU) within the local network.
//!
//! That is acceptable where the link is trusted (a home or lab network, an isolated device
//! network, a LAN party where the worst case is joining the wrong game) and where you remember
//! the fingerprint after the first connection and refuse a later change. It is not acceptable
//! on shared or hostile networks (hotel, campus, office guest Wi-Fi) or for devices whose
//! control matters. There, pin out of band: print or scan the fingerprint from the device
//! (label, QR code, serial console, a provisioning step) or issue certificates from your own CA
//! and verify with `Trust::roots_pem`, and use discovery only to learn the address — check that
//! [`Discovered::fingerprint`] equals the pinned value, or ignore it and let the handshake decide.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mdns_sd::{
    DaemonEvent, DaemonStatus, IfKind, IfPredicate, ResolvedService, ScopedIp, ServiceDaemon,
    ServiceEvent, ServiceInfo, UnregisterStatus,
};
use tokio::time::Instant;

use crate::tls::Fingerprint;

/// The DNS-SD service type EchoStream endpoints are advertised under.
pub const SERVICE_TYPE: &str = "_echostream._udp.local.";

/// The TXT key holding the version of the TXT layout.
pub const TXT_VERSION_KEY: &str = "txtvers";
/// The TXT layout this module writes (and the only one it knows how to read).
pub const TXT_VERSION: &str = "1";
/// The TXT key holding the protocol (ALPN) string.
pub const TXT_PROTOCOL_KEY: &str = "proto";
/// The TXT key holding the certificate's SHA-256 fingerprint, as 64 hex digits.
pub const TXT_FINGERPRINT_KEY: &str = "fp";

/// The standard mDNS port (RFC 6762).
pub const MDNS_PORT: u16 = mdns_sd::MDNS_PORT;

/// The longest instance name DNS allows: one label (RFC 6763 §4.1.1).
const MAX_INSTANCE_BYTES: usize = 63;
/// The longest `key=value` string of one TXT entry (RFC 6763 §6.1).
const MAX_TXT_ENTRY_BYTES: usize = 255;
/// The largest TXT record, length bytes included, that still fits one packet on any link
/// (RFC 6763 §6.2).
pub const MAX_TXT_BYTES: usize = 1300;
/// How many non-matching instance names a [`DiscoveryError::Timeout`] lists.
const MAX_SEEN_LISTED: usize = 16;
/// How long `stop` waits for the mDNS daemon to acknowledge the withdrawal or the shutdown.
const DAEMON_ACK_WAIT: Duration = Duration::from_secs(2);
/// How long the daemon stays up after a withdrawal so that its goodbye is sent twice (the
/// daemon repeats it after 120 ms, for peers that missed the first).
const GOODBYE_REPEAT_GRACE: Duration = Duration::from_millis(200);

/// Errors advertising or discovering endpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The instance name cannot be published.
    #[error("invalid instance name {name:?}: {reason}")]
    InvalidInstance {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Port 0 was given: peers cannot connect to it.
    #[error(
        "cannot advertise {instance:?} on port 0: advertise the port the endpoint is bound to \
         (e.g. its local_addr().port())"
    )]
    ZeroPort {
        /// The instance being advertised.
        instance: String,
    },
    /// An address given for the advertisement cannot be connected to.
    #[error("cannot advertise {instance:?} at {addr}: {reason}")]
    InvalidAddress {
        /// The instance being advertised.
        instance: String,
        /// The offending address.
        addr: IpAddr,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name given for the advertisement is not a valid `.local` name.
    #[error("invalid host name {host:?}: {reason}")]
    InvalidHostName {
        /// The host name given.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TXT property (or the protocol string) cannot be published.
    #[error("invalid TXT property {key:?} of {instance:?}: {reason}")]
    InvalidProperty {
        /// The instance being advertised.
        instance: String,
        /// The property's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The whole TXT record is too large to travel in one packet.
    #[error(
        "TXT record of {instance:?} is {size} bytes, over the {max}-byte limit: \
         shorten or drop properties"
    )]
    TxtTooLarge {
        /// The instance being advertised.
        instance: String,
        /// The encoded size.
        size: usize,
        /// The limit, [`MAX_TXT_BYTES`].
        max: usize,
    },
    /// The mDNS daemon refused a command or could not be started.
    #[error("mDNS daemon failed {action}: {source}")]
    Daemon {
        /// What was being done, e.g. `starting` or `withdrawing "Ann's game"`.
        action: String,
        /// The daemon's error.
        source: MdnsError,
    },
    /// A thread watching the mDNS daemon could not be started.
    #[error("cannot start a thread to watch the mDNS daemon: {0}")]
    Thread(#[source] std::io::Error),
    /// The mDNS daemon did not answer in time, or stopped while it was waited on.
    #[error("mDNS daemon did not acknowledge {action} within {waited:?}")]
    NoAcknowledgement {
        /// What was being done.
        action: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The browser's daemon stopped, so no more endpoints can be discovered with it.
    #[error("the mDNS browser stopped while looking for {filter}")]
    BrowserStopped {
        /// What was being looked for.
        filter: String,
    },
    /// No endpoint matching the filter answered in time.
    #[error(
        "no EchoStream endpoint matching {filter} answered within {waited:?}{}",
        describe_seen(seen)
    )]
    Timeout {
        /// What was being looked for.
        filter: String,
        /// How long it was looked for.
        waited: Duration,
        /// Instances that answered but did not match (at most 16), to tell a typo from silence.
        seen: Vec<String>,
    },
}

fn describe_seen(seen: &[String]) -> String {
    if seen.is_empty() {
        " (no endpoint answered at all)".to_owned()
    } else {
        format!(" (non-matching endpoints seen: {})", seen.join(", "))
    }
}

/// An error reported by the underlying mDNS implementation.
#[derive(Debug, Clone)]
pub struct MdnsError(mdns_sd::Error);

impl fmt::Display for MdnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for MdnsError {}

fn daemon_error(action: impl Into<String>) -> impl FnOnce(mdns_sd::Error) -> DiscoveryError {
    let action = action.into();
    move |source| DiscoveryError::Daemon {
        action,
        source: MdnsError(source),
    }
}

/// What an endpoint publishes about itself; [`Advertisement::start`] publishes it.
///
/// By default the advertisement carries every non-loopback address of every interface (and
/// follows them as they come and go, e.g. when a device gets its DHCP lease after starting),
/// on every interface, under a host name derived from the instance name.
#[derive(Debug, Clone)]
pub struct Advertisement {
    instance: String,
    protocol: String,
    port: u16,
    fingerprint: Option<Fingerprint>,
    addresses: Vec<IpAddr>,
    properties: Vec<(String, String)>,
    host_name: Option<String>,
    interfaces: Vec<String>,
    mdns_port: u16,
}

impl Advertisement {
    /// An advertisement of `instance` (a human-readable name, up to 63 bytes of UTF-8, e.g.
    /// `"Ann's game"` or `"thermostat-kitchen"`), speaking `protocol` (the ALPN string, e.g.
    /// `"echostream/1"`) on UDP `port`.
    pub fn new(instance: impl Into<String>, protocol: impl Into<String>, port: u16) -> Self {
        Advertisement {
            instance: instance.into(),
            protocol: protocol.into(),
            port,
            fingerprint: None,
            addresses: Vec::new(),
            properties: Vec::new(),
            host_name: None,
            interfaces: Vec::new(),
            mdns_port: MDNS_PORT,
        }
    }

    /// Publishes the SHA-256 fingerprint of the endpoint's certificate, so peers can pin it (read
    /// the module's security notes first).
    pub fn fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Publishes this address instead of the interfaces' addresses (call again to add more).
    /// It must be an address of one of this host's interfaces: mDNS announces an address only on
    /// the interface whose subnet holds it.
    pub fn address(mut self, addr: IpAddr) -> Self {
        self.addresses.push(addr);
        self
    }

    /// Publishes these addresses instead of the interfaces' addresses.
    pub fn addresses(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses.extend(addrs);
        self
    }

    /// Adds an application property to the TXT record (keys are case-insensitive and published
    /// lowercased; setting a key again replaces its value). Keys `txtvers`, `proto` and `fp` are
    /// reserved.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into().to_ascii_lowercase();
        let value = value.into();
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.properties.push((key, value)),
        }
        self
    }

    /// The host name the SRV and address records use (`name` or `name.local.`); by default it is
    /// derived from the instance name.
    pub fn host_name(mut self, host: impl Into<String>) -> Self {
        self.host_name = Some(host.into());
        self
    }

    /// Advertises only on this network interface (by name, e.g. `"eth0"`; call again to add
    /// more), e.g. on the LAN side of a gateway and never on its uplink.
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interfaces.push(name.into());
        self
    }

    /// Uses another UDP port than the standard 5353 for mDNS itself, to keep a test or
    /// development fleet apart; browsers must use the same port.
    pub fn mdns_port(mut self, port: u16) -> Self {
        self.mdns_port = port;
        self
    }

    /// Checks the advertisement and publishes it on the local network until the returned
    /// [`Advertiser`] is stopped or dropped. The name is probed first (RFC 6762 §8), so peers
    /// see it after about a second; if another host already uses it, it is renamed (e.g.
    /// `"Ann's game (2)"`, see [`Advertiser::instance`]).
    ///
    /// Starts a background mDNS thread; needs no async runtime.
    pub fn start(self) -> Result<Advertiser, DiscoveryError> {
        let info = self.service_info()?;
        let fullname = info.get_fullname().to_owned();
        let current = Arc::new(Mutex::new(self.instance.clone()));
        let daemon = Daemon::start(
            self.mdns_port,
            &self.interfaces,
            Watch {
                who: format!("advertiser {:?}", self.instance),
                rename: Some((fullname.clone(), current.clone())),
            },
        )?;
        daemon
            .mdns
            .register(info)
            .map_err(daemon_error(format!("registering {:?}", self.instance)))?;
        tracing::info!(
            instance = %self.instance,
            port = self.port,
            protocol = %self.protocol,
            fingerprint = ?self.fingerprint,
            addresses = %describe_list(&self.addresses, "all non-loopback, followed"),
            interfaces = %describe_list(&self.interfaces, "all"),
            "mDNS: advertising EchoStream endpoint"
        );
        Ok(Advertiser {
            daemon: Some(daemon),
            advertisement: self,
            fullname,
            instance: current,
        })
    }

    /// The TXT entries, in publication order, after checking every rule a receiver relies on.
    fn txt_entries(&self) -> Result<Vec<(String, String)>, DiscoveryError> {
        let invalid = |key: &str, reason: String| DiscoveryError::InvalidProperty {
            instance: self.instance.clone(),
            key: key.to_owned(),
            reason,
        };
        if self.protocol.is_empty() {
            return Err(invalid(
                TXT_PROTOCOL_KEY,
                "the protocol string is empty".into(),
            ));
        }
        if self.protocol.chars().any(char::is_control) {
            return Err(invalid(
                TXT_PROTOCOL_KEY,
                "the protocol string contains control characters".into(),
            ));
        }
        let mut entries = vec![
            (TXT_VERSION_KEY.to_owned(), TXT_VERSION.to_owned()),
            (TXT_PROTOCOL_KEY.to_owned(), self.protocol.clone()),
        ];
        if let Some(fingerprint) = &self.fingerprint {
            entries.push((TXT_FINGERPRINT_KEY.to_owned(), hex(fingerprint.as_bytes())));
        }
        let mut user: Vec<&(String, String)> = self.properties.iter().collect();
        user.sort();
        for (key, value) in user {
            if key.is_empty() {
                return Err(invalid(key, "the key is empty".into()));
            }
            if let Some(bad) = key.chars().find(|c| !(' '..='~').contains(c) || *c == '=') {
                return Err(invalid(
                    key,
                    format!("keys are printable ASCII without '=' (RFC 6763 §6.4); found {bad:?}"),
                ));
            }
            if is_reserved(key) {
                return Err(invalid(
                    key,
                    "the key is reserved by EchoStream; use Advertisement's own setters".into(),
                ));
            }
            entries.push((key.clone(), value.clone()));
        }
        let mut total = 0;
        for (key, value) in &entries {
            let len = key.len() + 1 + value.len();
            if len > MAX_TXT_ENTRY_BYTES {
                return Err(invalid(
                    key,
                    format!(
                        "\"{key}=<value>\" is {len} bytes, over the {MAX_TXT_ENTRY_BYTES}-byte limit of one TXT entry"
                    ),
                ));
            }
            total += 1 + len;
        }
        if total > MAX_TXT_BYTES {
            return Err(DiscoveryError::TxtTooLarge {
                instance: self.instance.clone(),
                size: total,
                max: MAX_TXT_BYTES,
            });
        }
        Ok(entries)
    }

    /// The mdns-sd service description, after checking the whole advertisement.
    fn service_info(&self) -> Result<ServiceInfo, DiscoveryError> {
        check_instance(&self.instance)?;
        if self.port == 0 {
            return Err(DiscoveryError::ZeroPort {
                instance: self.instance.clone(),
            });
        }
        let mut addresses = Vec::with_capacity(self.addresses.len());
        for &addr in &self.addresses {
            let reason = if addr.is_unspecified() {
                Some(
                    "an unspecified address (a wildcard bind address) cannot be connected to; leave addresses out to publish the interfaces' addresses",
                )
            } else if addr.is_multicast() {
                Some("a multicast address cannot be connected to")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(DiscoveryError::InvalidAddress {
                    instance: self.instance.clone(),
                    addr,
                    reason,
                });
            }
            if !addresses.contains(&addr) {
                addresses.push(addr);
            }
        }
        let host = match &self.host_name {
            Some(host) => normalize_host_name(host)?,
            None => format!("{}.local.", host_label(&self.instance)),
        };
        let txt = self.txt_entries()?;
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &host,
            &addresses[..],
            self.port,
            &txt[..],
        )
        .map_err(daemon_error(format!("describing {:?}", self.instance)))?;
        if self.interfaces.is_empty() {
            info.set_interfaces(vec![IfKind::Predicate(IfPredicate::new(|intf| {
                !intf.is_loopback()
            }))]);
        } else {
            info.set_interfaces(self.interfaces.iter().map(IfKind::from).collect());
        }
        if addresses.is_empty() {
            info = info.enable_addr_auto();
        }
        Ok(info)
    }
}

/// `items` comma-separated, or `all` when there are none.
fn describe_list<T: fmt::Display>(items: &[T], all: &str) -> String {
    if items.is_empty() {
        return all.to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_reserved(key: &str) -> bool {
    [TXT_VERSION_KEY, TXT_PROTOCOL_KEY, TXT_FINGERPRINT_KEY]
        .iter()
        .any(|reserved| key.eq_ignore_ascii_case(reserved))
}

fn check_instance(name: &str) -> Result<(), DiscoveryError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_INSTANCE_BYTES {
        Some("it is longer than 63 bytes, the limit of one DNS label")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters (RFC 6763 §4.1.1)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DiscoveryError::InvalidInstance {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `host`, `host.local` or `host.local.` as `host.local.`, if `host` is a valid DNS label.
fn normalize_host_name(host: &str) -> Result<String, DiscoveryError> {
    let host_dotless = host.strip_suffix('.').unwrap_or(host);
    let label = host_dotless.strip_suffix(".local").unwrap_or(host_dotless);
    let reason = if label.is_empty() {
        Some("it is empty")
    } else if label.len() > MAX_INSTANCE_BYTES {
        Some("a label is at most 63 bytes")
    } else if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some("use letters, digits and '-' only, optionally followed by \".local.\"")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("it cannot start or end with '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DiscoveryError::InvalidHostName {
            host: host.to_owned(),
            reason,
        }),
        None => Ok(format!("{label}.local.")),
    }
}

/// A DNS host label derived from an instance name: lowercase letters and digits, other runs of
/// characters as one '-'.
fn host_label(instance: &str) -> String {
    let mut label = String::with_capacity(instance.len());
    for c in instance.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(MAX_INSTANCE_BYTES);
    let label = label.trim_end_matches('-');
    if label.is_empty() {
        "echostream".to_owned()
    } else {
        label.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running advertisement. Dropping it withdraws the endpoint from the network (peers see it
/// as [`DiscoveryEvent::Lost`]); [`Advertiser::stop`] and [`Advertiser::stop_async`] do the same
/// and wait until the withdrawal is sent.
pub struct Advertiser {
    daemon: Option<Daemon>,
    /// What is published now (its properties change with [`Advertiser::set_property`]).
    advertisement: Advertisement,
    fullname: String,
    instance: Arc<Mutex<String>>,
}

impl fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertiser")
            .field("instance", &self.instance())
            .field("port", &self.advertisement.port)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// The instance name as published: the requested one, or the one mDNS conflict resolution
    /// renamed it to when another host already used it (known from the moment the renamed
    /// announcement goes out, so at about the time peers see it).
    pub fn instance(&self) -> String {
        self.instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The advertised UDP port.
    pub fn port(&self) -> u16 {
        self.advertisement.port
    }

    /// Sets an application property and re-announces the TXT record, so browsers report the
    /// endpoint as found again with the new value (a game's player count, a sensor's state).
    /// The same rules as [`Advertisement::property`] apply; on error nothing changes.
    pub fn set_property(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), DiscoveryError> {
        let updated = self.advertisement.clone().property(key, value);
        self.republish(updated)
    }

    /// Removes an application property (if present) and re-announces the TXT record.
    pub fn remove_property(&mut self, key: &str) -> Result<(), DiscoveryError> {
        let mut updated = self.advertisement.clone();
        updated
            .properties
            .retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.republish(updated)
    }

    fn republish(&mut self, updated: Advertisement) -> Result<(), DiscoveryError> {
        let mut info = updated.service_info()?;
        // The name is already ours: new data is only announced again (RFC 6762 §8.4). Probing
        // it again is also unsafe with mdns-sd 0.21: the new probe is for the name as first
        // requested, so after a conflict rename the update could be announced under the other
        // host's name.
        info.set_requires_probe(false);
        let daemon = self.daemon.as_ref().ok_or_else(|| DiscoveryError::Daemon {
            action: format!("updating {:?}", self.instance()),
            source: MdnsError(mdns_sd::Error::DaemonShutdown),
        })?;
        daemon
            .mdns
            .register(info)
            .map_err(daemon_error(format!("updating {:?}", self.instance())))?;
        tracing::debug!(
            instance = %self.instance(),
            properties = ?updated.properties,
            "mDNS: re-announced EchoStream endpoint"
        );
        self.advertisement = updated;
        Ok(())
    }

    /// Withdraws the advertisement and waits (blocking the thread, at most a few seconds) until
    /// the goodbye packets are sent and the mDNS thread has stopped.
    pub fn stop(mut self) -> Result<(), DiscoveryError> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(());
        };
        let action = format!("withdrawing {:?}", self.instance());
        let ack = daemon
            .mdns
            .unregister(&self.fullname)
            .map_err(daemon_error(action.clone()))?;
        let status = ack
            .recv_timeout(DAEMON_ACK_WAIT)
            .map_err(|_| no_ack(&action))?;
        note_unregistered(status, &action);
        std::thread::sleep(GOODBYE_REPEAT_GRACE);
        self.log_withdrawn();
        daemon.shutdown_blocking()
    }

    /// Withdraws the advertisement and waits (at most a few seconds) until the goodbye packets
    /// are sent and the mDNS thread has stopped, without blocking the async runtime.
    pub async fn stop_async(mut self) -> Result<(), DiscoveryError> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(());
        };
        let action = format!("withdrawing {:?}", self.instance());
        let ack = daemon
            .mdns
            .unregister(&self.fullname)
            .map_err(daemon_error(action.clone()))?;
        let status = tokio::time::timeout(DAEMON_ACK_WAIT, ack.recv_async())
            .await
            .map_err(|_| no_ack(&action))?
            .map_err(|_| no_ack(&action))?;
        note_unregistered(status, &action);
        tokio::time::sleep(GOODBYE_REPEAT_GRACE).await;
        self.log_withdrawn();
        daemon.shutdown_async().await
    }

    fn log_withdrawn(&self) {
        tracing::info!(instance = %self.instance(), "mDNS: withdrew EchoStream endpoint");
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        if let Err(error) = daemon.mdns.unregister(&self.fullname) {
            // Stopping the daemon (dropping it here) still sends the goodbyes.
            tracing::warn!(
                instance = %self.instance(),
                %error,
                "mDNS: could not queue the withdrawal; stopping the daemon instead"
            );
            return;
        }
        self.log_withdrawn();
        // Keep the daemon a moment for the repeated goodbye, without blocking the dropper.
        let linger = std::thread::Builder::new()
            .name("echostream-mdns-goodbye".into())
            .spawn(move || {
                std::thread::sleep(GOODBYE_REPEAT_GRACE);
                drop(daemon);
            });
        if let Err(error) = linger {
            tracing::debug!(%error, "mDNS: no thread to linger for the repeated goodbye");
        }
    }
}

fn no_ack(action: &str) -> DiscoveryError {
    DiscoveryError::NoAcknowledgement {
        action: action.to_owned(),
        waited: DAEMON_ACK_WAIT,
    }
}

/// Logs a withdrawal the daemon did not need: the service was no longer registered, which is
/// what withdrawing wants anyway.
fn note_unregistered(status: UnregisterStatus, action: &str) {
    if let UnregisterStatus::NotFound = status {
        tracing::debug!(%action, "mDNS: service was no longer registered");
    }
}

/// One mDNS daemon (a background thread and its sockets), owned by one handle and shut down when
/// that handle goes.
///
/// mdns-sd keeps one browse subscription per service type per daemon, so handles never share a
/// daemon: two browsers on one daemon would steal each other's events.
struct Daemon {
    mdns: ServiceDaemon,
    /// Whether shutdown was already requested.
    stopping: bool,
}

/// What the monitor thread reports about, and where it records renames.
struct Watch {
    /// Which handle the daemon serves, for the logs (`advertiser "Ann's game"`, `browser`).
    who: String,
    /// For an advertiser: the service's full name and where to record its current instance name.
    rename: Option<(String, Arc<Mutex<String>>)>,
}

impl Daemon {
    fn start(
        mdns_port: u16,
        interfaces: &[String],
        watch: Watch,
    ) -> Result<Daemon, DiscoveryError> {
        let mdns = ServiceDaemon::new_with_port(mdns_port).map_err(daemon_error("starting"))?;
        // From here on, dropping `daemon` stops the thread again, whatever fails below.
        let daemon = Daemon {
            mdns,
            stopping: false,
        };
        if !interfaces.is_empty() {
            daemon
                .mdns
                .disable_interface(IfKind::All)
                .map_err(daemon_error("selecting interfaces"))?;
            daemon
                .mdns
                .enable_interface(interfaces.iter().map(IfKind::from).collect::<Vec<_>>())
                .map_err(daemon_error("selecting interfaces"))?;
        }
        let events = daemon
            .mdns
            .monitor()
            .map_err(daemon_error("subscribing to its events"))?;
        // The thread ends when the daemon stops and drops its end of the channel.
        std::thread::Builder::new()
            .name("echostream-mdns-monitor".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    watch.report(event);
                }
            })
            .map_err(DiscoveryError::Thread)?;
        Ok(daemon)
    }

    /// Asks the daemon to stop (sending goodbyes for anything still registered); Drop then has
    /// nothing left to do.
    fn shutdown(&mut self) -> Result<mdns_sd::Receiver<DaemonStatus>, DiscoveryError> {
        self.stopping = true;
        self.mdns.shutdown().map_err(daemon_error("shutting down"))
    }

    fn shutdown_blocking(mut self) -> Result<(), DiscoveryError> {
        self.shutdown()?
            .recv_timeout(DAEMON_ACK_WAIT)
            .map(drop)
            .map_err(|_| no_ack("the shutdown"))
    }

    async fn shutdown_async(mut self) -> Result<(), DiscoveryError> {
        let ack = self.shutdown()?;
        match tokio::time::timeout(DAEMON_ACK_WAIT, ack.recv_async()).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(no_ack("the shutdown")),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.stopping {
            return;
        }
        if let Err(error) = self.mdns.shutdown() {
            tracing::debug!(%error, "mDNS: daemon already stopped");
        }
    }
}

impl Watch {
    fn report(&self, event: DaemonEvent) {
        let who = &self.who;
        match event {
            DaemonEvent::Error(error) => {
                tracing::warn!(%who, %error, "mDNS daemon error");
            }
            DaemonEvent::NameChange(change) => match &self.rename {
                Some((fullname, current)) if change.original.eq_ignore_ascii_case(fullname) => {
                    let renamed = instance_of(&change.new_name)
                        .map(|escaped| unescape_label(&escaped))
                        .unwrap_or_else(|| change.new_name.clone());
                    tracing::warn!(
                        %who,
                        %renamed,
                        interface = %change.intf_name,
                        "mDNS: instance name already in use on the network, advertising under a new name"
                    );
                    *current.lock().unwrap_or_else(PoisonError::into_inner) = renamed;
                }
                _ => tracing::info!(
                    %who,
                    original = %change.original,
                    renamed = %change.new_name,
                    interface = %change.intf_name,
                    "mDNS: name conflict resolved by renaming"
                ),
            },
            DaemonEvent::Announce(name, addrs) => {
                tracing::debug!(%who, %name, %addrs, "mDNS: announced");
            }
            DaemonEvent::IpAdd(addr) => {
                tracing::debug!(%who, %addr, "mDNS: interface address added")
            }
            DaemonEvent::IpDel(addr) => {
                tracing::debug!(%who, %addr, "mDNS: interface address removed");
            }
            _ => {}
        }
    }
}

/// An EchoStream endpoint found on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovered {
    /// The instance name, e.g. `"Ann's game"`.
    pub instance: String,
    /// The host name of its SRV record, e.g. `"ann-s-game.local."`.
    pub host: String,
    /// The UDP port its QUIC endpoint listens on.
    pub port: u16,
    /// Where to connect: every advertised address with the port, IPv4 first, then routable IPv6,
    /// then link-local IPv6 (with the scope of the interface it was seen on).
    pub addrs: Vec<SocketAddr>,
    /// The protocol (ALPN) string it speaks, if it published one.
    pub protocol: Option<String>,
    /// The SHA-256 fingerprint of its certificate, if it published a well-formed one. Learned
    /// over unauthenticated multicast: see the module's security notes before pinning it.
    pub fingerprint: Option<Fingerprint>,
    /// The application's TXT properties (keys lowercased; a key without a value maps to `""`).
    pub properties: BTreeMap<String, String>,
    /// What was wrong with the TXT record, if anything (the rest of it is still used).
    pub txt_issues: Vec<TxtIssue>,
}

impl Discovered {
    /// The application property `key` (case-insensitive).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A defect in a received TXT record. TXT records come from anyone on the network, so a defect
/// never fails discovery: the affected field is left empty and the defect is reported here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxtIssue {
    /// No `proto` key, or one with an empty or non-UTF-8 value.
    MissingProtocol,
    /// The `fp` value is not 64 hex digits (optionally colon-separated pairs).
    MalformedFingerprint {
        /// The value received (lossily decoded as UTF-8, at most 100 characters).
        value: String,
    },
    /// A `txtvers` other than the one this module writes; the known keys were read anyway.
    UnknownVersion {
        /// The version received.
        version: String,
    },
    /// A property value that is not UTF-8; the property is left out of
    /// [`Discovered::properties`].
    NonUtf8Value {
        /// The property's key.
        key: String,
    },
}

impl fmt::Display for TxtIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxtIssue::MissingProtocol => f.write_str("no protocol string"),
            TxtIssue::MalformedFingerprint { value } => {
                write!(f, "malformed fingerprint {value:?}")
            }
            TxtIssue::UnknownVersion { version } => write!(f, "unknown TXT version {version:?}"),
            TxtIssue::NonUtf8Value { key } => write!(f, "value of {key:?} is not UTF-8"),
        }
    }
}

/// The EchoStream fields of a TXT record.
#[derive(Debug, Default, PartialEq, Eq)]
struct ParsedTxt {
    protocol: Option<String>,
    fingerprint: Option<Fingerprint>,
    properties: BTreeMap<String, String>,
    issues: Vec<TxtIssue>,
}

/// Reads TXT entries (key, value if any) as received. The first occurrence of a key wins
/// (RFC 6763 §6.4); nothing here can fail or panic.
fn parse_txt<'a>(entries: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> ParsedTxt {
    let mut parsed = ParsedTxt::default();
    let mut seen = HashSet::new();
    for (key, value) in entries {
        let key = key.to_ascii_lowercase();
        if key.is_empty() || !seen.insert(key.clone()) {
            continue;
        }
        let text = value.map(std::str::from_utf8);
        match key.as_str() {
            TXT_VERSION_KEY => match text {
                Some(Ok(TXT_VERSION)) => {}
                _ => parsed.issues.push(TxtIssue::UnknownVersion {
                    version: lossy(value.unwrap_or_default()),
                }),
            },
            TXT_PROTOCOL_KEY => match text {
                Some(Ok(protocol)) if !protocol.is_empty() => {
                    parsed.protocol = Some(protocol.to_owned());
                }
                _ => {}
            },
            TXT_FINGERPRINT_KEY => match text.and_then(Result::ok).map(str::parse) {
                Some(Ok(fingerprint)) => parsed.fingerprint = Some(fingerprint),
                _ => parsed.issues.push(TxtIssue::MalformedFingerprint {
                    value: lossy(value.unwrap_or_default()),
                }),
            },
            _ => match text {
                None => {
                    parsed.properties.insert(key, String::new());
                }
                Some(Ok(text)) => {
                    parsed.properties.insert(key, text.to_owned());
                }
                Some(Err(_)) => parsed.issues.push(TxtIssue::NonUtf8Value { key }),
            },
        }
    }
    if parsed.protocol.is_none() {
        parsed.issues.push(TxtIssue::MissingProtocol);
    }
    parsed
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(100).collect()
}

/// The instance name of a service's full name (`<instance>._echostream._udp.local.`, compared
/// case-insensitively as DNS does), or `None` for another service type.
fn instance_of(fullname: &str) -> Option<String> {
    let split = fullname.len().checked_sub(SERVICE_TYPE.len() + 1)?;
    let (instance, suffix) = (fullname.get(..split)?, fullname.get(split..)?);
    let suffix = suffix.strip_prefix('.')?;
    if !suffix.eq_ignore_ascii_case(SERVICE_TYPE) || instance.is_empty() {
        return None;
    }
    Some(instance.to_owned())
}

/// A label as the daemon writes its own names, without the escapes of `.` and `\` (`\.`, `\\`).
fn unescape_label(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut chars = label.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Socket addresses for `ips` (with the interface scope of IPv6 ones), in the order a client
/// should try them: IPv4, routable IPv6, link-local IPv6.
fn socket_addrs(ips: impl IntoIterator<Item = (IpAddr, u32)>, port: u16) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|(ip, scope)| match ip {
            IpAddr::V4(v4) => SocketAddr::from((v4, port)),
            IpAddr::V6(v6) => {
                let scope = if v6.is_unicast_link_local() { scope } else { 0 };
                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
            }
        })
        .collect();
    let rank = |addr: &SocketAddr| match addr.ip() {
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_unicast_link_local() => 2,
        IpAddr::V6(_) => 1,
    };
    addrs.sort_by_key(|addr| (rank(addr), *addr));
    addrs.dedup();
    addrs
}

fn scoped(ip: &ScopedIp) -> (IpAddr, u32) {
    match ip {
        ScopedIp::V6(v6) => (IpAddr::V6(*v6.addr()), v6.scope_id().index),
        other => (other.to_ip_addr(), 0),
    }
}

/// What a resolved EchoStream service advertises, or `None` for another service type.
fn discovered(resolved: &ResolvedService) -> Option<Discovered> {
    let instance = instance_of(&resolved.fullname)?;
    let txt = parse_txt(
        resolved
            .txt_properties
            .iter()
            .map(|property| (property.key(), property.val())),
    );
    Some(Discovered {
        instance,
        host: resolved.host.clone(),
        port: resolved.port,
        addrs: socket_addrs(resolved.addresses.iter().map(scoped), resolved.port),
        protocol: txt.protocol,
        fingerprint: txt.fingerprint,
        properties: txt.properties,
        txt_issues: txt.issues,
    })
}

/// What a [`Browser`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// An endpoint appeared, or what it advertises changed (same instance, new data).
    Found(Discovered),
    /// The endpoint with this instance name withdrew, or its records expired.
    Lost(String),
}

/// What a browser knows: the endpoints on the network as last heard, what its user has been
/// told, and which instances may differ between the two.
///
/// Events are folded in as they arrive and turned into [`DiscoveryEvent`]s only when taken, so a
/// browser that is not polled for a while holds one pending change per instance, not a backlog:
/// memory stays bounded by the size of the network, and the user sees the latest state (an
/// endpoint that came and went unseen is never reported at all).
#[derive(Debug, Default)]
struct BrowseState {
    /// The endpoints present, by lowercased instance name (DNS names ignore ASCII case).
    present: HashMap<String, Discovered>,
    /// What the user was last told about each instance.
    reported: HashMap<String, Discovered>,
    /// Instances whose `present` entry may differ from their `reported` one, oldest first.
    pending: VecDeque<String>,
    pending_set: HashSet<String>,
    /// Whether the daemon's event channel has closed.
    closed: bool,
}

impl BrowseState {
    /// Folds one daemon event in; whether anything changed.
    fn apply(&mut self, event: ServiceEvent) -> bool {
        let key = match event {
            ServiceEvent::ServiceResolved(resolved) => {
                let Some(found) = discovered(&resolved) else {
                    return false;
                };
                let key = found.instance.to_ascii_lowercase();
                if self.present.get(&key) == Some(&found) {
                    return false;
                }
                tracing::debug!(
                    instance = %found.instance,
                    addrs = ?found.addrs,
                    issues = ?found.txt_issues,
                    "mDNS: found EchoStream endpoint"
                );
                self.present.insert(key.clone(), found);
                key
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                let Some(key) = instance_of(&fullname).map(|i| i.to_ascii_lowercase()) else {
                    return false;
                };
                let Some(lost) = self.present.remove(&key) else {
                    return false;
                };
                tracing::debug!(instance = %lost.instance, "mDNS: lost EchoStream endpoint");
                key
            }
            _ => return false,
        };
        if self.pending_set.insert(key.clone()) {
            self.pending.push_back(key);
        }
        true
    }

    /// The oldest change the user has not been told about yet.
    fn take_change(&mut self) -> Option<DiscoveryEvent> {
        while let Some(key) = self.pending.pop_front() {
            self.pending_set.remove(&key);
            match self.present.get(&key) {
                Some(now) if self.reported.get(&key) != Some(now) => {
                    self.reported.insert(key, now.clone());
                    return Some(DiscoveryEvent::Found(now.clone()));
                }
                Some(_) => {}
                None => {
                    if let Some(gone) = self.reported.remove(&key) {
                        return Some(DiscoveryEvent::Lost(gone.instance));
                    }
                }
            }
        }
        None
    }
}

/// The state a browser shares with the thread that drains the daemon's events.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<BrowseState>,
    /// Signalled whenever `state` changes.
    changed: tokio::sync::Notify,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, BrowseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Watches the local network for EchoStream endpoints.
///
/// Knows the endpoints currently present ([`Browser::endpoints`]) and reports changes through
/// [`Browser::next`]. The daemon's events are drained as they arrive, so a browser left unpolled
/// never falls behind: [`Browser::next`] then reports the latest state of each endpoint that
/// changed. Dropping it stops browsing and its mDNS thread.
pub struct Browser {
    shared: Arc<Shared>,
    _daemon: Daemon,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("endpoints", &self.shared.state().present.len())
            .finish_non_exhaustive()
    }
}

/// Options of a [`Browser`]: which interfaces and which mDNS port.
#[derive(Debug, Clone)]
pub struct BrowserBuilder {
    interfaces: Vec<String>,
    mdns_port: u16,
}

impl BrowserBuilder {
    /// Browses only on this network interface (by name, e.g. `"eth0"`; call again to add more).
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interfaces.push(name.into());
        self
    }

    /// Uses another UDP port than the standard 5353 for mDNS itself (the advertisers' port).
    pub fn mdns_port(mut self, port: u16) -> Self {
        self.mdns_port = port;
        self
    }

    /// Starts browsing: a background mDNS thread that queries the network right away. Needs no
    /// async runtime; [`Browser::next`] and [`Browser::discover`] need tokio's timer.
    pub fn start(self) -> Result<Browser, DiscoveryError> {
        let daemon = Daemon::start(
            self.mdns_port,
            &self.interfaces,
            Watch {
                who: "browser".to_owned(),
                rename: None,
            },
        )?;
        let events = daemon
            .mdns
            .browse(SERVICE_TYPE)
            .map_err(daemon_error(format!("browsing {SERVICE_TYPE}")))?;
        let shared = Arc::new(Shared::default());
        let drained = shared.clone();
        // Ends when the daemon stops and drops its end of the channel.
        std::thread::Builder::new()
            .name("echostream-mdns-browse".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    if drained.state().apply(event) {
                        drained.changed.notify_one();
                    }
                }
                drained.state().closed = true;
                drained.changed.notify_one();
            })
            .map_err(DiscoveryError::Thread)?;
        Ok(Browser {
            shared,
            _daemon: daemon,
        })
    }
}

impl Browser {
    /// Starts browsing on every interface, on the standard mDNS port.
    pub fn new() -> Result<Browser, DiscoveryError> {
        Browser::builder().start()
    }

    /// A browser with options.
    pub fn builder() -> BrowserBuilder {
        BrowserBuilder {
            interfaces: Vec::new(),
            mdns_port: MDNS_PORT,
        }
    }

    /// The next change: an endpoint found or updated, or one lost. `None` once the mDNS thread
    /// has stopped. Cancel-safe: a `select!` that drops this future loses no event.
    pub async fn next(&mut self) -> Option<DiscoveryEvent> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(change) = state.take_change() {
                    return Some(change);
                }
                if state.closed {
                    return None;
                }
            }
            // A change made since the check above left a permit: this returns at once.
            self.shared.changed.notified().await;
        }
    }

    /// The endpoints currently present, as last heard (possibly ahead of the changes
    /// [`Browser::next`] has reported so far).
    pub fn endpoints(&self) -> Vec<Discovered> {
        self.shared.state().present.values().cloned().collect()
    }

    /// The first endpoint matching `filter`, among those already present or those that appear
    /// within `timeout`. The changes it waits through are taken, as [`Browser::next`] does.
    pub async fn discover(
        &mut self,
        filter: impl Into<Filter>,
        timeout: Duration,
    ) -> Result<Discovered, DiscoveryError> {
        let filter = filter.into();
        let present = self.endpoints();
        if let Some(found) = present.iter().find(|d| filter.matches(d)) {
            return Ok(found.clone());
        }
        let mut seen: Vec<String> = present.into_iter().map(|d| d.instance).collect();
        // A timeout too long to represent (`Duration::MAX`) waits without a deadline.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let next = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.next()).await,
                None => Ok(self.next().await),
            };
            match next {
                Err(_) => {
                    seen.sort();
                    seen.truncate(MAX_SEEN_LISTED);
                    return Err(DiscoveryError::Timeout {
                        filter: filter.to_string(),
                        waited: timeout,
                        seen,
                    });
                }
                Ok(None) => {
                    return Err(DiscoveryError::BrowserStopped {
                        filter: filter.to_string(),
                    });
                }
                Ok(Some(DiscoveryEvent::Found(found))) => {
                    if filter.matches(&found) {
                        return Ok(found);
                    }
                    if !seen.contains(&found.instance) {
                        seen.push(found.instance);
                    }
                }
                Ok(Some(DiscoveryEvent::Lost(_))) => {}
            }
        }
    }
}

/// A caller-supplied condition of a [`Filter`].
type Predicate = Arc<dyn Fn(&Discovered) -> bool + Send + Sync>;

/// Which endpoints [`discover`] accepts: all conditions set must hold.
///
/// A `&str` or `String` converts to [`Filter::instance`].
#[derive(Clone, Default)]
pub struct Filter {
    instance: Option<String>,
    protocol: Option<String>,
    properties: Vec<(String, String)>,
    predicate: Option<Predicate>,
}

impl Filter {
    /// Any EchoStream endpoint.
    pub fn any() -> Filter {
        Filter::default()
    }

    /// The endpoint with this instance name (compared case-insensitively, as DNS does).
    pub fn instance(name: impl Into<String>) -> Filter {
        Filter {
            instance: Some(name.into()),
            ..Filter::default()
        }
    }

    /// Only endpoints speaking exactly this protocol (ALPN) string.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Filter {
        self.protocol = Some(protocol.into());
        self
    }

    /// Only endpoints with this property value (key case-insensitive).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Filter {
        self.properties
            .push((key.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Only endpoints for which `predicate` holds.
    pub fn matching(
        mut self,
        predicate: impl Fn(&Discovered) -> bool + Send + Sync + 'static,
    ) -> Filter {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether `endpoint` passes.
    pub fn matches(&self, endpoint: &Discovered) -> bool {
        self.instance
            .as_ref()
            .is_none_or(|name| name.eq_ignore_ascii_case(&endpoint.instance))
            && self
                .protocol
                .as_ref()
                .is_none_or(|p| endpoint.protocol.as_ref() == Some(p))
            && self
                .properties
                .iter()
                .all(|(k, v)| endpoint.properties.get(k) == Some(v))
            && self.predicate.as_ref().is_none_or(|p| p(endpoint))
    }
}

impl From<&str> for Filter {
    fn from(instance: &str) -> Filter {
        Filter::instance(instance)
    }
}

impl From<String> for Filter {
    fn from(instance: String) -> Filter {
        Filter::instance(instance)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(name) = &self.instance {
            parts.push(format!("instance {name:?}"));
        }
        if let Some(protocol) = &self.protocol {
            parts.push(format!("protocol {protocol:?}"));
        }
        for (key, value) in &self.properties {
            parts.push(format!("{key}={value:?}"));
        }
        if self.predicate.is_some() {
            parts.push("a custom predicate".to_owned());
        }
        if parts.is_empty() {
            f.write_str("any endpoint")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter({self})")
    }
}

/// The first EchoStream endpoint on the local network matching `filter` (an instance name, or a
/// [`Filter`]), waiting at most `timeout`; a [`DiscoveryError::Timeout`] names what was looked
/// for and which endpoints answered instead.
///
/// Starts a [`Browser`] for the call; keep a `Browser` instead to discover repeatedly.
pub async fn discover(
    filter: impl Into<Filter>,
    timeout: Duration,
) -> Result<Discovered, DiscoveryError> {
    Browser::new()?.discover(filter, timeout).await
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use mdns_sd::TxtProperties;
    use proptest::prelude::*;

    use super::*;

    const FP: [u8; 32] = [0x5a; 32];

    fn ad() -> Advertisement {
        Advertisement::new("Ann's game", "echostream/1", 4433)
    }

    /// What a browser makes of a TXT record received as raw bytes.
    fn parse_raw(txt: &[u8]) -> ParsedTxt {
        let properties = TxtProperties::from(txt);
        parse_txt(properties.iter().map(|p| (p.key(), p.val())))
    }

    /// Raw TXT record data: each entry prefixed by its length.
    fn raw(entries: &[&[u8]]) -> Vec<u8> {
        let mut txt = Vec::new();
        for entry in entries {
            txt.push(u8::try_from(entry.len()).unwrap());
            txt.extend_from_slice(entry);
        }
        txt
    }

    fn pairs(entries: &[(String, String)]) -> Vec<(&str, &str)> {
        entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn txt_entries_are_version_protocol_fingerprint_then_sorted_lowercase_properties() {
        let entries = ad()
            .fingerprint(Fingerprint::from(FP))
            .property("Players", "3/8")
            .property("map", "harbour")
            .property("MAP", "dunes")
            .txt_entries()
            .unwrap();
        let fp = "5a".repeat(32);
        assert_eq!(
            pairs(&entries),
            vec![
                ("txtvers", "1"),
                ("proto", "echostream/1"),
                ("fp", fp.as_str()),
                ("map", "dunes"),
                ("players", "3/8"),
            ]
        );
        // Without a fingerprint there is no `fp` key at all.
        let entries = ad().txt_entries().unwrap();
        assert_eq!(
            pairs(&entries),
            vec![("txtvers", "1"), ("proto", "echostream/1")]
        );
    }

    #[test]
    fn what_is_advertised_is_what_is_discovered() {
        let info = ad()
            .fingerprint(Fingerprint::from(FP))
            .property("map", "harbour")
            .property("empty", "")
            .address(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)))
            .service_info()
            .unwrap();
        assert_eq!(info.get_fullname(), "Ann's game._echostream._udp.local.");
        assert_eq!(info.get_hostname(), "ann-s-game.local.");
        let found = discovered(&info.as_resolved_service()).unwrap();
        assert_eq!(found.instance, "Ann's game");
        assert_eq!(found.port, 4433);
        assert_eq!(found.addrs, vec!["192.168.1.20:4433".parse().unwrap()]);
        assert_eq!(found.protocol.as_deref(), Some("echostream/1"));
        assert_eq!(found.fingerprint, Some(Fingerprint::from(FP)));
        assert_eq!(found.property("MAP"), Some("harbour"));
        assert_eq!(found.property("empty"), Some(""));
        assert_eq!(found.properties.len(), 2);
        assert_eq!(found.txt_issues, vec![]);
    }

    #[test]
    fn a_well_formed_record_parses_without_issues() {
        let fp_colons = Fingerprint::from(FP).to_string();
        let txt = raw(&[
            b"txtvers=1",
            b"proto=echostream/1",
            format!("fp={fp_colons}").as_bytes(),
            b"Room=kitchen",
            b"flag",
            b"eq=a=b",
        ]);
        let parsed = parse_raw(&txt);
        assert_eq!(parsed.protocol.as_deref(), Some("echostream/1"));
        assert_eq!(
            parsed.fingerprint,
            Some(Fingerprint::from(FP)),
            "colon form accepted"
        );
        let properties: Vec<_> = parsed
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            properties,
            vec![("eq", "a=b"), ("flag", ""), ("room", "kitchen")]
        );
        assert_eq!(parsed.issues, vec![]);
    }

    #[test]
    fn malformed_fingerprints_are_reported_and_never_used() {
        let cases: [&[u8]; 7] = [
            b"fp",
            b"fp=",
            b"fp=5a5a",
            &[b"fp=" as &[u8], &[b'a'; 63]].concat(),
            &[b"fp=" as &[u8], &[b'g'; 64]].concat(),
            &[b"fp=" as &[u8], &[b'a'; 65]].concat(),
            b"fp=\xff\xfe",
        ];
        for entry in cases {
            let parsed = parse_raw(&raw(&[b"proto=echostream/1", entry]));
            assert_eq!(parsed.fingerprint, None, "{entry:?}");
            assert!(
                matches!(
                    parsed.issues.as_slice(),
                    [TxtIssue::MalformedFingerprint { .. }]
                ),
                "{entry:?}: {:?}",
                parsed.issues
            );
        }
        let long = [b"fp=" as &[u8], &[b'z'; 200]].concat();
        let parsed = parse_raw(&raw(&[&long]));
        match &parsed.issues[0] {
            TxtIssue::MalformedFingerprint { value } => assert_eq!(value.len(), 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_first_occurrence_of_a_key_wins_whatever_its_case() {
        let good = format!("FP={}", hex(&FP));
        let txt = raw(&[
            good.as_bytes(),
            b"fp=garbage",
            b"proto=echostream/1",
            b"PROTO=other",
            b"room=a",
            b"ROOM=b",
        ]);
        let parsed = parse_raw(&txt);
        assert_eq!(parsed.fingerprint, Some(Fingerprint::from(FP)));
        assert_eq!(parsed.protocol.as_deref(), Some("echostream/1"));
        assert_eq!(parsed.properties.get("room").map(String::as_str), Some("a"));
        assert_eq!(parsed.issues, vec![]);
    }

    #[test]
    fn other_defects_are_reported_and_the_rest_is_kept() {
        let txt = raw(&[
            b"txtvers=2",
            b"proto=",
            b"bin=\xff",
            b"=value-without-key",
            b"ok=yes",
        ]);
        let parsed = parse_raw(&txt);
        assert_eq!(parsed.protocol, None);
        assert_eq!(
            parsed.issues,
            vec![
                TxtIssue::UnknownVersion {
                    version: "2".into()
                },
                TxtIssue::NonUtf8Value { key: "bin".into() },
                TxtIssue::MissingProtocol,
            ]
        );
        assert_eq!(
            parsed.properties.into_iter().collect::<Vec<_>>(),
            vec![("ok".to_owned(), "yes".to_owned())]
        );
    }

    #[test]
    fn truncated_and_empty_records_do_not_panic() {
        // A length byte that claims more than the record holds ends the record.
        let mut txt = raw(&[b"proto=echostream/1"]);
        txt.extend_from_slice(&[200, b'a', b'=']);
        let parsed = parse_raw(&txt);
        assert_eq!(parsed.protocol.as_deref(), Some("echostream/1"));
        assert!(parsed.properties.is_empty());
        for txt in [&[][..], &[0][..], &[0, 0, 0][..], &[1][..]] {
            assert_eq!(parse_raw(txt).issues, vec![TxtIssue::MissingProtocol]);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(txt in proptest::collection::vec(any::<u8>(), 0..600)) {
            let parsed = parse_raw(&txt);
            prop_assert!(parsed.properties.keys().all(|k| !is_reserved(k)));
        }

        #[test]
        fn any_valid_properties_round_trip(
            properties in proptest::collection::btree_map("[a-z0-9_-]{1,9}", "\\PC{0,20}", 0..8),
        ) {
            let properties: BTreeMap<String, String> = properties
                .into_iter()
                .filter(|(key, _)| !is_reserved(key))
                .collect();
            let mut advertisement = ad().fingerprint(Fingerprint::from(FP));
            for (key, value) in &properties {
                advertisement = advertisement.property(key.as_str(), value.as_str());
            }
            let entries = advertisement.txt_entries().unwrap();
            let parsed = parse_txt(entries.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))));
            prop_assert_eq!(parsed.properties, properties);
            prop_assert_eq!(parsed.fingerprint, Some(Fingerprint::from(FP)));
            prop_assert_eq!(parsed.protocol.as_deref(), Some("echostream/1"));
            prop_assert_eq!(parsed.issues, vec![]);
        }
    }

    fn advertise_error(ad: Advertisement) -> DiscoveryError {
        ad.service_info().expect_err("must be refused")
    }

    #[test]
    fn bad_instance_names_are_refused() {
        for name in ["", &"x".repeat(64), "line\nbreak", "tab\t"] {
            let error = advertise_error(Advertisement::new(name, "echostream/1", 1));
            assert!(
                matches!(&error, DiscoveryError::InvalidInstance { name: n, .. } if n == name),
                "{error:?}"
            );
        }
        // 63 bytes of UTF-8 (21 three-byte characters) is the longest allowed name.
        assert!(
            Advertisement::new("€".repeat(21), "echostream/1", 1)
                .service_info()
                .is_ok()
        );
        let error = advertise_error(Advertisement::new("€".repeat(22), "echostream/1", 1));
        assert!(
            error.to_string().contains("longer than 63 bytes"),
            "{error}"
        );
    }

    #[test]
    fn port_zero_is_refused() {
        let error = advertise_error(Advertisement::new("game", "echostream/1", 0));
        assert!(matches!(&error, DiscoveryError::ZeroPort { instance } if instance == "game"));
        assert!(error.to_string().contains("port 0"), "{error}");
    }

    #[test]
    fn unconnectable_addresses_are_refused() {
        for addr in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)),
            IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb)),
        ] {
            let error =
                advertise_error(ad().address(IpAddr::V4(Ipv4Addr::LOCALHOST)).address(addr));
            assert!(
                matches!(&error, DiscoveryError::InvalidAddress { addr: a, instance, .. }
                    if *a == addr && instance == "Ann's game"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn host_names_are_checked_and_normalized() {
        for (given, published) in [
            ("box", "box.local."),
            ("box.local", "box.local."),
            ("box.local.", "box.local."),
            ("Box-2", "Box-2.local."),
        ] {
            let info = ad().host_name(given).service_info().unwrap();
            assert_eq!(info.get_hostname(), published);
        }
        for bad in [
            "",
            ".local.",
            "a.b",
            "-box",
            "box-",
            "bo x",
            "é",
            &"h".repeat(64),
        ] {
            let error = advertise_error(ad().host_name(bad));
            assert!(
                matches!(&error, DiscoveryError::InvalidHostName { host, .. } if host == bad),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn default_host_labels_are_valid_dns_labels() {
        assert_eq!(host_label("Ann's Game. Room 1"), "ann-s-game-room-1");
        assert_eq!(host_label("Küche"), "k-che");
        assert_eq!(host_label("***"), "echostream");
        assert_eq!(host_label(""), "echostream");
        let long = host_label(&format!("{}!{}", "a".repeat(62), "b".repeat(10)));
        assert_eq!(long, "a".repeat(62), "truncated, no trailing '-'");
        for instance in ["Ann's Game. Room 1", "Küche", "***", &"x-".repeat(40)] {
            assert!(
                normalize_host_name(&host_label(instance)).is_ok(),
                "{instance:?}"
            );
        }
    }

    #[test]
    fn bad_properties_and_protocols_are_refused_with_their_key() {
        let cases: Vec<(Advertisement, &str)> = vec![
            (ad().property("FP", "x"), "fp"),
            (ad().property("Proto", "x"), "proto"),
            (ad().property("txtvers", "2"), "txtvers"),
            (ad().property("", "x"), ""),
            (ad().property("a=b", "x"), "a=b"),
            (ad().property("clé", "x"), "clé"),
            (ad().property("tab\t", "x"), "tab\t"),
            (ad().property("big", "v".repeat(252)), "big"),
            (Advertisement::new("game", "", 1), "proto"),
            (Advertisement::new("game", "echo\nstream", 1), "proto"),
            (Advertisement::new("game", "p".repeat(250), 1), "proto"),
        ];
        for (ad, key) in cases {
            let error = advertise_error(ad);
            assert!(
                matches!(&error, DiscoveryError::InvalidProperty { key: k, .. } if k == key),
                "{key:?}: {error:?}"
            );
        }
        // 255 bytes exactly is one full TXT entry.
        assert!(ad().property("big", "v".repeat(251)).txt_entries().is_ok());
    }

    #[test]
    fn the_whole_record_must_fit_one_packet() {
        let mut big = ad();
        for i in 0..6 {
            big = big.property(format!("k{i}"), "v".repeat(240));
        }
        match advertise_error(big) {
            DiscoveryError::TxtTooLarge {
                instance,
                size,
                max,
            } => {
                assert_eq!(instance, "Ann's game");
                assert_eq!(max, MAX_TXT_BYTES);
                assert!(size > MAX_TXT_BYTES, "{size}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn instance_names_come_out_of_full_names() {
        assert_eq!(
            instance_of("Ann's Game. Room 1._echostream._udp.local.").as_deref(),
            Some("Ann's Game. Room 1")
        );
        assert_eq!(
            instance_of("x._EchoStream._UDP.Local.").as_deref(),
            Some("x")
        );
        for other in [
            "x._http._tcp.local.",
            "._echostream._udp.local.",
            "_echostream._udp.local.",
            "x_echostream._udp.local.",
            "",
            "é",
            "éé._echostream._udp.local",
        ] {
            assert_eq!(instance_of(other), None, "{other:?}");
        }
        assert_eq!(unescape_label(r"a\.b\\c"), r"a.b\c");
        assert_eq!(unescape_label(r"trailing\"), "trailing");
    }

    #[test]
    fn addresses_are_ordered_for_connecting_and_scoped_only_when_link_local() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let ula: Ipv6Addr = "fd00::1".parse().unwrap();
        let v4 = Ipv4Addr::new(192, 168, 1, 2);
        let addrs = socket_addrs(
            [
                (IpAddr::V6(ll), 3),
                (IpAddr::V6(ula), 3),
                (IpAddr::V4(v4), 0),
                (IpAddr::V4(v4), 0),
            ],
            9,
        );
        assert_eq!(
            addrs,
            vec![
                SocketAddr::from((v4, 9)),
                SocketAddr::V6(SocketAddrV6::new(ula, 9, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(ll, 9, 0, 3)),
            ]
        );
    }

    fn resolved(ad: Advertisement) -> ServiceEvent {
        let info = ad.service_info().unwrap();
        ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service()))
    }

    fn removed(instance: &str) -> ServiceEvent {
        ServiceEvent::ServiceRemoved(
            SERVICE_TYPE.to_owned(),
            format!("{instance}.{SERVICE_TYPE}"),
        )
    }

    fn lan() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    }

    /// Every change `state` has to tell, in order.
    fn drain(state: &mut BrowseState) -> Vec<DiscoveryEvent> {
        std::iter::from_fn(|| state.take_change()).collect()
    }

    fn found(event: &DiscoveryEvent) -> &Discovered {
        match event {
            DiscoveryEvent::Found(found) => found,
            other => panic!("expected a Found, got {other:?}"),
        }
    }

    #[test]
    fn changes_are_reported_once_each_in_order() {
        let mut state = BrowseState::default();
        let first = resolved(ad().address(lan()));
        assert!(state.apply(first.clone()));
        let events = drain(&mut state);
        assert_eq!(events.len(), 1);
        assert_eq!(found(&events[0]).instance, "Ann's game");
        assert!(!state.apply(first), "no news, no change");
        assert_eq!(drain(&mut state), vec![]);

        assert!(state.apply(resolved(ad().address(lan()).property("map", "dunes"))));
        assert!(state.apply(resolved(
            Advertisement::new("Bob's game", "echostream/1", 1).address(lan())
        )));
        let events = drain(&mut state);
        assert_eq!(events.len(), 2);
        assert_eq!(found(&events[0]).property("map"), Some("dunes"));
        assert_eq!(found(&events[1]).instance, "Bob's game");

        // Removal names the instance as first published, whatever the case on the wire.
        assert!(state.apply(removed("ANN'S GAME")));
        assert_eq!(
            drain(&mut state),
            vec![DiscoveryEvent::Lost("Ann's game".to_owned())]
        );
        assert!(!state.apply(removed("Ann's game")), "lost once");
        assert_eq!(state.present.len(), 1);
    }

    #[test]
    fn other_services_and_strangers_change_nothing() {
        let mut state = BrowseState::default();
        let mut other = ServiceInfo::new(
            "_http._tcp.local.",
            "web",
            "web.local.",
            "10.0.0.3",
            80,
            None::<HashMap<String, String>>,
        )
        .unwrap()
        .as_resolved_service();
        other.port = 81;
        assert!(!state.apply(ServiceEvent::ServiceResolved(Box::new(other))));
        assert!(!state.apply(removed("stranger")));
        assert!(!state.apply(ServiceEvent::ServiceRemoved(
            "_http._tcp.local.".into(),
            "web._http._tcp.local.".into()
        )));
        assert!(!state.apply(ServiceEvent::SearchStarted(SERVICE_TYPE.into())));
        assert_eq!(drain(&mut state), vec![]);
    }

    #[test]
    fn an_unpolled_browser_reports_only_the_latest_state() {
        let mut state = BrowseState::default();
        // Many updates of one endpoint while nobody polls: one pending change, the last one.
        for players in 0..5000 {
            state.apply(resolved(
                ad().address(lan()).property("players", players.to_string()),
            ));
        }
        assert_eq!(state.pending.len(), 1);
        let events = drain(&mut state);
        assert_eq!(events.len(), 1);
        assert_eq!(found(&events[0]).property("players"), Some("4999"));

        // An endpoint that came and went unseen is never reported.
        let flash = || Advertisement::new("flash", "echostream/1", 1).address(lan());
        state.apply(resolved(flash()));
        state.apply(removed("flash"));
        assert_eq!(drain(&mut state), vec![]);

        // One that went and came back unchanged while unseen did not change for the user.
        state.apply(removed("Ann's game"));
        state.apply(resolved(ad().address(lan()).property("players", "4999")));
        assert_eq!(drain(&mut state), vec![]);

        // One that went and came back changed is reported as found, with the new data.
        state.apply(removed("Ann's game"));
        state.apply(resolved(ad().address(lan()).property("players", "0")));
        let events = drain(&mut state);
        assert_eq!(found(&events[0]).property("players"), Some("0"));
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn handles_and_their_futures_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Advertiser>();
        send_sync::<Browser>();
        send_sync::<Discovered>();
        send_sync::<DiscoveryError>();
        send_sync::<Filter>();
        fn send<T: Send>(_: &T) {}
        // Type-checked, never run: what tokio::spawn requires of these futures.
        let _ = |browser: &mut Browser, advertiser: Advertiser| {
            send(&browser.next());
            send(&browser.discover("x", Duration::ZERO));
            send(&advertiser.stop_async());
        };
    }

    fn endpoint(instance: &str, protocol: &str, room: &str) -> Discovered {
        discovered(
            &ad_for(instance, protocol)
                .property("room", room)
                .service_info()
                .unwrap()
                .as_resolved_service(),
        )
        .unwrap()
    }

    fn ad_for(instance: &str, protocol: &str) -> Advertisement {
        Advertisement::new(instance, protocol, 1).address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    }

    #[test]
    fn filters_require_every_condition() {
        let lamp = endpoint("Lamp", "echostream/1", "hall");
        assert!(Filter::any().matches(&lamp));
        assert!(Filter::from("lamp").matches(&lamp), "DNS names ignore case");
        assert!(!Filter::from(String::from("lamp 2")).matches(&lamp));
        assert!(Filter::any().protocol("echostream/1").matches(&lamp));
        assert!(!Filter::any().protocol("echostream/2").matches(&lamp));
        assert!(Filter::any().property("ROOM", "hall").matches(&lamp));
        assert!(
            !Filter::any().property("room", "Hall").matches(&lamp),
            "values are exact"
        );
        assert!(!Filter::any().property("floor", "1").matches(&lamp));
        assert!(Filter::any().matching(|d| d.port == 1).matches(&lamp));
        assert!(
            !Filter::instance("lamp")
                .protocol("echostream/1")
                .matching(|_| false)
                .matches(&lamp)
        );
    }

    #[test]
    fn filters_and_errors_say_what_was_looked_for() {
        assert_eq!(Filter::any().to_string(), "any endpoint");
        let filter = Filter::instance("lamp")
            .protocol("echostream/1")
            .property("room", "hall")
            .matching(|_| true);
        assert_eq!(
            filter.to_string(),
            "instance \"lamp\", protocol \"echostream/1\", room=\"hall\", a custom predicate"
        );
        assert_eq!(format!("{filter:?}"), format!("Filter({filter})"));

        let silent = DiscoveryError::Timeout {
            filter: "instance \"lamp\"".into(),
            waited: Duration::from_secs(2),
            seen: vec![],
        };
        assert_eq!(
            silent.to_string(),
            "no EchoStream endpoint matching instance \"lamp\" answered within 2s \
             (no endpoint answered at all)"
        );
        let others = DiscoveryError::Timeout {
            filter: "any endpoint".into(),
            waited: Duration::from_millis(1500),
            seen: vec!["a".into(), "b".into()],
        };
        assert!(
            others
                .to_string()
                .ends_with("(non-matching endpoints seen: a, b)"),
            "{others}"
        );
        assert_eq!(
            TxtIssue::MalformedFingerprint { value: "zz".into() }.to_string(),
            "malformed fingerprint \"zz\""
        );
    }
}
