//! Clock synchronisation over ping/pong, as sessions expose it: on plain loopback, and with one
//! peer's clock skewed behind a simulated path with asymmetric jitter.

use std::sync::Arc;
use std::time::Duration;

use echostream_runtime::clock::{ClockSyncConfig, OffsetClock, SystemClock};
use echostream_runtime::netsim::{LinkConfig, NetSimConfig};
use echostream_runtime::{Client, Config, Server, Session};

use crate::common::{eventually, pair, within};

const SKEW_US: i64 = 250_000;

/// The error of `session`'s offset estimate against `truth` (µs), once it is synced.
fn error_us(session: &Session, truth: i64) -> Option<u64> {
    let estimate = session.clock_sync()?;
    estimate
        .synced
        .then(|| (estimate.offset_micros - truth).unsigned_abs())
}

#[tokio::test]
async fn on_loopback_both_sides_agree_within_200_microseconds() {
    // Pings every 10 ms into a window of 64: on a loaded machine (the other tests run beside
    // this one) a sample that crossed loopback with little scheduling delay either way comes
    // sooner than with the default pace of 50 ms.
    let config = Config::default().clock_sync(ClockSyncConfig {
        window: 64,
        fast_interval: Duration::from_millis(10),
        ..ClockSyncConfig::default()
    });
    let p = pair(
        Server::builder()
            .config(config.clone())
            .clock(Arc::new(OffsetClock::new(SystemClock, SKEW_US))),
        Client::builder().config(config),
    )
    .await;
    // The server's clock reads 250 ms ahead of the client's: each side sees the other's offset.
    for (session, truth) in [(&p.to_server, SKEW_US), (&p.to_client, -SKEW_US)] {
        eventually("the offset is estimated within 0.2 ms", || {
            error_us(session, truth).is_some_and(|e| e <= 200)
        })
        .await;
        let estimate = session.clock_sync().unwrap();
        assert!(estimate.rtt < Duration::from_millis(50), "{estimate:?}");
        assert!(session.rtt().is_some());
    }
}

#[tokio::test]
async fn a_skewed_peer_behind_asymmetric_jitter_is_estimated_within_2ms_in_3s() {
    // Both directions have a 5 ms floor; the uplink jitters over 10 ms, the downlink over 2.
    let up = LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let down = LinkConfig {
        delay: Duration::from_millis(6),
        jitter: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let netsim = NetSimConfig {
        outbound: up,
        inbound: down,
        seed: 7,
    };
    let start = tokio::time::Instant::now();
    let p = pair(
        Server::builder().clock(Arc::new(OffsetClock::new(SystemClock, SKEW_US))),
        Client::builder().netsim(netsim),
    )
    .await;
    within(tokio::time::sleep_until(start + Duration::from_secs(3))).await;
    for (session, truth) in [(&p.to_server, SKEW_US), (&p.to_client, -SKEW_US)] {
        let estimate = session.clock_sync().expect("samples were taken");
        assert!(estimate.synced, "{estimate:?}");
        let error = (estimate.offset_micros - truth).unsigned_abs();
        assert!(error <= 2_000, "offset error {error} µs: {estimate:?}");
        // The advertised bound holds, and the round trip is the path's (10 ms floor at least).
        assert!(
            Duration::from_micros(error) <= estimate.error,
            "{estimate:?}"
        );
        assert!(estimate.rtt >= Duration::from_millis(10), "{estimate:?}");
    }
    let sim = p
        .client
        .netsim()
        .expect("the client runs on the simulator")
        .stats();
    assert!(sim.outbound.delivered > 0 && sim.inbound.delivered > 0);
}
