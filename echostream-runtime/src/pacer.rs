//! A token-bucket pacer for datagram sends.
//!
//! QUIC datagrams are unreliable *and* congestion controlled: quinn queues them in a bounded
//! buffer and silently drops the oldest when an application sends faster than the path allows.
//! A real-time sender should rather decide itself what to drop, and know that it did: it asks
//! the pacer before sending each frame, and the pacer answers send now, wait until a given
//! instant (never longer than [`PacerConfig::max_delay`]), or drop, counting every drop.
//!
//! The rate is configured, and can follow the congestion controller: call
//! [`Pacer::follow_path`] with quinn's congestion window and RTT (from `Connection::stats()`
//! and `Connection::rtt()`) now and then, and the pacer sends at `gain × cwnd / rtt`.
//!
//! Time is passed in, so the pacer is deterministic and the caller decides how to wait:
//!
//! ```
//! # use echostream_runtime::pacer::{Admission, Pacer, PacerConfig};
//! # use std::time::{Duration, Instant};
//! let mut pacer = Pacer::new(PacerConfig::default());
//! let now = Instant::now();
//! match pacer.admit(1_200, now) {
//!     Admission::Send => { /* send the frame's datagrams */ }
//!     Admission::Wait(until) => { /* sleep until `until`, then ask again */ }
//!     Admission::Drop => { /* counted in pacer.stats().dropped_frames */ }
//! }
//! ```

use std::time::{Duration, Instant};

/// Settings of a [`Pacer`].
#[derive(Debug, Clone)]
pub struct PacerConfig {
    /// The sending rate, in bytes per second, until [`Pacer::set_rate`] or
    /// [`Pacer::follow_path`] changes it.
    pub rate: u64,
    /// The bucket size in bytes: how much may be sent back to back after an idle period.
    pub burst: u64,
    /// The bucket holds at least this long's worth of the rate, whatever `burst` says: a sender
    /// woken by timers of millisecond resolution could not keep a higher rate otherwise.
    pub min_burst_time: Duration,
    /// The longest a frame may wait for tokens; a frame that would wait longer is dropped.
    /// Zero drops whatever cannot be sent at once.
    pub max_delay: Duration,
    /// The lowest rate [`Pacer::follow_path`] sets, in bytes per second.
    pub min_rate: u64,
    /// The highest rate [`Pacer::follow_path`] sets, in bytes per second.
    pub max_rate: u64,
    /// The multiplier applied to `cwnd / rtt` by [`Pacer::follow_path`]; slightly above 1
    /// lets the sender probe for more bandwidth, as pacing congestion controllers do.
    pub gain: f64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            rate: 12_500_000,
            burst: 64 * 1024,
            min_burst_time: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            min_rate: 16 * 1024,
            max_rate: 1_250_000_000,
            gain: 1.25,
        }
    }
}

/// The pacer's answer for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it now; its bytes were taken from the bucket.
    Send,
    /// Not yet: ask again at this instant (no bytes were taken).
    Wait(Instant),
    /// It would wait longer than the maximum delay: drop it (counted).
    Drop,
}

/// Counters of a [`Pacer`], all cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Frames admitted.
    pub sent_frames: u64,
    /// Bytes admitted.
    pub sent_bytes: u64,
    /// Frames refused.
    pub dropped_frames: u64,
    /// Bytes refused.
    pub dropped_bytes: u64,
    /// How many times a frame was told to wait.
    pub waits: u64,
}

/// A token bucket that paces datagram sends to a rate and drops rather than blocks.
///
/// A frame is admitted when the bucket holds at least `min(frame, burst)` bytes; its full size
/// is then taken, possibly leaving the bucket in debt. Frames larger than the burst (a 100 KB
/// video key frame) therefore go out whole, and the debt makes the following frames wait, so
/// the average rate holds.
#[derive(Debug, Clone)]
pub struct Pacer {
    config: PacerConfig,
    rate: u64,
    tokens: f64,
    last: Option<Instant>,
    stats: PacerStats,
}

impl Pacer {
    /// A pacer with a full bucket.
    pub fn new(config: PacerConfig) -> Self {
        let rate = config.rate.max(1);
        let mut pacer = Self {
            tokens: 0.0,
            rate,
            config,
            last: None,
            stats: PacerStats::default(),
        };
        pacer.tokens = pacer.burst();
        pacer
    }

