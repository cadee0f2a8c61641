//! Time sources and NTP-style clock synchronisation between two peers.
//!
//! Real-time streams carry timestamps taken in the *sender's* wall clock. To play streams from
//! several peers aligned, a receiver maps those timestamps into its own clock, which needs the
//! offset between the two clocks. This module provides:
//!
//! * [`Clock`]: an injectable time source (wall-clock microseconds since the UNIX epoch plus a
//!   monotonic [`Instant`]), with [`SystemClock`] for production, [`OffsetClock`] to skew a real
//!   clock (e.g. "this peer runs 250 ms fast" in an integration test) and [`TestClock`], a manually
//!   stepped clock for fully deterministic tests.
//! * [`ClockSample`]: one NTP four-timestamp exchange turned into an offset θ and round-trip
//!   delay δ (RFC 5905 §8).
//! * [`ClockSync`]: the estimator a session keeps per peer: a window of samples, NTP's
//!   minimum-delay clock filter, an error bound, a synced flag and mapping helpers.
//!
//! # Wiring the exchange on ping/pong
//!
//! All four timestamps are wall-clock microseconds since the UNIX epoch ([`Clock::now_micros`]),
//! each read from the clock of the peer that takes it:
//!
//! | name | taken by | when | carried in |
//! | --- | --- | --- | --- |
//! | `t1` (origin) | pinging peer | just before the ping is written | ping |
//! | `t2` (receive) | answering peer | as soon as the ping is read | pong (plus `t1` echoed) |
//! | `t3` (transmit) | answering peer | just before the pong is written | pong |
//! | `t4` (arrival) | pinging peer | as soon as the pong is read | not sent |
//!
//! A pong therefore carries `t1` (copied from the ping), `t2` and `t3`; the pinging peer reads
//! `t4` on arrival and calls [`ClockSample::from_timestamps`]`(t1, t2, t3, t4)`, then
//! [`ClockSync::add_sample`]. The offset is the *answering* (remote) peer's clock minus the
//! pinging (local) peer's clock: `remote ≈ local + offset`.
//!
//! Reading `t2` and `t3` as close to the socket as possible keeps processing time out of the
//! delay; time spent between them is excluded from δ by construction.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time: wall-clock time for timestamps that cross the network, and a monotonic
/// instant for local scheduling. Injectable so tests can skew or step it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time in microseconds since the UNIX epoch, as this peer believes it to be.
    fn now_micros(&self) -> u64;

    /// A monotonic instant, for timers and durations; never goes backwards.
    fn instant(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_micros(&self) -> u64 {
        (**self).now_micros()
    }

    fn instant(&self) -> Instant {
        (**self).instant()
    }
}

/// The operating system's clocks: [`SystemTime`] for wall-clock time and [`Instant`] for
/// monotonic time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        // A system clock set before 1970 reads as the epoch rather than failing.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, duration_micros)
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Another clock whose wall-clock time is shifted by a fixed, adjustable offset; its monotonic
/// time is the inner clock's. Used to make one peer's clock wrong on purpose (e.g. +250 ms) in
/// tests that run over real sockets and real time.
#[derive(Debug)]
pub struct OffsetClock<C> {
    inner: C,
    offset_micros: AtomicI64,
}

impl<C: Clock> OffsetClock<C> {
    /// Wraps `inner`, reading `offset_micros` ahead of it (negative: behind).
    pub fn new(inner: C, offset_micros: i64) -> Self {
        Self {
            inner,
            offset_micros: AtomicI64::new(offset_micros),
        }
    }

    /// Changes the offset, as a clock step would.
    pub fn set_offset_micros(&self, offset_micros: i64) {
        self.offset_micros.store(offset_micros, Ordering::Relaxed);
    }

    /// The current offset from the inner clock, in microseconds.
    pub fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::Relaxed)
    }
}

impl<C: Clock> Clock for OffsetClock<C> {
    fn now_micros(&self) -> u64 {
        self.inner
            .now_micros()
            .saturating_add_signed(self.offset_micros())
    }

    fn instant(&self) -> Instant {
        self.inner.instant()
    }
}

