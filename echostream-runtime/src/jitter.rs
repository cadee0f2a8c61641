//! A jitter buffer per received real-time stream.
//!
//! Frames of an unreliable stream arrive with variable delay, out of order, duplicated or not
//! at all. The jitter buffer holds each frame until its *playout time*, then releases frames in
//! sequence order, so the application consumes a steady stream and learns exactly what was
//! missing. It does no I/O and never sleeps: the caller passes arrival times to
//! [`JitterBuffer::push`], asks [`JitterBuffer::next_deadline`] when to wake up, and takes due
//! frames with [`JitterBuffer::poll_ready`].
//!
//! # Playout time
//!
//! Every frame carries its sender's timestamp `ts` (wall clock, µs since the UNIX epoch).
//! With `transit = arrival − sender_time`:
//!
//! * **Synced** (a [`ClockMapping`] was given with [`JitterBuffer::set_clock_mapping`]): the
//!   sender time is `ts` mapped into the local clock with the estimated offset, so transit is
//!   the true one-way delay and `playout = mapped(ts) + target_delay`. The target delay is the
//!   end-to-end latency from capture, the same for every peer, so streams from several peers
//!   play out aligned.
//! * **Arrival-based** (no mapping): clocks are not comparable, so transit carries an unknown
//!   constant. The buffer takes as reference the smallest transit seen over the last
//!   [`JitterConfig::base_window`] (the fastest path; a sliding window follows clock drift and
//!   route changes) and sets `playout = ts + min_transit + target_delay`: the target delay is
//!   the allowance for jitter on top of the fastest observed delivery.
//!
//! # Rules
//!
//! * Frames are released in seq order, each no earlier than its playout time. A frame that
//!   arrives after its playout time is **late**: dropped and counted.
//! * A missing seq is declared **lost** when the next present frame is played past it; the
//!   played frame's [`Played::lost_before`] says how many were skipped just before it. A lost
//!   frame that turns up afterwards is counted late instead of lost.
//! * **Duplicates** (queued or already played) are dropped and counted. Frames that arrive
//!   with a lower seq than one already received are **reordered**: put back in order, counted.
//! * At most [`JitterConfig::capacity`] frames are held; beyond it the oldest held frame is
//!   dropped (**overflow**, counted).
//! * A sender restart is detected (a seq far ahead, an older seq with a newer timestamp, or a
//!   run of old seqs); the buffer then flushes and starts over (**resets**, **flushed**).
//! * With [`JitterConfig::adaptive`], the target delay follows a high quantile of recent
//!   transit delays above the reference, plus a margin, within bounds. The RFC 3550
//!   interarrival jitter estimate is always reported.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::clock::ClockMapping;

/// How many already-passed seqs the buffer remembers, to tell a late frame from a duplicate.
const HISTORY: usize = 1024;
/// How often (in pushes) the adaptive target is recomputed.
const ADAPT_EVERY: u32 = 16;

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone)]
pub struct JitterConfig {
    /// The delay frames are held to (see the module docs for what it is added to); the
    /// starting point when adaptive.
    pub target_delay: Duration,
    /// Adapt the target delay to measured jitter, within bounds; `None` keeps it fixed.
    pub adaptive: Option<AdaptiveDelay>,
    /// The most frames held at once; the oldest is dropped beyond it.
    pub capacity: usize,
    /// The most payload bytes held at once, as given to [`JitterBuffer::push_sized`]; the
    /// oldest frames are dropped beyond it.
    pub max_bytes: usize,
    /// Arrival-based mode: how far back the minimum transit is taken from.
    pub base_window: Duration,
    /// A seq this far ahead of the next expected one means the sender restarted.
    pub max_seq_jump: u64,
    /// This many consecutive frames older than the play position mean the sender restarted.
    pub reset_after_discards: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            target_delay: Duration::from_millis(80),
            adaptive: None,
            capacity: 512,
            max_bytes: usize::MAX,
            base_window: Duration::from_secs(2),
            max_seq_jump: 3_000,
            reset_after_discards: 64,
        }
    }
}

impl JitterConfig {
    /// A fixed target delay, other settings default.
    pub fn with_target(target_delay: Duration) -> Self {
        Self {
            target_delay,
            ..Self::default()
        }
    }
}

/// How the target delay adapts to measured jitter.
#[derive(Debug, Clone)]
pub struct AdaptiveDelay {
    /// The lowest target delay.
    pub min: Duration,
    /// The highest target delay.
    pub max: Duration,
    /// The quantile of recent delays (above the reference) to cover, e.g. 0.95.
    pub quantile: f64,
    /// How many recent frames the quantile is taken over.
    pub window: usize,
    /// Added to the quantile, for safety.
    pub margin: Duration,
}

impl Default for AdaptiveDelay {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(20),
            max: Duration::from_millis(500),
            quantile: 0.95,
            window: 500,
            margin: Duration::from_millis(5),
        }
    }
}