    /// The current rate, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The counters so far.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// The settings this pacer was made with.
    pub fn config(&self) -> &PacerConfig {
        &self.config
    }

    /// Sets the rate, in bytes per second (at least 1).
    pub fn set_rate(&mut self, bytes_per_sec: u64) {
        self.rate = bytes_per_sec.max(1);
    }

    /// Follows the congestion controller: rate = `gain × cwnd / rtt` (pass the path's minimum
    /// round trip, which queueing does not inflate, for its bandwidth), kept within
    /// [`PacerConfig::min_rate`] and [`PacerConfig::max_rate`]. An RTT below 100 µs counts as
    /// 100 µs.
    pub fn follow_path(&mut self, cwnd_bytes: u64, rtt: Duration) {
        let rtt = rtt.max(Duration::from_micros(100)).as_secs_f64();
        let rate = self.config.gain * cwnd_bytes as f64 / rtt;
        let (lo, hi) = (
            self.config.min_rate,
            self.config.max_rate.max(self.config.min_rate),
        );
        self.set_rate((rate as u64).clamp(lo, hi));
    }

    /// Decides whether a frame of `bytes` (all its datagrams, headers included) may be sent at
    /// `now`. See [`Admission`].
    pub fn admit(&mut self, bytes: usize, now: Instant) -> Admission {
        self.refill(now);
        let bytes_f = bytes as f64;
        let needed = bytes_f.min(self.burst());
        if self.tokens >= needed {
            self.tokens -= bytes_f;
            self.stats.sent_frames += 1;
            self.stats.sent_bytes += bytes as u64;
            return Admission::Send;
        }
        let wait = Duration::from_secs_f64((needed - self.tokens) / self.rate as f64);
        if wait <= self.config.max_delay {
            self.stats.waits += 1;
            // Round up to the microsecond so that asking again at that instant succeeds.
            let wait = Duration::from_micros(wait.as_micros() as u64 + 1);
            return Admission::Wait(now + wait);
        }
        self.stats.dropped_frames += 1;
        self.stats.dropped_bytes += bytes as u64;
        Admission::Drop
    }

