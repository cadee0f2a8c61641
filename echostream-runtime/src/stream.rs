//! Named real-time streams: [`StreamOptions`] and [`StreamSender`] for the sending side,
//! [`StreamInfo`] and [`StreamEnd`] for the receiving handler.
//!
//! A stream is announced by a `StreamOpen` frame carrying its name, on a QUIC unidirectional
//! stream of its own, so the receiver routes it to the [`StreamHandler`]
//! registered under that name. With [`Delivery::Reliable`], its frames follow on that QUIC
//! stream: they arrive complete and in order, and never delay RPCs, events or other streams.
//! With [`Delivery::Datagram`], its frames travel as QUIC datagrams (see
//! [`unreliable`]) while the announcement stream stays open; closing it ends
//! the stream. Either way the handler's [`Playout`] decides how frames reach it: on arrival or
//! through a jitter buffer, with [`ReceiveStats`] on [`StreamInfo::stats`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use quinn::{SendStream, VarInt, WriteError};

use crate::call::{CallContext, CallKind, Metadata};
use crate::codec::Encoder;
use crate::io::{FrameReader, ReadFrameError, status_from_stream_code};
use crate::jitter::Played;
use crate::panic::{CatchUnwind, catch_unwind_future};
use crate::playout::{Arrival, Playback, Playout, ReceiveStats, StatsCell};
use crate::proto::v1::{self, ErrorCode, Frame, StreamFrame, StreamOpen, frame::Payload};
use crate::protocol::STREAM_STREAM;
use crate::queue::{OutQueue, PushError, QueueLimits};
use crate::router::StreamHandler;
use crate::session::{Session, codec_close_code};
use crate::status::{Code, Status};
use crate::unreliable::{self, Lane, RouteCounters};

/// Most frames the writer takes from a stream's queue for one vectored write.
const WRITE_BATCH: usize = 32;

/// The encoded size of a stream frame's fields other than its data, at most.
const STREAM_FRAME_OVERHEAD: usize = 48;

/// Most frames a received datagram stream's task takes from its queue at once.
const RECEIVE_BATCH: usize = 64;

/// How often a finished datagram stream checks whether its last frames are still being
/// reassembled.
const LINGER_STEP: Duration = Duration::from_millis(10);

/// How many frames of a burst a received stream takes in before it publishes its statistics.
const PUBLISH_EVERY: u32 = 32;

/// How long a stream handler's `on_end` may still run once the connection is closed.
const ON_END_AFTER_CLOSE: Duration = Duration::from_secs(1);

/// How long frames held in a jitter buffer may still play after their stream finished.
const MAX_DRAIN: Duration = Duration::from_secs(2);

/// How a stream's frames travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Every frame arrives, in order, on the stream's own QUIC stream.
    #[default]
    Reliable,
    /// Frames travel as QUIC datagrams, fragmented when larger than one: never retransmitted,
    /// so a lost frame is skipped instead of delaying the ones after it (live media).
    Datagram,
}

impl Delivery {
    fn to_wire(self) -> v1::Delivery {
        match self {
            Delivery::Reliable => v1::Delivery::Reliable,
            Delivery::Datagram => v1::Delivery::Datagram,
        }
    }

    fn from_wire(delivery: i32) -> Option<Delivery> {
        match v1::Delivery::try_from(delivery).ok()? {
            v1::Delivery::Reliable => Some(Delivery::Reliable),
            v1::Delivery::Datagram => Some(Delivery::Datagram),
        }
    }
}

/// How a stream is opened.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    delivery: Delivery,
    max_frame_bytes: Option<u32>,
    queue: Option<QueueLimits>,
    metadata: Metadata,
}

impl StreamOptions {
    /// Reliable delivery, the endpoint's queue bounds, no frame limit but the peer's.
    pub fn new() -> StreamOptions {
        StreamOptions::default()
    }

    /// How the frames travel.
    pub fn delivery(mut self, delivery: Delivery) -> StreamOptions {
        self.delivery = delivery;
        self
    }

    /// Largest `data` of one frame; `send` refuses larger ones with `INVALID_ARGUMENT`. The
    /// peer is told, for its buffers. Datagram streams default to 1 MiB.
    pub fn max_frame_bytes(mut self, bytes: u32) -> StreamOptions {
        self.max_frame_bytes = Some(bytes);
        self
    }

    /// Bounds of this stream's send queue (default: the endpoint's `stream_queue`). Datagram
    /// streams have no send queue: their frames are paced or dropped as they are sent.
    pub fn queue(mut self, frames: usize, bytes: usize) -> StreamOptions {
        self.queue = Some(QueueLimits {
            frames: frames.max(1),
            bytes,
        });
        self
    }

    /// Adds a metadata pair to the stream's opening frame (the receiver sees it in
    /// [`StreamInfo::metadata`]).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> StreamOptions {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A received stream, as its handler sees it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    id: u64,
    name: Arc<str>,
    delivery: Delivery,
    max_frame_bytes: u32,
    metadata: Arc<Metadata>,
    playout: Playout,
    stats: Arc<StatsCell>,
}

impl StreamInfo {
    /// The id the sender gave the stream (unique among its streams on this session).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its frames travel.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The largest frame data the sender announced (0: none announced).
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// The metadata of the opening frame.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// How the frames are played out to the handler (its choice).
    pub fn playout(&self) -> Playout {
        self.playout
    }

