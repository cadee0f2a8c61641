//! [`Session`]: one QUIC connection to a peer, and everything either side does over it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use quinn::{Connection, RecvStream, SendStream, VarInt, ZeroRttAccepted};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::call::{CallContext, CallKind, CallOptions, Deadlines, Metadata};
use crate::clock::{Clock, ClockEstimate, ClockMapping, ClockSync};
use crate::codec::{EncodedFrame, Encoder};
use crate::context::Context;
use crate::early::{EarlyData, Handshake, handshake_complete};
use crate::endpoint::{Shared, Side};
use crate::error::CloseReason;
use crate::io::{FrameReader, ReadFrameError, status_from_stream_code, status_from_write};
use crate::keepalive::{self, PingsInFlight, PongSample, RttEstimator};
use crate::panic::catch_unwind_future;
use crate::proto::v1::{
    ErrorCode, EventPack, Frame, GoAway, RpcRequest, RpcResponse, frame::Payload,
};
use crate::protocol::{self, PeerHello, STREAM_CONTROL, STREAM_EVENTS, STREAM_STREAM};
use crate::queue::{OutQueue, PushError};
use crate::state::State;
use crate::status::{Code, Status};
use crate::stream::{self, StreamInfo, StreamOptions, StreamOut, StreamSender};
use crate::tls::PeerIdentity;
use crate::unreliable::Datagrams;

/// How many calls the accept loop takes in before yielding to the other tasks of its runtime.
const ACCEPT_BUDGET: u32 = 16;

/// Most frames a writer task takes from its queue for one vectored write.
const WRITE_BATCH: usize = 64;

/// How long a graceful shutdown waits, after closing the connection, for the close to be sent.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Far enough ahead to mean "never" for a timer (a keepalive interval of `Duration::MAX`).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// One connection to a peer: the handle through which this side calls, emits and streams to
/// the peer, and which handlers receive to learn who called.
///
/// Cheap to clone (a reference count); all clones are the same session. A session lives until
/// it is closed: by [`Session::close`] or [`Session::shutdown`], by the peer, by its endpoint's
/// shutdown, or when the peer goes silent for the idle timeout. Once closed, every call in
/// flight fails at once with `UNAVAILABLE`, and so does every later call.
///
/// A client's session also closes (with code 0, "session dropped") once the application holds
/// no handle to it any more, as a quinn `Connection` does: the handle `Client::connect`
/// returned and its clones, those `Client::sessions()` gives out, and the stream senders opened
/// on it. (The session a handler receives does not count: keep a clone of one of those.) A
/// server's sessions belong to the server, until they or it close.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
    /// On the application's handles of a client session: the last one dropped closes it.
    #[expect(dead_code, reason = "held only for its Drop, which closes the session")]
    owner: Option<Arc<Owner>>,
}

/// Closes a client session when the application's last handle to it is dropped.
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let session = Session {
            inner: self.inner.clone(),
            owner: None,
        };
        if !session.is_closed() {
            tracing::debug!(
                session = session.id(),
                "the application dropped the session; closing it"
            );
            session.close_with(VarInt::from_u32(0), "session dropped");
        }
    }
}

pub(crate) struct Inner {
    id: u64,
    pub(crate) conn: Connection,
    pub(crate) shared: Arc<Shared>,
    state: State,
    /// The peer's hello: received, or remembered from an earlier connection while the one of
    /// this connection is on its way (0-RTT).
    peer: PeerHello,
    /// The hello received on this connection, when `peer` is a remembered one.
    peer_hello: OnceLock<PeerHello>,
    /// The peer's frame limit now.
    peer_max_frame_size: AtomicUsize,
    /// Told of the peer's hello once received (a client remembering it for 0-RTT).
    on_peer_hello: Mutex<Option<HelloHook>>,
    /// Notified when `peer_hello` is set.
    hello_arrived: Notify,
    peer_identity: OnceLock<PeerIdentity>,
    pub(crate) handshake: Handshake,
    next_call_id: AtomicU64,
    /// The deadlines of this side's calls in flight.
    deadlines: Deadlines,
    pub(crate) next_stream_id: AtomicU64,
    timing: Mutex<Timing>,
    /// Bumped at every clock sample, so that stream playouts know to refresh their mapping.
    pub(crate) clock_generation: AtomicU64,
    pub(crate) counters: Counters,
    inflight: AtomicUsize,
    drained: Notify,
    /// Bytes of the peer's incomplete requests and stream frames held, and their limit.
    pub(crate) budget: Arc<crate::io::Budget>,
    events: Arc<OutQueue<Frame>>,
    /// Set once the events writer is done: after a graceful close, once the peer acknowledged
    /// every event written.
    events_flushed: watch::Sender<bool>,
    control: Arc<OutQueue<Frame>>,
    pub(crate) streams: Mutex<HashMap<u64, Weak<StreamOut>>>,
    /// The peer's streams being received, by id.
    pub(crate) inbound_streams: Mutex<HashMap<u64, StreamInfo>>,
    /// Datagram streams: pacing and sending, reassembly and routing.
    pub(crate) datagrams: Datagrams,
    groups: Mutex<BTreeSet<String>>,
    /// The peer sent a go-away: no new calls to it.
    peer_going_away: AtomicBool,
    /// This side sent a go-away: no new calls from the peer.
    going_away: AtomicBool,
    local_close: Mutex<Option<CloseReason>>,
    /// This side closed the connection (its close reason may not be recorded yet).
    closing: AtomicBool,
    close_reason: OnceLock<CloseReason>,
    closed: watch::Sender<bool>,
    /// The owner of a client session's application handles, while one lives.
    owner: OnceLock<Weak<Owner>>,
}

/// What a client does with a server's hello: remember it for the next 0-RTT connection.
pub(crate) type HelloHook = Box<dyn FnOnce(&PeerHello) + Send>;

/// How a session starts: its control streams and where its handshake is.
pub(crate) struct Start {
    /// The peer's hello, or the one remembered from an earlier connection (`control_recv` is
    /// then `None`: the peer's control stream and its hello are still to come).
    pub(crate) peer: PeerHello,
    pub(crate) control_send: SendStream,
    pub(crate) control_recv: Option<FrameReader>,
    pub(crate) handshake: Handshake,
    /// Resolves when the TLS handshake completes (or fails), if it was not complete yet.
    pub(crate) accepted: Option<ZeroRttAccepted>,
    pub(crate) on_peer_hello: Option<HelloHook>,
}

/// What the pings measured.
struct Timing {
    /// The pings sent and not answered yet: only their pongs are samples.
    pings: PingsInFlight,
    rtt: RttEstimator,
    last_pong: Option<PongSample>,
    sync: ClockSync,
}

/// Counters of one session, read with [`Session::stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) calls_sent: AtomicU64,
    pub(crate) calls_received: AtomicU64,
    pub(crate) calls_rejected: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) events_received: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) events_unhandled: AtomicU64,
    pub(crate) events_undecodable: AtomicU64,
    pub(crate) stream_frames_sent: AtomicU64,
    pub(crate) stream_frames_received: AtomicU64,
    pub(crate) stream_frames_dropped: AtomicU64,
    pub(crate) stream_frames_undecodable: AtomicU64,
    pub(crate) streams_refused: AtomicU64,
    pub(crate) control_frames_dropped: AtomicU64,
    pub(crate) middleware_dropped: AtomicU64,
}

