//! Routing inbound traffic to handlers: the [`RpcHandler`], [`EventHandler`] and
//! [`StreamHandler`] traits, the [`Router`] that maps names to them, and the [`Service`] trait
//! through which a bundle of handlers (a generated `ChatServiceServer<T>`) registers itself.
//!
//! Both sides of a connection serve: the same router type is given to `Server::builder()` and to
//! `Client::builder()`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;

use crate::jitter::Played;
use crate::playout::Playout;
use crate::proto::v1::{EventPack, RpcRequest};
use crate::session::Session;
use crate::status::Status;
use crate::stream::{StreamEnd, StreamInfo};

/// Serves one RPC method.
#[async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    /// The method name it serves, e.g. `"chat.v1.ChatService/login"`.
    fn name(&self) -> &str;

    /// Answers one call: `Ok(data)` becomes an `OK` response carrying `data`, `Err(status)` an
    /// error response. [`CallContext::current()`](crate::CallContext::current) gives the call's
    /// deadline, metadata and cancellation. If the caller cancels or the deadline passes, the
    /// future is dropped.
    async fn handle(&self, session: &Session, request: RpcRequest) -> Result<Bytes, Status>;
}

/// Handles one event name. Several handlers may share a name; each receives every event.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// The event name it handles, e.g. `"chat.v1.ChatService/typing"`.
    fn name(&self) -> &str;

    /// Handles one event. Events of one session are handled one at a time in the order the peer
    /// emitted them, so a slow handler slows that session's events (and only them). If the
    /// connection closes while it runs, the future is dropped and the event's
    /// [`CallContext`](crate::CallContext) cancelled.
    async fn handle(&self, session: &Session, event: EventPack);
}

/// Receives the named real-time streams a peer opens under one name.
#[async_trait]
pub trait StreamHandler: Send + Sync + 'static {
    /// The stream name it receives, e.g. `"chat.v1.ChatService/video_feed"`.
    fn name(&self) -> &str;

    /// How this stream's frames are played out to [`StreamHandler::handle`]: on arrival (the
    /// default) or through a jitter buffer.
    fn playout(&self) -> Playout {
        Playout::on_arrival()
    }

    /// A peer opened a stream of this name. Called before its first frame.
    async fn on_open(&self, session: &Session, stream: &StreamInfo) {
        let _ = (session, stream);
    }

    /// One frame of the stream, in playout order: its bytes with the sender's sequence number
    /// and timestamp, the local instant it was due, and how many frames were lost just before
    /// it (a cue for concealment). If the connection closes while this (or `on_open`) runs,
    /// the future is dropped and the stream's [`CallContext`](crate::CallContext) cancelled;
    /// `on_end` still follows.
    async fn handle(&self, session: &Session, stream: &StreamInfo, frame: Played<Bytes>);

    /// The stream ended: finished by the peer, reset, or its connection lost. Once the
    /// connection is closed, it has one second to return before it is dropped.
    async fn on_end(&self, session: &Session, stream: &StreamInfo, end: StreamEnd) {
        let _ = (session, stream, end);
    }
}

/// A bundle of handlers that registers itself into a [`Router`], as generated service servers do.
pub trait Service {
    /// Adds this service's handlers to `router`.
    fn register(self, router: &mut Router);
}

/// A map keyed by handler name. Only this side inserts names (peers only look them up), so a
/// simple fast hash is safe here: FNV-1a instead of the DoS-resistant default.
type Names<V> = HashMap<Arc<str>, V, BuildHasherDefault<Fnv>>;

/// The FNV-1a hash (64 bits).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The handlers registered for one event name, in registration order.
pub(crate) type EventHandlers = Vec<Arc<dyn EventHandler>>;

