//! Named real-time streams: [`StreamOptions`] and [`StreamSender`] for the sending side,
//! [`StreamInfo`] and [`StreamEnd`] for the receiving handler.
//!
//! A stream is announced by a `StreamOpen` frame carrying its name, so the receiver routes its
//! frames to the [`StreamHandler`](crate::StreamHandler) registered under that name. With
//! [`Delivery::Reliable`], a stream has its own QUIC unidirectional stream: frames arrive
//! complete and in order, and never delay RPCs, events or other streams.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use quinn::{SendStream, VarInt, WriteError};
use std::sync::atomic::AtomicBool;

use crate::call::{CallContext, CallKind, Metadata};
use crate::codec::Encoder;
use crate::io::{FrameReader, ReadFrameError, status_from_stream_code};
use crate::jitter::Played;
use crate::panic::catch_unwind_future;
use crate::proto::v1::{self, ErrorCode, Frame, StreamFrame, StreamOpen, frame::Payload};
use crate::protocol::STREAM_STREAM;
use crate::queue::{OutQueue, PushError, QueueLimits};
use crate::session::{Session, codec_close_code};
use crate::status::{Code, Status};

/// Most frames the writer takes from a stream's queue for one vectored write.
const WRITE_BATCH: usize = 32;

/// The encoded size of a stream frame's fields other than its data, at most.
const STREAM_FRAME_OVERHEAD: usize = 48;

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
}

/// How the receiving side plays a stream's frames out to its handler: the handler's
/// [`StreamHandler::playout`](crate::StreamHandler::playout) chooses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Playout {
    jitter: Option<std::time::Duration>,
}

impl Playout {
    /// Each frame is handed over as soon as it arrives.
    pub fn on_arrival() -> Playout {
        Playout { jitter: None }
    }

    /// Frames are held in a jitter buffer and released in seq order at their playout time,
    /// `target` after they were sent (the schema's `jitter_ms`).
    pub fn jitter_buffer(target: std::time::Duration) -> Playout {
        Playout {
            jitter: Some(target),
        }
    }

    /// The jitter buffer's target delay, if frames are buffered.
    pub fn jitter_target(&self) -> Option<std::time::Duration> {
        self.jitter
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
    /// peer is told, for its buffers.
    pub fn max_frame_bytes(mut self, bytes: u32) -> StreamOptions {
        self.max_frame_bytes = Some(bytes);
        self
    }

    /// Bounds of this stream's send queue (default: the endpoint's `stream_queue`).
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
}

/// How a received stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// The sender finished it; every frame was delivered.
    Finished,
    /// The sender reset it with this code; frames after the reset point are lost.
    Reset(u64),
    /// The connection was lost or closed.
    ConnectionLost,
}

/// The sending side of an open named stream. Cheap to clone; clones send on the same stream.
///
/// Frames are queued and written by a task of the session, so `send` never waits for the
/// network. When the queue is full, `send` refuses the frame with `RESOURCE_EXHAUSTED` and
/// counts it; the next frame that is sent carries a sequence number that leaves a gap, so the
/// receiver sees the loss. The stream finishes when [`StreamSender::finish`] is called or the
/// last clone is dropped, after its queued frames are written.
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
    queue: Arc<OutQueue<Pending>>,
    max_frame_bytes: usize,
    /// Frames refused since the last queued frame: the gap the next one carries.
    gap: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Why the stream can no longer send, once it cannot.
    failed: OnceLock<Status>,
    /// Set by `abort`: the writer resets the stream instead of finishing it.
    aborted: Arc<AtomicBool>,
}

/// A frame waiting in a stream's queue.
#[derive(Debug)]
struct Pending {
    timestamp: u64,
    data: Bytes,
    /// Frames refused just before this one: its seq skips that many.
    gap: u64,
}

