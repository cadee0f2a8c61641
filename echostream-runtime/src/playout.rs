//! How the frames of a received stream reach its handler: [`Playout`] (chosen by the handler),
//! [`ReceiveStats`] (what happened to the frames), and the playback state that applies it.
//!
//! Two playouts, for either delivery:
//!
//! * **On arrival**: each frame is handed over as soon as it arrives. Frames of a reliable stream
//!   come in order; those of a datagram stream in arrival order, with duplicates removed. Loss is
//!   counted as RTP does (frames expected from the seqs seen, minus distinct frames received).
//! * **Jitter buffer**: frames are held in a [`JitterBuffer`] and handed over in seq order at
//!   their playout time. Until the session's clock sync has converged, a frame's playout time is
//!   `timestamp + fastest transit seen + target`; once synced, the sender's timestamp is mapped
//!   into the local clock and the playout time is `timestamp + target` in local time: the target
//!   is then the latency from capture, the same for every stream of every peer, so streams from
//!   several peers play out aligned. With [`Playout::adaptive`], the target follows the measured
//!   delays within bounds.
//!
//! The playback does no I/O and never sleeps: the stream's task feeds it and asks when to wake.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::jitter::{AdaptiveDelay, JitterBuffer, JitterConfig, Played};
use crate::session::Session;

/// How far back an on-arrival playout remembers seqs, to tell duplicates from new frames.
const ARRIVAL_WINDOW: u64 = 1024;

/// How the receiving side plays a stream's frames out to its handler: the handler's
/// [`StreamHandler::playout`](crate::StreamHandler::playout) chooses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Playout {
    jitter: Option<Duration>,
    adaptive: Option<(Duration, Duration)>,
    capacity: Option<usize>,
}

impl Playout {
    /// Each frame is handed over as soon as it arrives.
    pub fn on_arrival() -> Playout {
        Playout::default()
    }

    /// Frames are held in a jitter buffer and released in seq order at their playout time,
    /// `target` after they were sent (the schema's `jitter_ms`) once the clocks are synced, and
    /// `target` after the fastest delivery seen until then. Frames arriving after their playout
    /// time are dropped and counted late: choose a target above the path's one-way delay plus
    /// its jitter, or let it adapt with [`Playout::adaptive`].
    pub fn jitter_buffer(target: Duration) -> Playout {
        Playout {
            jitter: Some(target),
            ..Playout::default()
        }
    }

    /// Lets the jitter buffer's target follow the delays it measures (95th percentile plus a
    /// 5 ms margin), between `min` and `max`, starting from the target given to
    /// [`Playout::jitter_buffer`]. No effect on an on-arrival playout.
    pub fn adaptive(mut self, min: Duration, max: Duration) -> Playout {
        self.adaptive = Some((min, max.max(min)));
        self
    }

    /// The most frames the jitter buffer holds at once (default 512); the oldest is dropped
    /// (counted as overflow) beyond it.
    pub fn capacity(mut self, frames: usize) -> Playout {
        self.capacity = Some(frames.max(1));
        self
    }

    /// The jitter buffer's target delay, if frames are buffered.
    pub fn jitter_target(&self) -> Option<Duration> {
        self.jitter
    }

    /// The bounds of the adaptive target, if it adapts.
    pub fn adaptive_bounds(&self) -> Option<(Duration, Duration)> {
        self.adaptive.filter(|_| self.jitter.is_some())
    }

    /// The jitter buffer's settings, holding at most `max_bytes` of frames; `None` on arrival.
    pub(crate) fn jitter_config(&self, max_bytes: usize) -> Option<JitterConfig> {
        let target = self.jitter?;
        let defaults = JitterConfig::default();
        Some(JitterConfig {
            target_delay: target,
            adaptive: self.adaptive.map(|(min, max)| AdaptiveDelay {
                min,
                max,
                ..AdaptiveDelay::default()
            }),
            capacity: self.capacity.unwrap_or(defaults.capacity),
            max_bytes,
            ..defaults
        })
    }
}