/// A frame released by the jitter buffer, at or after its playout time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Played<T> {
    /// The frame.
    pub payload: T,
    /// Its sequence number.
    pub seq: u64,
    /// The sender's timestamp of the frame (sender clock, µs since the UNIX epoch).
    pub timestamp: u64,
    /// The local instant it was scheduled to play at.
    pub playout: Instant,
    /// The local instant it arrived (never after `playout`: late frames are not played).
    pub arrival: Instant,
    /// How many frames were skipped just before this one (never arrived, arrived late, or
    /// dropped on overflow): a cue for concealment.
    pub lost_before: u64,
}

impl<T> Played<T> {
    /// The same frame with its payload transformed, e.g. bytes decoded into a message.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Played<U> {
        Played {
            payload: f(self.payload),
            seq: self.seq,
            timestamp: self.timestamp,
            playout: self.playout,
            arrival: self.arrival,
            lost_before: self.lost_before,
        }
    }

    /// The same frame with its payload transformed by a fallible function (e.g. decoding).
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Played<U>, E> {
        Ok(Played {
            payload: f(self.payload)?,
            seq: self.seq,
            timestamp: self.timestamp,
            playout: self.playout,
            arrival: self.arrival,
            lost_before: self.lost_before,
        })
    }
}

/// What [`JitterBuffer::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held until its playout time.
    Queued,
    /// Dropped: it arrived after its playout time, or after the buffer played past it.
    Late,
    /// Dropped: the same seq is held or was played already.
    Duplicate,
    /// Dropped: the buffer was full and this was the oldest frame.
    Overflow,
}

/// Statistics of a [`JitterBuffer`], like GStreamer's `rtpjitterbuffer` and WebRTC's
/// inbound-rtp stats. Counters are cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames pushed.
    pub received: u64,
    /// Frames released.
    pub played: u64,
    /// Seqs skipped that never arrived (a lost frame arriving later moves to `late`).
    pub lost: u64,
    /// Frames dropped for arriving after their playout time.
    pub late: u64,
    /// Frames dropped as duplicates.
    pub duplicate: u64,
    /// Frames that arrived after a higher seq (put back in order).
    pub reordered: u64,
    /// Frames dropped because the buffer was full (frames or bytes).
    pub overflow: u64,
    /// Frames discarded when a sender restart reset the buffer.
    pub flushed: u64,
    /// Sender restarts detected.
    pub resets: u64,
    /// Frames held now.
    pub buffered: usize,
    /// How long the last played frame waited in the buffer (arrival to release).
    pub current_delay: Duration,
    /// The target delay now.
    pub target_delay: Duration,
    /// RFC 3550 interarrival jitter estimate.
    pub jitter: Duration,
}

#[derive(Debug)]
struct Entry<T> {
    /// `None` marks a seq that arrived but will not play (late, or dropped on overflow): it
    /// keeps its place so that it is not counted lost.
    payload: Option<T>,
    size: usize,
    timestamp: u64,
    playout_us: i64,
    arrival_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passed {
    Unknown,
    Played,
    Lost,
    Late,
    Dropped,
}

/// The adaptive target's state: a ring of recent delays and a histogram of them in 1 ms
/// buckets, so that a quantile costs a walk over the buckets, not a sort.
#[derive(Debug)]
struct Adapter {
    config: AdaptiveDelay,
    recent: VecDeque<u16>,
    histogram: Vec<u32>,
    since_update: u32,
}

impl Adapter {
    fn new(config: AdaptiveDelay) -> Self {
        let buckets = config.max.as_millis().min(u128::from(u16::MAX)) as usize + 1;
        Self {
            recent: VecDeque::with_capacity(config.window.max(1)),
            histogram: vec![0; buckets],
            since_update: 0,
            config,
        }
    }

    /// Records one frame's delay above the reference; returns a new target when it is time.
    fn record(&mut self, delay_us: i64) -> Option<Duration> {
        let bucket = (delay_us.max(0) / 1_000).min(self.histogram.len() as i64 - 1) as u16;
        if self.recent.len() == self.config.window.max(1)
            && let Some(old) = self.recent.pop_front()
        {
            self.histogram[usize::from(old)] -= 1;
        }
        self.recent.push_back(bucket);
        self.histogram[usize::from(bucket)] += 1;
        self.since_update += 1;
        if self.since_update < ADAPT_EVERY {
            return None;
        }
        self.since_update = 0;
        let wanted =
            (self.config.quantile.clamp(0.0, 1.0) * self.recent.len() as f64).ceil() as u64;
        let mut seen = 0u64;
        let mut ms = self.histogram.len() - 1;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= wanted.max(1) {
                ms = i;
                break;
            }
        }
        // The bucket's upper edge covers every delay counted in it.
        let target = Duration::from_millis(ms as u64 + 1) + self.config.margin;
        Some(target.clamp(self.config.min, self.config.max.max(self.config.min)))
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.histogram.iter_mut().for_each(|n| *n = 0);
        self.since_update = 0;
    }
}