/// Maps method, event and stream names to their handlers.
///
/// Unknown methods are answered `NOT_FOUND`; unknown events are counted
/// (`SessionStats::events_unhandled`) and dropped; streams of an unknown name are refused with a
/// `NOT_FOUND` stop code.
#[derive(Clone, Default)]
pub struct Router {
    rpcs: Names<Arc<dyn RpcHandler>>,
    events: Names<EventHandlers>,
    streams: Names<Arc<dyn StreamHandler>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers an RPC handler under its name.
    ///
    /// # Panics
    /// If a handler is already registered under that name: two handlers for one method is a
    /// programming error that would otherwise silently hide one of them.
    pub fn add_rpc(&mut self, handler: impl RpcHandler) -> &mut Router {
        let name: Arc<str> = handler.name().into();
        assert!(
            !self.rpcs.contains_key(&name),
            "an RPC handler is already registered for {name:?}"
        );
        self.rpcs.insert(name, Arc::new(handler));
        self
    }

    /// Registers an event handler under its name, after those already registered for it.
    pub fn add_event(&mut self, handler: impl EventHandler) -> &mut Router {
        let name: Arc<str> = handler.name().into();
        self.events.entry(name).or_default().push(Arc::new(handler));
        self
    }

    /// Registers a stream handler under its name.
    ///
    /// # Panics
    /// If a handler is already registered under that name.
    pub fn add_stream(&mut self, handler: impl StreamHandler) -> &mut Router {
        let name: Arc<str> = handler.name().into();
        assert!(
            !self.streams.contains_key(&name),
            "a stream handler is already registered for {name:?}"
        );
        self.streams.insert(name, Arc::new(handler));
        self
    }

    /// Registers a service's handlers.
    pub fn add_service(&mut self, service: impl Service) -> &mut Router {
        service.register(self);
        self
    }

    /// Registers an async closure as the handler of RPC `name`, on raw bytes.
    ///
    /// # Panics
    /// As [`Router::add_rpc`].
    pub fn rpc<F, Fut>(&mut self, name: &str, f: F) -> &mut Router
    where
        F: Fn(Session, RpcRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        self.add_rpc(RpcFn {
            name: name.into(),
            f,
        })
    }