    /// What happened to the stream's frames so far: received, played, lost, late, ..., the
    /// jitter buffer's delays. Up to date as of the last frame in or out.
    pub fn stats(&self) -> ReceiveStats {
        self.stats.get()
    }

    /// Counts a frame of this stream that did not decode as the handler's message type.
    pub(crate) fn count_undecodable(&self) {
        self.stats.count_undecodable();
    }
}

/// How a received stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// The sender finished it; every frame was delivered (reliable), or every frame that
    /// arrived was played (datagram).
    Finished,
    /// The sender reset it with this code; frames after the reset point are lost.
    Reset(u64),
    /// The connection was lost or closed.
    ConnectionLost,
    /// This side stopped it with this status code: `RESOURCE_EXHAUSTED` when the peer's
    /// incomplete frames exceeded the session's budget
    /// ([`Config::max_incomplete_bytes`](crate::Config::max_incomplete_bytes)).
    Stopped(u32),
}

/// The sending side of an open named stream. Cheap to clone; clones send on the same stream.
///
/// `send` never waits for the network. On a reliable stream, frames are queued and written by a
/// task of the session; when the queue is full, `send` refuses the frame with
/// `RESOURCE_EXHAUSTED` and counts it. On a datagram stream, a frame is sent at once, waits a
/// little for the pacer, or is dropped with `RESOURCE_EXHAUSTED` when the path is congested.
/// Either way a dropped frame leaves a gap in the sequence numbers, so the receiver sees the
/// loss. The stream finishes when [`StreamSender::finish`] is called or the last clone is
/// dropped, after its queued frames are sent.
#[derive(Clone, Debug)]
pub struct StreamSender {
    out: Arc<StreamOut>,
}

/// The state of an outbound stream, shared by its senders.
#[derive(Debug)]
pub(crate) struct StreamOut {
    id: u64,
    name: Arc<str>,
    session: Session,
    max_frame_bytes: usize,
    lane: OutLane,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Why the stream can no longer send, once it cannot.
    failed: Arc<OnceLock<Status>>,
}

/// How an outbound stream's frames leave.
#[derive(Debug)]
enum OutLane {
    /// Through a queue, to the writer task of its QUIC stream.
    Reliable {
        queue: Arc<OutQueue<Pending>>,
        /// Frames refused since the last queued frame: the gap the next one carries.
        gap: AtomicU64,
        /// Set by `abort`: the writer resets the stream instead of finishing it.
        aborted: Arc<AtomicBool>,
    },
    /// As datagrams.
    Datagram(Lane),
}

/// A frame waiting in a stream's queue.
#[derive(Debug)]
struct Pending {
    timestamp: u64,
    data: Bytes,
    /// Frames refused just before this one: its seq skips that many.
    gap: u64,
}

/// What an outbound stream has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Frames written to the connection.
    pub sent: u64,
    /// Frames refused (full queue, congested path) or lost (stream refused or connection
    /// closed before sending).
    pub dropped: u64,
    /// QUIC datagrams sent (datagram streams; a fragmented frame counts one per fragment).
    pub datagrams: u64,
}

impl StreamSender {
    pub(crate) fn from_out(out: Arc<StreamOut>) -> StreamSender {
        StreamSender { out }
    }

    /// The stream's id, as the receiver sees it in [`StreamInfo::id`].
    pub fn id(&self) -> u64 {
        self.out.id
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.out.name
    }

    /// How the stream's frames travel.
    pub fn delivery(&self) -> Delivery {
        match self.out.lane {
            OutLane::Reliable { .. } => Delivery::Reliable,
            OutLane::Datagram(_) => Delivery::Datagram,
        }
    }

    /// Sends `data` as the next frame, stamped with the endpoint's clock. Returns at once.
    pub async fn send(&self, data: Bytes) -> Result<(), Status> {
        let now = self.out.session.clock().now_micros();
        self.send_at(now, data).await
    }

    /// Sends `data` as the next frame with the given timestamp (microseconds since the Unix
    /// epoch on this endpoint's clock: when the frame was captured). Returns at once.
    ///
    /// Errors: `INVALID_ARGUMENT` if `data` exceeds the stream's `max_frame_bytes`,
    /// `RESOURCE_EXHAUSTED` if the frame is dropped (full queue, congested path; counted) or
    /// exceeds the peer's limit, the peer's refusal of the stream (`NOT_FOUND` for a name
    /// without handler), `UNAVAILABLE` once the session is closed, `CANCELLED` after
    /// `finish`.
    ///
    /// Outbound middleware runs after `send` returned, and may grow a frame (metadata, a
    /// changed payload). A frame so grown past what the peer accepts is dropped and counted,
    /// never sent to close the connection: on a datagram stream `send` returns
    /// `RESOURCE_EXHAUSTED` for it at once; on a reliable stream the frames before it are
    /// delivered, the stream is finished there, and later sends fail `RESOURCE_EXHAUSTED`.
    pub async fn send_at(&self, timestamp: u64, data: Bytes) -> Result<(), Status> {
        let out = &*self.out;
        match &out.lane {
            OutLane::Datagram(lane) => unreliable::send(&self.out, lane, timestamp, data).await,
            OutLane::Reliable { queue, gap, .. } => {
                if let Some(status) = out.failed.get() {
                    return Err(status.clone());
                }
                out.check_size(&data)?;
                let size = data.len() + STREAM_FRAME_OVERHEAD;
                let skipped = gap.swap(0, Relaxed);
                let pending = Pending {
                    timestamp,
                    data,
                    gap: skipped,
                };
                match queue.push(pending, size) {
                    Ok(()) => Ok(()),
                    Err(PushError::Full) => {
                        gap.fetch_add(skipped + 1, Relaxed);
                        out.count_dropped(1);
                        let limits = queue.limits();
                        Err(Status::resource_exhausted(format!(
                            "queue of stream {} full ({} frames or {} bytes waiting): frame dropped",
                            out.name, limits.frames, limits.bytes
                        )))
                    }
                    Err(PushError::Closed) => Err(out.failed.get().cloned().unwrap_or_else(|| {
                        Status::cancelled(format!("stream {} is finished", out.name))
                    })),
                }
            }
        }
    }