/// What a session did and what it dropped, counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Calls this side made.
    pub calls_sent: u64,
    /// Calls the peer made that reached this side.
    pub calls_received: u64,
    /// Calls of the peer answered `RESOURCE_EXHAUSTED` because too many were being served.
    pub calls_rejected: u64,
    /// Handlers that panicked (answered `INTERNAL` for RPCs).
    pub handler_panics: u64,
    /// Events written to the connection.
    pub events_sent: u64,
    /// Events received from the peer.
    pub events_received: u64,
    /// Events emitted here but never sent: refused by a full queue or discarded when the
    /// connection closed.
    pub events_dropped: u64,
    /// Events received for a name without a handler.
    pub events_unhandled: u64,
    /// Events received that did not decode as the handler's message type.
    pub events_undecodable: u64,
    /// Named-stream frames written to the connection.
    pub stream_frames_sent: u64,
    /// Named-stream frames received from the peer.
    pub stream_frames_received: u64,
    /// Named-stream frames sent here but never delivered to the connection (full queue, refused
    /// or lost stream, closed connection).
    pub stream_frames_dropped: u64,
    /// Named-stream frames received that did not decode as the typed handler's message type
    /// (per stream: [`ReceiveStats::undecodable`](crate::ReceiveStats::undecodable)).
    pub stream_frames_undecodable: u64,
    /// Named streams of the peer refused for want of a handler (or by middleware).
    pub streams_refused: u64,
    /// Pongs and go-aways not sent because the control stream's queue was full: the peer
    /// stopped reading it (or pinged faster than it reads the answers).
    pub control_frames_dropped: u64,
    /// QUIC datagrams sent by datagram streams (a fragmented frame counts one per fragment).
    pub datagrams_sent: u64,
    /// QUIC datagrams received.
    pub datagrams_received: u64,
    /// Datagram frames of the peer dropped incomplete: a fragment missing after the reassembly
    /// timeout, evicted under the reassembly memory limits, or inconsistent fragments.
    pub datagram_frames_incomplete: u64,
    /// Datagrams of the peer refused as malformed or too large for their stream.
    pub datagrams_malformed: u64,
    /// Complete datagram frames of the peer for no open stream (never announced in time,
    /// refused or ended), dropped.
    pub datagram_frames_unrouted: u64,
    /// Frames dropped or failed by middleware, both directions.
    pub middleware_dropped: u64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Session {
    /// Builds the session of a connection whose hello is sent (and the peer's received, or
    /// remembered), and starts its tasks.
    pub(crate) fn start(conn: Connection, shared: Arc<Shared>, start: Start) -> Session {
        let Start {
            peer,
            control_send,
            control_recv,
            handshake,
            accepted,
            on_peer_hello,
        } = start;
        let config = &shared.config;
        let config_datagrams = config.datagrams;
        let peer_identity = OnceLock::new();
        if let Some(identity) = PeerIdentity::of(&conn) {
            let _ = peer_identity.set(identity);
        }
        let session = Session {
            inner: Arc::new(Inner {
                id: shared.sessions.next_id(),
                peer_identity,
                conn,
                state: State::new(),
                peer_max_frame_size: AtomicUsize::new(peer.max_frame_size),
                peer,
                peer_hello: OnceLock::new(),
                on_peer_hello: Mutex::new(on_peer_hello),
                hello_arrived: Notify::new(),
                handshake,
                next_call_id: AtomicU64::new(1),
                deadlines: Deadlines::default(),
                next_stream_id: AtomicU64::new(1),
                timing: Mutex::new(Timing {
                    pings: PingsInFlight::default(),
                    rtt: RttEstimator::default(),
                    last_pong: None,
                    sync: ClockSync::new(config.clock_sync.clone()),
                }),
                clock_generation: AtomicU64::new(0),
                counters: Counters::default(),
                inflight: AtomicUsize::new(0),
                drained: Notify::new(),
                budget: Arc::new(crate::io::Budget::new(config.incomplete_frame_budget())),
                events: Arc::new(OutQueue::new(config.event_queue)),
                events_flushed: watch::channel(false).0,
                control: Arc::new(OutQueue::new(crate::queue::QueueLimits {
                    frames: 64,
                    bytes: 64 * 1024,
                })),
                streams: Mutex::new(HashMap::new()),
                inbound_streams: Mutex::new(HashMap::new()),
                datagrams: Datagrams::new(config),
                groups: Mutex::new(BTreeSet::new()),
                peer_going_away: AtomicBool::new(false),
                going_away: AtomicBool::new(false),
                local_close: Mutex::new(None),
                closing: AtomicBool::new(false),
                close_reason: OnceLock::new(),
                closed: watch::channel(false).0,
                owner: OnceLock::new(),
                shared,
            }),
            owner: None,
        };
        session.inner.shared.sessions.insert(&session);
        tracing::info!(
            session = session.id(),
            remote = %session.remote_address(),
            peer_agent = %session.inner.peer.agent,
            early_data = ?session.early_data(),
            side = session.inner.shared.side.as_str(),
            "session established"
        );
        tokio::spawn(session.clone().watch_close());
        tokio::spawn(session.clone().accept_calls());
        let peer_control = control_recv.is_none();
        tokio::spawn(session.clone().accept_uni_streams(peer_control));
        match control_recv {
            Some(reader) => {
                tokio::spawn(session.clone().read_control(reader, false));
            }
            None => {
                tokio::spawn(session.clone().expect_hello());
            }
        }
        match (accepted, session.inner.shared.side) {
            (Some(accepted), Side::Client) => {
                tokio::spawn(session.clone().early_client(accepted, control_send));
            }
            (accepted, _) => {
                if let Some(accepted) = accepted {
                    tokio::spawn(session.clone().early_server(accepted));
                }
                tokio::spawn(session.clone().write_control(control_send));
            }
        }
        // The events stream takes its stream id now, before the application can open named
        // streams: they could otherwise use up the peer's credit and hold events back.
        let events_stream = if session.inner.handshake.is_confirmed() {
            open_uni_now(&session.inner.conn)
        } else {
            None
        };
        tokio::spawn(session.clone().write_events(events_stream));
        if config_datagrams {
            tokio::spawn(crate::unreliable::receive(session.clone()));
        }
        // The handle for the application (and the plugins): on a client, it owns the session.
        let session = match session.inner.shared.side {
            Side::Client => {
                let owner = Arc::new(Owner {
                    inner: session.inner.clone(),
                });
                let _ = session.inner.owner.set(Arc::downgrade(&owner));
                Session {
                    inner: session.inner.clone(),
                    owner: Some(owner),
                }
            }
            Side::Server => session,
        };
        crate::plugin::notify(&session.inner.shared.plugins, "on_new_session", |p| {
            p.on_new_session(&session)
        });
        session
    }

    /// A handle for the runtime's own tasks and registries: it does not keep a client session
    /// open.
    pub(crate) fn detached(&self) -> Session {
        Session {
            inner: self.inner.clone(),
            owner: None,
        }
    }

    /// A handle for the application: on a client session, one that keeps it open (if an
    /// application handle is still alive; else the session is closing anyway).
    pub(crate) fn attached(&self) -> Session {
        Session {
            inner: self.inner.clone(),
            owner: self.inner.owner.get().and_then(Weak::upgrade),
        }
    }

    /// The session's id, unique among the sessions of its endpoint.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Calls method `name` of the peer with `data` and waits for the answer, with the endpoint's
    /// default deadline. See [`Session::request_with`].
    pub async fn request(&self, name: &str, data: Bytes) -> Result<Bytes, Status> {
        self.request_with(name, data, &crate::call::DEFAULT_OPTIONS)
            .await
    }

    /// Calls method `name` of the peer with `data` and waits for the answer.
    ///
    /// Each call travels on its own QUIC stream, so calls never wait for one another. Errors:
    /// the handler's status, `NOT_FOUND` for an unknown method, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED` when the peer serves too many calls or `data` exceeds the peer's
    /// frame limit, `UNAVAILABLE` when the connection is lost or closing. Dropping the returned
    /// future cancels the call: its stream is reset and the peer's handler is cancelled.
    pub async fn request_with(
        &self,
        name: &str,
        data: Bytes,
        options: &CallOptions,
    ) -> Result<Bytes, Status> {
        let inner = &*self.inner;
        inner.check_can_call()?;
        let now = Instant::now();
        let deadline = options.effective_deadline(now, inner.shared.config.default_timeout);
        let id = inner.next_call_id.fetch_add(1, Relaxed);
        let timeout_us = deadline.map_or(0, |d| {
            let left = d.saturating_duration_since(now);
            u64::try_from(left.as_micros()).unwrap_or(u64::MAX).max(1)
        });
        let frame = Frame {
            metadata: options.metadata.clone(),
            payload: Some(Payload::Request(RpcRequest {
                id,
                name: name.to_owned(),
                timeout_us,
                idempotent: options.idempotent,
                data,
            })),
        };
        bump(&inner.counters.calls_sent);
        let exchange = std::pin::pin!(self.exchange(id, frame, deadline, options.idempotent));
        match deadline {
            None => exchange.await,
            Some(deadline) => match inner.deadlines.timeout_at(deadline, exchange).await {
                Some(result) => result,
                None => Err(Status::deadline_exceeded(format!(
                    "no answer to {name} within the deadline"
                ))),
            },
        }
    }

    /// Calls method `name` with a protobuf message and decodes the answer as `Resp`
    /// (`INTERNAL` if it does not decode).
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        name: &str,
        request: &Req,
        options: &CallOptions,
    ) -> Result<Resp, Status> {
        let data = Bytes::from(request.encode_to_vec());
        let answer = self.request_with(name, data, options).await?;
        Resp::decode(answer)
            .map_err(|e| Status::internal(format!("the answer to {name} does not decode: {e}")))
    }

    async fn exchange(
        &self,
        id: u64,
        frame: Frame,
        deadline: Option<Instant>,
        idempotent: bool,
    ) -> Result<Bytes, Status> {
        let inner = &*self.inner;
        // Before the handshake is confirmed (0-RTT), only replay-safe calls may go.
        if !idempotent && !inner.handshake.is_confirmed() && !inner.handshake.wait().await {
            return Err(self.unavailable());
        }
        let frame = self.outbound(frame).await?;
        let frame =
            frame.ok_or_else(|| Status::cancelled("request dropped by outbound middleware"))?;
        let mut encoded = inner.encode(frame)?;
        if inner.handshake.is_confirmed() {
            return self.attempt(id, &mut encoded, deadline).await;
        }
        // Early data: if the server rejects it, the call goes again after the handshake.
        let mut again = encoded.clone();
        match self.attempt(id, &mut encoded, deadline).await {
            Err(status) if status.code() == Code::Unavailable && self.rejected_early() => {
                if !inner.handshake.wait().await {
                    return Err(self.unavailable());
                }
                self.attempt(id, &mut again, deadline).await
            }
            result => result,
        }
    }

    /// Whether the server rejected this session's early data.
    fn rejected_early(&self) -> bool {
        !self.is_closed()
            && matches!(
                self.inner.handshake.early_data(),
                EarlyData::Rejected | EarlyData::Pending
            )
    }

    /// One try of a call: its stream, its request, its answer.
    async fn attempt(
        &self,
        id: u64,
        encoded: &mut crate::codec::EncodedFrame,
        deadline: Option<Instant>,
    ) -> Result<Bytes, Status> {
        let inner = &*self.inner;
        let (send, recv) = inner.conn.open_bi().await.map_err(|_| self.unavailable())?;
        let mut call = CallStreams {
            send,
            recv: FrameReader::new(recv, inner.shared.config.max_frame_size),
            deadline,
            done: false,
        };
        inner.datagrams.note_stream_write();
        call.send
            .write_all_chunks(encoded.chunks())
            .await
            .map_err(|e| status_from_write(e, || self.unavailable().message().to_owned()))?;
        // Fails only if the peer already stopped the stream; the read below reports that.
        let _ = call.send.finish();
        let response = match call.recv.single().await {
            Ok(frame) => frame,
            Err(ReadFrameError::Read(quinn::ReadError::Reset(code))) => {
                call.done = true;
                return Err(status_from_stream_code(code, "call reset"));
            }
            // (A response's reader has no budget: the caller chose to wait for it.)
            Err(ReadFrameError::Read(_) | ReadFrameError::OverBudget { .. }) => {
                return Err(self.unavailable());
            }
            Err(ReadFrameError::Codec(e)) => {
                self.protocol_error(codec_close_code(&e), &format!("bad response frame: {e}"));
                return Err(self.unavailable());
            }
        };
        call.done = true;
        let Some(response) = self.inbound(response).await? else {
            return Err(Status::cancelled("response dropped by inbound middleware"));
        };
        match response.payload {
            Some(Payload::Response(RpcResponse {
                id: answered,
                code,
                message,
                data,
            })) if answered == id => {
                if code == Code::Ok.as_u32() {
                    Ok(data)
                } else {
                    Err(Status::from_wire(code, message))
                }
            }
            _ => {
                self.protocol_error(
                    ErrorCode::ProtocolError,
                    "an RPC stream was answered with something else than its response",
                );
                Err(self.unavailable())
            }
        }
    }

    /// Sends event `name` with `data` to the peer. Events of one session arrive in the order they
    /// were emitted. Returns once the event is queued; it never waits for the network.
    ///
    /// Errors: `RESOURCE_EXHAUSTED` if the session's event queue is full (the event is counted in
    /// [`SessionStats::events_dropped`]) or the event exceeds the peer's frame limit,
    /// `UNAVAILABLE` if the session is closed, or the status of failing outbound middleware.
    pub async fn emit(&self, name: &str, data: Bytes) -> Result<(), Status> {
        self.emit_with(name, data, Metadata::new()).await
    }

    /// Sends event `name` with `data` and frame metadata. See [`Session::emit`].
    pub async fn emit_with(
        &self,
        name: &str,
        data: Bytes,
        metadata: Metadata,
    ) -> Result<(), Status> {
        let inner = &*self.inner;
        if self.is_closed() {
            return Err(self.unavailable());
        }
        let frame = Frame {
            metadata,
            payload: Some(Payload::Event(EventPack {
                name: name.to_owned(),
                data,
            })),
        };
        let Some(frame) = self.outbound(frame).await? else {
            return Ok(());
        };
        let size = inner.check_frame_size(&frame)?;
        match inner.events.push(frame, size) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                bump(&inner.counters.events_dropped);
                let limits = inner.events.limits();
                Err(Status::resource_exhausted(format!(
                    "event queue full ({} events or {} bytes waiting): event {name} dropped",
                    limits.frames, limits.bytes
                )))
            }
            Err(PushError::Closed) => Err(self.unavailable()),
        }
    }

    /// Sends event `name` with a protobuf message. See [`Session::emit`].
    pub async fn emit_message<M: Message>(&self, name: &str, message: &M) -> Result<(), Status> {
        self.emit(name, Bytes::from(message.encode_to_vec())).await
    }

    /// Sends event `name` with a protobuf message and frame metadata. See [`Session::emit`].
    pub async fn emit_message_with<M: Message>(
        &self,
        name: &str,
        message: &M,
        metadata: Metadata,
    ) -> Result<(), Status> {
        self.emit_with(name, Bytes::from(message.encode_to_vec()), metadata)
            .await
    }

    /// Opens a named real-time stream to the peer, which routes it to its handler for `name`.
    /// Errors: `UNAVAILABLE` if the session is closed, or the status of failing outbound
    /// middleware. A peer without a handler for `name` refuses the stream once its first frame
    /// arrives; the sends after the refusal reached this side fail `NOT_FOUND` (frames sent in
    /// between are counted as dropped).
    ///
    /// The stream is announced with its first frame: one finished or dropped before any frame
    /// is never seen by the peer (its handler's `on_open`/`on_end` do not run).
    pub async fn open_stream(
        &self,
        name: &str,
        options: StreamOptions,
    ) -> Result<StreamSender, Status> {
        stream::open(self, name, options).await
    }

    /// Sends `data` on the open stream `stream_id` (see [`Session::open_stream`] and
    /// [`StreamSender::send`]). `NOT_FOUND` if no stream of that id is open.
    pub async fn write_stream(&self, stream_id: u64, data: Bytes) -> Result<(), Status> {
        let sender = self
            .inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream_id)
            .and_then(Weak::upgrade);
        match sender {
            Some(out) => StreamSender::from_out(out).send(data).await,
            None => Err(Status::not_found(format!(
                "no open stream with id {stream_id}"
            ))),
        }
    }

    /// The peer's streams this side is receiving now, with their statistics.
    pub fn inbound_streams(&self) -> Vec<StreamInfo> {
        let streams = self
            .inner
            .inbound_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<StreamInfo> = streams.values().cloned().collect();
        list.sort_by_key(StreamInfo::id);
        list
    }

    /// The smoothed round-trip time measured by keepalive pings, once one was answered.
    pub fn rtt(&self) -> Option<Duration> {
        self.inner.timing().rtt.smoothed()
    }

    /// The timestamps of the last answered ping.
    pub fn last_pong(&self) -> Option<PongSample> {
        self.inner.timing().last_pong
    }

    /// The estimated offset of the peer's clock from this endpoint's (`peer ≈ local + offset`),
    /// with the round trip of the sample it comes from, a bound on its error, and whether enough
    /// samples were taken to trust it; `None` before the first ping was answered. Pings go out
    /// every 50 ms at first, then once a second (see
    /// [`Config::clock_sync`](crate::Config::clock_sync)), and the sample with the smallest
    /// round trip of the last 32 wins (NTP's minimum-delay filter).
    pub fn clock_sync(&self) -> Option<ClockEstimate> {
        self.inner
            .timing()
            .sync
            .estimate(self.inner.shared.clock.instant())
    }

    /// The clock this endpoint reads (see the builders' `clock`).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.shared.clock
    }

    /// The mapping of the peer's timestamps into the local clock, once synced; with the clock
    /// generation it was taken at.
    pub(crate) fn clock_mapping(&self) -> (u64, Option<ClockMapping>) {
        let generation = self.inner.clock_generation.load(Relaxed);
        let timing = self.inner.timing();
        let mapping = timing
            .sync
            .is_synced()
            .then(|| timing.sync.mapping(&*self.inner.shared.clock))
            .flatten();
        (generation, mapping)
    }

    /// The certificate identity the peer proved in the TLS handshake; `None` if it presented no
    /// certificate (clients usually do not, unless mutual TLS is configured).
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.inner.peer_identity.get()
    }

    /// Whether this session used 0-RTT early data, and what became of it (see
    /// [`EarlyData`]). A client resumes with 0-RTT when it reconnects to a server it has talked
    /// to, through the same [`Client`](crate::Client).
    pub fn early_data(&self) -> EarlyData {
        self.inner.handshake.early_data()
    }

    /// Whether the TLS handshake is confirmed. Until it is (0-RTT), only calls marked
    /// idempotent go out; everything else waits for it.
    pub fn handshake_confirmed(&self) -> bool {
        self.inner.handshake.is_confirmed()
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.conn.remote_address()
    }

    /// The implementation the peer announced in its hello (e.g. `"echostream-rust/0.1.0"`).
    pub fn peer_agent(&self) -> &str {
        &self
            .inner
            .peer_hello
            .get()
            .unwrap_or(&self.inner.peer)
            .agent
    }

    /// The peer's hello as known now.
    pub(crate) fn peer_hello(&self) -> PeerHello {
        self.inner
            .peer_hello
            .get()
            .unwrap_or(&self.inner.peer)
            .clone()
    }

    /// The largest frame the peer accepts, from its hello.
    pub fn peer_max_frame_size(&self) -> usize {
        self.inner.peer_max_frame_size.load(Relaxed)
    }

    /// This session's own typed state.
    pub fn state(&self) -> &State {
        &self.inner.state
    }

    /// The endpoint's context, shared by all its sessions.
    pub fn context(&self) -> &Context {
        &self.inner.shared.context
    }

    /// The live sessions of this session's endpoint (as `Server::sessions` gives them), so a
    /// handler can reach the others: look one up, or broadcast to a group.
    pub fn sessions(&self) -> &crate::Sessions {
        &self.inner.shared.sessions
    }

    /// Adds the session to broadcast group `group` of its endpoint. Sessions leave their groups
    /// when they close.
    pub fn join(&self, group: &str) {
        let mut groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_closed() && groups.insert(group.to_owned()) {
            self.inner.shared.sessions.join(group, self);
        }
    }

    /// Removes the session from broadcast group `group`.
    pub fn leave(&self, group: &str) {
        let mut groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        if groups.remove(group) {
            self.inner.shared.sessions.leave(group, self.id());
        }
    }

    /// The groups the session belongs to, sorted.
    pub fn groups(&self) -> Vec<String> {
        let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.iter().cloned().collect()
    }

    /// Closes the connection at once with an application error `code` (0 for a normal close,
    /// or [`FIRST_APPLICATION_CLOSE_CODE`](crate::protocol::FIRST_APPLICATION_CLOSE_CODE) and
    /// above for the application's own codes) and a reason for the peer's logs. Calls in flight
    /// on both sides fail `UNAVAILABLE`. For a graceful end, see [`Session::shutdown`].
    ///
    /// Codes 1 to 0xFF are the protocol's own (`PROTOCOL_ERROR`, `SHUTDOWN`, ...): an
    /// application cannot claim one, and such a code is sent as `FIRST_APPLICATION_CLOSE_CODE`
    /// (with a warning) so the peer never mistakes it for a protocol event.
    pub fn close(&self, code: u32, reason: &str) {
        let code = if (1..protocol::FIRST_APPLICATION_CLOSE_CODE).contains(&code) {
            tracing::warn!(
                session = self.id(),
                code,
                "close code reserved for the protocol; sent as the first application code"
            );
            protocol::FIRST_APPLICATION_CLOSE_CODE
        } else {
            code
        };
        self.close_with(VarInt::from_u32(code), reason);
    }

    pub(crate) fn close_with(&self, code: VarInt, reason: &str) {
        {
            let mut local = self
                .inner
                .local_close
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if local.is_none() && self.inner.close_reason.get().is_none() {
                *local = Some(CloseReason::Local {
                    code: code.into_inner(),
                    reason: reason.to_owned(),
                });
            }
        }
        self.inner.closing.store(true, Relaxed);
        self.inner.conn.close(code, reason.as_bytes());
    }

    /// Waits until the session is closed and its cleanup done (plugins told), and returns why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.closed.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: waiting cannot fail.
        let _ = rx.wait_for(|closed| *closed).await;
        self.close_reason()
            .unwrap_or(CloseReason::Transport("closed".into()))
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.close_reason.get().cloned()
    }

    /// Whether the connection is closed (or closing).
    pub fn is_closed(&self) -> bool {
        self.inner.close_reason.get().is_some() || self.inner.conn.close_reason().is_some()
    }

    /// What the session did and dropped so far.
    pub fn stats(&self) -> SessionStats {
        let c = &self.inner.counters;
        let d = self.inner.datagrams.counters();
        SessionStats {
            calls_sent: c.calls_sent.load(Relaxed),
            calls_received: c.calls_received.load(Relaxed),
            calls_rejected: c.calls_rejected.load(Relaxed),
            handler_panics: c.handler_panics.load(Relaxed),
            events_sent: c.events_sent.load(Relaxed),
            events_received: c.events_received.load(Relaxed),
            events_dropped: c.events_dropped.load(Relaxed),
            events_unhandled: c.events_unhandled.load(Relaxed),
            events_undecodable: c.events_undecodable.load(Relaxed),
            stream_frames_sent: c.stream_frames_sent.load(Relaxed),
            stream_frames_received: c.stream_frames_received.load(Relaxed),
            stream_frames_dropped: c.stream_frames_dropped.load(Relaxed),
            stream_frames_undecodable: c.stream_frames_undecodable.load(Relaxed),
            streams_refused: c.streams_refused.load(Relaxed),
            control_frames_dropped: c.control_frames_dropped.load(Relaxed),
            datagrams_sent: d.sent,
            datagrams_received: d.received,
            datagram_frames_incomplete: d.incomplete,
            datagrams_malformed: d.malformed,
            datagram_frames_unrouted: d.unrouted,
            middleware_dropped: c.middleware_dropped.load(Relaxed),
        }
    }

    /// The QUIC connection's own statistics: packets, bytes, losses, congestion window, path MTU.
    pub fn transport_stats(&self) -> quinn::ConnectionStats {
        self.inner.conn.stats()
    }

    /// Bytes of the peer's incomplete frames (requests and named-stream frames on their way)
    /// this session holds now; at most
    /// [`Config::max_incomplete_bytes`](crate::Config::max_incomplete_bytes).
    pub fn incomplete_bytes(&self) -> usize {
        self.inner.budget.used()
    }

    /// Whether the peer sent a go-away (it is shutting down): new calls to it fail
    /// `UNAVAILABLE` at once, without a stream.
    pub fn peer_going_away(&self) -> bool {
        self.inner.peer_going_away.load(Relaxed)
    }

    /// How many of the peer's calls are being served right now.
    pub fn calls_in_flight(&self) -> usize {
        self.inner.inflight.load(Relaxed)
    }

    /// Records an event that did not decode as its handler's message type.
    pub(crate) fn note_undecodable_event(&self, name: &str, error: &prost::DecodeError) {
        bump(&self.inner.counters.events_undecodable);
        tracing::warn!(session = self.id(), event = name, %error, "event does not decode; dropped");
    }

    /// Counts a named-stream frame that did not decode as its typed handler's message type.
    pub(crate) fn count_undecodable_stream_frame(&self) {
        bump(&self.inner.counters.stream_frames_undecodable);
    }

    /// The status of calls that cannot proceed because the connection is gone.
    pub(crate) fn unavailable(&self) -> Status {
        match self.close_reason().or_else(|| {
            self.inner
                .conn
                .close_reason()
                .map(|e| CloseReason::from_connection(&e, self.local_close().as_ref()))
        }) {
            Some(reason) => Status::unavailable(format!("session closed: {reason}")),
            None => Status::unavailable("session closed"),
        }
    }

    fn local_close(&self) -> Option<CloseReason> {
        self.inner
            .local_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes the connection after a panic inside the runtime itself.
    fn internal_error(&self, panic: &str) {
        tracing::error!(
            session = self.id(),
            panic,
            "internal error; closing the connection"
        );
        self.close_with(
            protocol::close_code(ErrorCode::InternalError),
            "internal error",
        );
    }

    /// Closes the connection because the peer broke the protocol.
    pub(crate) fn protocol_error(&self, code: ErrorCode, detail: &str) {
        tracing::warn!(
            session = self.id(),
            remote = %self.remote_address(),
            code = code.as_str_name(),
            detail,
            "protocol error; closing the connection"
        );
        self.close_with(protocol::close_code(code), detail);
    }

    /// Runs `frame` through the outbound middleware.
    pub(crate) fn outbound(&self, frame: Frame) -> Passing<'_> {
        if self.inner.shared.middleware.is_empty() {
            return Passing::Through(Some(frame));
        }
        Passing::Layers(Box::pin(async move {
            let result = self.inner.shared.middleware.outbound(self, frame).await;
            if !matches!(result, Ok(Some(_))) {
                bump(&self.inner.counters.middleware_dropped);
            }
            result
        }))
    }

    /// Runs `frame` through the inbound middleware.
    pub(crate) fn inbound(&self, frame: Frame) -> Passing<'_> {
        if self.inner.shared.middleware.is_empty() {
            return Passing::Through(Some(frame));
        }
        Passing::Layers(Box::pin(async move {
            let result = self.inner.shared.middleware.inbound(self, frame).await;
            if !matches!(result, Ok(Some(_))) {
                bump(&self.inner.counters.middleware_dropped);
            }
            result
        }))
    }

    /// Closes the session gracefully: sends the peer a go-away (it makes no new calls; calls
    /// that still arrive are answered `UNAVAILABLE`), waits up to `grace` for the peer's calls
    /// being served to finish and for the events already emitted to be delivered (the peer
    /// acknowledged them), then closes the connection with `SHUTDOWN` and waits briefly for the
    /// close to be sent. Events emitted after it started fail `UNAVAILABLE`; events still
    /// unsent when `grace` runs out are counted in [`SessionStats::events_dropped`]. A `grace`
    /// too long to represent (`Duration::MAX`) waits as long as it takes.
    ///
    /// For an immediate close, see [`Session::close`]; `Server::shutdown` does this for every
    /// session of a server at once.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now().checked_add(grace);
        self.shutdown_by(deadline, "session shut down").await;
    }

    /// [`Session::shutdown`] with an absolute deadline (`None`: no deadline).
    pub(crate) async fn shutdown_by(&self, deadline: Option<Instant>, reason: &str) {
        self.go_away(reason);
        let graceful = async {
            self.drained().await;
            self.flush_events().await;
        };
        let in_time = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, graceful).await.is_ok(),
            None => {
                graceful.await;
                true
            }
        };
        if !in_time {
            tracing::warn!(
                session = self.id(),
                calls = self.calls_in_flight(),
                "grace period over; cancelling the calls still in flight and dropping unsent events"
            );
        }
        self.close_with(protocol::close_code(ErrorCode::Shutdown), reason);
        let _ = tokio::time::timeout(CLOSE_LINGER, self.closed()).await;
    }

    /// Stops taking events and waits until the ones queued are written, the events stream is
    /// finished, and the peer has acknowledged all of it.
    async fn flush_events(&self) {
        self.inner.events.close();
        let mut flushed = self.inner.events_flushed.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: waiting cannot fail.
        let _ = flushed.wait_for(|done| *done).await;
    }

    /// Sends a go-away and refuses the peer's new calls from now on.
    pub(crate) fn go_away(&self, reason: &str) {
        if self.inner.going_away.swap(true, Relaxed) {
            return;
        }
        let frame = Frame {
            metadata: Metadata::new(),
            payload: Some(Payload::GoAway(GoAway {
                code: ErrorCode::Shutdown as u32,
                reason: reason.to_owned(),
            })),
        };
        // A full control queue means the peer stopped reading; the close that follows tells it.
        if self.inner.control.push(frame, 0).is_err() {
            bump(&self.inner.counters.control_frames_dropped);
            tracing::warn!(
                session = self.id(),
                "go-away not sent: the control queue is full (the peer does not read it)"
            );
        }
    }

    /// Waits until no call of the peer is being served.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.inner.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.inflight.load(Relaxed) == 0 {
                return;
            }
            notified.await;
        }
    }

    // ----- background tasks -----

    /// Waits for the connection to close, then cleans up and tells the plugins.
    async fn watch_close(self) {
        let error = self.inner.conn.closed().await;
        let reason = CloseReason::from_connection(&error, self.local_close().as_ref());
        let _ = self.inner.close_reason.set(reason.clone());
        let lost_events = self.inner.events.close_and_clear();
        self.inner
            .counters
            .events_dropped
            .fetch_add(lost_events as u64, Relaxed);
        self.inner.control.close_and_clear();
        let streams: Vec<_> = self
            .inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .filter_map(|(_, s)| s.upgrade())
            .collect();
        for stream in streams {
            stream.abandon(&self);
        }
        self.inner.shared.sessions.remove(&self);
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        tracing::info!(
            session = self.id(),
            remote = %self.remote_address(),
            side = self.inner.shared.side.as_str(),
            %reason,
            "session closed"
        );
        crate::plugin::notify(&self.inner.shared.plugins, "on_session_closed", |p| {
            p.on_session_closed(&self)
        });
        self.inner.closed.send_replace(true);
    }

    /// Accepts the peer's calls, one task per call.
    ///
    /// On a runtime with a single worker thread, a call is first polled right here, and gets a
    /// task of its own only if it does not complete at once: that saves a task per call, and
    /// costs nothing there, since no other thread could serve the other calls meanwhile. With
    /// more workers every call is spawned at once, so the work a handler does before its first
    /// `.await` never holds up the session's other calls.
    async fn accept_calls(self) {
        let inline = tokio::runtime::Handle::current().metrics().num_workers() == 1;
        let mut accepted = 0u32;
        while let Ok((send, recv)) = self.inner.conn.accept_bi().await {
            accepted = accepted.wrapping_add(1);
            if accepted.is_multiple_of(ACCEPT_BUDGET) {
                // Let the connection send the answers so far: without this, a burst of calls is
                // answered as one burst, and caller and callee take turns instead of working at
                // the same time (measured: 115% instead of 175% CPU, 35% fewer calls per second).
                tokio::task::yield_now().await;
            }
            // Handlers and middleware have their panics caught already; this catches the
            // runtime's own, so a bug costs one connection, never the process. (Boxed, so
            // spawning moves a pointer rather than the call's state.)
            let mut call = catch_unwind_future(Box::pin(self.clone().serve_call(send, recv)));
            if inline {
                match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut call).poll(cx))).await {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(panic)) => {
                        self.internal_error(&panic);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            let session = self.clone();
            tokio::spawn(async move {
                if let Err(panic) = call.await {
                    session.internal_error(&panic);
                }
            });
        }
    }

    /// Serves one call of the peer.
    async fn serve_call(self, mut send: SendStream, recv: RecvStream) {
        let inner = &*self.inner;
        let mut reader = FrameReader::new(recv, inner.shared.config.max_frame_size)
            .with_budget(inner.budget.clone());
        let frame = match reader.single().await {
            Ok(frame) => frame,
            Err(ReadFrameError::Codec(e)) => {
                self.protocol_error(codec_close_code(&e), &format!("bad request frame: {e}"));
                return;
            }
            Err(ReadFrameError::OverBudget { limit }) => {
                // Too much of the peer's requests and stream frames is held incomplete: this
                // one is refused, the connection goes on.
                bump(&inner.counters.calls_rejected);
                tracing::warn!(
                    session = self.id(),
                    limit,
                    "incomplete requests exceed the session's budget; a call is refused"
                );
                let code = VarInt::from_u32(Code::ResourceExhausted.as_u32());
                reader.stop(Code::ResourceExhausted);
                let _ = send.reset(code);
                return;
            }
            // Reset by the caller before we read it, or connection lost: nobody to answer.
            Err(ReadFrameError::Read(_)) => return,
        };
        let Some(Payload::Request(request)) = &frame.payload else {
            self.protocol_error(
                ErrorCode::ProtocolError,
                "an RPC stream must start with a request",
            );
            return;
        };
        let id = request.id;
        let idempotent = request.idempotent;
        bump(&inner.counters.calls_received);
        // Early data may be a replay: only a call its caller declared replay-safe is served
        // before the handshake completes (a well-behaved client sends no other).
        let early = self.arrived_early();
        if early && !idempotent && !inner.handshake.wait().await {
            return;
        }
        let _inflight = Inflight::enter(inner);
        let max = inner.shared.config.max_concurrent_calls as usize;
        if inner.inflight.load(Relaxed) > max {
            bump(&inner.counters.calls_rejected);
            let status = Status::resource_exhausted(format!(
                "too many concurrent calls on this session (limit {max})"
            ));
            return self.respond(send, id, Err(status)).await;
        }
        if inner.going_away.load(Relaxed) {
            let status = Status::unavailable("the peer is shutting down");
            return self.respond(send, id, Err(status)).await;
        }
        let received_at = Instant::now();
        let frame = match self.inbound(frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                let _ = send.reset(VarInt::from_u32(Code::Cancelled.as_u32()));
                return;
            }
            Err(status) => return self.respond(send, id, Err(status)).await,
        };
        let Frame {
            metadata,
            payload: Some(Payload::Request(request)),
        } = frame
        else {
            let status =
                Status::internal("inbound middleware replaced a request with another frame");
            return self.respond(send, id, Err(status)).await;
        };
        let Some((name, handler)) = inner.shared.router.rpc_handler(&request.name) else {
            let status = Status::not_found(format!("unknown method {:?}", request.name));
            return self.respond(send, id, Err(status)).await;
        };
        // The peer chooses `timeout_us`: one too far to represent is no deadline.
        let deadline = (request.timeout_us > 0)
            .then(|| {
                crate::call::deadline_after(received_at, Duration::from_micros(request.timeout_us))
            })
            .flatten();
        let ctx = CallContext::new(CallKind::Rpc, id, name.clone(), deadline, metadata)
            .with_request_flags(idempotent, early);
        // The handler's future is dropped at the end of this block, before the answer is sent.
        let outcome = {
            let handled = ctx
                .clone()
                .scope(catch_unwind_future(handler.handle(&self, request)));
            tokio::pin!(handled);
            // Most handlers answer at once: poll once before arming cancellation and the
            // deadline, whose futures then live in their own allocation, not in every call's task.
            match std::future::poll_fn(|cx| Poll::Ready(handled.as_mut().poll(cx))).await {
                Poll::Ready(outcome) => Ended::Answered(outcome),
                Poll::Pending => Box::pin(wait_for_handler(handled, &send, deadline)).await,
            }
        };
        let result = match outcome {
            Ended::Answered(Ok(answer)) => answer,
            Ended::Answered(Err(panic)) => {
                bump(&inner.counters.handler_panics);
                tracing::error!(session = self.id(), method = %name, panic, "RPC handler panicked");
                Err(Status::internal(format!("the handler of {name} panicked")))
            }
            Ended::Stopped => {
                ctx.cancel();
                tracing::debug!(session = self.id(), method = %name, "call cancelled by the caller");
                return;
            }
            Ended::Expired => {
                ctx.cancel();
                Err(Status::deadline_exceeded(format!(
                    "{name} did not answer within the caller's deadline"
                )))
            }
        };
        self.respond(send, id, result).await;
    }

    /// Answers a call: encodes the response, runs outbound middleware, writes and finishes.
    async fn respond(&self, mut send: SendStream, id: u64, result: Result<Bytes, Status>) {
        let (code, message, data) = match result {
            Ok(data) => (Code::Ok.as_u32(), String::new(), data),
            // An error whose code says OK would reach the caller as an empty success.
            Err(status) if status.code() == Code::Ok => (
                Code::Internal.as_u32(),
                format!("the handler failed with code OK: {}", status.message()),
                Bytes::new(),
            ),
            Err(status) => (
                status.code().as_u32(),
                status.message().to_owned(),
                Bytes::new(),
            ),
        };
        let frame = Frame {
            metadata: Metadata::new(),
            payload: Some(Payload::Response(RpcResponse {
                id,
                code,
                message,
                data,
            })),
        };
        let frame = match self.outbound(frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                let _ = send.reset(VarInt::from_u32(Code::Cancelled.as_u32()));
                return;
            }
            Err(status) => error_response(id, &status),
        };
        let mut encoded = match self.inner.encode(frame) {
            Ok(encoded) => encoded,
            Err(status) => match self.inner.encode(error_response(id, &status)) {
                Ok(encoded) => encoded,
                Err(_) => {
                    // Not even the error fits the peer's limit: end the call with a reset.
                    let _ = send.reset(VarInt::from_u32(Code::Internal.as_u32()));
                    return;
                }
            },
        };
        // A failed write means the caller is gone: nobody is left to tell.
        self.inner.datagrams.note_stream_write();
        if send.write_all_chunks(encoded.chunks()).await.is_ok() {
            let _ = send.finish();
        }
    }

    /// Accepts the peer's unidirectional streams and dispatches them on their type byte.
    ///
    /// With `peer_control`, the peer's control stream is still to come (a 0-RTT client starts
    /// its session before the server's hello arrives): it must be the first stream accepted.
    async fn accept_uni_streams(self, peer_control: bool) {
        let events_seen = Arc::new(AtomicBool::new(false));
        let mut first = peer_control;
        while let Ok(recv) = self.inner.conn.accept_uni().await {
            let session = self.clone();
            let events_seen = events_seen.clone();
            let control_due = std::mem::take(&mut first);
            tokio::spawn(async move {
                let mut reader = FrameReader::new(recv, session.inner.shared.config.max_frame_size);
                match reader.read_stream_type().await {
                    Ok(Some(STREAM_CONTROL)) if control_due => {
                        session.read_control(reader, true).await
                    }
                    Ok(Some(other)) if control_due => session.protocol_error(
                        ErrorCode::ProtocolError,
                        &format!("the first stream must be the control stream, got type {other}"),
                    ),
                    Ok(Some(STREAM_EVENTS)) if !events_seen.swap(true, Relaxed) => {
                        session.read_events(reader).await
                    }
                    Ok(Some(STREAM_EVENTS)) => {
                        session.protocol_error(ErrorCode::ProtocolError, "a second events stream")
                    }
                    Ok(Some(STREAM_STREAM)) => stream::read(session, reader).await,
                    Ok(Some(STREAM_CONTROL)) => {
                        session.protocol_error(ErrorCode::ProtocolError, "a second control stream")
                    }
                    Ok(Some(other)) => session.protocol_error(
                        ErrorCode::ProtocolError,
                        &format!("unknown stream type {other}"),
                    ),
                    Ok(None) | Err(_) => {}
                }
            });
        }
    }

    /// Reads the peer's events stream and hands each event to its handlers, in order.
    async fn read_events(self, mut reader: FrameReader) {
        loop {
            let frame = match reader.next().await {
                Ok(Some(frame)) => frame,
                // (The events stream's reader has no budget: one frame at most is pending.)
                Ok(None) | Err(ReadFrameError::Read(_) | ReadFrameError::OverBudget { .. }) => {
                    return;
                }
                Err(ReadFrameError::Codec(e)) => {
                    return self
                        .protocol_error(codec_close_code(&e), &format!("bad event frame: {e}"));
                }
            };
            if !matches!(frame.payload, Some(Payload::Event(_))) {
                return self.protocol_error(
                    ErrorCode::ProtocolError,
                    "a non-event frame on the events stream",
                );
            }
            bump(&self.inner.counters.events_received);
            // Events are not replay-safe: early ones wait for the handshake.
            if !self.inner.handshake.is_confirmed() && !self.inner.handshake.wait().await {
                return;
            }
            self.dispatch_event(frame).await;
        }
    }

    async fn dispatch_event(&self, frame: Frame) {
        let frame = match self.inbound(frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(session = self.id(), %status, "inbound middleware failed an event");
                return;
            }
        };
        let Frame {
            metadata,
            payload: Some(Payload::Event(event)),
        } = frame
        else {
            tracing::warn!(
                session = self.id(),
                "inbound middleware replaced an event with another frame"
            );
            return;
        };
        let Some((name, handlers)) = self.inner.shared.router.event_handlers(&event.name) else {
            bump(&self.inner.counters.events_unhandled);
            tracing::debug!(session = self.id(), event = %event.name, "no handler for event");
            return;
        };
        let ctx = CallContext::new(CallKind::Event, 0, name.clone(), None, metadata);
        let last = handlers.len() - 1;
        let mut event = Some(event);
        for (i, handler) in handlers.iter().enumerate() {
            let event = if i == last {
                event.take().unwrap_or_default()
            } else {
                event.clone().unwrap_or_default()
            };
            let handled = ctx
                .clone()
                .scope(catch_unwind_future(handler.handle(self, event)));
            // A handler still running when the connection goes is cancelled: one stuck on a
            // channel, a lock or a call to the gone peer must not keep the session alive.
            let outcome = tokio::select! {
                biased;
                outcome = handled => outcome,
                _ = self.inner.conn.closed() => {
                    ctx.cancel();
                    tracing::debug!(session = self.id(), event = %name, "event handler cancelled: the connection closed");
                    return;
                }
            };
            if let Err(panic) = outcome {
                bump(&self.inner.counters.handler_panics);
                tracing::error!(session = self.id(), event = %name, panic, "event handler panicked");
            }
        }
    }

    /// Takes the hello of a peer whose session started on a remembered one: checks its version
    /// and applies its limits. `false` if the connection is closed for it.
    fn take_hello(&self, hello: crate::proto::v1::Hello) -> bool {
        match protocol::check_hello(hello, crate::codec::DEFAULT_MAX_FRAME_SIZE) {
            Ok(peer) => {
                self.inner
                    .peer_max_frame_size
                    .store(peer.max_frame_size, Relaxed);
                let hook = self
                    .inner
                    .on_peer_hello
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(hook) = hook {
                    hook(&peer);
                }
                let _ = self.inner.peer_hello.set(peer);
                self.inner.hello_arrived.notify_waiters();
                true
            }
            Err(version) => {
                let detail = format!(
                    "the peer speaks protocol version {version}, this endpoint speaks {}",
                    protocol::PROTOCOL_VERSION
                );
                tracing::warn!(session = self.id(), %detail, "closing the connection");
                self.close_with(protocol::close_code(ErrorCode::VersionMismatch), &detail);
                false
            }
        }
    }

    fn hello_timed_out(&self) {
        tracing::warn!(session = self.id(), "no hello within the handshake timeout");
        self.close_with(
            protocol::close_code(ErrorCode::HandshakeTimeout),
            "no hello within the handshake timeout",
        );
    }

    /// Closes the connection if the peer's hello (expected on a control stream not opened yet)
    /// does not arrive in time.
    async fn expect_hello(self) {
        let timeout = self.inner.shared.config.handshake_timeout;
        let arrived = async {
            loop {
                let notified = self.inner.hello_arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.peer_hello.get().is_some() {
                    return;
                }
                notified.await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(timeout, arrived) => {
                if self.inner.peer_hello.get().is_none() && !self.is_closed() {
                    self.hello_timed_out();
                }
            }
            _ = self.closed() => {}
        }
    }

    /// A 0-RTT client: waits for the handshake, then starts writing the control stream: the one
    /// its hello went on early if the server accepted the early data, or a new one with the
    /// hello again if it rejected it (0-RTT streams are then gone, and the new control stream is
    /// the first the server sees).
    async fn early_client(self, accepted: ZeroRttAccepted, early_control: SendStream) {
        let taken = accepted.await;
        if self.is_closed() {
            self.inner.handshake.fail();
            return;
        }
        let control = if taken {
            self.inner.handshake.confirm(EarlyData::Accepted);
            early_control
        } else {
            tracing::debug!(
                session = self.id(),
                "the server rejected the early data; sending again"
            );
            let config = &self.inner.shared.config;
            match crate::endpoint::open_control(
                &self.inner.conn,
                config.max_frame_size,
                config.max_concurrent_calls,
            )
            .await
            {
                Ok(control) => {
                    self.inner.handshake.confirm(EarlyData::Rejected);
                    control
                }
                Err(error) => {
                    tracing::debug!(session = self.id(), %error, "cannot send the hello again");
                    self.inner.handshake.fail();
                    return;
                }
            }
        };
        self.refresh_peer_identity();
        self.write_control(control).await;
    }

    /// A server whose session started before the TLS handshake was complete (0-RTT): marks it
    /// confirmed once it is. (On a server, quinn resolves the future when the handshake
    /// completes, with a value that means nothing.)
    async fn early_server(self, accepted: ZeroRttAccepted) {
        accepted.await;
        if self.is_closed() {
            self.inner.handshake.fail();
        } else {
            self.confirm_server();
        }
    }

    /// A server's handshake is complete: its session is confirmed.
    fn confirm_server(&self) {
        if !self.inner.handshake.is_confirmed() {
            self.inner.handshake.confirm(EarlyData::Accepted);
            self.refresh_peer_identity();
        }
    }

    /// Takes the peer's certificate identity once the handshake has proven it.
    fn refresh_peer_identity(&self) {
        if self.inner.peer_identity.get().is_none()
            && let Some(identity) = PeerIdentity::of(&self.inner.conn)
        {
            let _ = self.inner.peer_identity.set(identity);
        }
    }

    /// Whether a request read now arrived as early data: before the TLS handshake was complete.
    /// Only a server receives early data (what a server sends before that cannot be replayed).
    fn arrived_early(&self) -> bool {
        if self.inner.handshake.is_confirmed() || self.inner.shared.side == Side::Client {
            return false;
        }
        if handshake_complete(&self.inner.conn) {
            // Complete, but not marked yet: mark it now, so that the handler sees it so.
            self.confirm_server();
            return false;
        }
        true
    }

    /// Takes in a pong arriving at `t4`: a round trip and clock sample if it answers a ping
    /// this side sent, ignored otherwise (unsolicited, replayed, or inconsistent).
    fn take_pong(&self, pong: &crate::proto::v1::Pong, t4: u64) {
        let now = self.inner.shared.clock.instant();
        let mut timing = self.inner.timing();
        let max_rtt = self.inner.shared.config.idle_timeout;
        let Some(sample) = timing.pings.answer(pong, t4, max_rtt) else {
            drop(timing);
            tracing::debug!(
                session = self.id(),
                t1 = pong.t1,
                "a pong that answers no ping in flight, or with inconsistent timestamps; ignored"
            );
            return;
        };
        timing.rtt.update(sample.round_trip());
        timing.last_pong = Some(sample);
        match timing
            .sync
            .add_timestamps(sample.t1, sample.t2, sample.t3, sample.t4, now)
        {
            Ok(_) => {
                let synced = timing.sync.is_synced();
                drop(timing);
                if synced {
                    self.inner.clock_generation.fetch_add(1, Relaxed);
                }
            }
            Err(error) => {
                tracing::debug!(session = self.id(), %error, "clock sample rejected");
            }
        }
    }

    /// How long until the next ping: fast while the clock sync fills its window, then the
    /// resync interval, spaced out past the endpoint's ping budget, never longer than the
    /// keepalive interval.
    fn ping_interval(&self) -> Duration {
        let sync = self.inner.timing().sync.next_ping_interval();
        let sync = self.inner.shared.paced_ping_interval(sync);
        sync.min(self.inner.shared.config.keepalive_interval)
    }

    /// Reads the peer's control stream: pings, pongs and go-aways; first its hello if
    /// `hello_due` (a 0-RTT client, whose session started on a remembered hello).
    async fn read_control(self, mut reader: FrameReader, hello_due: bool) {
        if hello_due {
            let timeout = self.inner.shared.config.handshake_timeout;
            match tokio::time::timeout(timeout, reader.next()).await {
                Ok(Ok(Some(Frame {
                    payload: Some(Payload::Hello(hello)),
                    ..
                }))) => {
                    if !self.take_hello(hello) {
                        return;
                    }
                }
                Ok(Err(ReadFrameError::Codec(e))) => {
                    return self
                        .protocol_error(codec_close_code(&e), &format!("bad hello frame: {e}"));
                }
                Ok(Err(ReadFrameError::Read(_) | ReadFrameError::OverBudget { .. })) => return,
                Ok(Ok(_)) => {
                    return self.protocol_error(
                        ErrorCode::ProtocolError,
                        "the control stream must start with a hello",
                    );
                }
                Err(_) => return self.hello_timed_out(),
            }
        }
        let clock = self.inner.shared.clock.clone();
        loop {
            let frame = match reader.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(ReadFrameError::Read(_) | ReadFrameError::OverBudget { .. }) => {
                    if !self.is_closed() {
                        self.protocol_error(ErrorCode::ProtocolError, "the control stream ended");
                    }
                    return;
                }
                Err(ReadFrameError::Codec(e)) => {
                    return self
                        .protocol_error(codec_close_code(&e), &format!("bad control frame: {e}"));
                }
            };
            match frame.payload {
                Some(Payload::Ping(ping)) => {
                    let t2 = clock.now_micros();
                    // t3 is set when the pong is written.
                    let pong = Frame {
                        metadata: Metadata::new(),
                        payload: Some(Payload::Pong(keepalive::pong(&ping, t2, t2))),
                    };
                    if self.inner.control.push(pong, 0).is_err() {
                        // Harmless to the protocol (a pong may go unanswered), but counted.
                        bump(&self.inner.counters.control_frames_dropped);
                        tracing::debug!(
                            session = self.id(),
                            "pong not sent: the control queue is full"
                        );
                    }
                }
                Some(Payload::Pong(pong)) => self.take_pong(&pong, clock.now_micros()),
                Some(Payload::GoAway(go_away)) => {
                    tracing::info!(session = self.id(), reason = %go_away.reason, "the peer is going away");
                    self.inner.peer_going_away.store(true, Relaxed);
                }
                _ => {
                    return self.protocol_error(
                        ErrorCode::ProtocolError,
                        "an unexpected frame on the control stream",
                    );
                }
            }
        }
    }

    /// Writes control frames, and pings: right away, then at the pace of [`Self::ping_interval`].
    async fn write_control(self, mut send: SendStream) {
        let clock = self.inner.shared.clock.clone();
        let mut encoder = Encoder::new();
        let mut next_ping = Instant::now();
        let mut batch = Vec::new();
        let mut chunks = Vec::new();
        loop {
            tokio::select! {
                more = self.inner.control.pop_batch(&mut batch, WRITE_BATCH) => {
                    if !more {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next_ping) => {
                    batch.push(Frame {
                        metadata: Metadata::new(),
                        payload: Some(Payload::Ping(keepalive::ping(0))),
                    });
                    let now = Instant::now();
                    next_ping = now
                        .checked_add(self.ping_interval())
                        .unwrap_or(now + FAR_FUTURE);
                }
            }
            for mut frame in batch.drain(..) {
                // A ping's origin and a pong's transmit time are when they are written, not
                // when they were queued.
                match &mut frame.payload {
                    Some(Payload::Ping(ping)) => {
                        ping.t1 = clock.now_micros();
                        self.inner.timing().pings.sent(ping.t1);
                    }
                    Some(Payload::Pong(pong)) => pong.t3 = clock.now_micros(),
                    _ => {}
                }
                encoder.encode(frame, &mut chunks);
            }
            encoder.flush(&mut chunks);
            // (Control frames are not noted for the datagram sender: a ping or pong held back
            // by media only makes one clock sample worse, which the filter discards.)
            if send.write_all_chunks(&mut chunks).await.is_err() {
                return;
            }
            chunks.clear();
        }
    }

    /// Writes queued events to this side's events stream: `opened` when the session started,
    /// else opened as soon as the handshake allows, so that named streams cannot take all of
    /// the peer's stream credit first. Once the queue is closed and drained (a graceful
    /// shutdown), finishes the stream and waits for the peer to acknowledge it; then marks the
    /// events flushed.
    async fn write_events(self, opened: Option<SendStream>) {
        let queue = self.inner.events.clone();
        let stream = match opened {
            Some(stream) => Some(stream),
            // Events are not replay-safe: they never travel as early data.
            None if self.inner.handshake.wait().await => self.inner.conn.open_uni().await.ok(),
            None => None,
        };
        if let Some(mut stream) = stream {
            let mut batch = Vec::new();
            let mut chunks = Vec::new();
            let mut encoder = Encoder::new();
            encoder.put_byte(STREAM_EVENTS);
            let mut drained = true;
            while queue.pop_batch(&mut batch, WRITE_BATCH).await {
                let count = batch.len() as u64;
                for frame in batch.drain(..) {
                    encoder.encode(frame, &mut chunks);
                }
                encoder.flush(&mut chunks);
                self.inner.datagrams.note_stream_write();
                if stream.write_all_chunks(&mut chunks).await.is_err() {
                    // The batch taken is lost with the connection: counted, as the rest.
                    self.drop_events(count, "the connection is lost");
                    drained = false;
                    break;
                }
                self.inner.counters.events_sent.fetch_add(count, Relaxed);
                chunks.clear();
            }
            if drained {
                let _ = stream.finish();
                // Resolves once the peer acknowledged everything (or the connection is gone).
                let _ = stream.stopped().await;
            }
        }
        let lost = queue.close_and_clear();
        if lost > 0 {
            self.drop_events(lost as u64, "the session closed");
        }
        self.inner.events_flushed.send_replace(true);
    }

    /// Counts `count` events emitted here that will never be sent, and says why.
    fn drop_events(&self, count: u64, why: &str) {
        self.inner.counters.events_dropped.fetch_add(count, Relaxed);
        tracing::debug!(session = self.id(), count, why, "events dropped");
    }
}