/// Holds the frames of one received stream to a target delay and releases them in seq order
/// at their playout time. Generic over the payload; see the module docs for the rules.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    config: JitterConfig,
    mapping: Option<ClockMapping>,
    /// Local time origin: all times below are µs relative to it.
    epoch: Option<Instant>,
    queue: BTreeMap<u64, Entry<T>>,
    /// Real (playable) frames in `queue`.
    held: usize,
    /// Their sizes, as given to `push_sized`.
    held_bytes: usize,
    /// The next seq to play; `None` until the first release (or after a reset).
    next_seq: Option<u64>,
    highest_seq: Option<u64>,
    last_played_ts: Option<u64>,
    /// Frames skipped since the last played frame, for `lost_before`.
    skipped: u64,
    history: Box<[Passed]>,
    /// Arrival-based reference: (arrival, transit) with increasing transits, front = minimum.
    min_transit: VecDeque<(i64, i64)>,
    prev_transit: Option<i64>,
    jitter_us: f64,
    target: Duration,
    adapter: Option<Adapter>,
    discards_in_a_row: u32,
    stats: JitterStats,
}

impl<T> JitterBuffer<T> {
    /// An empty buffer in arrival-based mode.
    pub fn new(config: JitterConfig) -> Self {
        let adapter = config.adaptive.clone().map(Adapter::new);
        let target = match &config.adaptive {
            Some(a) => config.target_delay.clamp(a.min, a.max.max(a.min)),
            None => config.target_delay,
        };
        Self {
            mapping: None,
            epoch: None,
            queue: BTreeMap::new(),
            held: 0,
            held_bytes: 0,
            next_seq: None,
            highest_seq: None,
            last_played_ts: None,
            skipped: 0,
            history: vec![Passed::Unknown; HISTORY].into_boxed_slice(),
            min_transit: VecDeque::new(),
            prev_transit: None,
            jitter_us: 0.0,
            target,
            adapter,
            discards_in_a_row: 0,
            stats: JitterStats::default(),
            config,
        }
    }

    /// Declares that the stream starts at `seq` (a protocol where streams start at 0, say), so
    /// that frames before the first one received count as lost. Call before the first push.
    pub fn start_at(&mut self, seq: u64) {
        if self.stats.received == 0 {
            self.next_seq = Some(seq);
        }
    }

    /// Switches to synced mode with this mapping of sender timestamps into the local clock
    /// (`None`: back to arrival-based). Call again after each clock resync; frames already held
    /// keep the playout time they were given.
    pub fn set_clock_mapping(&mut self, mapping: Option<ClockMapping>) {
        if mapping.is_some() != self.mapping.is_some() {
            // Transits are measured against a different reference from now on.
            self.min_transit.clear();
            self.prev_transit = None;
            if let Some(a) = &mut self.adapter {
                a.clear();
            }
        }
        self.mapping = mapping;
    }