/// The time shared by [`TestClock`]s forked from one another.
#[derive(Debug)]
struct TestTime {
    /// The monotonic origin: `instant()` is `origin + elapsed`.
    origin: Instant,
    /// The true wall-clock time at `origin`, in microseconds since the epoch.
    wall_origin_micros: u64,
    elapsed: Duration,
}

/// A manually driven clock for deterministic tests: time only moves when [`TestClock::advance`]
/// is called. Clocks made with [`TestClock::fork`] share the same underlying time but each has
/// its own wall-clock offset, which models two peers whose clocks disagree.
#[derive(Debug, Clone)]
pub struct TestClock {
    time: Arc<Mutex<TestTime>>,
    offset_micros: Arc<AtomicI64>,
}

impl TestClock {
    /// A clock reading `wall_micros` (microseconds since the epoch) with no offset.
    pub fn new(wall_micros: u64) -> Self {
        Self {
            time: Arc::new(Mutex::new(TestTime {
                origin: Instant::now(),
                wall_origin_micros: wall_micros,
                elapsed: Duration::ZERO,
            })),
            offset_micros: Arc::new(AtomicI64::new(0)),
        }
    }

    /// A clock sharing this one's time (advancing either advances both) whose wall-clock
    /// reading is `offset_micros` away from the *true* time, independently of this clock's own
    /// offset.
    pub fn fork(&self, offset_micros: i64) -> Self {
        Self {
            time: Arc::clone(&self.time),
            offset_micros: Arc::new(AtomicI64::new(offset_micros)),
        }
    }

    /// Moves time forward by `by`, for every clock sharing this time.
    pub fn advance(&self, by: Duration) {
        let mut time = self.time.lock().unwrap_or_else(PoisonError::into_inner);
        time.elapsed += by;
    }

    /// Steps this clock's wall-clock offset from the true time (its monotonic time is
    /// unaffected, as with a real clock step).
    pub fn set_offset_micros(&self, offset_micros: i64) {
        self.offset_micros.store(offset_micros, Ordering::Relaxed);
    }

    /// The true wall-clock time (without this clock's offset), in microseconds since the epoch.
    pub fn true_micros(&self) -> u64 {
        let time = self.time.lock().unwrap_or_else(PoisonError::into_inner);
        time.wall_origin_micros
            .saturating_add(duration_micros(time.elapsed))
    }
}

impl Clock for TestClock {
    fn now_micros(&self) -> u64 {
        self.true_micros()
            .saturating_add_signed(self.offset_micros.load(Ordering::Relaxed))
    }

    fn instant(&self) -> Instant {
        let time = self.time.lock().unwrap_or_else(PoisonError::into_inner);
        time.origin + time.elapsed
    }
}

/// Why four timestamps do not make a usable clock sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The computed round-trip delay is negative: the answering peer claims to have spent
    /// longer between receive and transmit than the whole round trip took locally, or a clock
    /// was stepped mid-exchange.
    #[error("inconsistent ping timestamps: round-trip delay would be {delay_micros} µs")]
    NegativeDelay {
        /// The (negative) delay that the timestamps imply, in microseconds.
        delay_micros: i64,
    },
    /// A timestamp is so far from the others that the arithmetic would overflow; the peer sent
    /// garbage.
    #[error("ping timestamps out of range")]
    OutOfRange,
}

/// One NTP-style exchange reduced to the clock offset θ and round-trip delay δ (RFC 5905 §8):
///
/// ```text
/// θ = ((t2 − t1) + (t3 − t4)) / 2      remote clock minus local clock
/// δ =  (t4 − t1) − (t3 − t2)           time on the wire, both ways
/// ```
///
/// The true offset lies within `θ ± δ/2` whatever the path asymmetry, which is why the sample
/// with the smallest δ is the most trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Remote clock minus local clock (θ), in microseconds.
    pub offset_micros: i64,
    /// Round-trip network delay (δ), excluding the remote peer's processing time.
    pub delay: Duration,
}