    /// Sends `data` as the next frame, stamped with the endpoint's clock, waiting for room
    /// rather than dropping it: for a reliable stream, room in its queue; for a datagram stream,
    /// room in QUIC's datagram send buffer (quinn's `send_datagram_wait`), after the calls and
    /// events written before it, and without the pacer. For bulk transfers that may wait, not
    /// for live media (see [`StreamSender::send`]). Errors as `send`, but never a dropped frame.
    pub async fn send_wait(&self, data: Bytes) -> Result<(), Status> {
        let out = &*self.out;
        let timestamp = out.session.clock().now_micros();
        match &out.lane {
            OutLane::Datagram(lane) => {
                unreliable::send_wait(&self.out, lane, timestamp, data).await
            }
            OutLane::Reliable { queue, gap, .. } => {
                if let Some(status) = out.failed.get() {
                    return Err(status.clone());
                }
                out.check_size(&data)?;
                let size = data.len() + STREAM_FRAME_OVERHEAD;
                let pending = Pending {
                    timestamp,
                    data,
                    gap: gap.swap(0, Relaxed),
                };
                queue.push_wait(pending, size).await.map_err(|_| {
                    out.failed.get().cloned().unwrap_or_else(|| {
                        Status::cancelled(format!("stream {} is finished", out.name))
                    })
                })
            }
        }
    }

    /// Finishes the stream: frames already queued (or waiting for the pacer) are still sent,
    /// then the receiver's handler sees [`StreamEnd::Finished`]. Later sends fail `CANCELLED`.
    pub fn finish(&self) {
        match &self.out.lane {
            OutLane::Reliable { queue, .. } => {
                queue.close();
            }
            OutLane::Datagram(lane) => lane.finish(),
        }
    }

    /// Abandons the stream: frames not sent yet are discarded (and counted as dropped), the QUIC
    /// stream is reset with `CANCELLED`, and the receiver's handler sees [`StreamEnd::Reset`].
    /// Later sends fail `CANCELLED`.
    pub fn abort(&self) {
        let out = &*self.out;
        out.fail(Status::cancelled(format!(
            "stream {} was aborted",
            out.name
        )));
        match &out.lane {
            OutLane::Reliable { queue, aborted, .. } => {
                aborted.store(true, Relaxed);
                let discarded = queue.close_and_clear();
                out.count_dropped(discarded as u64);
            }
            OutLane::Datagram(lane) => lane.abort(),
        }
    }

    /// What this stream sent and dropped so far.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            sent: self.out.sent.load(Relaxed),
            dropped: self.out.dropped.load(Relaxed),
            datagrams: match &self.out.lane {
                OutLane::Datagram(lane) => lane.datagrams(),
                OutLane::Reliable { .. } => 0,
            },
        }
    }
}

impl StreamOut {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Why the stream can no longer send, once it cannot.
    pub(crate) fn failure(&self) -> Option<Status> {
        self.failed.get().cloned()
    }

    /// Records why the stream can no longer send (the first reason stays).
    pub(crate) fn fail(&self, status: Status) {
        let _ = self.failed.set(status);
    }

