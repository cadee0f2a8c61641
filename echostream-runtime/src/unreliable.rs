//! Datagram streams inside a session: sending their frames as QUIC datagrams, and receiving
//! them back into frames for the stream they were announced under.
//!
//! **Sending.** A frame is cut to the connection's current `max_datagram_size()` (see
//! [`datagram`]), then admitted by the session's token-bucket [`Pacer`], whose
//! rate follows the congestion controller (`gain × cwnd / min_rtt`). A frame the pacer cannot
//! admit within its maximum delay is dropped whole and counted; one that must wait a little
//! waits in a short queue served by a task, so `send` never blocks. Frames also go to quinn only
//! while its datagram queue holds less than about one congestion window.
//!
//! quinn puts queued datagrams in each packet before stream data. So once the session has
//! written stream data (a call, an answer, events, a reliable stream's frames) while datagrams
//! were queued, no frame is handed over until quinn's datagram queue has emptied, which lets
//! that data through: RPCs and events wait at most for one budget of datagrams to leave, about
//! one round trip, while a stream of datagrams alone runs at full speed.
//!
//! `send_wait` (bulk transfers) skips the pacer and the budget and waits for room in quinn's
//! datagram send buffer instead, but also lets earlier stream data through first.
//!
//! **Receiving.** One task per session reads the datagrams, reassembles fragmented frames (with
//! bounded time and memory, every drop counted) and hands each complete frame to the queue of
//! the stream with its id. A stream is announced reliably (a `StreamOpen` on its own QUIC
//! stream), but its first datagrams may overtake the announcement: frames of an id not open yet
//! wait, bounded in number, bytes and time (the reassembly timeout), for it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::{Connection, SendDatagramError, SendStream, VarInt};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, watch};

use crate::call::Metadata;
use crate::config::Config;
use crate::datagram::{
    self, DatagramFrame, FragmentError, FragmentPlan, FrameId, FrameKey, Reassembler,
};
use crate::io::status_from_stream_code;
use crate::pacer::{Admission, Pacer};
use crate::playout::Arrival;
use crate::proto::v1::{Frame, StreamFrame, frame::Payload};
use crate::queue::{OutQueue, PushError, QueueLimits};
use crate::session::Session;
use crate::status::{Code, Status};
use crate::stream::StreamOut;

/// What quinn's datagram queue counts per datagram on top of its bytes.
const DATAGRAM_OVERHEAD: usize = std::mem::size_of::<Bytes>();
/// The smallest budget of bytes in quinn's datagram queue: room for a few full packets.
const MIN_BUDGET: usize = 32 * 1024;
/// How often the pacer's rate and the budget are brought up to date with the path.
const PATH_REFRESH: Duration = Duration::from_millis(10);
/// Most frames waiting for the pacer at once (bytes are bounded by what the pacer's maximum
/// delay lets through).
const MAX_WAITING: usize = 256;
/// Most frames waiting for their stream's announcement.
const MAX_EARLY: usize = 64;
/// How many ended stream ids are remembered, so that their late frames are dropped at once.
const ENDED_MEMORY: usize = 256;
/// The longest a finishing datagram stream waits for its datagrams to leave before its end.
const FINISH_WAIT: Duration = Duration::from_secs(1);
/// The size of the blocks datagrams are written into (one allocation for many small frames).
const ARENA_BLOCK: usize = 64 * 1024;
/// The most datagrams the receive task takes per wake-up (those quinn already holds), under
/// one lock and one clock reading.
const RECEIVE_BATCH: usize = 64;
/// How many times `send_wait` cuts a frame again when the path MTU shrank under it.
const MAX_RECUTS: u32 = 2;
/// The largest frame of a datagram stream opened without its own `max_frame_bytes`.
pub(crate) const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;

/// Where an outbound datagram stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneState {
    Open,
    Finishing,
    Aborted,
}

/// The sending state of one datagram stream.
#[derive(Debug)]
pub(crate) struct Lane {
    shared: Arc<LaneShared>,
    state: watch::Sender<LaneState>,
}

/// What a datagram stream's senders and its announcement task share.
#[derive(Debug, Default)]
struct LaneShared {
    next_seq: AtomicU64,
    /// Frames of the stream waiting for the pacer.
    waiting: AtomicUsize,
    /// Signalled when `waiting` drops to zero.
    flushed: Notify,
    /// Datagrams sent (fragments count one each).
    datagrams: AtomicU64,
    /// Set once the stream finishes or aborts (the state, readable without a lock).
    closed: AtomicBool,
}

impl Lane {
    /// Datagrams this stream sent.
    pub(crate) fn datagrams(&self) -> u64 {
        self.shared.datagrams.load(Relaxed)
    }

