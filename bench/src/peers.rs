//! The two sides of every comparison: a serving thread with an EchoStream server and a raw
//! quinn server, and the calling side's connections to both.
//!
//! Each side runs a single-threaded tokio runtime on its own OS thread, so that on a
//! two-core machine each gets one core, and EchoStream and raw quinn share them alike. Both
//! servers use the same TLS 1.3 configuration (ring, a self-signed certificate pinned by the
//! client) and the same QUIC flow-control windows and datagram buffers (EchoStream's
//! defaults); raw quinn's other settings are quinn's defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::tls::{ClientTls, Fingerprint, ServerTls};
use echostream_runtime::{Client, Played, Server, Session, StreamHandler, StreamInfo, async_trait};

/// The ALPN of the raw quinn server: it has nothing to do with EchoStream's protocol.
pub const RAW_ALPN: &[u8] = b"raw-bench";
/// The name of EchoStream's echo rpc.
pub const ECHO: &str = "echo";
/// The name of EchoStream's counted event.
pub const TICK: &str = "tick";
/// The name of EchoStream's reliable stream, whose handler counts bytes.
pub const BULK: &str = "bulk";
/// The name of EchoStream's datagram stream, whose handler counts frames.
pub const MEDIA: &str = "media";
/// The first byte of a raw uni-stream carrying length-prefixed events (one length byte).
pub const RAW_EVENTS: u8 = b'E';
/// The first byte of a raw uni-stream carrying bulk bytes.
pub const RAW_BULK: u8 = b'B';

/// What the serving side has received, read by the calling side to know when work is done.
#[derive(Default)]
pub struct Received {
    /// Events EchoStream's handler saw.
    pub events: AtomicU64,
    /// Length-prefixed events the raw server parsed.
    pub raw_events: AtomicU64,
    /// Payload bytes of frames EchoStream's reliable stream handler saw.
    pub bulk_bytes: AtomicU64,
    /// Bytes the raw server read from bulk streams (length prefixes included).
    pub raw_bulk_bytes: AtomicU64,
    /// Complete frames EchoStream's datagram stream handler saw.
    pub media_frames: AtomicU64,
    /// Datagrams the raw server received.
    pub raw_datagrams: AtomicU64,
}

/// The same QUIC windows and datagram buffers as EchoStream's default configuration.
pub fn raw_transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(2 * 1024 * 1024))
        .datagram_receive_buffer_size(Some(4 * 1024 * 1024))
        .datagram_send_buffer_size(2 * 1024 * 1024);
    Arc::new(transport)
}

/// A raw quinn server endpoint on 127.0.0.1 with `tls`'s certificate.
pub fn raw_server(tls: &ServerTls) -> quinn::Endpoint {
    let crypto = tls.quic_config(&[RAW_ALPN]).expect("raw server TLS");
    let mut config = quinn::ServerConfig::with_crypto(crypto);
    config.transport_config(raw_transport());
    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).expect("raw server binds")
}

/// A raw quinn client endpoint on 127.0.0.1 and its configuration, pinning `fingerprint`.
pub fn raw_client(fingerprint: Fingerprint) -> (quinn::Endpoint, quinn::ClientConfig) {
    let tls = ClientTls::pinned(fingerprint);
    let mut config =
        quinn::ClientConfig::new(tls.quic_config(&[RAW_ALPN]).expect("raw client TLS"));
    config.transport_config(raw_transport());
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("raw client binds");
    (endpoint, config)
}

/// A single-threaded tokio runtime: one per side, one core each.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Counts the bytes of EchoStream's reliable stream.
struct Bulk(Arc<Received>);

#[async_trait]
impl StreamHandler for Bulk {
    fn name(&self) -> &str {
        BULK
    }

    async fn handle(&self, _: &Session, _: &StreamInfo, frame: Played<Bytes>) {
        self.0
            .bulk_bytes
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
    }
}

/// Counts the complete frames of EchoStream's datagram stream.
struct Media(Arc<Received>);

#[async_trait]
impl StreamHandler for Media {
    fn name(&self) -> &str {
        MEDIA
    }