    /// The statistics now.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            buffered: self.held,
            target_delay: self.target,
            jitter: Duration::from_micros(self.jitter_us as u64),
            ..self.stats
        }
    }

    /// The target delay now.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// How many frames are held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Takes a frame that arrived at local time `arrival`, with its seq and its sender's
    /// timestamp (µs since the UNIX epoch, sender clock).
    pub fn push(&mut self, seq: u64, timestamp: u64, payload: T, arrival: Instant) -> Pushed {
        self.push_sized(seq, timestamp, payload, 0, arrival)
    }

    /// [`JitterBuffer::push`] of a frame weighing `size` bytes against
    /// [`JitterConfig::max_bytes`].
    pub fn push_sized(
        &mut self,
        seq: u64,
        timestamp: u64,
        payload: T,
        size: usize,
        arrival: Instant,
    ) -> Pushed {
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_us = micros_since(epoch, arrival);
        self.stats.received += 1;

        if let Some(next) = self.next_seq {
            if seq < next {
                let newer = self.last_played_ts.is_some_and(|ts| timestamp > ts);
                if newer || self.discards_in_a_row + 1 >= self.config.reset_after_discards {
                    self.reset();
                } else {
                    self.discards_in_a_row += 1;
                    return self.classify_passed(seq, next);
                }
            } else if seq - next > self.config.max_seq_jump {
                self.reset();
            }
        }
        self.discards_in_a_row = 0;

        if self.queue.contains_key(&seq) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }

        let sender_us = match &self.mapping {
            Some(m) => micros_since(epoch, m.remote_to_instant(timestamp)),
            None => i64::try_from(timestamp).unwrap_or(i64::MAX),
        };
        let transit = arrival_us.saturating_sub(sender_us);
        if let Some(prev) = self.prev_transit {
            let d = transit.saturating_sub(prev).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.prev_transit = Some(transit);
        let base = if self.mapping.is_some() {
            0
        } else {
            self.update_min_transit(arrival_us, transit)
        };
        if let Some(adapter) = &mut self.adapter
            && let Some(target) = adapter.record(transit.saturating_sub(base))
        {
            self.target = target;
        }
        let target_us = i64::try_from(self.target.as_micros()).unwrap_or(i64::MAX);
        let playout_us = sender_us.saturating_add(base).saturating_add(target_us);

        if self.highest_seq.is_some_and(|h| seq < h) {
            self.stats.reordered += 1;
        }
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));

        let mut entry = Entry {
            payload: Some(payload),
            size,
            timestamp,
            playout_us,
            arrival_us,
        };
        let mut outcome = Pushed::Queued;
        if arrival_us > playout_us {
            self.stats.late += 1;
            entry.payload = None;
            outcome = Pushed::Late;
        } else {
            // Make room, oldest first; a frame older than every held one is itself the oldest.
            while self.held >= self.config.capacity.max(1)
                || (self.held > 0 && self.held_bytes.saturating_add(size) > self.config.max_bytes)
            {
                self.stats.overflow += 1;
                let oldest = self
                    .queue
                    .iter_mut()
                    .find(|(_, e)| e.payload.is_some())
                    .filter(|(s, _)| **s < seq);
                match oldest {
                    Some((_, e)) => {
                        e.payload = None;
                        self.held -= 1;
                        self.held_bytes -= e.size;
                    }
                    None => {
                        entry.payload = None;
                        outcome = Pushed::Overflow;
                        break;
                    }
                }
            }
        }
        if entry.payload.is_some() {
            self.held += 1;
            self.held_bytes += size;
        }
        self.queue.insert(seq, entry);
        outcome
    }

    /// When the next frame is due (possibly already), or `None` when nothing is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        let epoch = self.epoch?;
        let (_, e) = self.queue.first_key_value()?;
        Some(instant_at(epoch, e.playout_us))
    }

    /// Releases the next frame whose playout time has come by `now`, in seq order; `None` when
    /// none is due. Call repeatedly until `None`, then sleep until [`Self::next_deadline`].
    pub fn poll_ready(&mut self, now: Instant) -> Option<Played<T>> {
        let epoch = self.epoch?;
        let now_us = micros_since(epoch, now);
        loop {
            let entry = self.queue.first_entry()?;
            if entry.get().playout_us > now_us {
                return None;
            }
            let (seq, e) = entry.remove_entry();
            let gap = self.advance_to(seq);
            match e.payload {
                None => {
                    self.mark(seq, Passed::Dropped);
                    self.skipped += gap + 1;
                }
                Some(payload) => {
                    self.mark(seq, Passed::Played);
                    self.held -= 1;
                    self.held_bytes -= e.size;
                    let lost_before = self.skipped + gap;
                    self.skipped = 0;
                    self.stats.played += 1;
                    self.last_played_ts = Some(e.timestamp);
                    self.stats.current_delay =
                        Duration::from_micros(now_us.saturating_sub(e.arrival_us).max(0) as u64);
                    return Some(Played {
                        payload,
                        seq,
                        timestamp: e.timestamp,
                        playout: instant_at(epoch, e.playout_us),
                        arrival: instant_at(epoch, e.arrival_us),
                        lost_before,
                    });
                }
            }
        }
    }

    /// Moves the play position to just past `seq`, declaring the seqs in between lost.
    fn advance_to(&mut self, seq: u64) -> u64 {
        let gap = self.next_seq.map_or(0, |next| seq.saturating_sub(next));
        if gap > 0 {
            self.stats.lost += gap;
            let first_marked = seq - gap.min(HISTORY as u64);
            for s in first_marked..seq {
                self.mark(s, Passed::Lost);
            }
        }
        // A seq of u64::MAX leaves nothing to expect: the next frame starts afresh.
        self.next_seq = seq.checked_add(1);
        gap
    }

    /// Accounts for a frame whose seq the buffer already played past.
    fn classify_passed(&mut self, seq: u64, next: u64) -> Pushed {
        let known = next - seq <= HISTORY as u64;
        let slot = (seq % HISTORY as u64) as usize;
        match if known {
            self.history[slot]
        } else {
            Passed::Unknown
        } {
            Passed::Lost => {
                self.history[slot] = Passed::Late;
                self.stats.lost -= 1;
                self.stats.late += 1;
                Pushed::Late
            }
            Passed::Played | Passed::Late | Passed::Dropped => {
                self.stats.duplicate += 1;
                Pushed::Duplicate
            }
            Passed::Unknown => {
                self.stats.late += 1;
                Pushed::Late
            }
        }
    }

    fn mark(&mut self, seq: u64, state: Passed) {
        self.history[(seq % HISTORY as u64) as usize] = state;
    }

    /// Arrival-based reference: pushes a transit and returns the minimum over the window.
    fn update_min_transit(&mut self, arrival_us: i64, transit: i64) -> i64 {
        while self.min_transit.back().is_some_and(|&(_, t)| t >= transit) {
            self.min_transit.pop_back();
        }
        self.min_transit.push_back((arrival_us, transit));
        let window = i64::try_from(self.config.base_window.as_micros()).unwrap_or(i64::MAX);
        while self
            .min_transit
            .front()
            .is_some_and(|&(at, _)| arrival_us.saturating_sub(at) > window)
        {
            self.min_transit.pop_front();
        }
        self.min_transit.front().map_or(transit, |&(_, t)| t)
    }

    /// The sender restarted: forget its old sequence space and timing.
    fn reset(&mut self) {
        self.stats.resets += 1;
        self.stats.flushed += self.held as u64;
        tracing::debug!(flushed = self.held, "jitter buffer reset: sender restarted");
        self.queue.clear();
        self.held = 0;
        self.held_bytes = 0;
        self.next_seq = None;
        self.highest_seq = None;
        self.last_played_ts = None;
        self.skipped = 0;
        self.history.iter_mut().for_each(|s| *s = Passed::Unknown);
        self.min_transit.clear();
        self.prev_transit = None;
        self.discards_in_a_row = 0;
    }
}

