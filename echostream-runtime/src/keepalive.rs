//! Keepalive: the ping/pong exchange on the control stream and the round-trip time measured from
//! it. A ping carries the sender's wall clock (t1); the pong adds the peer's receive (t2) and
//! transmit (t3) times; the pinger notes the arrival (t4). The four timestamps are NTP's, so each
//! completed exchange is also a clock sample for the session's [`ClockSync`](crate::clock::ClockSync).
//!
//! Timestamps are microseconds since the Unix epoch, read from the endpoint's
//! [`Clock`](crate::clock::Clock) as `u64`, and travel as protobuf `uint64` fields.

use std::collections::VecDeque;
use std::time::Duration;

use crate::proto::v1::{Ping, Pong};

/// How many unanswered pings are remembered; an older one's pong is ignored.
const PINGS_REMEMBERED: usize = 8;

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

/// The pings this side sent and the peer has not answered yet (the last few), so that only a
/// pong answering one of them is taken as a sample: an unsolicited or replayed pong would
/// otherwise poison the round-trip estimate and the clock sync (`protocol.md` lets a peer ignore
/// one; here it must be ignored).
#[derive(Debug, Default)]
pub(crate) struct PingsInFlight {
    sent: VecDeque<u64>,
}

impl PingsInFlight {
    /// Notes a ping leaving with origin time `t1`.
    pub(crate) fn sent(&mut self, t1: u64) {
        if self.sent.len() == PINGS_REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back(t1);
    }

    /// The sample of `pong` arriving at `t4`, if it answers a ping in flight (which it then
    /// consumes) with consistent timestamps and a round trip within `max_rtt`; `None` otherwise.
    pub(crate) fn answer(&mut self, pong: &Pong, t4: u64, max_rtt: Duration) -> Option<PongSample> {
        let at = self.sent.iter().position(|&t1| t1 == pong.t1)?;
        // Pings are answered in order: older ones still in flight never will be.
        self.sent.drain(..=at);
        let sample = PongSample::new(pong, t4);
        let consistent = t4 >= pong.t1
            && pong.t3 >= pong.t2
            && pong.t3 - pong.t2 <= t4 - pong.t1
            && sample.round_trip() <= max_rtt;
        consistent.then_some(sample)
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
    fn only_a_pong_answering_a_ping_in_flight_is_a_sample() {
        let max = Duration::from_secs(30);
        let mut pings = PingsInFlight::default();
        // Nothing sent: an unsolicited pong is ignored.
        assert_eq!(
            pings.answer(
                &Pong {
                    t1: 0,
                    t2: 0,
                    t3: 0
                },
                1_000,
                max
            ),
            None
        );
        pings.sent(1_000);
        pings.sent(2_000);
        // A pong for a ping never sent.
        let forged = Pong {
            t1: 1_500,
            t2: 1_600,
            t3: 1_600,
        };
        assert_eq!(pings.answer(&forged, 3_000, max), None);
        // The answer to the second ping: a sample, and the first ping is given up.
        let real = pong(&ping(2_000), 5_000, 5_100);
        let sample = pings.answer(&real, 2_300, max).expect("a sample");
        assert_eq!(sample.round_trip(), Duration::from_micros(200));
        // Replayed, or the first ping's late answer: ignored.
        assert_eq!(pings.answer(&real, 2_400, max), None);
        assert_eq!(
            pings.answer(&pong(&ping(1_000), 5_000, 5_000), 2_500, max),
            None
        );
    }

    #[test]
    fn inconsistent_or_absurd_pongs_are_not_samples() {
        let max = Duration::from_secs(1);
        let mut pings = PingsInFlight::default();
        // Arrived before it left (the local clock stepped back).
        pings.sent(10_000);
        assert_eq!(pings.answer(&pong(&ping(10_000), 0, 0), 9_000, max), None);
        // Held longer by the peer than it was away.
        pings.sent(10_000);
        assert_eq!(
            pings.answer(&pong(&ping(10_000), 0, 5_000), 11_000, max),
            None
        );
        // A round trip longer than the connection would have lived.
        pings.sent(10_000);
        assert_eq!(
            pings.answer(&pong(&ping(10_000), 0, 0), 2_010_000, max),
            None
        );
    }

    #[test]
    fn only_the_last_few_pings_are_remembered() {
        let mut pings = PingsInFlight::default();
        for t1 in 0..(PINGS_REMEMBERED as u64 + 1) {
            pings.sent(t1);
        }
        let max = Duration::from_secs(1);
        assert_eq!(pings.answer(&pong(&ping(0), 0, 0), 10, max), None);
        assert!(pings.answer(&pong(&ping(1), 0, 0), 10, max).is_some());
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