    /// Ends the stream after the frames waiting for the pacer; no more sends.
    pub(crate) fn finish(&self) {
        self.shared.closed.store(true, Relaxed);
        self.state.send_if_modified(|state| {
            let open = *state == LaneState::Open;
            if open {
                *state = LaneState::Finishing;
            }
            open
        });
    }

    /// Ends the stream at once: waiting frames are dropped, the announcement is reset.
    pub(crate) fn abort(&self) {
        self.shared.closed.store(true, Relaxed);
        self.state.send_replace(LaneState::Aborted);
    }

    /// Whether the stream still takes frames (not finishing or aborted).
    fn is_open(&self) -> bool {
        !self.shared.closed.load(Relaxed)
    }
}

/// Checks that datagram streams can be opened on `session`.
pub(crate) fn check_support(session: &Session) -> Result<(), Status> {
    if !session.inner.shared.config.datagrams {
        return Err(Status::failed_precondition(
            "datagram streams are disabled on this endpoint (Config::datagrams)",
        ));
    }
    if session.inner.conn.max_datagram_size().is_none() {
        return Err(Status::failed_precondition(
            "the peer does not accept QUIC datagrams, which datagram streams need",
        ));
    }
    Ok(())
}

/// Writes a datagram stream's announcement (type byte and `StreamOpen`, encoded in `open`) on
/// a new unidirectional stream, and starts the task that keeps it open while the stream lives
/// and ends it with the stream. A refusal by the peer is recorded in `failed`.
pub(crate) async fn open(
    session: &Session,
    id: u64,
    mut open: Vec<Bytes>,
    failed: Arc<OnceLock<Status>>,
) -> Result<Lane, Status> {
    let mut send = session
        .inner
        .conn
        .open_uni()
        .await
        .map_err(|_| session.unavailable())?;
    send.write_all_chunks(&mut open)
        .await
        .map_err(|e| crate::io::status_from_write(e, || session.unavailable().to_string()))?;
    let (state, states) = watch::channel(LaneState::Open);
    let lane = Lane {
        shared: Arc::default(),
        state,
    };
    let announcement = Announcement {
        session: session.detached(),
        id,
        failed,
        states,
        shared: lane.shared.clone(),
    };
    tokio::spawn(announcement.run(send));
    Ok(lane)
}

/// The task that keeps a datagram stream's announcement open while the stream lives, and ends
/// it as the stream ends: FIN once the frames waiting for the pacer are out, or a reset.
struct Announcement {
    session: Session,
    id: u64,
    failed: Arc<OnceLock<Status>>,
    states: watch::Receiver<LaneState>,
    shared: Arc<LaneShared>,
}

impl Announcement {
    async fn run(mut self, mut send: SendStream) {
        let state = tokio::select! {
            stopped = send.stopped() => {
                let status = match stopped {
                    Ok(Some(code)) => status_from_stream_code(code, "stream refused"),
                    _ => self.session.unavailable(),
                };
                tracing::debug!(session = self.session.id(), stream = self.id, %status, "datagram stream can no longer send");
                let _ = self.failed.set(status);
                return;
            }
            state = self.states.wait_for(|s| *s != LaneState::Open) => {
                // The senders are all gone: the stream finishes.
                state.map_or(LaneState::Finishing, |s| *s)
            }
        };
        match state {
            LaneState::Aborted => {
                let _ = send.reset(VarInt::from_u32(Code::Cancelled.as_u32()));
            }
            _ => {
                // Frames still waiting for the pacer leave within its maximum delay.
                loop {
                    let flushed = self.shared.flushed.notified();
                    tokio::pin!(flushed);
                    flushed.as_mut().enable();
                    if self.shared.waiting.load(Relaxed) == 0 || self.session.is_closed() {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), flushed).await;
                }
                // And the datagrams handed to quinn are in packets, so that the end, sent after
                // them, does not overtake them (quinn packs stream data into the room packets of
                // datagrams leave).
                let datagrams = &self.session.inner.datagrams;
                let conn = &self.session.inner.conn;
                let wait = async {
                    while datagrams.queued(conn) > 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                };
                let _ = tokio::time::timeout(FINISH_WAIT, wait).await;
                let _ = send.finish();
            }
        }
    }
}

/// A frame on its way out: planned, possibly waiting for the pacer.
struct Outgoing {
    out: Arc<StreamOut>,
    lane: Arc<LaneShared>,
    id: FrameId,
    data: Bytes,
    plan: FragmentPlan,
}

/// Why a frame was not handed to quinn.
enum Dropped {
    /// The path is full: the pacer, quinn's datagram queue, or the waiting queue.
    Congested,
    /// quinn refused a datagram (MTU shrank, connection lost, ...).
    Refused(SendDatagramError),
}