fn micros_since(epoch: Instant, t: Instant) -> i64 {
    match t.checked_duration_since(epoch) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from((epoch - t).as_micros()).unwrap_or(i64::MAX),
    }
}

fn instant_at(epoch: Instant, us: i64) -> Instant {
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        epoch.checked_add(d).unwrap_or(epoch)
    } else {
        epoch.checked_sub(d).unwrap_or(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, TestClock};
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    const MS: Duration = Duration::from_millis(1);
    /// Sender timestamps: 20 ms apart (50 fps), from an arbitrary epoch time.
    const TS0: u64 = 1_735_689_600_000_000;
    fn ts(seq: u64) -> u64 {
        TS0 + seq * 20_000
    }

    fn buffer(target_ms: u64) -> JitterBuffer<u64> {
        JitterBuffer::new(JitterConfig::with_target(Duration::from_millis(target_ms)))
    }

    /// Drains everything due at `now`.
    fn drain(b: &mut JitterBuffer<u64>, now: Instant) -> Vec<Played<u64>> {
        std::iter::from_fn(|| b.poll_ready(now)).collect()
    }

    #[test]
    fn holds_frames_to_the_target_delay_and_releases_them_in_order() {
        let t0 = Instant::now();
        let mut b = buffer(50);
        // Frames 0..5 sent every 20 ms, each arriving 10 ms after it was sent (the first
        // defines the reference transit).
        for s in 0..5 {
            assert_eq!(b.push(s, ts(s), s, t0 + s as u32 * 20 * MS), Pushed::Queued);
        }
        assert_eq!(b.next_deadline(), Some(t0 + 50 * MS));
        assert!(drain(&mut b, t0 + 49 * MS).is_empty());
        for s in 0..5 {
            let at = t0 + (50 + s as u32 * 20) * MS;
            assert_eq!(b.next_deadline(), Some(at));
            let played = drain(&mut b, at);
            assert_eq!(played.len(), 1);
            let p = &played[0];
            assert_eq!(
                (p.seq, p.payload, p.timestamp, p.playout, p.lost_before),
                (s, s, ts(s), at, 0)
            );
        }
        assert_eq!(b.next_deadline(), None);
        let s = b.stats();
        assert_eq!(
            (s.received, s.played, s.lost, s.late, s.buffered),
            (5, 5, 0, 0, 0)
        );
        assert_eq!(s.current_delay, 50 * MS);
    }

    #[test]
    fn reordered_frames_are_put_back_in_order() {
        let t0 = Instant::now();
        let mut b = buffer(60);
        for (i, s) in [0u64, 2, 1, 4, 3].into_iter().enumerate() {
            assert_eq!(b.push(s, ts(s), s, t0 + i as u32 * 20 * MS), Pushed::Queued);
        }
        let played: Vec<u64> = drain(&mut b, t0 + Duration::from_secs(1))
            .iter()
            .map(|p| p.seq)
            .collect();
        assert_eq!(played, [0, 1, 2, 3, 4]);
        let s = b.stats();
        assert_eq!((s.reordered, s.lost, s.played), (2, 0, 5));
    }

    #[test]
    fn duplicates_are_dropped_whether_held_or_played() {
        let t0 = Instant::now();
        let mut b = buffer(40);
        assert_eq!(b.push(0, ts(0), 0, t0), Pushed::Queued);
        assert_eq!(b.push(0, ts(0), 0, t0 + MS), Pushed::Duplicate);
        assert_eq!(drain(&mut b, t0 + 40 * MS).len(), 1);
        assert_eq!(b.push(0, ts(0), 0, t0 + 41 * MS), Pushed::Duplicate);
        assert_eq!(b.push(1, ts(1), 1, t0 + 42 * MS), Pushed::Queued);
        let s = b.stats();
        assert_eq!((s.duplicate, s.played, s.received, s.late), (2, 1, 4, 0));
    }

    #[test]
    fn a_gap_is_declared_lost_only_when_played_past() {
        let t0 = Instant::now();
        let mut b = buffer(40);
        b.push(0, ts(0), 0, t0);
        b.push(2, ts(2), 2, t0 + 40 * MS);
        assert_eq!(drain(&mut b, t0 + 40 * MS).len(), 1);
        // Frame 1 is due at 60 ms but missing; frame 2 is due at 80 ms.
        assert!(drain(&mut b, t0 + 79 * MS).is_empty());
        assert_eq!(b.stats().lost, 0);
        let p = drain(&mut b, t0 + 80 * MS);
        assert_eq!((p[0].seq, p[0].lost_before), (2, 1));
        assert_eq!(b.stats().lost, 1);
        // It turns up later: late, not lost.
        assert_eq!(b.push(1, ts(1), 1, t0 + 85 * MS), Pushed::Late);
        let s = b.stats();
        assert_eq!((s.lost, s.late), (0, 1));
        // A second copy of it is a duplicate.
        assert_eq!(b.push(1, ts(1), 1, t0 + 86 * MS), Pushed::Duplicate);
    }

    #[test]
    fn a_missing_frame_that_arrives_in_time_is_not_lost() {
        let t0 = Instant::now();
        let mut b = buffer(40);
        b.push(0, ts(0), 0, t0);
        b.push(2, ts(2), 2, t0 + 40 * MS);
        b.push(1, ts(1), 1, t0 + 55 * MS);
        let seqs: Vec<u64> = drain(&mut b, t0 + 80 * MS).iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn frames_arriving_after_their_playout_time_are_late_not_lost() {
        let t0 = Instant::now();
        let mut b = buffer(30);
        b.push(0, ts(0), 0, t0);
        // Frame 1 should play at 50 ms; it arrives at 51 ms.
        assert_eq!(b.push(1, ts(1), 1, t0 + 51 * MS), Pushed::Late);
        b.push(2, ts(2), 2, t0 + 52 * MS);
        let played = drain(&mut b, t0 + 70 * MS);
        let seqs: Vec<(u64, u64)> = played.iter().map(|p| (p.seq, p.lost_before)).collect();
        assert_eq!(seqs, [(0, 0), (2, 1)]);
        assert!(played.iter().all(|p| p.playout <= t0 + 70 * MS));
        let s = b.stats();
        assert_eq!((s.late, s.lost, s.played), (1, 0, 2));
    }

    #[test]
    fn overflow_drops_the_oldest_held_frame() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig {
            capacity: 3,
            ..JitterConfig::with_target(500 * MS)
        });
        for s in 0..5 {
            b.push(s, ts(s), s, t0 + s as u32 * MS);
        }
        let s = b.stats();
        assert_eq!((s.overflow, s.buffered), (2, 3));
        // A frame older than everything held is the one dropped.
        let mut full = JitterBuffer::new(JitterConfig {
            capacity: 2,
            ..JitterConfig::with_target(500 * MS)
        });
        full.push(5, ts(5), 5, t0);
        full.push(6, ts(6), 6, t0);
        assert_eq!(full.push(4, ts(4), 4, t0), Pushed::Overflow);

        let played = drain(&mut b, t0 + Duration::from_secs(2));
        let seqs: Vec<(u64, u64)> = played.iter().map(|p| (p.seq, p.lost_before)).collect();
        assert_eq!(seqs, [(2, 2), (3, 0), (4, 0)]);
        // Dropped on overflow is not lost, and a copy arriving now is a duplicate.
        assert_eq!(b.stats().lost, 0);
        assert_eq!(
            b.push(0, ts(0), 0, t0 + Duration::from_secs(2)),
            Pushed::Duplicate
        );
    }

    #[test]
    fn a_known_start_counts_the_frames_before_the_first_received_as_lost() {
        let t0 = Instant::now();
        let mut b = buffer(50);
        b.start_at(0);
        b.push(3, ts(3), 3, t0);
        let played = drain(&mut b, t0 + Duration::from_secs(1));
        assert_eq!((played[0].seq, played[0].lost_before), (3, 3));
        assert_eq!(b.stats().lost, 3);
        // Without it, the first frame received is the start.
        let mut b = buffer(50);
        b.push(3, ts(3), 3, t0);
        let played = drain(&mut b, t0 + Duration::from_secs(1));
        assert_eq!((played[0].lost_before, b.stats().lost), (0, 0));
    }

    #[test]
    fn the_byte_budget_drops_the_oldest_frames_until_the_new_one_fits() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig {
            max_bytes: 100,
            ..JitterConfig::with_target(500 * MS)
        });
        for s in 0..3 {
            assert_eq!(b.push_sized(s, ts(s), s, 40, t0), Pushed::Queued);
        }
        // Three frames of 40 bytes do not fit in 100: the oldest made room for the third. A
        // frame over the whole budget evicts everything older and is then held alone.
        let s = b.stats();
        assert_eq!((s.overflow, s.buffered), (1, 2));
        assert_eq!(b.push_sized(3, ts(3), 3, 150, t0), Pushed::Queued);
        let s = b.stats();
        assert_eq!((s.overflow, s.buffered), (3, 1));
        let played = drain(&mut b, t0 + Duration::from_secs(2));
        assert_eq!(played.len(), 1);
        assert_eq!((played[0].seq, played[0].lost_before), (3, 3));
        assert_eq!(played[0].arrival, t0);
        assert!(played[0].playout > played[0].arrival);
        // Room again once played.
        assert_eq!(b.push_sized(4, ts(4), 4, 100, t0 + 2 * MS), Pushed::Queued);
    }

    #[test]
    fn a_restarted_sender_is_followed() {
        let t0 = Instant::now();
        let mut b = buffer(40);
        for s in 100..110 {
            b.push(s, ts(s), s, t0 + (s - 100) as u32 * 20 * MS);
        }
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(1)).len(), 10);
        // The sender restarts from 0 with fresh timestamps.
        let t1 = t0 + Duration::from_secs(2);
        let new_ts = ts(200);
        assert_eq!(b.push(0, new_ts, 0, t1), Pushed::Queued);
        assert_eq!(b.push(1, new_ts + 20_000, 1, t1 + 20 * MS), Pushed::Queued);
        let played = drain(&mut b, t1 + Duration::from_secs(1));
        let seqs: Vec<(u64, u64)> = played.iter().map(|p| (p.seq, p.lost_before)).collect();
        assert_eq!(seqs, [(0, 0), (1, 0)]);
        let s = b.stats();
        assert_eq!((s.resets, s.lost, s.late, s.duplicate), (1, 0, 0, 0));
    }

    #[test]
    fn a_run_of_old_seqs_resets_even_without_newer_timestamps() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig {
            reset_after_discards: 4,
            ..JitterConfig::with_target(40 * MS)
        });
        for s in 500..510 {
            b.push(s, ts(s), s, t0 + (s - 500) as u32 * 20 * MS);
        }
        drain(&mut b, t0 + Duration::from_secs(1));
        // A sender whose media clock also restarted: old seqs and old timestamps.
        let t1 = t0 + Duration::from_secs(2);
        for s in 0..3 {
            assert_eq!(b.push(s, ts(s), s, t1 + s as u32 * 20 * MS), Pushed::Late);
        }
        assert_eq!(b.push(3, ts(3), 3, t1 + 60 * MS), Pushed::Queued);
        assert_eq!(b.stats().resets, 1);
        assert_eq!(drain(&mut b, t1 + Duration::from_secs(1))[0].seq, 3);
    }

    #[test]
    fn a_far_jump_ahead_resets_instead_of_counting_a_huge_loss() {
        let t0 = Instant::now();
        let mut b = buffer(40);
        b.push(0, ts(0), 0, t0);
        b.push(1, ts(1), 1, t0 + 20 * MS);
        drain(&mut b, t0 + 40 * MS);
        b.push(1_000_000, ts(2), 9, t0 + 40 * MS);
        let s = b.stats();
        assert_eq!((s.resets, s.flushed), (1, 1));
        let played = drain(&mut b, t0 + Duration::from_secs(1));
        assert_eq!(played.len(), 1);
        assert_eq!((played[0].seq, played[0].lost_before), (1_000_000, 0));
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn seqs_at_the_end_of_the_range_do_not_overflow() {
        let t0 = Instant::now();
        let mut b = buffer(20);
        b.push(u64::MAX - 1, ts(0), 0, t0);
        b.push(u64::MAX, ts(1), 1, t0 + 20 * MS);
        assert_eq!(drain(&mut b, t0 + 40 * MS).len(), 2);
        // Nothing can follow u64::MAX: the next frame starts a fresh sequence.
        assert_eq!(b.push(0, ts(2), 2, t0 + 40 * MS), Pushed::Queued);
        assert_eq!(drain(&mut b, t0 + 60 * MS)[0].seq, 0);
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn synced_mode_plays_at_capture_time_plus_target_aligned_across_senders() {
        // Two senders whose clocks are off by +250 ms and −40 ms; both streams capture a frame
        // at the same true instant, delivered over paths of 10 ms and 35 ms.
        let local = TestClock::new(TS0);
        let a_clock = local.fork(250_000);
        let b_clock = local.fork(-40_000);
        let mut a = JitterBuffer::new(JitterConfig::with_target(100 * MS));
        let mut b = JitterBuffer::new(JitterConfig::with_target(100 * MS));
        a.set_clock_mapping(Some(ClockMapping::new(250_000, &local)));
        b.set_clock_mapping(Some(ClockMapping::new(-40_000, &local)));
        let start = local.instant();
        let (ts_a, ts_b) = (a_clock.now_micros(), b_clock.now_micros());
        a.push(0, ts_a, 0, start + 10 * MS);
        b.push(0, ts_b, 0, start + 35 * MS);
        assert_eq!(a.next_deadline(), Some(start + 100 * MS));
        assert_eq!(b.next_deadline(), Some(start + 100 * MS));
        // A path slower than the target makes frames late in synced mode.
        assert_eq!(b.push(1, ts_b + 20_000, 1, start + 121 * MS), Pushed::Late);
    }

    #[test]
    fn jitter_estimate_follows_rfc_3550() {
        let t0 = Instant::now();
        let mut b = buffer(100);
        // Transit alternates between 0 and 4 ms: |D| = 4 ms for every frame after the first;
        // J converges towards 4 ms as J += (|D| − J) / 16.
        let mut expected = 0.0f64;
        for s in 0..200u64 {
            let extra = if s % 2 == 0 { 0 } else { 4 };
            b.push(s, ts(s), s, t0 + (s as u32 * 20 + extra) * MS);
            if s > 0 {
                expected += (4_000.0 - expected) / 16.0;
            }
            drain(&mut b, t0 + (s as u32 * 20) * MS);
        }
        let j = b.stats().jitter.as_micros() as f64;
        assert!((j - expected).abs() <= 1.0, "{j} vs {expected}");
        assert!(j > 3_990.0);
    }

    #[test]
    fn adaptive_target_follows_jitter_within_bounds() {
        let t0 = Instant::now();
        let mut b: JitterBuffer<u64> = JitterBuffer::new(JitterConfig {
            target_delay: 40 * MS,
            adaptive: Some(AdaptiveDelay {
                min: 15 * MS,
                max: 120 * MS,
                quantile: 0.95,
                window: 200,
                margin: 5 * MS,
            }),
            ..Default::default()
        });
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut next = 0u64;
        // Sends 400 frames whose delays are drawn from 0..max_jitter_us, delivering them in
        // arrival order and playing out as time passes.
        let mut phase = |b: &mut JitterBuffer<u64>, max_jitter_us: u64| {
            let mut frames: Vec<(Instant, u64)> = (next..next + 400)
                .map(|s| {
                    let j = rng.random_range(0..max_jitter_us);
                    (t0 + Duration::from_micros(s * 20_000 + j), s)
                })
                .collect();
            next += 400;
            frames.sort();
            for (at, s) in frames {
                drain(b, at);
                b.push(s, ts(s), s, at);
            }
        };
        // Calm: 0–2 ms of jitter. The target settles at the minimum.
        phase(&mut b, 2_000);
        assert_eq!(b.target_delay(), 15 * MS);
        // Rough: 0–60 ms of jitter. The target covers the 95th percentile plus margin.
        phase(&mut b, 60_000);
        let target = b.target_delay();
        assert!(target >= 55 * MS && target <= 70 * MS, "{target:?}");
        // Extreme: 0–1 s. Capped at the maximum.
        phase(&mut b, 1_000_000);
        assert_eq!(b.target_delay(), 120 * MS);
        assert_eq!(b.stats().target_delay, 120 * MS);
    }

    /// The acceptance scenario: 5% loss, 30 ms ± 10 ms one-way delay, 10% reordering, 50 fps,
    /// driven event by event with the buffer's own deadlines.
    #[test]
    fn simulated_lossy_jittery_reordering_link() {
        for seed in 0..5u64 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let t0 = Instant::now();
            const FRAMES: u64 = 3_000;
            let mut arrivals: Vec<(Instant, u64)> = Vec::new();
            let mut sent_at = std::collections::HashMap::new();
            let mut injected_lost = 0u64;
            for s in 0..FRAMES {
                let send = t0 + Duration::from_millis(s * 20);
                if rng.random_bool(0.05) {
                    injected_lost += 1;
                    continue;
                }
                let mut delay = Duration::from_micros(rng.random_range(20_000..=40_000));
                if rng.random_bool(0.10) {
                    // Held back long enough to arrive after the next frame or two.
                    delay += Duration::from_micros(rng.random_range(20_000..=40_000));
                }
                arrivals.push((send + delay, s));
                sent_at.insert(s, send + delay);
            }
            arrivals.sort();
            let mut b = buffer(80);
            let mut played: Vec<Played<u64>> = Vec::new();
            let mut next_arrival = 0;
            loop {
                let arrival = arrivals.get(next_arrival).map(|a| a.0);
                let deadline = b.next_deadline();
                let now = match (arrival, deadline) {
                    (Some(a), Some(d)) => a.min(d),
                    (Some(a), None) => a,
                    (None, Some(d)) => d,
                    (None, None) => break,
                };
                // Releases first at an instant, then arrivals (an arrival exactly at a
                // playout time is still on time).
                while let Some(p) = b.poll_ready(now) {
                    assert_eq!(p.playout, now, "released at its playout time");
                    assert!(
                        sent_at[&p.seq] <= p.playout,
                        "frame {} arrived after playout",
                        p.seq
                    );
                    played.push(p);
                }
                while let Some(&(a, s)) = arrivals.get(next_arrival).filter(|(a, _)| *a <= now) {
                    b.push(s, ts(s), s, a);
                    next_arrival += 1;
                }
            }
            assert!(played.windows(2).all(|w| w[0].seq < w[1].seq), "seq order");
            assert!(played.iter().all(|p| p.payload == p.seq));
            let s = b.stats();
            assert_eq!(s.late, 0, "seed {seed}");
            assert!(s.reordered > 0, "seed {seed}: the link reorders");
            let reported = s.lost as f64 / FRAMES as f64;
            let injected = injected_lost as f64 / FRAMES as f64;
            assert!(
                (reported - injected).abs() <= 0.01,
                "seed {seed}: reported {reported} vs injected {injected}"
            );
            let span = played.last().unwrap().seq - played[0].seq + 1;
            assert_eq!(s.played + s.lost, span);
            let lost_before: u64 = played.iter().map(|p| p.lost_before).sum();
            assert_eq!(lost_before, s.lost);
        }
    }
}