/// What a stream's queue and writer have done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Frames written to the connection.
    pub sent: u64,
    /// Frames refused (full queue) or lost (stream refused or connection closed before writing).
    pub dropped: u64,
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

    /// Queues `data` as the next frame, stamped with the endpoint's clock. Returns at once.
    pub async fn send(&self, data: Bytes) -> Result<(), Status> {
        let now = self.out.session.clock().now_micros();
        self.send_at(now, data).await
    }

    /// Queues `data` as the next frame with the given timestamp (microseconds since the Unix
    /// epoch on this side's clock: when the frame was captured). Returns at once.
    ///
    /// Errors: `INVALID_ARGUMENT` if `data` exceeds the stream's `max_frame_bytes`,
    /// `RESOURCE_EXHAUSTED` if the queue is full (the frame is dropped and counted) or the
    /// frame exceeds the peer's limit, `NOT_FOUND` if the peer refused the stream, `UNAVAILABLE`
    /// once the session is closed, `CANCELLED` after `finish`.
    pub async fn send_at(&self, timestamp: u64, data: Bytes) -> Result<(), Status> {
        let out = &*self.out;
        if let Some(status) = out.failed.get() {
            return Err(status.clone());
        }
        if data.len() > out.max_frame_bytes {
            return Err(Status::invalid_argument(format!(
                "frame of {} bytes exceeds the max_frame_bytes of stream {} ({} bytes)",
                data.len(),
                out.name,
                out.max_frame_bytes
            )));
        }
        let size = data.len() + STREAM_FRAME_OVERHEAD;
        let gap = out.gap.swap(0, Relaxed);
        match out.queue.push(
            Pending {
                timestamp,
                data,
                gap,
            },
            size,
        ) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                out.gap.fetch_add(gap + 1, Relaxed);
                out.count_dropped(1);
                let limits = out.queue.limits();
                Err(Status::resource_exhausted(format!(
                    "queue of stream {} full ({} frames or {} bytes waiting): frame dropped",
                    out.name, limits.frames, limits.bytes
                )))
            }
            Err(PushError::Closed) => {
                Err(out.failed.get().cloned().unwrap_or_else(|| {
                    Status::cancelled(format!("stream {} is finished", out.name))
                }))
            }
        }
    }

    /// Finishes the stream: frames already queued are still written, then the receiver's
    /// handler sees [`StreamEnd::Finished`]. Later sends fail `CANCELLED`.
    pub fn finish(&self) {
        self.out.queue.close();
    }

    /// Abandons the stream: queued frames are discarded (and counted as dropped), the QUIC stream
    /// is reset with `CANCELLED`, and the receiver's handler sees [`StreamEnd::Reset`]. Later
    /// sends fail `CANCELLED`.
    pub fn abort(&self) {
        let out = &*self.out;
        let _ = out.failed.set(Status::cancelled(format!(
            "stream {} was aborted",
            out.name
        )));
        out.aborted.store(true, Relaxed);
        let discarded = out.queue.close_and_clear();
        out.count_dropped(discarded as u64);
    }

    /// What this stream sent and dropped so far.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            sent: self.out.sent.load(Relaxed),
            dropped: self.out.dropped.load(Relaxed),
        }
    }
}

impl StreamOut {
    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        self.session
            .inner
            .counters
            .stream_frames_dropped
            .fetch_add(n, Relaxed);
    }

    /// The session closed: nothing more can be sent.
    pub(crate) fn abandon(&self, session: &Session) {
        let _ = self.failed.set(session.unavailable());
        let lost = self.queue.close_and_clear();
        self.count_dropped(lost as u64);
    }
}

impl Drop for StreamOut {
    fn drop(&mut self) {
        self.queue.close();
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
    if session.is_closed() {
        return Err(session.unavailable());
    }
    if options.delivery == Delivery::Datagram {
        return Err(Status::invalid_argument(format!(
            "stream {name}: datagram delivery is not available in this build yet"
        )));
    }
    let id = session.inner.next_stream_id.fetch_add(1, Relaxed);
    let open = Frame {
        metadata: options.metadata,
        payload: Some(Payload::StreamOpen(StreamOpen {
            stream_id: id,
            name: name.to_owned(),
            delivery: options.delivery.to_wire() as i32,
            max_frame_bytes: options.max_frame_bytes.unwrap_or(0),
        })),
    };
    let Some(open) = session.outbound(open).await? else {
        return Err(Status::cancelled(format!(
            "opening of stream {name} dropped by outbound middleware"
        )));
    };
    session.inner.check_frame_size(&open)?;
    let peer_limit = session
        .peer_max_frame_size()
        .saturating_sub(STREAM_FRAME_OVERHEAD);
    let max_frame_bytes = options
        .max_frame_bytes
        .map_or(peer_limit, |m| (m as usize).min(peer_limit));
    let queue = Arc::new(OutQueue::new(
        options
            .queue
            .unwrap_or(session.inner.shared.config.stream_queue),
    ));
    let out = Arc::new(StreamOut {
        id,
        name: name.into(),
        session: session.clone(),
        queue: queue.clone(),
        max_frame_bytes,
        gap: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        failed: OnceLock::new(),
        aborted: Arc::new(AtomicBool::new(false)),
    });
    session
        .inner
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Arc::downgrade(&out));
    let writer = Writer {
        session: session.clone(),
        out: Arc::downgrade(&out),
        queue,
        aborted: out.aborted.clone(),
        id,
    };
    tokio::spawn(writer.run(open));
    Ok(StreamSender { out })
}

