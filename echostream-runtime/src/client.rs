//! [`Client`]: an endpoint that connects to servers, one [`Session`] per connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{ClientConfig, Endpoint};
use tokio::time::Instant;

use crate::context::Context;
use crate::endpoint::{self, Parts, Shared, Side, endpoint_builder_methods};
use crate::error::Error;
use crate::netsim::NetSim;
use crate::proto::v1::ErrorCode;
use crate::protocol::{self, ALPN, PeerHello};
use crate::server::resolve;
use crate::session::{CLOSE_LINGER, Session};
use crate::sessions::Sessions;
use crate::tls::ClientTls;

/// How many servers' hellos a client remembers for 0-RTT (as many as TLS sessions).
const REMEMBERED_SERVERS: usize = 256;

/// A client endpoint: one UDP socket from which it connects to any number of servers. Cheap to
/// clone. Its sessions serve the client's own router, so servers can call it back.
///
/// Reuse one client for reconnections: it keeps the TLS session tickets and the server's hello
/// that let a reconnection resume with 0-RTT, so that calls marked idempotent reach the server
/// in the very first flight (see [`EarlyData`](crate::EarlyData)).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    config: ClientConfig,
    netsim: Option<NetSim>,
    /// The hello of each server connected to (by address and name), for 0-RTT reconnections.
    hellos: Mutex<HashMap<(SocketAddr, String), PeerHello>>,
    /// Set by [`Client::shutdown`] and [`Client::close`]: no new connections.
    stopping: AtomicBool,
    /// Set once the context's stop hooks ran (they run once).
    stopped: AtomicBool,
}

impl Inner {
    fn remember(&self, key: (SocketAddr, String), hello: PeerHello) {
        let mut hellos = self.hellos.lock().unwrap_or_else(|e| e.into_inner());
        if hellos.len() >= REMEMBERED_SERVERS && !hellos.contains_key(&key) {
            hellos.clear();
        }
        hellos.insert(key, hello);
    }
}

/// Configures a [`Client`].
#[must_use]
pub struct ClientBuilder {
    parts: Parts,
    tls: Option<ClientTls>,
    bind: Option<SocketAddr>,
}

endpoint_builder_methods!(ClientBuilder);

impl ClientBuilder {
    /// How servers are verified, and the client's certificate for mutual TLS (mandatory).
    pub fn tls(mut self, tls: ClientTls) -> ClientBuilder {
        self.tls = Some(tls);
        self
    }

    /// The local address to bind (default: any address, any port; IPv6 dual-stack where
    /// available, else IPv4).
    pub fn bind_addr(mut self, addr: SocketAddr) -> ClientBuilder {
        self.bind = Some(addr);
        self
    }