impl Inner {
    fn timing(&self) -> std::sync::MutexGuard<'_, Timing> {
        self.timing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses new calls on a closed session or to a peer going away.
    fn check_can_call(&self) -> Result<(), Status> {
        // A connection the peer closed fails the call when it opens its stream.
        if self.closing.load(Relaxed) || self.close_reason.get().is_some() {
            return Err(Status::unavailable("session closed"));
        }
        if self.peer_going_away.load(Relaxed) {
            return Err(Status::unavailable("the peer is shutting down"));
        }
        Ok(())
    }

    /// Encodes a frame that travels alone on its stream, or `RESOURCE_EXHAUSTED` if the peer
    /// would refuse it for its size.
    fn encode(&self, frame: Frame) -> Result<EncodedFrame, Status> {
        Encoder::new()
            .encode_frame(frame, self.peer_max_frame_size.load(Relaxed))
            .map_err(|e| {
                Status::resource_exhausted(format!(
                    "frame of {} bytes exceeds the peer's limit of {} bytes",
                    e.size, e.max
                ))
            })
    }

    /// The encoded size of `frame`, or `RESOURCE_EXHAUSTED` if the peer would refuse it.
    pub(crate) fn check_frame_size(&self, frame: &Frame) -> Result<usize, Status> {
        let size = frame.encoded_len();
        let max = self.peer_max_frame_size.load(Relaxed);
        if size > max {
            return Err(Status::resource_exhausted(format!(
                "frame of {size} bytes exceeds the peer's limit of {max} bytes"
            )));
        }
        Ok(size)
    }
}

