//! A simulated device: [`DeviceControl`] answers the collector's commands, [`run`] samples the
//! sensors and streams what they read.

use std::sync::Arc;
use std::time::Duration;

use echostream_runtime::tls::{ClientTls, Fingerprint};
use echostream_runtime::{Client, Session, Status, async_trait};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::{SAMPLE_RATES, telemetry};

/// How many vibration bursts a device sends per second (32 samples each: 1.6 kHz).
pub const VIBRATION_FPS: u32 = 50;

/// Samples per vibration burst.
const VIBRATION_SAMPLES: usize = 32;

/// The device's side of `Device`: the rpc the collector calls. The rate it sets is watched by
/// [`run`]'s sampling loop, which changes pace at once.
pub struct DeviceControl {
    id: String,
    rate: watch::Sender<u32>,
}

impl DeviceControl {
    /// A device named `id` sampling at `hz` until told otherwise.
    pub fn new(id: impl Into<String>, hz: u32) -> DeviceControl {
        DeviceControl {
            id: id.into(),
            rate: watch::Sender::new(hz),
        }
    }

    /// The device's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[async_trait]
impl telemetry::Device for DeviceControl {
    async fn set_sample_rate(
        &self,
        _session: &Session,
        request: telemetry::SampleRate,
    ) -> Result<telemetry::SampleRate, Status> {
        if !SAMPLE_RATES.contains(&request.hz) {
            return Err(Status::invalid_argument(format!(
                "{} Hz is out of range ({} to {} Hz)",
                request.hz,
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            )));
        }
        let old = self.rate.send_replace(request.hz);
        println!(
            "{}: the collector changed the sample rate: {old} Hz -> {} Hz",
            self.id, request.hz
        );
        Ok(request)
    }
}

/// What a device did during [`run`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRun {
    /// Readings sent on the reliable stream.
    pub readings_sent: u64,
    /// Readings the collector confirmed having when the device said goodbye.
    pub readings_confirmed: u64,
    /// Vibration bursts sent as datagrams.
    pub vibration_sent: u64,
    /// Vibration bursts the runtime dropped before sending (congested path).
    pub vibration_dropped: u64,
    /// Status events sent.
    pub status_sent: u64,
    /// The sampling rate at the end.
    pub final_rate_hz: u32,
}

/// Registers the device on `session`, then for `duration` sends readings at the current rate
/// (reliable stream), vibration bursts (datagram stream) and a status every second (events);
/// finishes its streams and says goodbye. Errors are those of the collector's rpcs.
pub async fn run(
    session: &Session,
    control: &Arc<DeviceControl>,
    duration: Duration,
) -> Result<DeviceRun, Status> {
    let collector = telemetry::CollectorClient::new(session.clone());
    let mut rate = control.rate.subscribe();
    let hz = *rate.borrow_and_update();
    collector
        .register(telemetry::Hello {
            device_id: control.id.clone(),
            model: "sim-sensor-2".into(),
            sample_rate_hz: hz,
        })
        .await?;

    // Two streams, each with the delivery its schema declares: readings are all needed
    // (reliable), vibration is only worth having live (datagrams, never retransmitted).
    let readings = collector.readings().await?;
    let vibration = collector.vibration().await?;

    let mut sensors = Sensors::new(&control.id);
    let mut report = DeviceRun::default();
    let mut sample = rate_interval(hz);
    let mut burst = interval(Duration::from_secs(1) / VIBRATION_FPS);
    let mut status = interval(Duration::from_secs(1));
    let stop = tokio::time::sleep(duration);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = sample.tick() => {
                let reading = sensors.reading(report.readings_sent);
                // The frame carries its capture time; `send` only queues it.
                readings.send(&reading).await?;
                report.readings_sent += 1;
            }
            _ = burst.tick() => {
                // A lost or dropped burst is not worth sending again: the next one is newer.
                match vibration.send(sensors.vibration()).await {
                    Ok(()) => report.vibration_sent += 1,
                    Err(_) => report.vibration_dropped += 1,
                }
            }
            _ = status.tick() => {
                let hz = *rate.borrow();
                collector.status(sensors.status(hz, report.readings_sent)).await?;
                report.status_sent += 1;
            }
            Ok(()) = rate.changed() => {
                // The collector asked for another rate: change pace now, and say so.
                let hz = *rate.borrow_and_update();
                sample = rate_interval(hz);
                collector.status(sensors.status(hz, report.readings_sent)).await?;
                report.status_sent += 1;
            }
        }
    }
    // Finishing a reliable stream still delivers what is queued; the goodbye rpc then waits
    // for the collector to have every reading before the connection closes.
    readings.finish();
    vibration.finish();
    let farewell = collector
        .goodbye(telemetry::Goodbye {
            readings_sent: report.readings_sent,
        })
        .await?;
    report.readings_confirmed = farewell.readings_received;
    report.vibration_dropped += vibration.stats().dropped;
    report.final_rate_hz = *control.rate.borrow();
    Ok(report)
}

