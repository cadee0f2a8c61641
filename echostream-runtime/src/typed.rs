//! Typed methods: what code generated from `.echo` schemas is made of.
//!
//! For each method of a schema service, generated code declares a constant describing it — an
//! [`RpcMethod`], [`EventMethod`] or [`StreamMethod`] holding its fully-qualified name
//! (`chat.v1.ChatService/login`) and the options the schema gives it — and builds its client
//! and server on the methods of that constant:
//!
//! - callers: [`RpcMethod::call`] (with [`RpcMethod::call_options`]: the schema's `timeout_ms`
//!   as the deadline and its `idempotent` flag), [`EventMethod::emit`], and
//!   [`StreamMethod::open`], which gives a [`TypedStreamSender`] (with the schema's `delivery`
//!   and `max_frame_bytes`);
//! - servers: [`RpcMethod::serve`], [`EventMethod::serve`] and [`StreamMethod::serve`] register
//!   a method of a service implementation into a [`Router`], decoding what arrives. A request
//!   that does not decode is answered `INVALID_ARGUMENT`; an event that does not decode is
//!   dropped, logged and counted ([`SessionStats::events_undecodable`]); a stream frame that
//!   does not decode is dropped, logged, and reported to the handler as lost in
//!   [`Played::lost_before`] of the next frame. A stream is played out as the schema's
//!   `jitter_ms` says ([`StreamMethod::playout`]).
//!
//! Applications and middleware can use the same constants: `chat_service::LOGIN.name()` is the
//! name a [`CallContext`](crate::CallContext) reports for that method.
//!
//! [`SessionStats::events_undecodable`]: crate::SessionStats::events_undecodable

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;

use crate::call::{CallOptions, Metadata};
use crate::jitter::Played;
use crate::playout::Playout;
use crate::router::{Router, StreamHandler};
use crate::session::Session;
use crate::status::Status;
use crate::stream::{Delivery, StreamEnd, StreamInfo, StreamOptions, StreamSender, StreamStats};

/// A boxed future, as `#[async_trait]` methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Serves one rpc with a method of service `S`: `|s, session, request| s.login(session, request)`.
pub type RpcFn<S, Req, Resp> =
    for<'a> fn(&'a S, &'a Session, Req) -> BoxFuture<'a, Result<Resp, Status>>;

/// Handles one event with a method of service `S`.
pub type EventFn<S, E> = for<'a> fn(&'a S, &'a Session, E) -> BoxFuture<'a, ()>;

/// Handles one played-out frame of a stream with a method of service `S`.
pub type FrameFn<S, M> =
    for<'a> fn(&'a S, &'a Session, &'a StreamInfo, Played<M>) -> BoxFuture<'a, ()>;

/// Handles the opening of a stream with a method of service `S`.
pub type OpenFn<S> = for<'a> fn(&'a S, &'a Session, &'a StreamInfo) -> BoxFuture<'a, ()>;

/// Handles the end of a stream with a method of service `S`.
pub type EndFn<S> = for<'a> fn(&'a S, &'a Session, &'a StreamInfo, StreamEnd) -> BoxFuture<'a, ()>;

/// An `rpc` of a schema service: its name and options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RpcMethod {
    name: &'static str,
    timeout_ms: Option<u64>,
    idempotent: bool,
    deprecated: bool,
}

impl RpcMethod {
    /// The rpc `name` (`package.Service/method`), without timeout, not idempotent.
    pub const fn new(name: &'static str) -> RpcMethod {
        RpcMethod {
            name,
            timeout_ms: None,
            idempotent: false,
            deprecated: false,
        }
    }