/// A frame on its way through the middleware. Without middleware it is ready at once and costs
/// the caller's future no more state than the frame itself; with middleware the layers run in
/// their own allocation.
pub(crate) enum Passing<'a> {
    /// No middleware: the frame as it was (taken when polled).
    Through(Option<Frame>),
    /// The middleware layers at work.
    Layers(Pin<Box<dyn Future<Output = Result<Option<Frame>, Status>> + Send + 'a>>),
}

impl Future for Passing<'_> {
    type Output = Result<Option<Frame>, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Passing::Through(frame) => Poll::Ready(Ok(frame.take())),
            Passing::Layers(layers) => layers.as_mut().poll(cx),
        }
    }
}

/// How a handler's run ended.
enum Ended {
    /// It answered (or panicked, with the panic's message).
    Answered(Result<Result<Bytes, Status>, String>),
    /// The caller stopped waiting (it cancelled, or the connection was lost).
    Stopped,
    /// The caller's deadline passed.
    Expired,
}

/// Waits for a handler that did not answer at once, while watching for the caller giving up and
/// for the deadline. Dropping the handler's future (when this returns otherwise) cancels it.
async fn wait_for_handler<F>(
    handled: Pin<&mut F>,
    send: &SendStream,
    deadline: Option<Instant>,
) -> Ended
where
    F: Future<Output = Result<Result<Bytes, Status>, String>>,
{
    let stopped = send.stopped();
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        outcome = handled => Ended::Answered(outcome),
        _ = stopped => Ended::Stopped,
        _ = expired => Ended::Expired,
    }
}