impl ClockSample {
    /// Computes θ and δ from the four timestamps, in microseconds since the epoch: `t1` ping
    /// sent (local clock), `t2` ping received (remote clock), `t3` pong sent (remote clock),
    /// `t4` pong received (local clock). `t2` and `t3` come from the network: garbage gives an
    /// error, never a panic.
    pub fn from_timestamps(t1: u64, t2: u64, t3: u64, t4: u64) -> Result<Self, SampleError> {
        let (t1, t2, t3, t4) = (t1 as i128, t2 as i128, t3 as i128, t4 as i128);
        let delay = (t4 - t1) - (t3 - t2);
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        let offset_micros = i64::try_from(offset).map_err(|_| SampleError::OutOfRange)?;
        let delay_micros = i64::try_from(delay).map_err(|_| SampleError::OutOfRange)?;
        if delay_micros < 0 {
            return Err(SampleError::NegativeDelay { delay_micros });
        }
        Ok(Self {
            offset_micros,
            delay: Duration::from_micros(delay_micros as u64),
        })
    }
}

/// Settings of a [`ClockSync`] estimator.
#[derive(Debug, Clone)]
pub struct ClockSyncConfig {
    /// How many recent samples the minimum-delay filter chooses from. More samples make it
    /// likelier that one of them crossed the path with little queueing either way.
    pub window: usize,
    /// Samples older than this are forgotten even if the window is not full, so that a drifting
    /// or stepped clock is followed.
    pub max_sample_age: Duration,
    /// How many samples must have been taken before the estimate counts as synced.
    pub min_samples: usize,
    /// Frequency tolerance of the clocks, in parts per million: the error bound of a sample
    /// grows by this much per second of age (NTP's φ is 15 ppm).
    pub tolerance_ppm: u32,
    /// Interval between pings while the window is not full: short, to converge quickly.
    pub fast_interval: Duration,
    /// Interval between pings once the window is full: periodic resync.
    pub interval: Duration,
}

impl Default for ClockSyncConfig {
    /// 32 samples, the first ones 50 ms apart (synced after 8, i.e. about 0.4 s, with the window
    /// full after 1.6 s), then one a second; samples kept at most 64 s; 15 ppm tolerance.
    fn default() -> Self {
        Self {
            window: 32,
            max_sample_age: Duration::from_secs(64),
            min_samples: 8,
            tolerance_ppm: 15,
            fast_interval: Duration::from_millis(50),
            interval: Duration::from_secs(1),
        }
    }
}

/// The current estimate of a [`ClockSync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockEstimate {
    /// Remote clock minus local clock, in microseconds, from the minimum-delay sample.
    pub offset_micros: i64,
    /// Round-trip delay of the chosen sample.
    pub rtt: Duration,
    /// A bound on the offset's error: half the chosen sample's delay (the worst case of path
    /// asymmetry) plus its dispersion (age × clock tolerance).
    pub error: Duration,
    /// Whether enough samples were taken for the estimate to be trusted.
    pub synced: bool,
}

/// Estimates the offset between the local clock and one remote peer's clock from ping/pong
/// samples, as NTP's clock filter does: keep a window of recent samples and trust the one with
/// the lowest round-trip delay, which suffered the least queueing and asymmetry.
#[derive(Debug, Clone)]
pub struct ClockSync {
    config: ClockSyncConfig,
    samples: VecDeque<(ClockSample, Instant)>,
    total_samples: u64,
    rejected: u64,
}

impl ClockSync {
    /// An estimator with no samples yet.
    pub fn new(config: ClockSyncConfig) -> Self {
        let window = config.window.max(1);
        Self {
            config: ClockSyncConfig { window, ..config },
            samples: VecDeque::with_capacity(window),
            total_samples: 0,
            rejected: 0,
        }
    }

    /// The settings this estimator was made with.
    pub fn config(&self) -> &ClockSyncConfig {
        &self.config
    }

    /// Adds a sample taken at local monotonic time `now` (when `t4` was read).
    pub fn add_sample(&mut self, sample: ClockSample, now: Instant) {
        self.evict_old(now);
        if self.samples.len() == self.config.window {
            self.samples.pop_front();
        }
        self.samples.push_back((sample, now));
        self.total_samples += 1;
    }