    /// With the schema's `timeout_ms`: the caller's default deadline.
    pub const fn with_timeout_ms(mut self, timeout_ms: u64) -> RpcMethod {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// With the schema's `idempotent`: calls may travel as 0-RTT data and be retried.
    pub const fn with_idempotent(mut self, idempotent: bool) -> RpcMethod {
        self.idempotent = idempotent;
        self
    }

    /// With the schema's `deprecated`.
    pub const fn with_deprecated(mut self, deprecated: bool) -> RpcMethod {
        self.deprecated = deprecated;
        self
    }

    /// The fully-qualified name, `chat.v1.ChatService/login`: what travels in requests and what
    /// handlers are registered under.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The schema's `timeout_ms`, if it sets one.
    pub const fn timeout(&self) -> Option<Duration> {
        match self.timeout_ms {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        }
    }

    /// Whether the schema marks the rpc `idempotent`.
    pub const fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// Whether the schema marks the rpc `deprecated`.
    pub const fn deprecated(&self) -> bool {
        self.deprecated
    }

    /// The options of a call as the schema declares it: `timeout_ms` as the timeout (otherwise
    /// the endpoint's default applies) and the `idempotent` flag. Start from these to add
    /// metadata or change the deadline of one call.
    pub fn call_options(&self) -> CallOptions {
        let options = CallOptions::new().idempotent(self.idempotent);
        match self.timeout() {
            Some(timeout) => options.timeout(timeout),
            None => options,
        }
    }

    /// Calls the rpc on the peer of `session` and decodes the answer (see [`Session::call`]).
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        session: &Session,
        request: &Req,
        options: &CallOptions,
    ) -> Result<Resp, Status> {
        session.call(self.name, request, options).await
    }

    /// Registers `handler`, a method of `service`, as the handler of this rpc. A request that
    /// does not decode as `Req` is answered `INVALID_ARGUMENT` without calling it.
    ///
    /// # Panics
    /// If `router` already has a handler for this rpc.
    pub fn serve<S, Req, Resp>(
        &self,
        router: &mut Router,
        service: &Arc<S>,
        handler: RpcFn<S, Req, Resp>,
    ) where
        S: Send + Sync + 'static,
        Req: Message + Default + 'static,
        Resp: Message + 'static,
    {
        let service = Arc::clone(service);
        router.unary(self.name, move |session: Session, request: Req| {
            let service = Arc::clone(&service);
            async move { handler(&service, &session, request).await }
        });
    }
}

/// An `event` of a schema service: its name and options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventMethod {
    name: &'static str,
    deprecated: bool,
}

impl EventMethod {
    /// The event `name` (`package.Service/method`).
    pub const fn new(name: &'static str) -> EventMethod {
        EventMethod {
            name,
            deprecated: false,
        }
    }

    /// With the schema's `deprecated`.
    pub const fn with_deprecated(mut self, deprecated: bool) -> EventMethod {
        self.deprecated = deprecated;
        self
    }

    /// The fully-qualified name, `chat.v1.ChatService/typing`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the schema marks the event `deprecated`.
    pub const fn deprecated(&self) -> bool {
        self.deprecated
    }

    /// Sends the event to the peer of `session` (see [`Session::emit`]).
    pub async fn emit<E: Message>(&self, session: &Session, event: &E) -> Result<(), Status> {
        session.emit_message(self.name, event).await
    }

    /// Sends the event with frame metadata (see [`Session::emit_with`]).
    pub async fn emit_with<E: Message>(
        &self,
        session: &Session,
        event: &E,
        metadata: Metadata,
    ) -> Result<(), Status> {
        let data = Bytes::from(event.encode_to_vec());
        session.emit_with(self.name, data, metadata).await
    }

    /// Registers `handler`, a method of `service`, as a handler of this event. An event that
    /// does not decode as `E` is dropped, logged and counted
    /// ([`SessionStats::events_undecodable`](crate::SessionStats::events_undecodable)).
    pub fn serve<S, E>(&self, router: &mut Router, service: &Arc<S>, handler: EventFn<S, E>)
    where
        S: Send + Sync + 'static,
        E: Message + Default + 'static,
    {
        let service = Arc::clone(service);
        router.event_message(self.name, move |session: Session, event: E| {
            let service = Arc::clone(&service);
            async move { handler(&service, &session, event).await }
        });
    }
}

/// A `stream` of a schema service: its name and options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamMethod {
    name: &'static str,
    delivery: Delivery,
    jitter_ms: u32,
    max_frame_bytes: u32,
    deprecated: bool,
}