    /// Binds the socket, runs the context's start hooks and the plugins' `on_server_start`.
    pub async fn build(self) -> Result<Client, Error> {
        let tls = self.tls.ok_or(Error::NoTls)?;
        let mut config = ClientConfig::new(tls.quic_config(&[ALPN])?);
        config.transport_config(self.parts.config.transport());
        let (endpoint, netsim) = match (self.bind, &self.parts.netsim) {
            (bind, Some(sim)) => {
                let addr = bind.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
                let (endpoint, handle) = crate::netsim::endpoint(addr, sim.clone(), None)
                    .map_err(|source| Error::Bind { addr, source })?;
                (endpoint, Some(handle))
            }
            (Some(addr), None) => (
                endpoint::quinn_endpoint(addr, None)
                    .map_err(|source| Error::Bind { addr, source })?,
                None,
            ),
            (None, None) => {
                let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
                let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
                let endpoint = endpoint::quinn_endpoint(any6, None)
                    .or_else(|_| endpoint::quinn_endpoint(any4, None))
                    .map_err(|source| Error::Bind { addr: any4, source })?;
                (endpoint, None)
            }
        };
        let shared = self.parts.into_shared(Side::Client);
        endpoint::start(&shared).await?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                shared,
                config,
                netsim,
                hellos: Mutex::default(),
                stopping: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// Builds a client and connects it to `addr` (see [`Client::connect`]).
    pub async fn connect(
        self,
        addr: impl tokio::net::ToSocketAddrs + fmt::Display,
        server_name: &str,
    ) -> Result<Session, Error> {
        self.build().await?.connect(addr, server_name).await
    }
}

impl Client {
    /// A builder with the default configuration and an empty router.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            parts: Parts::default(),
            tls: None,
            bind: None,
        }
    }

    /// Connects to the server at `addr`, verifying its certificate for `server_name` (pinned
    /// certificates match whatever the name), and exchanges hellos.
    ///
    /// The session stays open while the application holds a handle to it (this one, its
    /// clones, those of [`Client::sessions`], or a stream sender opened on it), and closes with
    /// code 0 when the last is dropped, so a reconnect loop does not leak connections.
    ///
    /// Errors: [`Error::Handshake`] if the server is not trusted (or refuses this client's
    /// certificate), [`Error::VersionMismatch`] if it speaks another protocol version,
    /// [`Error::Connection`] if it cannot be reached (after the idle timeout),
    /// [`Error::Connect`] (with [`quinn::ConnectError::EndpointStopping`]) once the client is
    /// shutting down or closed.
    pub async fn connect(
        &self,
        addr: impl tokio::net::ToSocketAddrs + fmt::Display,
        server_name: &str,
    ) -> Result<Session, Error> {
        let addr = resolve(&addr).await?;
        let addr = match (addr, self.inner.endpoint.local_addr()) {
            (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
                SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port()))
            }
            _ => addr,
        };
        if self.inner.stopping.load(SeqCst) {
            return Err(Error::Connect {
                addr,
                source: quinn::ConnectError::EndpointStopping,
            });
        }
        let connecting = self
            .inner
            .endpoint
            .connect_with(self.inner.config.clone(), addr, server_name)
            .map_err(|source| Error::Connect { addr, source })?;
        let key = (addr, server_name.to_owned());
        // A server talked to before: resume with 0-RTT, starting on the hello it sent then.
        let remembered = self
            .inner
            .hellos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let connecting = match remembered {
            Some(remembered) => match connecting.into_0rtt() {
                Ok((conn, accepted)) => {
                    let hellos = self.inner.clone();
                    let remember =
                        Box::new(move |hello: &PeerHello| hellos.remember(key, hello.clone()));
                    let session = endpoint::establish_early(
                        conn,
                        self.inner.shared.clone(),
                        accepted,
                        remembered,
                        remember,
                    )
                    .await?;
                    tracing::debug!(session = session.id(), %addr, "connected with 0-RTT");
                    return Ok(session);
                }
                Err(connecting) => connecting,
            },
            None => connecting,
        };
        let conn = connecting.await.map_err(Error::from_connection)?;
        let session = endpoint::establish(conn, self.inner.shared.clone(), None).await?;
        self.inner.remember(key, session.peer_hello());
        tracing::debug!(session = session.id(), %addr, "connected");
        Ok(session)
    }

    /// The network simulator the client runs on, if it was built with `.netsim(...)`.
    pub fn netsim(&self) -> Option<&NetSim> {
        self.inner.netsim.as_ref()
    }

    /// The client's live sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.shared.sessions
    }

    /// The client's context.
    pub fn context(&self) -> &Context {
        &self.inner.shared.context
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// Closes every session of this client at once (code `SHUTDOWN`), waits briefly for the
    /// closes to be sent, and runs the context's stop hooks. Events still queued are lost; see
    /// [`Client::shutdown`] to deliver them first. It also cuts short a shutdown under way.
    pub async fn close(&self) {
        self.inner.stopping.store(true, SeqCst);
        let code = protocol::close_code(ErrorCode::Shutdown);
        for session in self.sessions().list() {
            session.close_with(code, "client closed");
        }
        self.stop(b"client closed").await;
    }

    /// Shuts down gracefully, as [`Server::shutdown`](crate::Server::shutdown) does: refuses
    /// new connections, then shuts every session down at once as
    /// [`Session::shutdown`] does (a go-away, so its server makes no new calls; up to `grace`
    /// for the calls being served to finish and for the events already emitted to be
    /// delivered; then a close with `SHUTDOWN`), closes the endpoint and runs the context's stop
    /// hooks. Calling it again, or after [`Client::close`], does nothing more.
    pub async fn shutdown(&self, grace: Duration) {
        if self.inner.stopping.swap(true, SeqCst) {
            return;
        }
        // A grace too long to represent (`Duration::MAX`) waits for every call.
        let deadline = Instant::now().checked_add(grace);
        let sessions = self.sessions().list();
        tracing::info!(sessions = sessions.len(), ?grace, "client shutting down");
        let mut closing = tokio::task::JoinSet::new();
        for session in sessions {
            closing.spawn(async move { session.shutdown_by(deadline, "client shut down").await });
        }
        while closing.join_next().await.is_some() {}
        self.stop(b"client shut down").await;
    }

    /// Closes the endpoint (and any session still open), waits briefly for the closes to be
    /// sent, and runs the stop hooks unless they ran already.
    async fn stop(&self, reason: &[u8]) {
        let code = protocol::close_code(ErrorCode::Shutdown);
        self.inner.endpoint.close(code, reason);
        let _ = tokio::time::timeout(CLOSE_LINGER, self.inner.endpoint.wait_idle()).await;
        if self.inner.stopped.swap(true, SeqCst) {
            return;
        }
        if let Err(error) = self.inner.shared.context.stop().await {
            tracing::warn!(%error, "a stop hook failed");
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("local_addr", &self.local_addr())
            .field("sessions", &self.sessions().len())
            .finish_non_exhaustive()
    }
}
