//! Keepalive: the ping/pong exchange on the control stream and the round-trip time measured from
//! it. A ping carries the sender's wall clock (t1); the pong adds the peer's receive (t2) and
//! transmit (t3) times; the pinger notes the arrival (t4). The four timestamps are NTP's, so each
//! completed exchange is also a clock sample for the session's [`ClockSync`](crate::clock::ClockSync).
//!
//! Timestamps are microseconds since the Unix epoch, read from the endpoint's
//! [`Clock`](crate::clock::Clock) as `u64`, and travel as protobuf `uint64` fields.

use std::time::Duration;

use crate::proto::v1::{Ping, Pong};

/// A ping to send now.
pub(crate) fn ping(now_us: u64) -> Ping {
    Ping { t1: now_us }
}

/// The answer to `ping`, received at `t2` and sent at `t3`.
pub(crate) fn pong(ping: &Ping, t2: u64, t3: u64) -> Pong {
    Pong {
        t1: ping.t1,
        t2,
        t3,
    }
}

/// One completed ping/pong exchange: NTP's four timestamps, in microseconds since the Unix
/// epoch (t1 and t4 on this side's clock, t2 and t3 on the peer's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PongSample {
    /// When the ping left (local clock).
    pub t1: u64,
    /// When the peer received it (peer's clock).
    pub t2: u64,
    /// When the peer sent the pong (peer's clock).
    pub t3: u64,
    /// When the pong arrived (local clock).
    pub t4: u64,
}

impl PongSample {
    /// The sample of `pong` arriving at `t4`.
    pub(crate) fn new(pong: &Pong, t4: u64) -> PongSample {
        PongSample {
            t1: pong.t1,
            t2: pong.t2,
            t3: pong.t3,
            t4,
        }
    }

    /// The network round trip: time away minus the time the peer held the ping, never negative.
    pub fn round_trip(&self) -> Duration {
        let away = self.t4.saturating_sub(self.t1);
        let held = self.t3.saturating_sub(self.t2);
        Duration::from_micros(away.saturating_sub(held))
    }
}

/// Smooths round-trip samples as TCP does (RFC 6298: 7/8 of the old estimate, 1/8 of the sample).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RttEstimator {
    smoothed: Option<Duration>,
}

impl RttEstimator {
    /// Takes in one sample.
    pub(crate) fn update(&mut self, sample: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        });
    }

    /// The smoothed round trip, once a sample arrived.
    pub(crate) fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_excludes_the_peers_holding_time_and_its_clock() {
        // Peer clock 1 s ahead; 10 ms each way; held 3 ms.
        let p = pong(&ping(1_000_000), 2_010_000, 2_013_000);
        let sample = PongSample::new(&p, 1_023_000);
        assert_eq!(sample.round_trip(), Duration::from_millis(20));
    }

    #[test]
    fn nonsense_timestamps_give_zero_not_a_panic() {
        let sample = PongSample {
            t1: 100,
            t2: 0,
            t3: u64::MAX,
            t4: 50,
        };
        assert_eq!(sample.round_trip(), Duration::ZERO);
    }

    #[test]
    fn smoothing_starts_at_the_first_sample_and_moves_by_an_eighth() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.smoothed(), None);
        rtt.update(Duration::from_millis(80));
        assert_eq!(rtt.smoothed(), Some(Duration::from_millis(80)));
        rtt.update(Duration::from_millis(160));
        assert_eq!(rtt.smoothed(), Some(Duration::from_millis(90)));
    }
}