impl StreamMethod {
    /// Default of `max_frame_bytes`, as in the schema language: 1 MiB.
    pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;

    /// The stream `name` (`package.Service/method`) with the schema's defaults: reliable,
    /// played on arrival, frames up to 1 MiB.
    pub const fn new(name: &'static str) -> StreamMethod {
        StreamMethod {
            name,
            delivery: Delivery::Reliable,
            jitter_ms: 0,
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            deprecated: false,
        }
    }

    /// With the schema's `delivery`.
    pub const fn with_delivery(mut self, delivery: Delivery) -> StreamMethod {
        self.delivery = delivery;
        self
    }

    /// With the schema's `jitter_ms`: the receiver's jitter-buffer delay (0: on arrival).
    pub const fn with_jitter_ms(mut self, jitter_ms: u32) -> StreamMethod {
        self.jitter_ms = jitter_ms;
        self
    }

    /// With the schema's `max_frame_bytes`.
    pub const fn with_max_frame_bytes(mut self, max_frame_bytes: u32) -> StreamMethod {
        self.max_frame_bytes = max_frame_bytes;
        self
    }

    /// With the schema's `deprecated`.
    pub const fn with_deprecated(mut self, deprecated: bool) -> StreamMethod {
        self.deprecated = deprecated;
        self
    }

    /// The fully-qualified name, `chat.v1.ChatService/video_feed`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// How frames travel.
    pub const fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The schema's `jitter_ms`.
    pub const fn jitter(&self) -> Duration {
        Duration::from_millis(self.jitter_ms as u64)
    }

    /// The largest encoded frame, in bytes.
    pub const fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Whether the schema marks the stream `deprecated`.
    pub const fn deprecated(&self) -> bool {
        self.deprecated
    }

    /// The options of a stream as the schema declares it: its delivery and frame limit. Start
    /// from these to add metadata or bound the send queue.
    pub fn stream_options(&self) -> StreamOptions {
        StreamOptions::new()
            .delivery(self.delivery)
            .max_frame_bytes(self.max_frame_bytes)
    }

    /// How the receiver plays frames out: through a jitter buffer of `jitter_ms`, or on arrival
    /// when it is 0.
    pub fn playout(&self) -> Playout {
        if self.jitter_ms == 0 {
            Playout::on_arrival()
        } else {
            Playout::jitter_buffer(self.jitter())
        }
    }

    /// Opens the stream to the peer of `session` (see [`Session::open_stream`]).
    pub async fn open<M: Message>(
        &self,
        session: &Session,
        options: StreamOptions,
    ) -> Result<TypedStreamSender<M>, Status> {
        let sender = session.open_stream(self.name, options).await?;
        Ok(TypedStreamSender::new(sender))
    }

    /// Registers the methods of `service` in `handlers` as the handler of this stream, played
    /// out as [`StreamMethod::playout`] says. A frame that does not decode as `M` is dropped and
    /// logged, and counted in the [`Played::lost_before`] of the next frame.
    ///
    /// # Panics
    /// If `router` already has a handler for this stream.
    pub fn serve<S, M>(&self, router: &mut Router, service: &Arc<S>, handlers: StreamFns<S, M>)
    where
        S: Send + Sync + 'static,
        M: Message + Default + 'static,
    {
        router.add_stream(MessageStream {
            method: *self,
            service: Arc::clone(service),
            handlers,
            undecodable: Undecodable::default(),
        });
    }
}

/// The methods of a service that receive one stream: its opening, its frames, its end.
pub struct StreamFns<S, M> {
    /// Called when a peer opens the stream, before its first frame.
    pub open: OpenFn<S>,
    /// Called with each frame, decoded, in playout order.
    pub frame: FrameFn<S, M>,
    /// Called when the stream ends.
    pub end: EndFn<S>,
}

impl<S, M> fmt::Debug for StreamFns<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamFns").finish_non_exhaustive()
    }
}