/// The datagram side of a session: pacing and sending, reassembly and routing.
pub(crate) struct Datagrams {
    sending: Mutex<Sending>,
    /// Wakes the pacing task when a frame starts waiting.
    wake: Notify,
    pacing: AtomicBool,
    receiving: Mutex<Receiving>,
    sent: AtomicU64,
    received: AtomicU64,
    /// Stream writes of the session (calls, answers, events, control, reliable streams).
    stream_writes: AtomicU64,
    /// `stream_writes` when quinn's datagram queue was last seen empty.
    writes_seen: AtomicU64,
    /// Stream data was written while datagrams were queued: nothing is handed to quinn until
    /// its queue is empty.
    draining: AtomicBool,
    /// `max_datagram_size()` as of the last path refresh (0: none).
    max_datagram_size: AtomicUsize,
    /// The size of quinn's datagram send buffer.
    capacity: usize,
}

struct Sending {
    pacer: Pacer,
    waiting: VecDeque<Outgoing>,
    waiting_bytes: usize,
    /// How many bytes may sit in quinn's datagram queue (about one congestion window).
    budget: usize,
    path_checked: Option<Instant>,
    /// Where datagrams are written, a block at a time.
    arena: BytesMut,
}

struct Receiving {
    reassembler: Reassembler,
    timeout: Duration,
    routes: FxHashMap<u64, Route>,
    early: VecDeque<(Instant, DatagramFrame)>,
    early_bytes: usize,
    early_max_bytes: usize,
    ended: VecDeque<u64>,
    unrouted: u64,
    /// The streams with frames staged in their routes by the datagrams taken so far in a batch,
    /// in the order of their first: `flush` hands each stream's run to its queue.
    staged: Vec<u64>,
}

/// Where the frames of one open datagram stream go.
struct Route {
    queue: Arc<OutQueue<Arrival>>,
    counters: Arc<RouteCounters>,
    /// The stream's frames of the batch being taken, with their sizes (`staged_bytes` in all):
    /// pushed to the queue by `flush`, under one lock and one wake-up (moved whole when they
    /// fit).
    staged: VecDeque<(Arrival, usize)>,
    staged_bytes: usize,
}

/// What happened to a received datagram stream's frames before its playout.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    /// Frames dropped because the stream's queue was full.
    pub(crate) overflow: AtomicU64,
    /// Frames dropped for a missing fragment.
    pub(crate) incomplete: AtomicU64,
}

