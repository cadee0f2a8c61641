//! Datagram streams inside a session: sending their frames as QUIC datagrams, and receiving
//! them back into frames for the stream they were announced under.
//!
//! **Sending.** A frame is cut to the connection's current `max_datagram_size()` (see
//! [`datagram`](crate::datagram)), then admitted by the session's token-bucket [`Pacer`], whose
//! rate follows the congestion controller (`gain × cwnd / rtt`). A frame the pacer cannot admit
//! within its maximum delay is dropped whole and counted; one that must wait a little waits in a
//! short queue served by a task, so `send` never blocks. Frames also go to quinn only while its
//! datagram queue holds less than about one congestion window: once that budget is reached, no
//! frame is handed over until the queue has emptied. quinn puts queued datagrams in each packet
//! before stream data, so this is what lets RPCs and events through between media frames: they
//! wait at most for one budget of datagrams to leave, about one round trip.
//!
//! **Receiving.** One task per session reads the datagrams, reassembles fragmented frames (with
//! bounded time and memory, every drop counted) and hands each complete frame to the queue of
//! the stream with its id. A stream is announced reliably (a `StreamOpen` on its own QUIC
//! stream), but its first datagrams may overtake the announcement: frames of an id not open yet
//! wait, bounded in number, bytes and time (the reassembly timeout), for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, SendDatagramError, SendStream, VarInt};
use tokio::sync::{Notify, watch};

use crate::call::Metadata;
use crate::config::Config;
use crate::datagram::{self, DatagramFrame, FragmentError, FragmentPlan, FrameId, Reassembler};
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
}

impl Lane {
    /// Datagrams this stream sent.
    pub(crate) fn datagrams(&self) -> u64 {
        self.shared.datagrams.load(Relaxed)
    }

    /// Ends the stream after the frames waiting for the pacer; no more sends.
    pub(crate) fn finish(&self) {
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
        self.state.send_replace(LaneState::Aborted);
    }