    fn check_size(&self, data: &Bytes) -> Result<(), Status> {
        if data.len() > self.max_frame_bytes {
            return Err(Status::invalid_argument(format!(
                "frame of {} bytes exceeds the max_frame_bytes of stream {} ({} bytes)",
                data.len(),
                self.name,
                self.max_frame_bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn count_sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
        self.session
            .inner
            .counters
            .stream_frames_sent
            .fetch_add(n, Relaxed);
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        self.session
            .inner
            .counters
            .stream_frames_dropped
            .fetch_add(n, Relaxed);
    }

    /// The session closed: nothing more can be sent.
    pub(crate) fn abandon(&self, session: &Session) {
        self.fail(session.unavailable());
        if let OutLane::Reliable { queue, .. } = &self.lane {
            let lost = queue.close_and_clear();
            self.count_dropped(lost as u64);
        }
    }
}

impl Drop for StreamOut {
    fn drop(&mut self) {
        match &self.lane {
            OutLane::Reliable { queue, .. } => {
                queue.close();
            }
            OutLane::Datagram(lane) => lane.finish(),
        }
        self.session
            .inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Opens a stream: sends the opening frame through middleware and starts its writer.
pub(crate) async fn open(
    session: &Session,
    name: &str,
    options: StreamOptions,
) -> Result<StreamSender, Status> {
    // Streams are not replay-safe: they never start as early data.
    if session.is_closed() || !session.inner.handshake.wait().await {
        return Err(session.unavailable());
    }
    let datagram = options.delivery == Delivery::Datagram;
    if datagram {
        unreliable::check_support(session)?;
    }
    let id = session.inner.next_stream_id.fetch_add(1, Relaxed);
    let max_frame_bytes = match (options.max_frame_bytes, datagram) {
        (Some(max), _) => Some(max),
        (None, true) => Some(unreliable::DEFAULT_MAX_FRAME_BYTES),
        (None, false) => None,
    };
    let open = Frame {
        metadata: options.metadata,
        payload: Some(Payload::StreamOpen(StreamOpen {
            stream_id: id,
            name: name.to_owned(),
            delivery: options.delivery.to_wire() as i32,
            max_frame_bytes: max_frame_bytes.unwrap_or(0),
        })),
    };
    let Some(open) = session.outbound(open).await? else {
        return Err(Status::cancelled(format!(
            "opening of stream {name} dropped by outbound middleware"
        )));
    };
    session.inner.check_frame_size(&open)?;
    let failed = Arc::new(OnceLock::new());
    let (lane, writer) = if datagram {
        let mut encoder = Encoder::new();
        let mut chunks = Vec::new();
        encoder.put_byte(STREAM_STREAM);
        encoder.encode(open, &mut chunks);
        encoder.flush(&mut chunks);
        let lane = unreliable::open(session, id, chunks, failed.clone()).await?;
        (OutLane::Datagram(lane), None)
    } else {
        let queue = Arc::new(OutQueue::new(
            options
                .queue
                .unwrap_or(session.inner.shared.config.stream_queue),
        ));
        let aborted = Arc::new(AtomicBool::new(false));
        let writer = (queue.clone(), aborted.clone(), open);
        let lane = OutLane::Reliable {
            queue,
            gap: AtomicU64::new(0),
            aborted,
        };
        (lane, Some(writer))
    };
    let max_frame_bytes = if datagram {
        max_frame_bytes.unwrap_or(unreliable::DEFAULT_MAX_FRAME_BYTES) as usize
    } else {
        let peer_limit = session
            .peer_max_frame_size()
            .saturating_sub(STREAM_FRAME_OVERHEAD);
        max_frame_bytes.map_or(peer_limit, |m| (m as usize).min(peer_limit))
    };
    let out = Arc::new(StreamOut {
        id,
        name: name.into(),
        session: session.clone(),
        max_frame_bytes,
        lane,
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        failed,
    });
    session
        .inner
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Arc::downgrade(&out));
    if let Some((queue, aborted, open)) = writer {
        let writer = Writer {
            session: session.detached(),
            out: Arc::downgrade(&out),
            queue,
            aborted,
            id,
        };
        tokio::spawn(writer.run(open));
    }
    Ok(StreamSender { out })
}

/// The task that writes one outbound reliable stream.
struct Writer {
    session: Session,
    out: std::sync::Weak<StreamOut>,
    queue: Arc<OutQueue<Pending>>,
    aborted: Arc<AtomicBool>,
    id: u64,
}

impl Writer {
    /// Opens the QUIC stream with the opening frame, then writes the frames as they come.
    async fn run(self, open: Frame) {
        let Writer {
            session,
            out,
            queue,
            aborted,
            id,
        } = self;
        let mut encoder = Encoder::new();
        let mut chunks = Vec::new();
        let mut batch = Vec::new();
        let mut send: Option<SendStream> = None;
        let mut next_seq = 0u64;
        let mut open = Some(open);
        let failure = loop {
            // While waiting for frames, a refusal by the peer (STOP_SENDING) fails the stream
            // at once, so the next `send` reports it instead of queueing into the void.
            let more = match send.as_ref() {
                Some(stream) => tokio::select! {
                    more = queue.pop_batch(&mut batch, WRITE_BATCH) => more,
                    stopped = stream.stopped() => {
                        let status = match stopped {
                            Ok(Some(code)) => status_from_stream_code(code, "stream refused"),
                            _ => session.unavailable(),
                        };
                        break Some((0, status));
                    }
                },
                None => queue.pop_batch(&mut batch, WRITE_BATCH).await,
            };
            if !more {
                break None;
            }
            if let Some(open) = open.take() {
                match session.inner.conn.open_uni().await {
                    Ok(stream) => send = Some(stream),
                    Err(_) => break Some((batch.len(), session.unavailable())),
                }
                encoder.put_byte(STREAM_STREAM);
                encoder.encode(open, &mut chunks);
            }
            // Middleware may grow a frame (metadata) past what the peer accepts, and the peer
            // would close the connection for it: such a frame is dropped, the frames before it
            // are delivered, the stream is finished there and later sends fail.
            let max = session.peer_max_frame_size();
            let mut written = 0u64;
            let mut oversize = None;
            for pending in batch.drain(..) {
                let seq = next_seq + pending.gap;
                next_seq = seq + 1;
                let frame = Frame {
                    metadata: Metadata::new(),
                    payload: Some(Payload::Stream(StreamFrame {
                        stream_id: id,
                        seq,
                        timestamp: pending.timestamp,
                        data: pending.data,
                    })),
                };
                match session.outbound(frame).await {
                    Ok(Some(frame)) if oversize.is_none() => {
                        let size = frame.encoded_len();
                        if size > max {
                            oversize = Some((1, oversize_status(&session, id, size, max)));
                        } else {
                            encoder.encode(frame, &mut chunks);
                            written += 1;
                        }
                    }
                    Ok(Some(_)) => {
                        if let Some((unsent, _)) = oversize.as_mut() {
                            *unsent += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(status) => {
                        tracing::debug!(session = session.id(), stream = id, %status, "outbound middleware failed a stream frame");
                    }
                }
            }
            encoder.flush(&mut chunks);
            let Some(stream) = send.as_mut() else {
                break None;
            };
            session.inner.datagrams.note_stream_write();
            match stream.write_all_chunks(&mut chunks).await {
                Ok(()) => match out.upgrade() {
                    Some(out) => out.count_sent(written),
                    None => {
                        session
                            .inner
                            .counters
                            .stream_frames_sent
                            .fetch_add(written, Relaxed);
                    }
                },
                Err(WriteError::Stopped(code)) => {
                    break Some((
                        written as usize,
                        status_from_stream_code(code, "stream refused"),
                    ));
                }
                Err(_) => break Some((written as usize, session.unavailable())),
            }
            chunks.clear();
            if let Some((unsent, status)) = oversize {
                // Finished, not reset: the frames written before it still arrive.
                let _ = stream.finish();
                break Some((unsent, status));
            }
        };
        match failure {
            None => {
                if let Some(stream) = send.as_mut() {
                    if aborted.load(Relaxed) {
                        let _ = stream.reset(VarInt::from_u32(Code::Cancelled.as_u32()));
                    } else {
                        let _ = stream.finish();
                    }
                }
            }
            Some((unsent, status)) => {
                tracing::debug!(session = session.id(), stream = id, %status, "stream can no longer send");
                if let Some(out) = out.upgrade() {
                    out.fail(status);
                    let lost = queue.close_and_clear();
                    out.count_dropped((unsent + lost) as u64);
                } else {
                    queue.close_and_clear();
                }
            }
        }
    }
}

/// Why a stream frame grown to `size` bytes by outbound middleware cannot be sent.
fn oversize_status(session: &Session, id: u64, size: usize, max: usize) -> Status {
    tracing::warn!(
        session = session.id(),
        stream = id,
        size,
        max,
        "outbound middleware grew a stream frame past the peer's limit; the stream fails"
    );
    Status::resource_exhausted(format!(
        "a frame of stream {id} is {size} bytes after outbound middleware, over the peer's limit \
         of {max} bytes: dropped, and the stream failed"
    ))
}

/// Where a received stream's frames come from.
enum Source {
    /// Its own QUIC stream, after the `StreamOpen`.
    Reliable(FrameReader),
    /// The session's datagrams, while the announcement stream stays open.
    Datagram {
        /// The announcement stream, until it ends.
        announcement: Option<FrameReader>,
        queue: Arc<OutQueue<Arrival>>,
        counters: Arc<RouteCounters>,
        /// Frames taken from the queue (with their sizes), not handed over yet.
        batch: std::collections::VecDeque<(Arrival, usize)>,
        /// After the announcement finished: frames still in flight are taken until the first
        /// instant, longer while some are partly reassembled, but not past the second.
        linger: Option<(tokio::time::Instant, tokio::time::Instant)>,
    },
}

/// What a source gave.
enum Next {
    Frame(Arrival),
    End(StreamEnd),
}

impl Source {
    /// The next frame, or how the stream ended. Protocol violations close the connection.
    async fn next(&mut self, session: &Session, id: u64) -> Next {
        match self {
            Source::Reliable(reader) => {
                let frame = match reader.next().await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Next::End(StreamEnd::Finished),
                    Err(ReadFrameError::Read(quinn::ReadError::Reset(code))) => {
                        return Next::End(StreamEnd::Reset(code.into_inner()));
                    }
                    Err(ReadFrameError::Read(_)) => return Next::End(StreamEnd::ConnectionLost),
                    Err(ReadFrameError::Codec(e)) => {
                        session.protocol_error(
                            codec_close_code(&e),
                            &format!("bad stream frame: {e}"),
                        );
                        return Next::End(StreamEnd::ConnectionLost);
                    }
                    Err(ReadFrameError::OverBudget { limit }) => {
                        tracing::warn!(
                            session = session.id(),
                            stream = id,
                            limit,
                            "incomplete frames exceed the session's budget; stream stopped"
                        );
                        reader.stop(Code::ResourceExhausted);
                        return Next::End(StreamEnd::Stopped(Code::ResourceExhausted.as_u32()));
                    }
                };
                match frame.payload {
                    Some(Payload::Stream(f)) if f.stream_id == id => Next::Frame(Arrival {
                        seq: f.seq,
                        timestamp: f.timestamp,
                        data: f.data,
                        at: Instant::now(),
                    }),
                    _ => {
                        session.protocol_error(
                            ErrorCode::ProtocolError,
                            "a stream carried something else than its own StreamFrames",
                        );
                        Next::End(StreamEnd::ConnectionLost)
                    }
                }
            }
            Source::Datagram {
                announcement,
                queue,
                batch,
                linger,
                ..
            } => loop {
                if let Some((frame, _)) = batch.pop_front() {
                    return Next::Frame(frame);
                }
                match (announcement.as_mut(), *linger) {
                    (Some(reader), _) => {
                        tokio::select! {
                            biased;
                            more = queue.pop_run(batch, RECEIVE_BATCH) => {
                                if !more {
                                    return Next::End(StreamEnd::ConnectionLost);
                                }
                            }
                            read = reader.next() => match read {
                                Ok(None) => {
                                    // Datagrams sent before the end may still be on their way.
                                    *announcement = None;
                                    let now = tokio::time::Instant::now();
                                    let reassembly = session.inner.shared.config.reassembly.timeout;
                                    *linger = Some((now + linger_time(session), now + reassembly + LINGER_STEP));
                                }
                                Err(ReadFrameError::Read(quinn::ReadError::Reset(code))) => {
                                    return Next::End(StreamEnd::Reset(code.into_inner()));
                                }
                                // (An announcement's reader has no budget.)
                                Err(ReadFrameError::Read(_) | ReadFrameError::OverBudget { .. }) => {
                                    return Next::End(StreamEnd::ConnectionLost);
                                }
                                Ok(Some(_)) => {
                                    session.protocol_error(
                                        ErrorCode::ProtocolError,
                                        "a datagram stream's announcement carried frames",
                                    );
                                    return Next::End(StreamEnd::ConnectionLost);
                                }
                                Err(ReadFrameError::Codec(e)) => {
                                    session.protocol_error(
                                        codec_close_code(&e),
                                        &format!("bad stream frame: {e}"),
                                    );
                                    return Next::End(StreamEnd::ConnectionLost);
                                }
                            },
                        }
                    }
                    (None, Some((until, give_up))) => {
                        tokio::select! {
                            biased;
                            more = queue.pop_run(batch, RECEIVE_BATCH) => {
                                if !more {
                                    return Next::End(StreamEnd::Finished);
                                }
                            }
                            () = tokio::time::sleep_until(until) => {
                                // A frame still missing fragments ends complete or counted.
                                let partial = session.inner.datagrams.partial_frames_of(id) > 0;
                                let now = tokio::time::Instant::now();
                                if !partial || now >= give_up {
                                    return Next::End(StreamEnd::Finished);
                                }
                                *linger = Some((now + LINGER_STEP, give_up));
                            }
                        }
                    }
                    (None, None) => return Next::End(StreamEnd::Finished),
                }
            },
        }
    }

    /// A frame taken from the queue and not handed over yet, if any.
    fn buffered(&mut self) -> Option<Arrival> {
        match self {
            Source::Datagram { batch, .. } => batch.pop_front().map(|(frame, _)| frame),
            Source::Reliable(_) => None,
        }
    }

    /// Whether frames are taken from the queue and not handed over yet.
    fn has_buffered(&self) -> bool {
        matches!(self, Source::Datagram { batch, .. } if !batch.is_empty())
    }

    /// Brings the playback's counts of frames dropped before it up to date.
    fn count_drops(&self, playback: &mut Playback, seen: &mut (u64, u64)) {
        if let Source::Datagram { counters, .. } = self {
            let overflow = counters.overflow.load(Relaxed);
            let incomplete = counters.incomplete.load(Relaxed);
            playback.count_overflow(overflow - seen.0);
            playback.count_incomplete(incomplete - seen.1);
            *seen = (overflow, incomplete);
        }
    }
}

/// How long a finished datagram stream still takes frames in after its end arrived: the last
/// datagrams left before the end did, but a path that delays some datagrams more than others
/// (jitter, reordering) may deliver them after it. Two round trips and 50 ms cover what a path
/// usually varies by; the reassembly timeout, which bounds how long a frame may be on its way
/// anyway, caps it.
fn linger_time(session: &Session) -> Duration {
    let reassembly = session.inner.shared.config.reassembly.timeout;
    let linger = session.inner.conn.rtt().saturating_mul(2) + Duration::from_millis(50);
    linger.min(reassembly.max(Duration::from_millis(10)))
}

/// Reads a stream the peer opened and hands its frames to the handler of its name.
pub(crate) async fn read(session: Session, reader: FrameReader) {
    // A stream opened in early data may be a replay: it waits for the handshake.
    if !session.inner.handshake.wait().await {
        return;
    }
    let mut reader = reader.with_budget(session.inner.budget.clone());
    let frame = match reader.next().await {
        Ok(Some(frame)) => frame,
        Ok(None) | Err(ReadFrameError::Read(_)) => return,
        Err(ReadFrameError::OverBudget { .. }) => {
            session.inner.counters.streams_refused.fetch_add(1, Relaxed);
            return reader.stop(Code::ResourceExhausted);
        }
        Err(ReadFrameError::Codec(e)) => {
            return session.protocol_error(codec_close_code(&e), &format!("bad stream frame: {e}"));
        }
    };
    if !matches!(frame.payload, Some(Payload::StreamOpen(_))) {
        return session.protocol_error(
            ErrorCode::ProtocolError,
            "a stream must start with StreamOpen",
        );
    }
    let refuse = |reader: &mut FrameReader, code: Code| {
        session.inner.counters.streams_refused.fetch_add(1, Relaxed);
        reader.stop(code);
    };
    let frame = match session.inbound(frame).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return refuse(&mut reader, Code::Cancelled),
        Err(status) => return refuse(&mut reader, status.code()),
    };
    let Frame {
        metadata,
        payload: Some(Payload::StreamOpen(open)),
    } = frame
    else {
        return refuse(&mut reader, Code::Internal);
    };
    let Some(delivery) = Delivery::from_wire(open.delivery) else {
        tracing::debug!(session = session.id(), stream = %open.name, delivery = open.delivery, "stream of an unknown delivery refused");
        return refuse(&mut reader, Code::InvalidArgument);
    };
    if delivery == Delivery::Datagram && !session.inner.shared.config.datagrams {
        tracing::debug!(session = session.id(), stream = %open.name, "datagram stream refused: datagrams are disabled here");
        return refuse(&mut reader, Code::FailedPrecondition);
    }
    let Some((name, handler)) = session.inner.shared.router.stream_handler(&open.name) else {
        tracing::debug!(session = session.id(), stream = %open.name, "no handler for stream; refused");
        return refuse(&mut reader, Code::NotFound);
    };
    let handler = handler.clone();
    let playout = handler.playout();
    let config = &session.inner.shared.config;
    let source = match delivery {
        Delivery::Reliable => Source::Reliable(reader),
        Delivery::Datagram => {
            let max = match open.max_frame_bytes {
                0 => config.reassembly.max_frame_bytes,
                n => n as usize,
            };
            match session
                .inner
                .datagrams
                .register(open.stream_id, max, config.stream_queue)
            {
                Ok((queue, counters)) => Source::Datagram {
                    announcement: Some(reader),
                    queue,
                    counters,
                    batch: Default::default(),
                    linger: None,
                },
                Err(status) => {
                    tracing::debug!(session = session.id(), stream = %open.name, %status, "datagram stream refused");
                    return refuse(&mut reader, status.code());
                }
            }
        }
    };
    let info = StreamInfo {
        id: open.stream_id,
        name: name.clone(),
        delivery,
        max_frame_bytes: open.max_frame_bytes,
        metadata: Arc::new(metadata.clone()),
        playout,
        stats: Arc::default(),
    };
    let ctx = CallContext::new(CallKind::Stream, 0, name.clone(), None, metadata);
    session
        .inner
        .inbound_streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(info.id, info.clone());
    let playback = Playback::new(&playout, config.stream_queue.bytes);
    let receiver = Receiver {
        session: &session,
        handler: &*handler,
        info: &info,
        ctx: &ctx,
    };
    receiver.run(source, playback).await;
    if delivery == Delivery::Datagram {
        session.inner.datagrams.unregister(info.id);
    }
    session
        .inner
        .inbound_streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&info.id);
}

/// A received stream being played out to its handler.
struct Receiver<'a> {
    session: &'a Session,
    handler: &'a dyn StreamHandler,
    info: &'a StreamInfo,
    ctx: &'a CallContext,
}

impl Receiver<'_> {
    async fn run(&self, source: Source, playback: Playback) {
        // The handler's context is the stream's for all its calls: set once, around them all.
        self.ctx.clone().scope(self.serve(source, playback)).await;
    }

    async fn serve(&self, mut source: Source, mut playback: Playback) {
        let session = self.session;
        if let Some(Err(panic)) = self
            .until_closed(catch_unwind_future(
                self.handler.on_open(session, self.info),
            ))
            .await
        {
            self.panicked("on_open", panic);
        }
        let mut drops_seen = (0, 0);
        let mut unpublished = 0u32;
        let end = loop {
            // What is due and the frames taken already play at once, in one go for as long as
            // their handlers finish at their first poll (the usual case): no suspension point
            // per frame.
            let ready = std::future::poll_fn(|cx| {
                Poll::Ready(self.play_ready(
                    cx,
                    &mut source,
                    &mut playback,
                    &mut unpublished,
                    &mut drops_seen,
                ))
            })
            .await;
            let next = match ready {
                Ready::Handling(handling) => {
                    self.finish_handling(handling).await;
                    continue;
                }
                Ready::Inbound(frame) => {
                    self.take_in(&mut playback, frame).await;
                    continue;
                }
                Ready::Drained => {
                    let deadline = playback.next_deadline();
                    tokio::select! {
                        biased;
                        next = source.next(session, self.info.id) => next,
                        () = sleep_until(deadline) => continue,
                    }
                }
            };
            match next {
                Next::End(end) => break end,
                Next::Frame(frame) => {
                    session
                        .inner
                        .counters
                        .stream_frames_received
                        .fetch_add(1, Relaxed);
                    self.take_in(&mut playback, frame).await;
                }
            }
        };
        if end == StreamEnd::Finished {
            // What the jitter buffer holds still plays, each frame at its time.
            let limit = Instant::now() + MAX_DRAIN;
            while let Some(at) = playback.next_deadline().filter(|at| *at <= limit) {
                sleep_until(Some(at)).await;
                while let Some(frame) = playback.poll_ready(Instant::now()) {
                    self.play(frame).await;
                }
            }
        }
        source.count_drops(&mut playback, &mut drops_seen);
        self.info.stats.set(playback.stats());
        // `on_end` runs even after the connection is lost (to tell the handler so), for a
        // little while.
        let on_end = catch_unwind_future(self.handler.on_end(session, self.info, end));
        let closed = async {
            session.inner.conn.closed().await;
            tokio::time::sleep(ON_END_AFTER_CLOSE).await;
        };
        tokio::select! {
            biased;
            ended = on_end => {
                if let Err(panic) = ended {
                    self.panicked("on_end", panic);
                }
            }
            () = closed => {
                self.ctx.cancel();
                tracing::debug!(session = session.id(), stream = %self.info.name, "on_end cancelled: the connection is closed");
            }
        }
    }

    /// One turn of the serving loop as far as it goes without waiting: plays the frames the
    /// jitter buffer has due, publishes the statistics (before waiting, and every so many
    /// frames of a burst), then takes in the frames already taken from the source and plays
    /// them, each turn after the frame starting with what is due again. Stops at a handler that
    /// did not finish at its first poll, at a frame for the inbound middleware, or once no
    /// frame is left in hand (what is due played, the statistics published).
    fn play_ready(
        &self,
        cx: &mut Context<'_>,
        source: &mut Source,
        playback: &mut Playback,
        unpublished: &mut u32,
        drops_seen: &mut (u64, u64),
    ) -> Ready<'_> {
        let session = self.session;
        loop {
            while let Some(frame) = playback.poll_due() {
                if let Some(handling) = self.play_now(cx, frame) {
                    return Ready::Handling(handling);
                }
            }
            *unpublished += 1;
            if !source.has_buffered() || *unpublished >= PUBLISH_EVERY {
                *unpublished = 0;
                source.count_drops(playback, drops_seen);
                self.info.stats.set(playback.stats());
            }
            let Some(frame) = source.buffered() else {
                return Ready::Drained;
            };
            session
                .inner
                .counters
                .stream_frames_received
                .fetch_add(1, Relaxed);
            if !session.inner.shared.middleware.is_empty() {
                return Ready::Inbound(frame);
            }
            if let Some(frame) = playback.push(session, frame)
                && let Some(handling) = self.play_now(cx, frame)
            {
                return Ready::Handling(handling);
            }
        }
    }

    /// Hands one frame to the handler and polls its future once, in the task's context: `None`
    /// if it finished (a panic counted and logged), else the future, to be waited for.
    fn play_now(&self, cx: &mut Context<'_>, frame: Played<Bytes>) -> Option<Handling<'_>> {
        let mut handling = catch_unwind_future(self.handler.handle(self.session, self.info, frame));
        match Pin::new(&mut handling).poll(cx) {
            Poll::Ready(Ok(())) => None,
            Poll::Ready(Err(panic)) => {
                self.handle_panicked(panic);
                None
            }
            Poll::Pending => Some(handling),
        }
    }

    /// Waits for a handler's future that did not finish at its first poll (see
    /// [`Receiver::until_closed`]).
    async fn finish_handling(&self, handling: Handling<'_>) {
        if let Some(Err(panic)) = self.until_closed(handling).await {
            self.handle_panicked(panic);
        }
    }

    /// Runs a handler's future until it completes, or until the connection closes: then the
    /// future is dropped, the stream's context cancelled, and `None` returned. A handler stuck
    /// on a channel, a lock or a call to the gone peer must not keep the session alive.
    async fn until_closed<F: std::future::Future>(&self, handler: F) -> Option<F::Output> {
        let mut handler = std::pin::pin!(handler);
        // Most handlers finish at their first poll: the connection is watched only for the others.
        let first = std::future::poll_fn(|cx| Poll::Ready(handler.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = first {
            return Some(output);
        }
        tokio::select! {
            biased;
            output = handler => Some(output),
            _ = self.session.inner.conn.closed() => {
                self.ctx.cancel();
                tracing::debug!(session = self.session.id(), stream = %self.info.name, "stream handler cancelled: the connection closed");
                None
            }
        }
    }

    fn panicked(&self, what: &str, panic: String) {
        let session = self.session;
        session.inner.counters.handler_panics.fetch_add(1, Relaxed);
        tracing::error!(session = session.id(), stream = %self.info.name, panic, "stream handler panicked in {what}");
    }

    /// Takes a received frame in, through the inbound middleware, and plays it if the playout
    /// says so.
    async fn take_in(&self, playback: &mut Playback, frame: Arrival) {
        if let Some(frame) = self.inbound(frame).await
            && let Some(frame) = playback.push(self.session, frame)
        {
            self.play(frame).await;
        }
    }

    /// Runs a received frame through the inbound middleware.
    async fn inbound(&self, frame: Arrival) -> Option<Arrival> {
        if self.session.inner.shared.middleware.is_empty() {
            return Some(frame);
        }
        let at = frame.at;
        let wrapped = Frame {
            metadata: Metadata::new(),
            payload: Some(Payload::Stream(StreamFrame {
                stream_id: self.info.id,
                seq: frame.seq,
                timestamp: frame.timestamp,
                data: frame.data,
            })),
        };
        match self.session.inbound(wrapped).await {
            Ok(Some(Frame {
                payload: Some(Payload::Stream(f)),
                ..
            })) => Some(Arrival {
                seq: f.seq,
                timestamp: f.timestamp,
                data: f.data,
                at,
            }),
            _ => None,
        }
    }

    /// Hands one frame to the handler (in the stream's context, set once by `run`).
    async fn play(&self, frame: Played<Bytes>) {
        let handled = catch_unwind_future(self.handler.handle(self.session, self.info, frame));
        if let Some(Err(panic)) = self.until_closed(handled).await {
            self.handle_panicked(panic);
        }
    }

    fn handle_panicked(&self, panic: String) {
        self.session
            .inner
            .counters
            .handler_panics
            .fetch_add(1, Relaxed);
        tracing::error!(session = self.session.id(), stream = %self.info.name, panic, "stream handler panicked in handle");
    }
}

/// A handler's future for one frame, panics caught.
type Handling<'a> = CatchUnwind<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>;

/// Where [`Receiver::play_ready`] stopped.
enum Ready<'a> {
    /// A handler did not finish at its first poll: its future, to be waited for.
    Handling(Handling<'a>),
    /// A frame taken in (and counted) for the inbound middleware, which may wait.
    Inbound(Arrival),
    /// No frame is left in hand: the source is waited for.
    Drained,
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
