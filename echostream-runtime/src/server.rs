//! [`Server`]: an endpoint that accepts connections, one [`Session`](crate::Session) each.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Endpoint, ServerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::Context;
use crate::endpoint::{self, Parts, Shared, Side, endpoint_builder_methods};
use crate::error::Error;
use crate::netsim::NetSim;
use crate::proto::v1::ErrorCode;
use crate::protocol::{self, ALPN};
use crate::session::CLOSE_LINGER;
use crate::sessions::Sessions;
use crate::tls::{Fingerprint, ServerTls};

/// A running server: accepts connections, serves the handlers of its router on each, and exposes
/// its live sessions. Cheap to clone.
///
/// It runs until [`Server::shutdown`] or until the last handle is dropped, which closes every
/// connection at once with `SHUTDOWN`.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    fingerprint: Fingerprint,
    stop: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    netsim: Option<NetSim>,
}

/// Configures and starts a [`Server`].
#[must_use]
pub struct ServerBuilder {
    parts: Parts,
    tls: Option<ServerTls>,
}

endpoint_builder_methods!(ServerBuilder);

impl ServerBuilder {
    /// The server's certificate and how clients are verified (mandatory).
    pub fn tls(mut self, tls: ServerTls) -> ServerBuilder {
        self.tls = Some(tls);
        self
    }

    /// Binds the UDP socket, runs the context's start hooks and the plugins' `on_server_start`,
    /// and starts accepting connections.
    pub async fn bind(
        self,
        addr: impl tokio::net::ToSocketAddrs + fmt::Display,
    ) -> Result<Server, Error> {
        let tls = self.tls.ok_or(Error::NoTls)?;
        let addr = resolve(&addr).await?;
        let mut server_config = ServerConfig::with_crypto(tls.quic_config(&[ALPN])?);
        server_config.transport_config(self.parts.config.transport());
        let (endpoint, netsim) = match &self.parts.netsim {
            None => (endpoint::quinn_endpoint(addr, Some(server_config)), None),
            Some(sim) => match crate::netsim::endpoint(addr, sim.clone(), Some(server_config)) {
                Ok((endpoint, handle)) => (Ok(endpoint), Some(handle)),
                Err(e) => (Err(e), None),
            },
        };
        let endpoint = endpoint.map_err(|source| Error::Bind { addr, source })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let shared = self.parts.into_shared(Side::Server);
        if let Err(error) = endpoint::start(&shared).await {
            endpoint.close(protocol::close_code(ErrorCode::Shutdown), b"start failed");
            return Err(error);
        }
        let (stop, stopped) = watch::channel(false);
        let early = !tls.authenticates_clients();
        let accept = tokio::spawn(accept(endpoint.clone(), shared.clone(), stopped, early));
        tracing::info!(%local_addr, fingerprint = %tls.fingerprint(), "server listening");
        Ok(Server {
            inner: Arc::new(Inner {
                endpoint,
                shared,
                local_addr,
                fingerprint: tls.fingerprint(),
                stop,
                accept: Mutex::new(Some(accept)),
                netsim,
            }),
        })
    }
}

impl Server {
    /// A builder with the default configuration and an empty router.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            parts: Parts::default(),
            tls: None,
        }
    }

    /// The address the server listens on (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The fingerprint of the server's certificate, for clients to pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// The network simulator the server runs on, if it was built with `.netsim(...)`.
    pub fn netsim(&self) -> Option<&NetSim> {
        self.inner.netsim.as_ref()
    }

    /// The live sessions, for lookups, iteration and broadcasts.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.shared.sessions
    }

    /// The server's context.
    pub fn context(&self) -> &Context {
        &self.inner.shared.context
    }

    /// Shuts down gracefully: stops accepting connections, then shuts every session down at
    /// once as [`Session::shutdown`](crate::Session::shutdown) does (a go-away, so its peer makes no new calls; up to
    /// `grace` for the calls being served to finish and for the events already emitted to be
    /// delivered; then a close with `SHUTDOWN`), and runs the context's stop hooks. Calling it
    /// again does nothing more.
    pub async fn shutdown(&self, grace: Duration) {
        if self.inner.stop.send_replace(true) {
            return;
        }
        // A grace too long to represent (`Duration::MAX`) waits for every call.
        let deadline = Instant::now().checked_add(grace);
        self.inner.endpoint.set_server_config(None);
        let accept = self
            .inner
            .accept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        let sessions = self.sessions().list();
        tracing::info!(sessions = sessions.len(), ?grace, "server shutting down");
        // Every session at once: go-away, calls drained and events delivered within the grace
        // period, then closed.
        let mut closing = tokio::task::JoinSet::new();
        for session in sessions {
            closing.spawn(async move { session.shutdown_by(deadline, "server shut down").await });
        }
        while closing.join_next().await.is_some() {}
        let code = protocol::close_code(ErrorCode::Shutdown);
        self.inner.endpoint.close(code, b"server shut down");
        let _ = tokio::time::timeout(CLOSE_LINGER, self.inner.endpoint.wait_idle()).await;
        if let Err(error) = self.inner.shared.context.stop().await {
            tracing::warn!(%error, "a stop hook failed");
        }
        tracing::info!("server shut down");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.stop.send_replace(true) {
            self.endpoint
                .close(protocol::close_code(ErrorCode::Shutdown), b"server dropped");
        }
        if let Some(accept) = self
            .accept
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            accept.abort();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.inner.local_addr)
            .field("sessions", &self.sessions().len())
            .finish_non_exhaustive()
    }
}

/// Resolves `addr` to its first socket address.
pub(crate) async fn resolve(
    addr: &(impl tokio::net::ToSocketAddrs + fmt::Display),
) -> Result<SocketAddr, Error> {
    let resolve_error = |source| Error::Resolve {
        addr: addr.to_string(),
        source,
    };
    let mut addrs = tokio::net::lookup_host(addr).await.map_err(resolve_error)?;
    addrs.next().ok_or_else(|| {
        resolve_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })
}

/// Completes the TLS handshake of a connection, then its hello exchange.
async fn establish_after_handshake(
    connecting: quinn::Connecting,
    shared: &Arc<Shared>,
) -> Result<crate::session::Session, Error> {
    let conn = connecting.await.map_err(Error::from_connection)?;
    endpoint::establish(conn, shared.clone(), None).await
}

/// Accepts connections until told to stop; each becomes a session in its own task. With
/// `early`, sessions start in 0.5-RTT: before the client's handshake completes.
async fn accept(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    early: bool,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Some(incoming) = incoming else { return };
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            // Into 0.5-RTT at once (unless clients must first prove who they are): a resuming
            // client's early hello and idempotent calls are served before its handshake
            // completes, and a new client gets this server's hello a round trip sooner.
            let result = match incoming.accept() {
                Ok(connecting) if early => match connecting.into_0rtt() {
                    Ok((conn, accepted)) => {
                        endpoint::establish(conn, shared.clone(), Some(accepted)).await
                    }
                    Err(connecting) => establish_after_handshake(connecting, &shared).await,
                },
                Ok(connecting) => establish_after_handshake(connecting, &shared).await,
                Err(error) => Err(Error::from_connection(error)),
            };
            if let Err(error) = result {
                tracing::warn!(%remote, %error, "connection refused");
                crate::plugin::notify(&shared.plugins, "on_connection_refused", |p| {
                    p.on_connection_refused(remote, &error)
                });
            }
        });
    }
}