/// A stream handler that decodes each frame as `M` for a method of `S`.
struct MessageStream<S, M> {
    method: StreamMethod,
    service: Arc<S>,
    handlers: StreamFns<S, M>,
    undecodable: Undecodable,
}

/// Frames dropped because they did not decode, per (session id, stream id), until the next frame
/// of that stream reports them as lost. Session ids are unique per endpoint; a handler shared by
/// two endpoints (one router cloned into both) could mix up two streams of equal ids, which
/// would only move a loss count from one to the other.
#[derive(Default)]
struct Undecodable {
    /// How many entries `pending` has: lets the common case skip the lock.
    len: AtomicUsize,
    pending: Mutex<HashMap<(u64, u64), u64>>,
}

impl Undecodable {
    fn add(&self, key: (u64, u64)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry(key).or_default() += 1;
        self.len.store(pending.len(), Relaxed);
    }

    fn take(&self, key: (u64, u64)) -> u64 {
        if self.len.load(Relaxed) == 0 {
            return 0;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let taken = pending.remove(&key).unwrap_or(0);
        self.len.store(pending.len(), Relaxed);
        taken
    }
}

#[async_trait]
impl<S, M> StreamHandler for MessageStream<S, M>
where
    S: Send + Sync + 'static,
    M: Message + Default + 'static,
{
    fn name(&self) -> &str {
        self.method.name
    }

    fn playout(&self) -> Playout {
        self.method.playout()
    }

    async fn on_open(&self, session: &Session, stream: &StreamInfo) {
        (self.handlers.open)(&self.service, session, stream).await
    }

    async fn handle(&self, session: &Session, stream: &StreamInfo, frame: Played<Bytes>) {
        let key = (session.id(), stream.id());
        let seq = frame.seq;
        match frame.try_map(M::decode) {
            Ok(mut frame) => {
                frame.lost_before += self.undecodable.take(key);
                (self.handlers.frame)(&self.service, session, stream, frame).await
            }
            Err(error) => {
                self.undecodable.add(key);
                stream.count_undecodable();
                session.count_undecodable_stream_frame();
                tracing::warn!(
                    session = session.id(),
                    stream = stream.id(),
                    name = self.method.name,
                    seq,
                    %error,
                    "stream frame does not decode; dropped"
                );
            }
        }
    }

    async fn on_end(&self, session: &Session, stream: &StreamInfo, end: StreamEnd) {
        self.undecodable.take((session.id(), stream.id()));
        (self.handlers.end)(&self.service, session, stream, end).await
    }
}

/// The sending side of a stream of `M` messages: a [`StreamSender`] that encodes each frame.
/// Cheap to clone; clones send on the same stream.
pub struct TypedStreamSender<M> {
    sender: StreamSender,
    message: PhantomData<fn(&M)>,
}

impl<M: Message> TypedStreamSender<M> {
    /// Sends the frames of `sender` as encoded `M` messages.
    pub fn new(sender: StreamSender) -> TypedStreamSender<M> {
        TypedStreamSender {
            sender,
            message: PhantomData,
        }
    }

    /// Sends `frame` as the next frame, stamped with the endpoint's clock (see
    /// [`StreamSender::send`]).
    pub async fn send(&self, frame: impl Borrow<M>) -> Result<(), Status> {
        self.sender.send(encode(frame.borrow())).await
    }

    /// Sends `frame` with the given timestamp: microseconds since the Unix epoch on this
    /// endpoint's clock, when the frame was captured (see [`StreamSender::send_at`]).
    pub async fn send_at(&self, timestamp: u64, frame: impl Borrow<M>) -> Result<(), Status> {
        self.sender.send_at(timestamp, encode(frame.borrow())).await
    }

    /// Sends `frame`, waiting for room rather than dropping it: for bulk transfers, not live
    /// media (see [`StreamSender::send_wait`]).
    pub async fn send_wait(&self, frame: impl Borrow<M>) -> Result<(), Status> {
        self.sender.send_wait(encode(frame.borrow())).await
    }
}

impl<M> TypedStreamSender<M> {
    /// The stream's id, as the receiver sees it in [`StreamInfo::id`].
    pub fn id(&self) -> u64 {
        self.sender.id()
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.sender.name()
    }