    /// The bucket size now, in bytes.
    pub fn burst(&self) -> f64 {
        (self.config.burst as f64).max(self.rate as f64 * self.config.min_burst_time.as_secs_f64())
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            // An earlier `now` than before (callers on several threads) adds nothing.
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst());
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: u64, burst: u64, max_delay_ms: u64) -> PacerConfig {
        PacerConfig {
            rate,
            burst,
            min_burst_time: Duration::ZERO,
            max_delay: Duration::from_millis(max_delay_ms),
            ..Default::default()
        }
    }

    #[test]
    fn a_full_bucket_sends_a_burst_then_makes_frames_wait_exactly() {
        // 1 MB/s, 10 kB burst: ten 1,000-byte frames go at once, the eleventh waits 1 ms.
        let mut p = Pacer::new(config(1_000_000, 10_000, 5));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(p.admit(1_000, t0), Admission::Send);
        }
        let Admission::Wait(at) = p.admit(1_000, t0) else {
            panic!("expected a wait");
        };
        assert!(at - t0 >= Duration::from_millis(1) && at - t0 <= Duration::from_micros(1_002));
        assert_eq!(p.admit(1_000, at), Admission::Send);
        let s = p.stats();
        assert_eq!(
            (s.sent_frames, s.sent_bytes, s.waits, s.dropped_frames),
            (11, 11_000, 1, 0)
        );
    }

    #[test]
    fn frames_that_would_wait_too_long_are_dropped_and_counted() {
        let mut p = Pacer::new(config(100_000, 2_000, 0));
        let t0 = Instant::now();
        assert_eq!(p.admit(1_500, t0), Admission::Send);
        assert_eq!(p.admit(1_500, t0), Admission::Drop);
        assert_eq!(p.admit(400, t0), Admission::Send);
        let s = p.stats();
        assert_eq!(
            (s.dropped_frames, s.dropped_bytes, s.sent_bytes),
            (1, 1_500, 1_900)
        );
        // 15 ms later 1,500 bytes have come back.
        assert_eq!(
            p.admit(1_500, t0 + Duration::from_millis(15)),
            Admission::Send
        );
    }

    #[test]
    fn a_frame_larger_than_the_burst_goes_whole_and_the_debt_holds_the_rate() {
        // A 100 kB key frame through a 16 kB bucket at 1 MB/s.
        let mut p = Pacer::new(config(1_000_000, 16_000, 200));
        let t0 = Instant::now();
        assert_eq!(p.admit(100_000, t0), Admission::Send);
        // The bucket is 84 kB in debt: the next frame needs 1 kB, so waits 85 ms.
        let Admission::Wait(at) = p.admit(1_000, t0) else {
            panic!("expected a wait");
        };
        let waited = at - t0;
        assert!(
            waited >= Duration::from_millis(85) && waited <= Duration::from_micros(85_002),
            "{waited:?}"
        );
        // With a shorter tolerance the same frame is dropped instead.
        let mut strict = Pacer::new(config(1_000_000, 16_000, 50));
        assert_eq!(strict.admit(100_000, t0), Admission::Send);
        assert_eq!(strict.admit(1_000, t0), Admission::Drop);
    }

    #[test]
    fn idle_time_never_fills_more_than_the_burst() {
        let mut p = Pacer::new(config(1_000_000, 5_000, 0));
        let t0 = Instant::now();
        assert_eq!(p.admit(5_000, t0), Admission::Send);
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(p.admit(1_000, later), Admission::Send);
        }
        assert_eq!(p.admit(1_000, later), Admission::Drop);
    }

    #[test]
    fn the_bucket_holds_at_least_the_minimum_burst_time_of_the_rate() {
        // 10 MB/s with a 5 kB bucket but 2 ms of minimum burst: 20 kB may go back to back.
        let mut p = Pacer::new(PacerConfig {
            min_burst_time: Duration::from_millis(2),
            ..config(10_000_000, 5_000, 0)
        });
        assert_eq!(p.burst(), 20_000.0);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(p.admit(1_000, t0), Admission::Send);
        }
        assert_eq!(p.admit(1_000, t0), Admission::Drop);
        // A slower path shrinks it back to the configured bucket.
        p.set_rate(1_000_000);
        assert_eq!(p.burst(), 5_000.0);
    }

    #[test]
    fn time_going_backwards_adds_no_tokens() {
        let mut p = Pacer::new(config(1_000_000, 1_000, 0));
        let t0 = Instant::now() + Duration::from_secs(1);
        assert_eq!(p.admit(1_000, t0), Admission::Send);
        assert_eq!(
            p.admit(1_000, t0 - Duration::from_millis(500)),
            Admission::Drop
        );
        assert_eq!(p.admit(1_000, t0), Admission::Drop);
        assert_eq!(
            p.admit(1_000, t0 + Duration::from_millis(1)),
            Admission::Send
        );
    }

    #[test]
    fn overload_is_cut_to_the_configured_rate() {
        // Offer 2 MB/s (1,000-byte frames every 0.5 ms) to a 1 MB/s pacer for 10 s.
        let mut p = Pacer::new(config(1_000_000, 10_000, 0));
        let t0 = Instant::now();
        for i in 0..20_000u64 {
            p.admit(1_000, t0 + Duration::from_micros(500 * i));
        }
        let s = p.stats();
        // The initial burst plus 1 MB/s over the 9.9995 s between the first and last offer,
        // to within the one frame's worth of tokens that may be left over.
        let expected = 10_000 + 9_999_500;
        assert!(s.sent_bytes.abs_diff(expected) <= 1_000, "{}", s.sent_bytes);
        assert_eq!(s.sent_frames + s.dropped_frames, 20_000);
    }

    #[test]
    fn following_the_path_sets_gain_times_cwnd_over_rtt_within_bounds() {
        let mut p = Pacer::new(PacerConfig {
            min_rate: 10_000,
            max_rate: 50_000_000,
            gain: 1.25,
            ..Default::default()
        });
        p.follow_path(120_000, Duration::from_millis(40));
        assert_eq!(p.rate(), 3_750_000);
        p.follow_path(1_000_000_000, Duration::from_millis(1));
        assert_eq!(p.rate(), 50_000_000);
        p.follow_path(1_200, Duration::from_secs(1));
        assert_eq!(p.rate(), 10_000);
        p.follow_path(12_000, Duration::ZERO);
        assert_eq!(p.rate(), 50_000_000);
        p.set_rate(0);
        assert_eq!(p.rate(), 1);
    }
}