/// The session-wide datagram counters, for [`SessionStats`](crate::SessionStats).
pub(crate) struct DatagramCounters {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) incomplete: u64,
    pub(crate) malformed: u64,
    pub(crate) unrouted: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Datagrams {
    pub(crate) fn new(config: &Config) -> Datagrams {
        Datagrams {
            sending: Mutex::new(Sending {
                pacer: Pacer::new(config.pacer.clone()),
                waiting: VecDeque::new(),
                waiting_bytes: 0,
                budget: MIN_BUDGET,
                path_checked: None,
                arena: BytesMut::new(),
            }),
            wake: Notify::new(),
            pacing: AtomicBool::new(false),
            receiving: Mutex::new(Receiving {
                reassembler: Reassembler::new(config.reassembly.clone()),
                timeout: config.reassembly.timeout,
                routes: FxHashMap::default(),
                early: VecDeque::new(),
                early_bytes: 0,
                early_max_bytes: config.reassembly.max_buffered_bytes,
                ended: VecDeque::new(),
                unrouted: 0,
                staged: Vec::new(),
            }),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            stream_writes: AtomicU64::new(0),
            writes_seen: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            max_datagram_size: AtomicUsize::new(0),
            capacity: config.datagram_send_buffer,
        }
    }

    /// Waits until no stream data written by the session can be waiting behind queued
    /// datagrams: at once if none was written since quinn's datagram queue was last empty,
    /// else until it is empty (checked every millisecond).
    async fn wait_drained(&self, conn: &Connection) {
        while !self.clear_to_send(conn) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether datagrams may be handed to quinn now, as far as stream data is concerned: not if
    /// stream data was written since quinn's datagram queue was last seen empty and the queue
    /// is not empty yet.
    fn clear_to_send(&self, conn: &Connection) -> bool {
        let writes = self.stream_writes.load(Relaxed);
        if writes == self.writes_seen.load(Relaxed) && !self.draining.load(Relaxed) {
            return true;
        }
        if self.queued(conn) == 0 {
            self.writes_seen.store(writes, Relaxed);
            self.draining.store(false, Relaxed);
            return true;
        }
        self.draining.store(true, Relaxed);
        false
    }

    /// Bytes in quinn's datagram queue now.
    fn queued(&self, conn: &Connection) -> usize {
        let space = conn.datagram_send_buffer_space();
        self.capacity.saturating_sub(space + DATAGRAM_OVERHEAD)
    }

    /// The largest datagram now (as of the last path refresh), if datagrams can be sent.
    fn max_datagram_size(&self, conn: &Connection) -> Option<usize> {
        match self.max_datagram_size.load(Relaxed) {
            0 => conn.max_datagram_size(),
            max => Some(max),
        }
    }

    /// Notes that the session is writing stream data, which queued datagrams would delay.
    pub(crate) fn note_stream_write(&self) {
        self.stream_writes.fetch_add(1, Relaxed);
    }

    /// The counters so far.
    pub(crate) fn counters(&self) -> DatagramCounters {
        let rx = lock(&self.receiving);
        let r = rx.reassembler.stats();
        DatagramCounters {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            incomplete: r.timed_out + r.evicted + r.inconsistent,
            malformed: r.malformed + r.oversized,
            unrouted: rx.unrouted,
        }
    }

    /// Routes the frames of datagram stream `id` (announced with `max_frame_bytes`) to a new
    /// queue bounded by `limits`, with the frames that arrived before the announcement.
    /// `RESOURCE_EXHAUSTED` if its frames could not be reassembled here.
    pub(crate) fn register(
        &self,
        id: u64,
        max_frame_bytes: usize,
        limits: QueueLimits,
    ) -> Result<(Arc<OutQueue<Arrival>>, Arc<RouteCounters>), Status> {
        let mut rx = lock(&self.receiving);
        if max_frame_bytes > rx.early_max_bytes {
            return Err(Status::resource_exhausted(format!(
                "datagram frames of {max_frame_bytes} bytes exceed the reassembly limit of {} bytes",
                rx.early_max_bytes
            )));
        }
        rx.reassembler.set_stream_limit(id, max_frame_bytes);
        let queue = Arc::new(OutQueue::new(limits));
        let counters = Arc::new(RouteCounters::default());
        let early = std::mem::take(&mut rx.early);
        for (at, frame) in early {
            if frame.id.stream_id == id {
                rx.early_bytes -= frame.payload.len();
                push_arrival(&queue, &counters, frame, at, &mut rx.unrouted);
            } else {
                rx.early.push_back((at, frame));
            }
        }
        rx.routes.insert(
            id,
            Route {
                queue: queue.clone(),
                counters: counters.clone(),
                staged: VecDeque::new(),
                staged_bytes: 0,
            },
        );
        Ok((queue, counters))
    }

    /// How many frames of stream `id` are partly reassembled.
    pub(crate) fn partial_frames_of(&self, id: u64) -> usize {
        lock(&self.receiving).reassembler.partial_frames_of(id)
    }

    /// Stops routing stream `id`: its late frames are dropped (counted as unrouted).
    pub(crate) fn unregister(&self, id: u64) {
        let mut rx = lock(&self.receiving);
        if let Some(route) = rx.routes.remove(&id) {
            route.queue.close();
        }
        rx.reassembler.clear_stream_limit(id);
        rx.ended.push_back(id);
        if rx.ended.len() > ENDED_MEMORY {
            rx.ended.pop_front();
        }
    }

    /// Offers a frame for sending now: sent, left to wait for the pacer a little, or dropped.
    fn offer(
        &self,
        session: &Session,
        out: &Arc<StreamOut>,
        lane: &Arc<LaneShared>,
        id: FrameId,
        data: Bytes,
    ) -> Result<(), Status> {
        let conn = &session.inner.conn;
        let now = Instant::now();
        let mut tx = lock(&self.sending);
        self.refresh_path(&mut tx, conn, now);
        let max = self.max_datagram_size(conn).ok_or_else(|| {
            Status::failed_precondition("the peer does not accept QUIC datagrams")
        })?;
        let plan = datagram::plan(id, data.len(), max, usize::MAX).map_err(|e| match e {
            FragmentError::FrameTooLarge { .. }
            | FragmentError::TooManyFragments { .. }
            | FragmentError::DatagramTooSmall { .. }
            | FragmentError::ValueTooLarge { .. } => {
                Status::invalid_argument(format!("stream {}: {e}", out.name()))
            }
        })?;
        let frame = Outgoing {
            out: out.clone(),
            lane: lane.clone(),
            id,
            data,
            plan,
        };
        if tx.waiting.is_empty() {
            match tx.pacer.admit(frame.plan.wire_len, now) {
                Admission::Send => {
                    return match self.transmit(&mut tx, conn, &frame) {
                        Ok(datagrams) => {
                            drop(tx);
                            self.count_sent(&frame, datagrams);
                            Ok(())
                        }
                        Err(dropped) => {
                            drop(tx);
                            Err(count_dropped(&frame.out, frame.id.seq, dropped))
                        }
                    };
                }
                Admission::Drop => {
                    drop(tx);
                    return Err(count_dropped(&frame.out, frame.id.seq, Dropped::Congested));
                }
                Admission::Wait(_) => {}
            }
        }
        // Wait behind the frames already waiting, if the pacer can let them all through within
        // its maximum delay.
        let config = tx.pacer.config();
        let drainable =
            config.burst as f64 + tx.pacer.rate() as f64 * config.max_delay.as_secs_f64();
        if tx.waiting.len() >= MAX_WAITING
            || (tx.waiting_bytes + frame.plan.wire_len) as f64 > drainable
        {
            drop(tx);
            return Err(count_dropped(&frame.out, frame.id.seq, Dropped::Congested));
        }
        frame.lane.waiting.fetch_add(1, Relaxed);
        tx.waiting_bytes += frame.plan.wire_len;
        tx.waiting.push_back(frame);
        drop(tx);
        if !self.pacing.swap(true, Relaxed) {
            tokio::spawn(pace(session.detached()));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Brings the pacer's rate, the queue budget and the datagram size up to date with the
    /// path, every `PATH_REFRESH`.
    fn refresh_path(&self, tx: &mut Sending, conn: &Connection, now: Instant) {
        if tx
            .path_checked
            .is_some_and(|at| now.saturating_duration_since(at) < PATH_REFRESH)
        {
            return;
        }
        tx.path_checked = Some(now);
        self.max_datagram_size
            .store(conn.max_datagram_size().unwrap_or(0), Relaxed);
        let cwnd = conn.stats().path.cwnd;
        tx.pacer.follow_path(cwnd, conn.min_rtt());
        tx.budget = usize::try_from(cwnd)
            .unwrap_or(usize::MAX)
            .clamp(MIN_BUDGET, (self.capacity / 2).max(MIN_BUDGET));
    }

    /// Hands a frame's datagrams to quinn, if its datagram queue has room within the budget
    /// and no stream data written since it was last empty is waiting behind it. Returns how
    /// many datagrams were sent.
    fn transmit(
        &self,
        tx: &mut Sending,
        conn: &Connection,
        frame: &Outgoing,
    ) -> Result<usize, Dropped> {
        if !self.clear_to_send(conn) {
            return Err(Dropped::Congested);
        }
        let space = conn.datagram_send_buffer_space();
        let queued = self.capacity.saturating_sub(space + DATAGRAM_OVERHEAD);
        let needed = frame.plan.wire_len + frame.plan.count * DATAGRAM_OVERHEAD;
        if needed > space || (queued > 0 && queued + needed > tx.budget) {
            return Err(Dropped::Congested);
        }
        let max = self
            .max_datagram_size(conn)
            .ok_or(Dropped::Refused(SendDatagramError::UnsupportedByPeer))?;
        let arena = std::mem::take(&mut tx.arena);
        let mut fragments =
            datagram::fragment_in(frame.id, &frame.data, max, usize::MAX, arena, ARENA_BLOCK)
                .map_err(|_| Dropped::Refused(SendDatagramError::TooLarge))?;
        let mut sent = 0;
        for d in &mut fragments {
            if let Err(error) = conn.send_datagram(d) {
                // The path MTU shrank, or the connection is gone: look again next time.
                tx.path_checked = None;
                return Err(Dropped::Refused(error));
            }
            sent += 1;
        }
        tx.arena = fragments.into_arena();
        Ok(sent)
    }

    fn count_sent(&self, frame: &Outgoing, datagrams: usize) {
        self.sent.fetch_add(datagrams as u64, Relaxed);
        frame.lane.datagrams.fetch_add(datagrams as u64, Relaxed);
        frame.out.count_sent(1);
    }
}

/// Counts frame `seq` of `out` dropped on its way out and says why, for the sender.
fn count_dropped(out: &StreamOut, seq: u64, dropped: Dropped) -> Status {
    out.count_dropped(1);
    match dropped {
        Dropped::Congested => Status::resource_exhausted(format!(
            "frame {seq} of stream {} dropped: the path is congested",
            out.name()
        )),
        Dropped::Refused(error) => Status::unavailable(format!(
            "frame {seq} of stream {} dropped: {error}",
            out.name()
        )),
    }
}

/// Checks a frame of the datagram stream of `out`, gives it its seq and runs it through the
/// outbound middleware; `None` if the middleware dropped it.
async fn prepare(
    out: &Arc<StreamOut>,
    lane: &Lane,
    timestamp: u64,
    data: Bytes,
) -> Result<Option<(FrameId, Bytes)>, Status> {
    let session = out.session();
    if let Some(status) = out.failure() {
        return Err(status);
    }
    if !lane.is_open() {
        return Err(Status::cancelled(format!(
            "stream {} is finished",
            out.name()
        )));
    }
    if data.len() > out.max_frame_bytes() {
        return Err(Status::invalid_argument(format!(
            "frame of {} bytes exceeds the max_frame_bytes of stream {} ({} bytes)",
            data.len(),
            out.name(),
            out.max_frame_bytes()
        )));
    }
    let seq = lane.shared.next_seq.fetch_add(1, Relaxed);
    let id = FrameId {
        stream_id: out.id(),
        seq,
        timestamp,
    };
    if session.inner.shared.middleware.is_empty() {
        return Ok(Some((id, data)));
    }
    let frame = Frame {
        metadata: Metadata::new(),
        payload: Some(Payload::Stream(StreamFrame {
            stream_id: out.id(),
            seq,
            timestamp,
            data,
        })),
    };
    let frame = match session.outbound(frame).await? {
        Some(Frame {
            payload: Some(Payload::Stream(frame)),
            ..
        }) if frame.stream_id == out.id() => frame,
        Some(_) => {
            return Err(Status::internal(
                "outbound middleware replaced a stream frame with another frame",
            ));
        }
        None => return Ok(None),
    };
    // The peer reassembles at most the announced max_frame_bytes and would drop a larger frame
    // uncounted on this side: a frame grown by middleware is refused here, to its sender.
    if frame.data.len() > out.max_frame_bytes() {
        out.count_dropped(1);
        return Err(Status::resource_exhausted(format!(
            "frame {seq} of stream {} is {} bytes after outbound middleware, over its \
             max_frame_bytes ({} bytes): dropped",
            out.name(),
            frame.data.len(),
            out.max_frame_bytes()
        )));
    }
    let id = FrameId {
        stream_id: frame.stream_id,
        seq: frame.seq,
        timestamp: frame.timestamp,
    };
    Ok(Some((id, frame.data)))
}

/// Sends `data` as the next frame of the datagram stream of `out`: now, after a short wait for
/// the pacer, or dropped.
pub(crate) async fn send(
    out: &Arc<StreamOut>,
    lane: &Lane,
    timestamp: u64,
    data: Bytes,
) -> Result<(), Status> {
    let Some((id, data)) = prepare(out, lane, timestamp, data).await? else {
        return Ok(());
    };
    let session = out.session();
    session
        .inner
        .datagrams
        .offer(session, out, &lane.shared, id, data)
}

/// Sends `data` as the next frame of the datagram stream of `out`, waiting for room in quinn's
/// datagram send buffer instead of dropping it (and after the stream data written before it).
pub(crate) async fn send_wait(
    out: &Arc<StreamOut>,
    lane: &Lane,
    timestamp: u64,
    data: Bytes,
) -> Result<(), Status> {
    let Some((id, data)) = prepare(out, lane, timestamp, data).await? else {
        return Ok(());
    };
    let session = out.session();
    let datagrams = &session.inner.datagrams;
    let conn = &session.inner.conn;
    datagrams.wait_drained(conn).await;
    let mut sent = 0;
    let mut recuts = 0;
    let outcome = loop {
        let max = datagrams.max_datagram_size(conn).ok_or_else(|| {
            Status::failed_precondition("the peer does not accept QUIC datagrams")
        })?;
        match cut_and_send(datagrams, conn, id, &data, max, &mut sent).await {
            // The path MTU shrank (loss taken for a black hole) since `max` was read: the frame
            // is cut again to the new size, a bounded number of times. (The receiver restarts a
            // frame whose fragments disagree.)
            Err(Cut::Refused(SendDatagramError::TooLarge)) if recuts < MAX_RECUTS => {
                datagrams.max_datagram_size.store(0, Relaxed);
                recuts += 1;
            }
            outcome => break outcome,
        }
    };
    datagrams.sent.fetch_add(sent, Relaxed);
    match outcome {
        Ok(()) => {
            lane.shared.datagrams.fetch_add(sent, Relaxed);
            out.count_sent(1);
            Ok(())
        }
        Err(Cut::Invalid(e)) => Err(Status::invalid_argument(format!(
            "stream {}: {e}",
            out.name()
        ))),
        Err(Cut::Refused(error)) => {
            // The path MTU may have shrunk: the next frame looks again.
            datagrams.max_datagram_size.store(0, Relaxed);
            Err(count_dropped(out, id.seq, Dropped::Refused(error)))
        }
    }
}

/// Why a frame was not sent whole by [`cut_and_send`].
enum Cut {
    Invalid(FragmentError),
    Refused(SendDatagramError),
}

/// Cuts a frame into datagrams of at most `max` bytes in the session's arena (planned once, by
/// `fragment_in`) and sends them, waiting for room; counts the datagrams sent in `sent`. A frame
/// in one datagram is written and taken out under one lock, with no allocation of its own.
async fn cut_and_send(
    datagrams: &Datagrams,
    conn: &Connection,
    id: FrameId,
    data: &[u8],
    max: usize,
    sent: &mut u64,
) -> Result<(), Cut> {
    let (single, fragments) = {
        let mut tx = lock(&datagrams.sending);
        let arena = std::mem::take(&mut tx.arena);
        let mut fragments = datagram::fragment_in(id, data, max, usize::MAX, arena, ARENA_BLOCK)
            .map_err(Cut::Invalid)?;
        if fragments.fragment_count() == 1 {
            let datagram = fragments.next();
            tx.arena = fragments.into_arena();
            (datagram, None)
        } else {
            (None, Some(fragments))
        }
    };
    if let Some(datagram) = single {
        conn.send_datagram_wait(datagram)
            .await
            .map_err(Cut::Refused)?;
        *sent += 1;
    }
    let Some(mut fragments) = fragments else {
        return Ok(());
    };
    for d in &mut fragments {
        conn.send_datagram_wait(d).await.map_err(Cut::Refused)?;
        *sent += 1;
    }
    // What is left of the arena serves the next frames.
    lock(&datagrams.sending).arena = fragments.into_arena();
    Ok(())
}

/// Serves the frames waiting for the pacer, for as long as the session lives.
async fn pace(session: Session) {
    let datagrams = &session.inner.datagrams;
    let conn = &session.inner.conn;
    loop {
        let next = {
            let now = Instant::now();
            let mut tx = lock(&datagrams.sending);
            datagrams.refresh_path(&mut tx, conn, now);
            let mut done = Vec::new();
            let next = loop {
                let Some(frame) = tx.waiting.pop_front() else {
                    break None;
                };
                let outcome = if frame.out.failure().is_some() {
                    Err(Dropped::Congested)
                } else {
                    match tx.pacer.admit(frame.plan.wire_len, now) {
                        Admission::Wait(until) => {
                            tx.waiting.push_front(frame);
                            break Some(until);
                        }
                        Admission::Send => datagrams.transmit(&mut tx, conn, &frame),
                        Admission::Drop => Err(Dropped::Congested),
                    }
                };
                tx.waiting_bytes -= frame.plan.wire_len;
                done.push((frame, outcome));
            };
            drop(tx);
            for (frame, outcome) in done {
                match outcome {
                    Ok(datagrams_sent) => datagrams.count_sent(&frame, datagrams_sent),
                    Err(dropped) => {
                        count_dropped(&frame.out, frame.id.seq, dropped);
                    }
                }
                if frame.lane.waiting.fetch_sub(1, Relaxed) == 1 {
                    frame.lane.flushed.notify_waiters();
                }
            }
            next
        };
        let woken = datagrams.wake.notified();
        tokio::select! {
            () = woken => {}
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = session.closed() => return,
        }
    }
}

/// Counts a partial frame dropped for its stream, if it is open.
fn count_incomplete(routes: &FxHashMap<u64, Route>, key: FrameKey) {
    if let Some(route) = routes.get(&key.stream_id) {
        route.counters.incomplete.fetch_add(1, Relaxed);
    }
}

/// A received frame as its stream's playout takes it, with its size.
fn arrival(frame: DatagramFrame, at: Instant) -> (Arrival, usize) {
    let size = frame.payload.len();
    let arrival = Arrival {
        seq: frame.id.seq,
        timestamp: frame.id.timestamp,
        data: frame.payload,
        at,
    };
    (arrival, size)
}

/// Queues a received frame for its stream's playout.
fn push_arrival(
    queue: &OutQueue<Arrival>,
    counters: &RouteCounters,
    frame: DatagramFrame,
    at: Instant,
    unrouted: &mut u64,
) {
    let (arrival, size) = arrival(frame, at);
    match queue.push(arrival, size) {
        Ok(()) => {}
        Err(PushError::Full) => {
            counters.overflow.fetch_add(1, Relaxed);
        }
        Err(PushError::Closed) => *unrouted += 1,
    }
}

impl Receiving {
    /// Takes one received datagram of a batch (after `expire_early`; `flush` after the batch).
    fn take(&mut self, datagram: Bytes, now: Instant) {
        let routes = &self.routes;
        let pushed = self.reassembler.push_with(datagram, now, |key| {
            count_incomplete(routes, key);
        });
        match pushed {
            Ok(Some(frame)) => self.route(frame, now),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "datagram dropped"),
        }
    }

    fn route(&mut self, frame: DatagramFrame, now: Instant) {
        let stream = frame.id.stream_id;
        if let Some(route) = self.routes.get_mut(&stream) {
            if route.staged.is_empty() {
                self.staged.push(stream);
            }
            let (arrival, size) = arrival(frame, now);
            route.staged_bytes += size;
            route.staged.push_back((arrival, size));
        } else if self.ended.contains(&stream) {
            self.unrouted += 1;
        } else {
            // Not announced yet: wait for the announcement, within bounds.
            self.early_bytes += frame.payload.len();
            self.early.push_back((now, frame));
            while self.early.len() > MAX_EARLY || self.early_bytes > self.early_max_bytes {
                self.drop_early();
            }
        }
    }

    /// Hands the staged frames to their streams' queues, each stream's in order, a run under one
    /// lock and one wake-up. (Routes change only under the same lock: every staged stream has
    /// one.)
    fn flush(&mut self) {
        for stream in self.staged.drain(..) {
            let Some(route) = self.routes.get_mut(&stream) else {
                continue;
            };
            let (full, closed) = route.queue.push_run(&mut route.staged, route.staged_bytes);
            route.staged_bytes = 0;
            if full > 0 {
                route.counters.overflow.fetch_add(full, Relaxed);
            }
            self.unrouted += closed;
        }
    }

    fn drop_early(&mut self) {
        if let Some((_, frame)) = self.early.pop_front() {
            self.early_bytes -= frame.payload.len();
            self.unrouted += 1;
        }
    }

    /// Drops the partial frames and the unannounced frames whose time is up.
    fn expire(&mut self, now: Instant) {
        let routes = &self.routes;
        self.reassembler
            .expire_with(now, |key| count_incomplete(routes, key));
        self.expire_early(now);
    }

    /// Drops the unannounced frames whose time is up.
    fn expire_early(&mut self, now: Instant) {
        while self
            .early
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.timeout)
        {
            self.drop_early();
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let early = self.early.front().map(|(at, _)| *at + self.timeout);
        match (self.reassembler.next_deadline(), early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A datagram quinn holds already, if any, or the connection's end; never waits.
fn ready_datagram(conn: &Connection) -> Option<Result<Bytes, quinn::ConnectionError>> {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(conn.read_datagram()).poll(&mut cx) {
        Poll::Ready(read) => Some(read),
        Poll::Pending => None,
    }
}

/// Reads the session's datagrams for as long as the connection lives.
pub(crate) async fn receive(session: Session) {
    // Early datagrams would belong to streams not open yet: they wait in quinn's buffer.
    if !session.inner.handshake.wait().await {
        return;
    }
    let datagrams = &session.inner.datagrams;
    let conn = session.inner.conn.clone();
    // One timer for the session, moved only when the next deadline changes: a timer armed per
    // datagram costs as much as the rest of the datagram's handling.
    let mut deadline: Option<Instant> = None;
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    // Grown on first use: a session without datagram traffic keeps no batch (2 KiB each).
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        let read = tokio::select! {
            biased;
            () = &mut timer, if deadline.is_some() => None,
            read = conn.read_datagram() => Some(read),
        };
        // With one datagram in, take those quinn holds already too: the clock, the lock and
        // the wake-ups of the streams' tasks are then paid once for many.
        let mut lost = false;
        match read {
            Some(Ok(datagram)) => {
                batch.push(datagram);
                while batch.len() < RECEIVE_BATCH {
                    match ready_datagram(&conn) {
                        Some(Ok(datagram)) => batch.push(datagram),
                        Some(Err(_)) => {
                            lost = true;
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(_)) => break,
            None => {}
        }
        let now = Instant::now();
        let mut rx = lock(&datagrams.receiving);
        if batch.is_empty() {
            rx.expire(now);
            deadline = None;
        } else {
            datagrams.received.fetch_add(batch.len() as u64, Relaxed);
            rx.expire_early(now);
            for datagram in batch.drain(..) {
                rx.take(datagram, now);
            }
            rx.flush();
        }
        if lost {
            break;
        }
        let next = rx.next_deadline();
        if next != deadline {
            if let Some(at) = next {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            deadline = next;
        }
    }
    let mut rx = lock(&datagrams.receiving);
    for (_, route) in rx.routes.drain() {
        route.queue.close();
    }
}