/// A ticker for `hz` readings a second that skips missed ticks rather than bursting.
fn rate_interval(hz: u32) -> tokio::time::Interval {
    let period = Duration::from_secs(1) / hz.max(1);
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// Made-up sensors: smooth curves with a little noise, different per device.
struct Sensors {
    started: std::time::Instant,
    noise: u64,
    phase: f64,
    battery: f64,
}

impl Sensors {
    fn new(id: &str) -> Sensors {
        // A seed from the device's name, so each device reads its own values.
        let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Sensors {
            started: std::time::Instant::now(),
            noise: seed | 1,
            phase: (seed % 628) as f64 / 100.0,
            battery: 100.0 - (seed % 30) as f64,
        }
    }

    /// A pseudo-random number in `-0.5..0.5` (xorshift).
    fn jitter(&mut self) -> f64 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        (self.noise % 1000) as f64 / 1000.0 - 0.5
    }

    fn reading(&mut self, index: u64) -> telemetry::Reading {
        let t = self.started.elapsed().as_secs_f64();
        telemetry::Reading {
            index,
            temperature_c: 21.0 + 2.0 * (t / 10.0 + self.phase).sin() + 0.2 * self.jitter(),
            humidity_pct: 45.0 + 5.0 * (t / 15.0 + self.phase).cos() + self.jitter(),
        }
    }

    fn vibration(&mut self) -> telemetry::Vibration {
        let t = self.started.elapsed().as_secs_f64();
        let samples = (0..VIBRATION_SAMPLES)
            .map(|i| {
                let s = t + i as f64 / 1600.0;
                (0.3 * (2.0 * std::f64::consts::PI * 120.0 * s).sin() + 0.02 * self.jitter()) as f32
            })
            .collect();
        telemetry::Vibration { samples }
    }

    fn status(&mut self, hz: u32, readings_sent: u64) -> telemetry::DeviceStatus {
        // Sampling faster drains the battery faster.
        self.battery = (self.battery - 0.05 * f64::from(hz).sqrt()).max(0.0);
        let mut status = telemetry::DeviceStatus {
            battery_pct: self.battery as u32,
            sample_rate_hz: hz,
            readings_sent,
            ..Default::default()
        };
        status.set_health(if self.battery < 20.0 {
            telemetry::Health::LowBattery
        } else {
            telemetry::Health::Ok
        });
        status
    }
}

/// Connects a device to the collector at `addr`, trusting the certificate of `fingerprint`.
/// The device's endpoint serves `Device`, so the collector can call `control` back.
pub async fn connect(
    addr: &str,
    fingerprint: Fingerprint,
    control: &Arc<DeviceControl>,
) -> Result<(Client, Session), echostream_runtime::Error> {
    let client = Client::builder()
        .tls(ClientTls::pinned(fingerprint))
        .service(telemetry::DeviceServer::from_arc(control.clone()))
        .build()
        .await?;
    let session = client.connect(addr, "localhost").await?;
    Ok((client, session))
}