/// What happened to the frames of a received stream, like GStreamer's `rtpjitterbuffer` and
/// WebRTC's inbound-rtp statistics. Read with [`StreamInfo::stats`](crate::StreamInfo::stats);
/// counters are cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveStats {
    /// Frames that arrived (duplicates included).
    pub received: u64,
    /// Frames handed to the handler.
    pub played: u64,
    /// Frames that never arrived (a gap in seq: lost on the path, dropped by the sender, or
    /// missing a fragment). A frame counted lost that arrives afterwards moves to `late`.
    pub lost: u64,
    /// Frames dropped for arriving after their playout time (or too far behind the others).
    pub late: u64,
    /// Frames dropped because they had arrived already.
    pub duplicate: u64,
    /// Frames that arrived after a frame with a higher seq (put back in order when buffered).
    pub reordered: u64,
    /// Frames dropped for want of room: the jitter buffer's capacity (frames or bytes), or the
    /// stream's receive queue while its handler was busy.
    pub overflow: u64,
    /// Datagram frames of which a fragment never arrived, dropped after the reassembly timeout
    /// (also counted in `lost`, as the seq gap they leave).
    pub incomplete: u64,
    /// Frames held in the jitter buffer now.
    pub buffered: usize,
    /// How long the last played frame waited between its arrival and its playout.
    pub current_delay: Duration,
    /// The jitter buffer's target delay now (zero on arrival).
    pub target_delay: Duration,
    /// The RFC 3550 interarrival jitter estimate (jitter-buffered streams).
    pub jitter: Duration,
    /// Whether playout times come from the sender's timestamps mapped into the local clock
    /// (clock sync converged), rather than from the fastest delivery seen.
    pub clock_synced: bool,
    /// Frames played to a typed handler (generated code, [`StreamMethod`](crate::StreamMethod))
    /// that did not decode as its message type: dropped, logged, and reported to the handler
    /// as lost before the next frame that decodes.
    pub undecodable: u64,
}

/// A stream's statistics, shared by its task (which writes) and its [`StreamInfo`] clones.
///
/// [`StreamInfo`]: crate::StreamInfo
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    /// The playback's statistics, as last published.
    stats: Mutex<ReceiveStats>,
    /// Counted by the handler itself, so kept apart from what the playback publishes.
    undecodable: std::sync::atomic::AtomicU64,
}

impl StatsCell {
    pub(crate) fn get(&self) -> ReceiveStats {
        let mut stats = *self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.undecodable = self.undecodable.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    pub(crate) fn set(&self, stats: ReceiveStats) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    /// Counts a frame that did not decode as the handler's message type.
    pub(crate) fn count_undecodable(&self) {
        self.undecodable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A frame as it arrived, before playout.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) seq: u64,
    pub(crate) timestamp: u64,
    pub(crate) data: Bytes,
    pub(crate) at: Instant,
}

/// The playback state of one received stream.
#[derive(Debug)]
pub(crate) struct Playback {
    kind: Kind,
    /// Counted outside the playout proper: receive-queue overflow and incomplete frames.
    overflow: u64,
    incomplete: u64,
}

#[derive(Debug)]
enum Kind {
    Buffered {
        buffer: Box<JitterBuffer<Bytes>>,
        /// The session's clock generation the buffer's mapping was taken at.
        generation: Option<u64>,
        synced: bool,
    },
    OnArrival(ArrivalOrder),
}

impl Playback {
    /// The playback `playout` asks for, holding at most `max_bytes` of frames when buffered.
    pub(crate) fn new(playout: &Playout, max_bytes: usize) -> Playback {
        let kind = match playout.jitter_config(max_bytes) {
            Some(config) => {
                let mut buffer = Box::new(JitterBuffer::new(config));
                // Every stream starts at seq 0 (docs/protocol.md).
                buffer.start_at(0);
                Kind::Buffered {
                    buffer,
                    generation: None,
                    synced: false,
                }
            }
            None => Kind::OnArrival(ArrivalOrder::default()),
        };
        Playback {
            kind,
            overflow: 0,
            incomplete: 0,
        }
    }

    /// Takes a frame in. An on-arrival playout returns it at once when it is to be played; a
    /// buffered one holds it (see [`Playback::poll_ready`]). The session's clock sync is
    /// consulted for the mapping of sender timestamps. (Inlined into the stream's task, which
    /// calls it for every frame.)
    #[inline]
    pub(crate) fn push(&mut self, session: &Session, frame: Arrival) -> Option<Played<Bytes>> {
        match &mut self.kind {
            Kind::Buffered {
                buffer,
                generation,
                synced,
            } => {
                let now = session
                    .inner
                    .clock_generation
                    .load(std::sync::atomic::Ordering::Relaxed);
                if *generation != Some(now) {
                    let (taken_at, mapping) = session.clock_mapping();
                    *synced = mapping.is_some();
                    buffer.set_clock_mapping(mapping);
                    *generation = Some(taken_at);
                }
                let size = frame.data.len();
                buffer.push_sized(frame.seq, frame.timestamp, frame.data, size, frame.at);
                None
            }
            Kind::OnArrival(order) => order.push(frame),
        }
    }