/// The task that writes one outbound stream.
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
            if !queue.pop_batch(&mut batch, WRITE_BATCH).await {
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
            let count = batch.len();
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
                    Ok(Some(frame)) => {
                        encoder.encode(frame, &mut chunks);
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
            match stream.write_all_chunks(&mut chunks).await {
                Ok(()) => {
                    if let Some(out) = out.upgrade() {
                        out.sent.fetch_add(count as u64, Relaxed);
                    }
                    session
                        .inner
                        .counters
                        .stream_frames_sent
                        .fetch_add(count as u64, Relaxed);
                }
                Err(WriteError::Stopped(code)) => {
                    break Some((count, status_from_stream_code(code, "stream refused")));
                }
                Err(_) => break Some((count, session.unavailable())),
            }
            chunks.clear();
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
                    let _ = out.failed.set(status);
                    let lost = queue.close_and_clear();
                    out.count_dropped((unsent + lost) as u64);
                } else {
                    queue.close_and_clear();
                }
            }
        }
    }
}

/// Reads a stream the peer opened and hands its frames to the handler of its name.
pub(crate) async fn read(session: Session, mut reader: FrameReader) {
    let frame = match reader.next().await {
        Ok(Some(frame)) => frame,
        Ok(None) | Err(ReadFrameError::Read(_)) => return,
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
    if open.delivery != v1::Delivery::Reliable as i32 {
        tracing::debug!(session = session.id(), stream = %open.name, delivery = open.delivery, "stream of an unsupported delivery refused");
        return refuse(&mut reader, Code::InvalidArgument);
    }
    let Some((name, handler)) = session.inner.shared.router.stream_handler(&open.name) else {
        tracing::debug!(session = session.id(), stream = %open.name, "no handler for stream; refused");
        return refuse(&mut reader, Code::NotFound);
    };
    let info = StreamInfo {
        id: open.stream_id,
        name: name.clone(),
        delivery: Delivery::Reliable,
        max_frame_bytes: open.max_frame_bytes,
        metadata: Arc::new(metadata.clone()),
    };
    let ctx = CallContext::new(CallKind::Stream, 0, name.clone(), None, metadata);
    let report = |what: &str, panic: String| {
        session.inner.counters.handler_panics.fetch_add(1, Relaxed);
        tracing::error!(session = session.id(), stream = %info.name, panic, "stream handler panicked in {what}");
    };
    if let Err(panic) = ctx
        .clone()
        .scope(catch_unwind_future(handler.on_open(&session, &info)))
        .await
    {
        report("on_open", panic);
    }
    let mut next_seq: Option<u64> = None;
    let end = loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break StreamEnd::Finished,
            Err(ReadFrameError::Read(quinn::ReadError::Reset(code))) => {
                break StreamEnd::Reset(code.into_inner());
            }
            Err(ReadFrameError::Read(_)) => break StreamEnd::ConnectionLost,
            Err(ReadFrameError::Codec(e)) => {
                session.protocol_error(codec_close_code(&e), &format!("bad stream frame: {e}"));
                break StreamEnd::ConnectionLost;
            }
        };
        match &frame.payload {
            Some(Payload::Stream(f)) if f.stream_id == info.id => {}
            _ => {
                session.protocol_error(
                    ErrorCode::ProtocolError,
                    "a stream carried something else than its own StreamFrames",
                );
                break StreamEnd::ConnectionLost;
            }
        }
        session
            .inner
            .counters
            .stream_frames_received
            .fetch_add(1, Relaxed);
        let frame = match session.inbound(frame).await {
            Ok(Some(Frame {
                payload: Some(Payload::Stream(frame)),
                ..
            })) => frame,
            _ => continue,
        };
        // A reliable stream plays each frame as it arrives; a gap in seq is frames the sender
        // dropped from its queue.
        let lost_before = match next_seq {
            Some(expected) => frame.seq.saturating_sub(expected),
            None => 0,
        };
        next_seq = Some(frame.seq.wrapping_add(1));
        let frame = Played {
            payload: frame.data,
            seq: frame.seq,
            timestamp: frame.timestamp,
            playout: Instant::now(),
            lost_before,
        };
        if let Err(panic) = ctx
            .clone()
            .scope(catch_unwind_future(handler.handle(&session, &info, frame)))
            .await
        {
            report("handle", panic);
        }
    };
    if let Err(panic) = ctx
        .scope(catch_unwind_future(handler.on_end(&session, &info, end)))
        .await
    {
        report("on_end", panic);
    }
}