    /// Computes a sample from the four timestamps (see the module docs) and adds it; a bad set
    /// of timestamps is counted in [`ClockSync::rejected`] and returned as an error.
    pub fn add_timestamps(
        &mut self,
        t1: u64,
        t2: u64,
        t3: u64,
        t4: u64,
        now: Instant,
    ) -> Result<ClockSample, SampleError> {
        match ClockSample::from_timestamps(t1, t2, t3, t4) {
            Ok(sample) => {
                self.add_sample(sample, now);
                Ok(sample)
            }
            Err(e) => {
                self.rejected += 1;
                Err(e)
            }
        }
    }

    /// How many samples were added in total.
    pub fn sample_count(&self) -> u64 {
        self.total_samples
    }

    /// How many sets of timestamps were rejected as inconsistent.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether enough samples were taken for the estimate to be trusted.
    pub fn is_synced(&self) -> bool {
        !self.samples.is_empty() && self.total_samples >= self.config.min_samples as u64
    }

    /// The estimate at local time `now`, or `None` before the first sample.
    pub fn estimate(&self, now: Instant) -> Option<ClockEstimate> {
        let (best, taken) = self.best()?;
        let age = now.saturating_duration_since(taken);
        let dispersion = age.mul_f64(f64::from(self.config.tolerance_ppm) / 1e6);
        Some(ClockEstimate {
            offset_micros: best.offset_micros,
            rtt: best.delay,
            error: best.delay / 2 + dispersion + Duration::from_micros(1),
            synced: self.is_synced(),
        })
    }

    /// Remote clock minus local clock in microseconds, from the minimum-delay sample.
    pub fn offset_micros(&self) -> Option<i64> {
        self.best().map(|(s, _)| s.offset_micros)
    }

    /// The round-trip delay of the minimum-delay sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.best().map(|(s, _)| s.delay)
    }

    /// Maps a timestamp taken in the remote clock into the local clock (`remote − offset`), or
    /// `None` before the first sample.
    pub fn remote_to_local_micros(&self, remote_micros: u64) -> Option<u64> {
        let offset = self.offset_micros()?;
        Some(remote_micros.saturating_add_signed(offset.saturating_neg()))
    }

    /// Maps a timestamp taken in the local clock into the remote clock (`local + offset`).
    pub fn local_to_remote_micros(&self, local_micros: u64) -> Option<u64> {
        let offset = self.offset_micros()?;
        Some(local_micros.saturating_add_signed(offset))
    }

    /// A snapshot mapping remote timestamps to local [`Instant`]s, taken by reading `clock`
    /// once; `None` before the first sample. Hand it to a jitter buffer so it schedules
    /// playout in the local clock.
    pub fn mapping(&self, clock: &dyn Clock) -> Option<ClockMapping> {
        let offset_micros = self.offset_micros()?;
        Some(ClockMapping::new(offset_micros, clock))
    }

    /// How long to wait before the next ping: [`ClockSyncConfig::fast_interval`] while the
    /// window is not full (which covers the time until synced), [`ClockSyncConfig::interval`]
    /// after.
    pub fn next_ping_interval(&self) -> Duration {
        if self.samples.len() >= self.config.window {
            self.config.interval
        } else {
            self.config.fast_interval
        }
    }

    fn best(&self) -> Option<(ClockSample, Instant)> {
        // The window is small (NTP's 8) and bounded by configuration: a scan per query is
        // cheaper than maintaining an ordered structure on every ping.
        self.samples
            .iter()
            .min_by_key(|(s, taken)| (s.delay, std::cmp::Reverse(*taken)))
            .copied()
    }

    fn evict_old(&mut self, now: Instant) {
        while let Some((_, taken)) = self.samples.front() {
            if now.saturating_duration_since(*taken) > self.config.max_sample_age {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }
}

impl Default for ClockSync {
    fn default() -> Self {
        Self::new(ClockSyncConfig::default())
    }
}

/// A frozen relation between a remote peer's wall clock and the local monotonic clock: one
/// local reading of both clocks plus the estimated offset. Cheap to copy; refresh it after each
/// resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockMapping {
    /// Remote clock minus local clock, in microseconds.
    pub offset_micros: i64,
    /// Local wall-clock reading, in microseconds since the epoch, taken at `local_instant`.
    pub local_wall_micros: u64,
    /// Local monotonic reading taken at the same moment as `local_wall_micros`.
    pub local_instant: Instant,
}