    /// The next buffered frame whose playout time has come by `now`.
    pub(crate) fn poll_ready(&mut self, now: Instant) -> Option<Played<Bytes>> {
        match &mut self.kind {
            Kind::Buffered { buffer, .. } => buffer.poll_ready(now),
            Kind::OnArrival(_) => None,
        }
    }

    /// [`Playback::poll_ready`] now: an on-arrival playout holds nothing, and does not read
    /// the clock (the serve loop asks once per frame).
    pub(crate) fn poll_due(&mut self) -> Option<Played<Bytes>> {
        match &mut self.kind {
            Kind::Buffered { buffer, .. } => buffer.poll_ready(Instant::now()),
            Kind::OnArrival(_) => None,
        }
    }

    /// When the next buffered frame is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match &self.kind {
            Kind::Buffered { buffer, .. } => buffer.next_deadline(),
            Kind::OnArrival(_) => None,
        }
    }

    /// Counts frames dropped before they reached the playout (full receive queue).
    pub(crate) fn count_overflow(&mut self, frames: u64) {
        self.overflow += frames;
    }

    /// Counts datagram frames dropped for a missing fragment.
    pub(crate) fn count_incomplete(&mut self, frames: u64) {
        self.incomplete += frames;
    }

    /// The statistics now.
    pub(crate) fn stats(&self) -> ReceiveStats {
        let mut stats = match &self.kind {
            Kind::Buffered { buffer, synced, .. } => {
                let s = buffer.stats();
                ReceiveStats {
                    received: s.received,
                    played: s.played,
                    lost: s.lost,
                    late: s.late,
                    duplicate: s.duplicate,
                    reordered: s.reordered,
                    overflow: s.overflow,
                    buffered: s.buffered,
                    current_delay: s.current_delay,
                    target_delay: s.target_delay,
                    jitter: s.jitter,
                    clock_synced: *synced,
                    ..ReceiveStats::default()
                }
            }
            Kind::OnArrival(order) => order.stats(),
        };
        stats.overflow += self.overflow;
        stats.incomplete = self.incomplete;
        stats
    }
}

/// On-arrival playout: hands frames over as they come, drops duplicates and frames too far
/// behind to tell, and counts loss as RTP does (streams start at seq 0).
#[derive(Debug, Default)]
struct ArrivalOrder {
    /// The highest seq seen.
    highest: Option<u64>,
    /// Which of the last `ARRIVAL_WINDOW` seqs arrived, a bit per seq (by seq modulo).
    seen: Box<[u64]>,
    received: u64,
    played: u64,
    late: u64,
    duplicate: u64,
    reordered: u64,
}