    /// Finishes the stream once its queued frames are written (see [`StreamSender::finish`]).
    pub fn finish(&self) {
        self.sender.finish()
    }

    /// Abandons the stream, discarding queued frames (see [`StreamSender::abort`]).
    pub fn abort(&self) {
        self.sender.abort()
    }

    /// What the stream sent and dropped so far.
    pub fn stats(&self) -> StreamStats {
        self.sender.stats()
    }

    /// The untyped sender, to send already-encoded frames.
    pub fn as_raw(&self) -> &StreamSender {
        &self.sender
    }

    /// The untyped sender.
    pub fn into_raw(self) -> StreamSender {
        self.sender
    }
}

impl<M> Clone for TypedStreamSender<M> {
    fn clone(&self) -> Self {
        TypedStreamSender {
            sender: self.sender.clone(),
            message: PhantomData,
        }
    }
}

impl<M> fmt::Debug for TypedStreamSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedStreamSender")
            .field("message", &std::any::type_name::<M>())
            .field("sender", &self.sender)
            .finish()
    }
}

fn encode<M: Message>(message: &M) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_options_become_call_options() {
        const PLAIN: RpcMethod = RpcMethod::new("p.S/plain");
        const TUNED: RpcMethod = RpcMethod::new("p.S/tuned")
            .with_timeout_ms(1500)
            .with_idempotent(true)
            .with_deprecated(true);
        assert_eq!(PLAIN.name(), "p.S/plain");
        assert_eq!(PLAIN.timeout(), None);
        assert!(!PLAIN.idempotent() && !PLAIN.deprecated());
        assert_eq!(TUNED.timeout(), Some(Duration::from_millis(1500)));
        assert!(TUNED.idempotent() && TUNED.deprecated());
        let options = TUNED.call_options();
        assert_eq!(options.timeout, Some(Duration::from_millis(1500)));
        assert!(options.idempotent);
        let options = PLAIN.call_options();
        assert_eq!(options.timeout, None);
        assert!(!options.idempotent);
    }

    #[test]
    fn the_longest_schema_timeout_is_representable() {
        let method = RpcMethod::new("p.S/m").with_timeout_ms(u64::MAX);
        assert_eq!(method.timeout(), Some(Duration::from_millis(u64::MAX)));
    }

    #[test]
    fn stream_options_and_playout_follow_the_schema() {
        const DEFAULTS: StreamMethod = StreamMethod::new("p.S/s");
        assert_eq!(DEFAULTS.delivery(), Delivery::Reliable);
        assert_eq!(DEFAULTS.max_frame_bytes(), 1 << 20);
        assert_eq!(DEFAULTS.playout(), Playout::on_arrival());
        const LIVE: StreamMethod = StreamMethod::new("p.S/live")
            .with_delivery(Delivery::Datagram)
            .with_jitter_ms(80)
            .with_max_frame_bytes(1200);
        assert_eq!(LIVE.delivery(), Delivery::Datagram);
        assert_eq!(LIVE.jitter(), Duration::from_millis(80));
        assert_eq!(
            LIVE.playout().jitter_target(),
            Some(Duration::from_millis(80))
        );
        // The options' fields are private to `stream`; their Debug form shows them.
        let options = format!("{:?}", LIVE.stream_options());
        assert!(options.contains("delivery: Datagram"), "{options}");
        assert!(options.contains("max_frame_bytes: Some(1200)"), "{options}");
    }

    #[test]
    fn undecodable_frames_are_kept_per_stream_until_taken() {
        let u = Undecodable::default();
        assert_eq!(u.take((1, 1)), 0);
        u.add((1, 1));
        u.add((1, 1));
        u.add((2, 1));
        assert_eq!(u.take((1, 2)), 0);
        assert_eq!(u.take((1, 1)), 2);
        assert_eq!(u.take((1, 1)), 0);
        assert_eq!(u.take((2, 1)), 1);
        assert_eq!(u.len.load(Relaxed), 0);
    }
}