    /// Registers an async closure as the handler of RPC `name`, on protobuf messages: the request
    /// is decoded as `Req` (`INVALID_ARGUMENT` if it does not decode) and the answer encoded.
    ///
    /// # Panics
    /// As [`Router::add_rpc`].
    pub fn unary<Req, Resp, F, Fut>(&mut self, name: &str, f: F) -> &mut Router
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Session, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        self.add_rpc(RpcFn {
            name: name.into(),
            f: move |session, request: RpcRequest| {
                let decoded = Req::decode(request.data);
                let answer = decoded.map(|req| f(session, req));
                async move { Ok(Bytes::from(answer?.await?.encode_to_vec())) }
            },
        })
    }

    /// Registers an async closure as a handler of event `name`, on raw bytes.
    pub fn event<F, Fut>(&mut self, name: &str, f: F) -> &mut Router
    where
        F: Fn(Session, EventPack) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_event(EventFn {
            name: name.into(),
            f,
        })
    }

    /// Registers an async closure as a handler of event `name`, on protobuf messages. An event
    /// that does not decode as `E` is dropped, logged and counted
    /// (`SessionStats::events_undecodable`).
    pub fn event_message<E, F, Fut>(&mut self, name: &str, f: F) -> &mut Router
    where
        E: Message + Default + 'static,
        F: Fn(Session, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_event(EventFn {
            name: name.into(),
            f: move |session: Session, event: EventPack| {
                let call = match E::decode(event.data) {
                    Ok(message) => Some(f(session, message)),
                    Err(error) => {
                        session.note_undecodable_event(&event.name, &error);
                        None
                    }
                };
                async move {
                    if let Some(call) = call {
                        call.await
                    }
                }
            },
        })
    }

    /// Registers an async closure as the handler of the streams named `name`, called per frame.
    ///
    /// # Panics
    /// As [`Router::add_stream`].
    pub fn stream<F, Fut>(&mut self, name: &str, f: F) -> &mut Router
    where
        F: Fn(Session, StreamInfo, Played<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_stream(StreamFn {
            name: name.into(),
            playout: Playout::on_arrival(),
            f,
        })
    }

    /// Registers an async closure as the handler of the streams named `name`, called per frame
    /// as `playout` says (e.g. through a jitter buffer).
    ///
    /// # Panics
    /// As [`Router::add_stream`].
    pub fn stream_with_playout<F, Fut>(&mut self, name: &str, playout: Playout, f: F) -> &mut Router
    where
        F: Fn(Session, StreamInfo, Played<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_stream(StreamFn {
            name: name.into(),
            playout,
            f,
        })
    }

    /// Moves every handler of `other` into this router.
    ///
    /// # Panics
    /// If both routers have a handler for the same method or stream name.
    pub fn merge(&mut self, other: Router) -> &mut Router {
        for (name, handler) in other.rpcs {
            assert!(
                !self.rpcs.contains_key(&name),
                "an RPC handler is already registered for {name:?}"
            );
            self.rpcs.insert(name, handler);
        }
        for (name, handlers) in other.events {
            self.events.entry(name).or_default().extend(handlers);
        }
        for (name, handler) in other.streams {
            assert!(
                !self.streams.contains_key(&name),
                "a stream handler is already registered for {name:?}"
            );
            self.streams.insert(name, handler);
        }
        self
    }

    /// The handler of RPC `name`.
    pub(crate) fn rpc_handler(&self, name: &str) -> Option<(&Arc<str>, &Arc<dyn RpcHandler>)> {
        self.rpcs.get_key_value(name)
    }

    /// The handlers of event `name`.
    pub(crate) fn event_handlers(&self, name: &str) -> Option<(&Arc<str>, &EventHandlers)> {
        self.events.get_key_value(name)
    }

    /// The handler of streams named `name`.
    pub(crate) fn stream_handler(
        &self,
        name: &str,
    ) -> Option<(&Arc<str>, &Arc<dyn StreamHandler>)> {
        self.streams.get_key_value(name)
    }

    /// The names of the registered RPC methods, sorted.
    pub fn rpc_names(&self) -> Vec<&str> {
        sorted(self.rpcs.keys())
    }

    /// The names of the events with at least one handler, sorted.
    pub fn event_names(&self) -> Vec<&str> {
        sorted(self.events.keys())
    }

    /// The names of the streams with a handler, sorted.
    pub fn stream_names(&self) -> Vec<&str> {
        sorted(self.streams.keys())
    }
}

fn sorted<'a>(keys: impl Iterator<Item = &'a Arc<str>>) -> Vec<&'a str> {
    let mut names: Vec<&str> = keys.map(|k| &**k).collect();
    names.sort_unstable();
    names
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("rpcs", &self.rpc_names())
            .field("events", &self.event_names())
            .field("streams", &self.stream_names())
            .finish()
    }
}

struct RpcFn<F> {
    name: Box<str>,
    f: F,
}

#[async_trait]
impl<F, Fut> RpcHandler for RpcFn<F>
where
    F: Fn(Session, RpcRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, session: &Session, request: RpcRequest) -> Result<Bytes, Status> {
        (self.f)(session.clone(), request).await
    }
}

struct EventFn<F> {
    name: Box<str>,
    f: F,
}

#[async_trait]
impl<F, Fut> EventHandler for EventFn<F>
where
    F: Fn(Session, EventPack) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, session: &Session, event: EventPack) {
        (self.f)(session.clone(), event).await
    }
}

struct StreamFn<F> {
    name: Box<str>,
    playout: Playout,
    f: F,
}

#[async_trait]
impl<F, Fut> StreamHandler for StreamFn<F>
where
    F: Fn(Session, StreamInfo, Played<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn playout(&self) -> Playout {
        self.playout
    }

    async fn handle(&self, session: &Session, stream: &StreamInfo, frame: Played<Bytes>) {
        (self.f)(session.clone(), stream.clone(), frame).await
    }
}