impl ArrivalOrder {
    fn bit(seq: u64) -> (usize, u64) {
        let slot = seq % ARRIVAL_WINDOW;
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    #[inline]
    fn push(&mut self, frame: Arrival) -> Option<Played<Bytes>> {
        if self.seen.is_empty() {
            self.seen = vec![0; (ARRIVAL_WINDOW / 64) as usize].into_boxed_slice();
        }
        self.received += 1;
        let seq = frame.seq;
        let lost_before = match self.highest {
            None => {
                self.highest = Some(seq);
                seq
            }
            Some(highest) if seq > highest => {
                // Forget the seqs that fall out of the window as it moves up (but `seq`'s own
                // slot, set below: nothing to do for the next frame in order).
                let forget = (seq - highest).min(ARRIVAL_WINDOW);
                for s in seq - forget + 1..seq {
                    let (word, bit) = Self::bit(s);
                    self.seen[word] &= !bit;
                }
                self.highest = Some(seq);
                seq - highest - 1
            }
            Some(highest) if highest - seq >= ARRIVAL_WINDOW => {
                self.late += 1;
                return None;
            }
            Some(_) => {
                let (word, bit) = Self::bit(seq);
                if self.seen[word] & bit != 0 {
                    self.duplicate += 1;
                    return None;
                }
                self.reordered += 1;
                0
            }
        };
        let (word, bit) = Self::bit(seq);
        self.seen[word] |= bit;
        self.played += 1;
        Some(Played {
            payload: frame.data,
            seq,
            timestamp: frame.timestamp,
            playout: frame.at,
            arrival: frame.at,
            lost_before,
        })
    }

    fn stats(&self) -> ReceiveStats {
        let expected = self.highest.map_or(0, |highest| highest.saturating_add(1));
        ReceiveStats {
            received: self.received,
            played: self.played,
            lost: expected.saturating_sub(self.played),
            late: self.late,
            duplicate: self.duplicate,
            reordered: self.reordered,
            ..ReceiveStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(seq: u64, at: Instant) -> Arrival {
        Arrival {
            seq,
            timestamp: 1_735_689_600_000_000 + seq * 20_000,
            data: Bytes::from(seq.to_string()),
            at,
        }
    }

    #[test]
    fn on_arrival_hands_frames_over_at_once_without_duplicates() {
        let mut order = ArrivalOrder::default();
        let t = Instant::now();
        let played: Vec<(u64, u64)> = [0, 1, 4, 2, 2, 5, 1, 3]
            .into_iter()
            .filter_map(|s| order.push(arrival(s, t)))
            .map(|p| (p.seq, p.lost_before))
            .collect();
        assert_eq!(played, [(0, 0), (1, 0), (4, 2), (2, 0), (5, 0), (3, 0)]);
        let s = order.stats();
        assert_eq!(
            (s.received, s.played, s.duplicate, s.reordered, s.lost),
            (8, 6, 2, 2, 0)
        );
    }

    #[test]
    fn on_arrival_loss_is_expected_minus_received_and_shrinks_when_late_frames_come() {
        let mut order = ArrivalOrder::default();
        let t = Instant::now();
        // Streams start at 0: the first ten never came.
        assert_eq!(order.push(arrival(10, t)).unwrap().lost_before, 10);
        for s in [11, 15] {
            order.push(arrival(s, t));
        }
        assert_eq!(order.stats().lost, 13);
        order.push(arrival(13, t));
        assert_eq!(order.stats().lost, 12);
        // Too far behind to tell whether it is a duplicate: late.
        order.push(arrival(15 + ARRIVAL_WINDOW, t));
        assert!(order.push(arrival(14, t)).is_none());
        assert!(order.push(arrival(9, t)).is_none());
        assert_eq!(order.stats().late, 2);
        // The window moved on: a seq in the slot of one that arrived before (10) is new.
        let same_slot = 10 + ARRIVAL_WINDOW;
        assert!(order.push(arrival(same_slot, t)).is_some());
        assert!(order.push(arrival(same_slot, t)).is_none());
        assert_eq!(order.stats().duplicate, 1);
    }

    proptest::proptest! {
        /// On arrival plays exactly the frames not played before within the window, in the
        /// order they come: what a set of every seq played says.
        #[test]
        fn on_arrival_plays_what_a_set_of_played_seqs_says(
            steps in proptest::collection::vec((0u64..3, 0u64..8, 0u32..3000), 1..4000),
        ) {
            let mut order = ArrivalOrder::default();
            let t = Instant::now();
            let mut played = std::collections::HashSet::new();
            let mut highest: Option<u64> = None;
            let mut seq = 0u64;
            for (jump, back, far) in steps {
                // Forward by 0 to 2 (densely, past the window's length), rarely far beyond the
                // window, then maybe back a little.
                seq += if far == 0 { ARRIVAL_WINDOW + jump } else { jump };
                let s = seq.saturating_sub(back);
                let expected = match highest {
                    Some(h) if s <= h && h - s >= ARRIVAL_WINDOW => None,
                    _ if played.contains(&s) => None,
                    Some(h) if s <= h => Some(0),
                    Some(h) => Some(s - h - 1),
                    None => Some(s),
                };
                let got = order.push(arrival(s, t)).map(|p| p.lost_before);
                proptest::prop_assert_eq!(got, expected, "seq {}", s);
                if got.is_some() {
                    played.insert(s);
                    highest = highest.max(Some(s));
                }
            }
        }
    }

    #[test]
    fn playout_settings_become_jitter_buffer_settings() {
        assert!(Playout::on_arrival().jitter_config(100).is_none());
        let p = Playout::jitter_buffer(Duration::from_millis(80))
            .adaptive(Duration::from_millis(40), Duration::from_millis(20))
            .capacity(0);
        assert_eq!(
            p.adaptive_bounds(),
            Some((Duration::from_millis(40), Duration::from_millis(40)))
        );
        let config = p.jitter_config(1000).unwrap();
        assert_eq!(config.target_delay, Duration::from_millis(80));
        assert_eq!(config.capacity, 1);
        assert_eq!(config.max_bytes, 1000);
        let adaptive = config.adaptive.unwrap();
        assert_eq!(
            (adaptive.min, adaptive.max),
            (Duration::from_millis(40), Duration::from_millis(40))
        );
        assert_eq!(
            Playout::on_arrival()
                .adaptive(Duration::ZERO, Duration::ZERO)
                .adaptive_bounds(),
            None
        );
    }
}