    fn state(&self) -> LaneState {
        *self.state.borrow()
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
        session: session.clone(),
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
}

struct Sending {
    pacer: Pacer,
    waiting: VecDeque<Outgoing>,
    waiting_bytes: usize,
    /// The size of quinn's datagram send buffer.
    capacity: usize,
    /// How many bytes may sit in quinn's datagram queue (about one congestion window).
    budget: usize,
    /// The budget was reached: nothing is handed to quinn until its queue is empty.
    draining: bool,
    path_checked: Option<Instant>,
}

struct Receiving {
    reassembler: Reassembler,
    timeout: Duration,
    routes: HashMap<u64, Route>,
    early: VecDeque<(Instant, DatagramFrame)>,
    early_bytes: usize,
    early_max_bytes: usize,
    ended: VecDeque<u64>,
    unrouted: u64,
}

/// Where the frames of one open datagram stream go.
struct Route {
    queue: Arc<OutQueue<Arrival>>,
    counters: Arc<RouteCounters>,
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
                capacity: config.datagram_send_buffer,
                budget: MIN_BUDGET,
                draining: false,
                path_checked: None,
            }),
            wake: Notify::new(),
            pacing: AtomicBool::new(false),
            receiving: Mutex::new(Receiving {
                reassembler: Reassembler::new(config.reassembly.clone()),
                timeout: config.reassembly.timeout,
                routes: HashMap::new(),
                early: VecDeque::new(),
                early_bytes: 0,
                early_max_bytes: config.reassembly.max_buffered_bytes,
                ended: VecDeque::new(),
                unrouted: 0,
            }),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
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
    fn offer(&self, session: &Session, frame: Outgoing) -> Result<(), Status> {
        let conn = &session.inner.conn;
        let now = Instant::now();
        let mut tx = lock(&self.sending);
        tx.refresh_path(conn, now);
        if tx.waiting.is_empty() {
            match tx.pacer.admit(frame.plan.wire_len, now) {
                Admission::Send => {
                    return match tx.transmit(conn, &frame) {
                        Ok(datagrams) => {
                            drop(tx);
                            self.count_sent(&frame, datagrams);
                            Ok(())
                        }
                        Err(dropped) => {
                            drop(tx);
                            Err(count_dropped(&frame, dropped))
                        }
                    };
                }
                Admission::Drop => {
                    drop(tx);
                    return Err(count_dropped(&frame, Dropped::Congested));
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
            return Err(count_dropped(&frame, Dropped::Congested));
        }
        frame.lane.waiting.fetch_add(1, Relaxed);
        tx.waiting_bytes += frame.plan.wire_len;
        tx.waiting.push_back(frame);
        drop(tx);
        if !self.pacing.swap(true, Relaxed) {
            tokio::spawn(pace(session.clone()));
        }
        self.wake.notify_one();
        Ok(())
    }

    fn count_sent(&self, frame: &Outgoing, datagrams: usize) {
        self.sent.fetch_add(datagrams as u64, Relaxed);
        frame.lane.datagrams.fetch_add(datagrams as u64, Relaxed);
        frame.out.count_sent(1);
    }
}

/// Counts a frame dropped on its way out and says why, for the sender.
fn count_dropped(frame: &Outgoing, dropped: Dropped) -> Status {
    frame.out.count_dropped(1);
    match dropped {
        Dropped::Congested => Status::resource_exhausted(format!(
            "frame {} of stream {} dropped: the path is congested",
            frame.id.seq,
            frame.out.name()
        )),
        Dropped::Refused(error) => Status::unavailable(format!(
            "frame {} of stream {} dropped: {error}",
            frame.id.seq,
            frame.out.name()
        )),
    }
}

impl Sending {
    /// Brings the pacer's rate and the queue budget up to date with the congestion controller.
    fn refresh_path(&mut self, conn: &Connection, now: Instant) {
        if self
            .path_checked
            .is_some_and(|at| now.saturating_duration_since(at) < PATH_REFRESH)
        {
            return;
        }
        self.path_checked = Some(now);
        let cwnd = conn.stats().path.cwnd;
        self.pacer.follow_path(cwnd, conn.rtt());
        self.budget = usize::try_from(cwnd)
            .unwrap_or(usize::MAX)
            .clamp(MIN_BUDGET, (self.capacity / 2).max(MIN_BUDGET));
    }

    /// Hands a frame's datagrams to quinn, if its datagram queue has room within the budget.
    /// Returns how many datagrams were sent.
    fn transmit(&mut self, conn: &Connection, frame: &Outgoing) -> Result<usize, Dropped> {
        let space = conn.datagram_send_buffer_space();
        let queued = self.capacity.saturating_sub(space + DATAGRAM_OVERHEAD);
        let needed = frame.plan.wire_len + frame.plan.count * DATAGRAM_OVERHEAD;
        if self.draining {
            if queued > 0 {
                return Err(Dropped::Congested);
            }
            self.draining = false;
        }
        if needed > space || (queued > 0 && queued + needed > self.budget) {
            self.draining = true;
            return Err(Dropped::Congested);
        }
        // The datagram size may have changed since the frame was planned (path MTU discovery).
        let max = conn
            .max_datagram_size()
            .ok_or(Dropped::Refused(SendDatagramError::UnsupportedByPeer))?;
        let fragments = datagram::fragment(frame.id, &frame.data, max, usize::MAX)
            .map_err(|_| Dropped::Refused(SendDatagramError::TooLarge))?;
        let mut sent = 0;
        for d in fragments {
            conn.send_datagram(d).map_err(Dropped::Refused)?;
            sent += 1;
        }
        if queued + needed >= self.budget {
            self.draining = true;
        }
        Ok(sent)
    }
}

/// Sends `data` as the next frame of the datagram stream of `out`.
pub(crate) async fn send(
    out: &Arc<StreamOut>,
    lane: &Lane,
    timestamp: u64,
    data: Bytes,
) -> Result<(), Status> {
    let session = out.session();
    if let Some(status) = out.failure() {
        return Err(status);
    }
    if lane.state() != LaneState::Open {
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
        None => return Ok(()),
    };
    let max =
        session.inner.conn.max_datagram_size().ok_or_else(|| {
            Status::failed_precondition("the peer does not accept QUIC datagrams")
        })?;
    let id = FrameId {
        stream_id: frame.stream_id,
        seq: frame.seq,
        timestamp: frame.timestamp,
    };
    let plan = datagram::plan(id, frame.data.len(), max, usize::MAX).map_err(|e| match e {
        FragmentError::FrameTooLarge { .. }
        | FragmentError::TooManyFragments { .. }
        | FragmentError::DatagramTooSmall { .. }
        | FragmentError::ValueTooLarge { .. } => {
            Status::invalid_argument(format!("stream {}: {e}", out.name()))
        }
    })?;
    session.inner.datagrams.offer(
        session,
        Outgoing {
            out: out.clone(),
            lane: lane.shared.clone(),
            id,
            data: frame.data,
            plan,
        },
    )
}

/// Serves the frames waiting for the pacer, for as long as the session lives.
async fn pace(session: Session) {
    let datagrams = &session.inner.datagrams;
    let conn = &session.inner.conn;
    loop {
        let next = {
            let now = Instant::now();
            let mut tx = lock(&datagrams.sending);
            tx.refresh_path(conn, now);
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
                        Admission::Send => tx.transmit(conn, &frame),
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
                        count_dropped(&frame, dropped);
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

/// Queues a received frame for its stream's playout.
fn push_arrival(
    queue: &OutQueue<Arrival>,
    counters: &RouteCounters,
    frame: DatagramFrame,
    at: Instant,
    unrouted: &mut u64,
) {
    let size = frame.payload.len();
    let arrival = Arrival {
        seq: frame.id.seq,
        timestamp: frame.id.timestamp,
        data: frame.payload,
        at,
    };
    match queue.push(arrival, size) {
        Ok(()) => {}
        Err(PushError::Full) => {
            counters.overflow.fetch_add(1, Relaxed);
        }
        Err(PushError::Closed) => *unrouted += 1,
    }
}

impl Receiving {
    /// Takes one received datagram.
    fn take(&mut self, datagram: Bytes, now: Instant) {
        // Expire first, with attribution: the reassembler would otherwise expire on its own.
        self.expire(now);
        match self.reassembler.push(datagram, now) {
            Ok(Some(frame)) => self.route(frame, now),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "datagram dropped"),
        }
    }

    fn route(&mut self, frame: DatagramFrame, now: Instant) {
        let stream = frame.id.stream_id;
        if let Some(route) = self.routes.get(&stream) {
            push_arrival(
                &route.queue,
                &route.counters,
                frame,
                now,
                &mut self.unrouted,
            );
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

    fn drop_early(&mut self) {
        if let Some((_, frame)) = self.early.pop_front() {
            self.early_bytes -= frame.payload.len();
            self.unrouted += 1;
        }
    }

    /// Drops the partial frames and the unannounced frames whose time is up.
    fn expire(&mut self, now: Instant) {
        let routes = &self.routes;
        self.reassembler.expire_with(now, |key| {
            if let Some(route) = routes.get(&key.stream_id) {
                route.counters.incomplete.fetch_add(1, Relaxed);
            }
        });
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

/// Reads the session's datagrams for as long as the connection lives.
pub(crate) async fn receive(session: Session) {
    // Early datagrams would belong to streams not open yet: they wait in quinn's buffer.
    if !session.inner.handshake.wait().await {
        return;
    }
    let datagrams = &session.inner.datagrams;
    let conn = session.inner.conn.clone();
    let mut deadline: Option<Instant> = None;
    loop {
        let read = match deadline {
            Some(at) => tokio::select! {
                read = conn.read_datagram() => Some(read),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => None,
            },
            None => Some(conn.read_datagram().await),
        };
        let now = Instant::now();
        let mut rx = lock(&datagrams.receiving);
        match read {
            Some(Ok(datagram)) => {
                datagrams.received.fetch_add(1, Relaxed);
                rx.take(datagram, now);
            }
            Some(Err(_)) => break,
            None => rx.expire(now),
        }
        deadline = rx.next_deadline();
    }
    let mut rx = lock(&datagrams.receiving);
    for (_, route) in rx.routes.drain() {
        route.queue.close();
    }
}
