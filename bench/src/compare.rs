//! Interleaved rounds: raw quinn and EchoStream take turns doing the same work, so that bursts of
//! load from other processes on a shared machine fall on both alike; the ratio is the median of
//! the per-round ratios.

use std::time::Duration;

/// Which implementation a round runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Raw quinn.
    Raw,
    /// EchoStream.
    EchoStream,
}

/// One side's work for one round: how many units (calls, events, bytes, frames) were done, and
/// the time they took.
pub struct Round {
    /// Units of work completed.
    pub units: f64,
    /// Elapsed time of the round.
    pub elapsed: Duration,
}

impl Round {
    fn rate(&self) -> f64 {
        self.units / self.elapsed.as_secs_f64()
    }
}

/// A measurement run in rounds for both sides.
pub trait Work {
    /// Runs one round of `length` for `side`.
    async fn round(&mut self, side: Side, length: Duration) -> Round;
}

/// The result of a comparison: each side's overall rate (units per second) and the median of
/// the per-round ratios (EchoStream ÷ raw).
#[derive(Clone, Copy, Debug)]
pub struct Comparison {
    /// Raw quinn's units per second over all its rounds.
    pub raw: f64,
    /// EchoStream's units per second over all its rounds.
    pub echostream: f64,
    /// The median of the per-round ratios, EchoStream's rate over raw quinn's.
    pub ratio: f64,
}

/// Runs one warm-up round per side, then alternates rounds of `round` until each side has had
/// `total` of them (at least three rounds).
pub async fn compare(work: &mut impl Work, total: Duration, round: Duration) -> Comparison {
    work.round(Side::Raw, round).await;
    work.round(Side::EchoStream, round).await;
    let rounds = rounds(total, round);
    let (mut raw, mut es) = ((0.0, 0.0), (0.0, 0.0));
    let mut ratios = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Alternate which side goes first, so neither always follows the other's backlog.
        let (r, e) = if i % 2 == 0 {
            let r = work.round(Side::Raw, round).await;
            (r, work.round(Side::EchoStream, round).await)
        } else {
            let e = work.round(Side::EchoStream, round).await;
            (work.round(Side::Raw, round).await, e)
        };
        ratios.push(e.rate() / r.rate());
        raw = (raw.0 + r.units, raw.1 + r.elapsed.as_secs_f64());
        es = (es.0 + e.units, es.1 + e.elapsed.as_secs_f64());
    }
    Comparison {
        raw: raw.0 / raw.1,
        echostream: es.0 / es.1,
        ratio: median(&mut ratios),
    }
}

/// How many measured rounds each side runs: enough for `total`, and at least three.
pub fn rounds(total: Duration, round: Duration) -> usize {
    ((total.as_secs_f64() / round.as_secs_f64()).ceil() as usize).max(3)
}

/// The median of `values` (the upper one of an even count); NaN-safe ordering.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A side that does `rate` units per second, with one slow round for raw quinn (a burst of
    /// load from elsewhere): the median ratio ignores it, the overall rates do not.
    struct Fake {
        raw_rounds: usize,
    }

    impl Work for Fake {
        async fn round(&mut self, side: Side, length: Duration) -> Round {
            let rate = match side {
                Side::EchoStream => 900.0,
                Side::Raw => {
                    self.raw_rounds += 1;
                    if self.raw_rounds == 3 { 100.0 } else { 1000.0 }
                }
            };
            Round {
                units: rate * length.as_secs_f64(),
                elapsed: length,
            }
        }
    }

    #[tokio::test]
    async fn the_ratio_is_the_median_of_rounds() {
        let mut fake = Fake { raw_rounds: 0 };
        let c = compare(
            &mut fake,
            Duration::from_secs(1),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(fake.raw_rounds, 6, "one warm-up round and five measured");
        assert!((c.ratio - 0.9).abs() < 1e-9, "{c:?}");
        assert!((c.echostream - 900.0).abs() < 1e-9, "{c:?}");
        assert!(
            c.raw < 1000.0,
            "the slow round counts in the overall rate: {c:?}"
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