impl ClockMapping {
    /// Reads `clock` once and pairs it with `offset_micros` (remote minus local).
    pub fn new(offset_micros: i64, clock: &dyn Clock) -> Self {
        Self {
            offset_micros,
            local_wall_micros: clock.now_micros(),
            local_instant: clock.instant(),
        }
    }

    /// The local instant at which the local clock reads what the remote clock read at
    /// `remote_micros`. Saturates at the ends of `Instant`'s range for absurd inputs.
    pub fn remote_to_instant(&self, remote_micros: u64) -> Instant {
        let local = i128::from(remote_micros) - i128::from(self.offset_micros);
        let delta = local - i128::from(self.local_wall_micros);
        let magnitude =
            Duration::from_micros(u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX));
        if delta >= 0 {
            self.local_instant
                .checked_add(magnitude)
                .unwrap_or(self.local_instant + Duration::from_secs(86_400 * 365))
        } else {
            self.local_instant
                .checked_sub(magnitude)
                .unwrap_or(self.local_instant)
        }
    }
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    const EPOCH_2025: u64 = 1_735_689_600_000_000;

    #[test]
    fn symmetric_exchange_without_jitter_is_exact() {
        // Remote clock 250 ms ahead, 10 ms each way, 300 µs processing on the remote side.
        let t1 = EPOCH_2025;
        let t2 = t1 + 10_000 + 250_000;
        let t3 = t2 + 300;
        let t4 = t1 + 10_000 + 300 + 10_000;
        let sample = ClockSample::from_timestamps(t1, t2, t3, t4).unwrap();
        assert_eq!(sample.offset_micros, 250_000);
        assert_eq!(sample.delay, Duration::from_millis(20));
    }

    #[test]
    fn negative_offset_when_remote_is_behind() {
        let t1 = EPOCH_2025;
        let t2 = t1 + 5_000 - 1_000_000;
        let t3 = t2;
        let t4 = t1 + 10_000;
        let sample = ClockSample::from_timestamps(t1, t2, t3, t4).unwrap();
        assert_eq!(sample.offset_micros, -1_000_000);
        assert_eq!(sample.delay, Duration::from_millis(10));
    }

    #[test]
    fn asymmetric_path_error_is_within_half_the_delay() {
        // 2 ms up, 18 ms down, no skew: θ is off by (2 − 18)/2 = −8 ms, within δ/2 = 10 ms.
        let t1 = EPOCH_2025;
        let t2 = t1 + 2_000;
        let t3 = t2;
        let t4 = t3 + 18_000;
        let sample = ClockSample::from_timestamps(t1, t2, t3, t4).unwrap();
        assert_eq!(sample.offset_micros, -8_000);
        assert!(sample.offset_micros.unsigned_abs() <= sample.delay.as_micros() as u64 / 2);
    }

    #[test]
    fn inconsistent_timestamps_are_rejected() {
        // The remote claims 50 ms between receive and transmit in a 10 ms round trip.
        let t1 = EPOCH_2025;
        let err = ClockSample::from_timestamps(t1, t1 + 1_000, t1 + 51_000, t1 + 10_000);
        assert_eq!(
            err,
            Err(SampleError::NegativeDelay {
                delay_micros: -40_000
            })
        );

        let mut sync = ClockSync::default();
        let now = Instant::now();
        assert!(
            sync.add_timestamps(t1, t1 + 1_000, t1 + 51_000, t1 + 10_000, now)
                .is_err()
        );
        assert_eq!(sync.rejected(), 1);
        assert_eq!(sync.sample_count(), 0);
        assert!(sync.estimate(now).is_none());
    }

    #[test]
    fn garbage_timestamps_never_panic() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let edge = [0, 1, u64::MAX, u64::MAX - 1, i64::MAX as u64, 1 << 63];
        for _ in 0..10_000 {
            let pick = |rng: &mut Xoshiro256PlusPlus| {
                if rng.random_bool(0.3) {
                    edge[rng.random_range(0..edge.len())]
                } else {
                    rng.random()
                }
            };
            let (a, b, c, d) = (
                pick(&mut rng),
                pick(&mut rng),
                pick(&mut rng),
                pick(&mut rng),
            );
            if let Ok(s) = ClockSample::from_timestamps(a, b, c, d) {
                let mut sync = ClockSync::default();
                sync.add_sample(s, Instant::now());
                let _ = sync.remote_to_local_micros(pick(&mut rng));
                let mapping = sync.mapping(&SystemClock).unwrap();
                let _ = mapping.remote_to_instant(pick(&mut rng));
            }
        }
    }

    #[test]
    fn minimum_delay_sample_wins() {
        let mut sync = ClockSync::new(ClockSyncConfig {
            window: 4,
            ..Default::default()
        });
        let now = Instant::now();
        let samples = [(1_000, 30), (2_000, 10), (3_000, 20)];
        for (offset, delay_ms) in samples {
            sync.add_sample(
                ClockSample {
                    offset_micros: offset,
                    delay: Duration::from_millis(delay_ms),
                },
                now,
            );
        }
        assert_eq!(sync.offset_micros(), Some(2_000));
        assert_eq!(sync.rtt(), Some(Duration::from_millis(10)));
        // Three more samples push the 10 ms one out of the 4-sample window.
        for (offset, delay_ms) in [(4_000, 25), (5_000, 40), (6_000, 50)] {
            sync.add_sample(
                ClockSample {
                    offset_micros: offset,
                    delay: Duration::from_millis(delay_ms),
                },
                now,
            );
        }
        assert_eq!(sync.offset_micros(), Some(3_000));
    }

    #[test]
    fn old_samples_age_out_and_error_grows_with_age() {
        let mut sync = ClockSync::new(ClockSyncConfig {
            max_sample_age: Duration::from_secs(10),
            tolerance_ppm: 100,
            min_samples: 2,
            ..Default::default()
        });
        let start = Instant::now();
        sync.add_sample(
            ClockSample {
                offset_micros: 100,
                delay: Duration::from_millis(2),
            },
            start,
        );
        assert!(!sync.is_synced());
        assert_eq!(sync.next_ping_interval(), sync.config().fast_interval);
        let est = sync.estimate(start).unwrap();
        assert_eq!(est.error, Duration::from_micros(1_001));
        // 5 s later: dispersion adds 100 ppm × 5 s = 500 µs.
        let est = sync.estimate(start + Duration::from_secs(5)).unwrap();
        assert_eq!(est.error, Duration::from_micros(1_501));

        // A worse sample 11 s later replaces the best one, which is now too old.
        sync.add_sample(
            ClockSample {
                offset_micros: 900,
                delay: Duration::from_millis(8),
            },
            start + Duration::from_secs(11),
        );
        assert_eq!(sync.offset_micros(), Some(900));
        assert!(sync.is_synced());
        // The window lost its old sample: it is refilled at the fast pace.
        assert_eq!(sync.next_ping_interval(), sync.config().fast_interval);
    }

    #[test]
    fn pings_fast_until_the_window_is_full_then_at_the_resync_interval() {
        let mut sync = ClockSync::new(ClockSyncConfig {
            window: 4,
            min_samples: 2,
            ..Default::default()
        });
        let now = Instant::now();
        let sample = ClockSample {
            offset_micros: 0,
            delay: Duration::from_millis(1),
        };
        for n in 1..=4 {
            assert_eq!(
                sync.next_ping_interval(),
                sync.config().fast_interval,
                "{n}"
            );
            sync.add_sample(sample, now);
            assert_eq!(sync.is_synced(), n >= 2);
        }
        assert_eq!(sync.next_ping_interval(), sync.config().interval);
    }

    #[test]
    fn mapping_converts_remote_timestamps_both_ways() {
        let clock = TestClock::new(EPOCH_2025);
        let mut sync = ClockSync::default();
        sync.add_sample(
            ClockSample {
                offset_micros: 250_000,
                delay: Duration::from_millis(1),
            },
            clock.instant(),
        );
        assert_eq!(
            sync.remote_to_local_micros(EPOCH_2025 + 250_000),
            Some(EPOCH_2025)
        );
        assert_eq!(
            sync.local_to_remote_micros(EPOCH_2025),
            Some(EPOCH_2025 + 250_000)
        );

        let mapping = sync.mapping(&clock).unwrap();
        let base = clock.instant();
        // The remote read now+250 ms at this very instant.
        assert_eq!(mapping.remote_to_instant(EPOCH_2025 + 250_000), base);
        assert_eq!(
            mapping.remote_to_instant(EPOCH_2025 + 260_000),
            base + Duration::from_millis(10)
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            mapping.remote_to_instant(EPOCH_2025 + 240_000),
            base - Duration::from_millis(10)
        );
    }

    #[test]
    fn test_clocks_share_time_and_keep_their_offsets() {
        let a = TestClock::new(EPOCH_2025);
        let b = a.fork(250_000);
        assert_eq!(b.now_micros() - a.now_micros(), 250_000);
        let (ia, ib) = (a.instant(), b.instant());
        b.advance(Duration::from_millis(40));
        assert_eq!(a.now_micros(), EPOCH_2025 + 40_000);
        assert_eq!(a.instant() - ia, Duration::from_millis(40));
        assert_eq!(b.instant() - ib, Duration::from_millis(40));
        b.set_offset_micros(-5);
        assert_eq!(b.now_micros(), EPOCH_2025 + 40_000 - 5);
        assert_eq!(a.true_micros(), EPOCH_2025 + 40_000);

        let skewed = OffsetClock::new(a.clone(), -1_000);
        assert_eq!(skewed.now_micros(), EPOCH_2025 + 39_000);
        assert_eq!(skewed.instant(), a.instant());
        skewed.set_offset_micros(2_000);
        assert_eq!(skewed.offset_micros(), 2_000);
        assert_eq!(skewed.now_micros(), EPOCH_2025 + 42_000);
    }

    #[test]
    fn system_clock_is_plausible() {
        let c = SystemClock;
        let (w1, i1) = (c.now_micros(), c.instant());
        let (w2, i2) = (c.now_micros(), c.instant());
        assert!(w1 > EPOCH_2025 - 10 * 365 * 86_400_000_000);
        assert!(w2 >= w1 && i2 >= i1);
    }

    /// One simulated ping/pong through a path with the given one-way delays.
    fn exchange(
        local: &TestClock,
        remote: &TestClock,
        up: Duration,
        down: Duration,
    ) -> (u64, u64, u64, u64) {
        let t1 = local.now_micros();
        local.advance(up);
        let t2 = remote.now_micros();
        local.advance(Duration::from_micros(50));
        let t3 = remote.now_micros();
        local.advance(down);
        let t4 = local.now_micros();
        (t1, t2, t3, t4)
    }

    #[test]
    fn converges_within_2ms_under_skew_and_asymmetric_jitter() {
        const SKEW: i64 = 250_000;
        for seed in 0..20u64 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let local = TestClock::new(EPOCH_2025);
            let remote = local.fork(SKEW);
            let start = local.instant();
            let mut sync = ClockSync::default();
            while local.instant() - start < Duration::from_secs(3) {
                // Asymmetric: both directions have a 5 ms floor, but the uplink queues for an
                // exponentially distributed 4 ms on average (capped at 40 ms) while the
                // downlink adds at most 2 ms.
                let up_jitter = (-4_000.0 * (1.0 - rng.random::<f64>()).ln()).min(40_000.0);
                let down_jitter = rng.random::<f64>() * 2_000.0;
                let up = Duration::from_micros(5_000 + up_jitter as u64);
                let down = Duration::from_micros(5_000 + down_jitter as u64);
                let (t1, t2, t3, t4) = exchange(&local, &remote, up, down);
                sync.add_timestamps(t1, t2, t3, t4, local.instant())
                    .unwrap();
                // The estimator's own schedule: 10 Hz until synced, then 1 Hz.
                let gap = sync.next_ping_interval();
                local.advance(gap.saturating_sub(up + down));
            }
            let est = sync.estimate(local.instant()).unwrap();
            let error = (est.offset_micros - SKEW).unsigned_abs();
            assert!(error <= 2_000, "seed {seed}: offset error {error} µs");
            assert!(est.synced, "seed {seed}: not synced after 3 s");
            // The advertised bound holds.
            assert!(
                Duration::from_micros(error) <= est.error,
                "seed {seed}: error {error} µs above the bound {:?}",
                est.error
            );
        }
    }
}