/// Opens a unidirectional stream if the peer's credit allows it right now, without waiting.
fn open_uni_now(conn: &Connection) -> Option<SendStream> {
    let mut open = std::pin::pin!(conn.open_uni());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match open.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(stream)) => Some(stream),
        _ => None,
    }
}

/// An error response to request `id`.
fn error_response(id: u64, status: &Status) -> Frame {
    Frame {
        metadata: Metadata::new(),
        payload: Some(Payload::Response(RpcResponse {
            id,
            code: status.code().as_u32(),
            message: status.message().to_owned(),
            data: Bytes::new(),
        })),
    }
}

/// The close code for a framing error: `FRAME_TOO_LARGE` or `PROTOCOL_ERROR`.
pub(crate) fn codec_close_code(error: &crate::codec::CodecError) -> ErrorCode {
    match error {
        crate::codec::CodecError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::ProtocolError,
    }
}

/// The streams of an outbound call; dropping it before the answer arrived (the caller's future
/// dropped, or its deadline passed) resets and stops both directions.
struct CallStreams {
    send: SendStream,
    recv: FrameReader,
    deadline: Option<Instant>,
    done: bool,
}

impl Drop for CallStreams {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let code = match self.deadline {
            Some(d) if Instant::now() >= d => Code::DeadlineExceeded,
            _ => Code::Cancelled,
        };
        let _ = self.send.reset(VarInt::from_u32(code.as_u32()));
        self.recv.stop(code);
    }
}

/// Counts a call of the peer as in flight while alive.
struct Inflight<'a> {
    inner: &'a Inner,
}

impl<'a> Inflight<'a> {
    fn enter(inner: &'a Inner) -> Inflight<'a> {
        inner.inflight.fetch_add(1, Relaxed);
        Inflight { inner }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if self.inner.inflight.fetch_sub(1, Relaxed) == 1 {
            self.inner.drained.notify_waiters();
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("remote", &self.remote_address())
            .field("side", &self.inner.shared.side.as_str())
            .finish_non_exhaustive()
    }
}