    async fn handle(&self, _: &Session, _: &StreamInfo, _: Played<Bytes>) {
        self.0.media_frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the serving thread tells the calling side once both servers listen.
struct Listening {
    echostream: SocketAddr,
    raw: SocketAddr,
    fingerprint: Fingerprint,
}

/// The serving thread; stops its servers and ends when dropped.
pub struct ServingThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServingThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The calling side's connections to both servers, and the serving side's counters.
pub struct Peers {
    /// EchoStream's client session (default configuration, bound to 127.0.0.1).
    pub session: Session,
    /// The raw quinn connection.
    pub raw: quinn::Connection,
    /// What the serving side received.
    pub received: Arc<Received>,
    /// Kept so the endpoints live as long as the connections.
    _client: Client,
    _raw_endpoint: quinn::Endpoint,
    _serving: ServingThread,
}

impl Peers {
    /// Starts the serving thread and connects to both of its servers from the current
    /// (calling) runtime.
    pub async fn start() -> Peers {
        let received = Arc::new(Received::default());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("serving".into())
            .spawn({
                let received = received.clone();
                move || current_thread().block_on(serve(received, ready_tx, stop_rx))
            })
            .expect("serving thread");
        let serving = ServingThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let listening = ready_rx.await.expect("the serving thread started");
        let client = Client::builder()
            .tls(ClientTls::pinned(listening.fingerprint))
            // Like the raw client: the default dual-stack socket takes the kernel's longer IPv6
            // path to an IPv4 address.
            .bind_addr("127.0.0.1:0".parse().unwrap())
            .build()
            .await
            .expect("EchoStream client");
        let session = client
            .connect(listening.echostream, "localhost")
            .await
            .expect("EchoStream connects");
        let (endpoint, config) = raw_client(listening.fingerprint);
        let raw = endpoint
            .connect_with(config, listening.raw, "localhost")
            .expect("raw connect")
            .await
            .expect("raw quinn connects");
        Peers {
            session,
            raw,
            received,
            _client: client,
            _raw_endpoint: endpoint,
            _serving: serving,
        }
    }
}

async fn serve(
    received: Arc<Received>,
    ready: tokio::sync::oneshot::Sender<Listening>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let tls = ServerTls::self_signed(["localhost"]).expect("self-signed certificate");
    let events = received.clone();
    let server = Server::builder()
        .tls(tls.clone())
        .routes(|r| {
            r.rpc(ECHO, |_, request| async move { Ok(request.data) });
            r.event(TICK, move |_, _| {
                events.events.fetch_add(1, Ordering::Relaxed);
                async {}
            });
            r.add_stream(Bulk(received.clone()));
            r.add_stream(Media(received.clone()));
        })
        .bind("127.0.0.1:0")
        .await
        .expect("EchoStream server binds");
    let raw = raw_server(&tls);
    let _ = ready.send(Listening {
        echostream: server.local_addr(),
        raw: raw.local_addr().expect("raw address"),
        fingerprint: server.fingerprint(),
    });
    let raw_task = tokio::spawn(async move {
        while let Some(incoming) = raw.accept().await {
            let Ok(conn) = incoming.await else { continue };
            tokio::spawn(raw_bi(conn.clone()));
            tokio::spawn(raw_uni(conn.clone(), received.clone()));
            let received = received.clone();
            tokio::spawn(async move {
                while conn.read_datagram().await.is_ok() {
                    received.raw_datagrams.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let _ = stop.await;
    raw_task.abort();
    server.shutdown(Duration::from_millis(200)).await;
}

/// Raw rpcs: each bi-stream's request is read to its end and written back.
async fn raw_bi(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if let Ok(data) = recv.read_to_end(1 << 24).await {
                let _ = send.write_all(&data).await;
                let _ = send.finish();
            }
        });
    }
}

/// Raw uni-streams: events (counted as their length prefixes are parsed) or bulk bytes.
async fn raw_uni(conn: quinn::Connection, received: Arc<Received>) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let received = received.clone();
        tokio::spawn(async move {
            let mut kind = None;
            let mut pending = 0usize;
            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                let mut bytes = &chunk.bytes[..];
                if bytes.is_empty() {
                    continue;
                }
                let kind = *kind.get_or_insert_with(|| {
                    let first = bytes[0];
                    bytes = &bytes[1..];
                    first
                });
                if kind == RAW_BULK {
                    received
                        .raw_bulk_bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    continue;
                }
                let mut events = 0;
                while !bytes.is_empty() {
                    if pending == 0 {
                        pending = 1 + bytes[0] as usize;
                    }
                    let take = pending.min(bytes.len());
                    bytes = &bytes[take..];
                    pending -= take;
                    if pending == 0 {
                        events += 1;
                    }
                }
                received.raw_events.fetch_add(events, Ordering::Relaxed);
            }
        });
    }
}

/// Waits until `counter` reaches `target`, panicking with `what` after `limit` (a benchmark
/// that lost work must say so rather than hang or report a rate for work not done).
pub async fn wait_for(counter: &AtomicU64, target: u64, what: &str, limit: Duration) {
    let start = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        assert!(
            start.elapsed() < limit,
            "{what}: {} of {target} after {limit:?}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
