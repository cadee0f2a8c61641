//! The collector's side: [`Collector`] implements `Collector` and keeps a [`DeviceSummary`]
//! per device.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use echostream_runtime::{
    Played, ReceiveStats, Session, Status, StreamEnd, StreamInfo, async_trait,
};
use tokio::sync::Notify;

use crate::{SAMPLE_RATES, telemetry};

/// A command the collector sends each device some time after it registers.
#[derive(Clone, Copy, Debug)]
pub struct RateCommand {
    /// The sampling rate to ask for.
    pub hz: u32,
    /// How long after the device registered.
    pub after: Duration,
}

/// What the collector knows of one device.
#[derive(Clone, Debug, Default)]
pub struct DeviceSummary {
    /// The device's name.
    pub id: String,
    /// Readings received on the reliable stream.
    pub readings: u64,
    /// Readings received since the last rate the device applied, and since when.
    pub readings_since_rate: (u64, Option<Instant>),
    /// The last reading.
    pub last: telemetry::Reading,
    /// The vibration stream's receive statistics (frames received, played, lost...).
    pub vibration: ReceiveStats,
    /// Status events received.
    pub status_events: u64,
    /// The last status received.
    pub status: telemetry::DeviceStatus,
    /// Sampling rates the device confirmed applying at the collector's request.
    pub commands_applied: u32,
    /// When the device said goodbye, if it did.
    pub left_at: Option<Instant>,
}

impl DeviceSummary {
    /// Readings per second since the device applied its current rate (until it left), once a
    /// second has passed.
    pub fn measured_rate(&self) -> Option<f64> {
        let (count, since) = self.readings_since_rate;
        let until = self.left_at.unwrap_or_else(Instant::now);
        let elapsed = until.saturating_duration_since(since?).as_secs_f64();
        (elapsed >= 1.0).then(|| count as f64 / elapsed)
    }
}

/// The collector: implements `Collector`; optionally commands each device a new rate.
pub struct Collector {
    fleet: Arc<Fleet>,
    command: Option<RateCommand>,
}

#[derive(Default)]
struct Fleet {
    devices: Mutex<BTreeMap<String, DeviceSummary>>,
    /// Woken at every reading, for `goodbye` to wait for the last ones.
    reading: Notify,
}

impl Fleet {
    fn update<T>(&self, id: &str, f: impl FnOnce(&mut DeviceSummary) -> T) -> Option<T> {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.get_mut(id).map(f)
    }
}

/// The registered name of a session's device, kept in the session's state.
struct DeviceId(String);

/// The device name of the caller, or `UNAUTHENTICATED` before `register`.
fn device_id(session: &Session) -> Result<Arc<DeviceId>, Status> {
    session
        .state()
        .get::<DeviceId>()
        .ok_or_else(|| Status::unauthenticated("register first"))
}

impl Collector {
    /// A collector; with `command`, it asks each device for a new rate after a while.
    pub fn new(command: Option<RateCommand>) -> Collector {
        Collector {
            fleet: Arc::default(),
            command,
        }
    }

    /// What the collector knows of every device, by name.
    pub fn summaries(&self) -> Vec<DeviceSummary> {
        let devices = self.fleet.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.values().cloned().collect()
    }

    /// The summaries as a table, one row per device.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "device        readings   rate  measured  commands  vib.recv  vib.lost  status  battery  temp\n",
        );
        for d in self.summaries() {
            let measured = d
                .measured_rate()
                .map_or("-".to_owned(), |r| format!("{r:.1}"));
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}% {:>5.1}",
                d.id,
                d.readings,
                d.status.sample_rate_hz,
                measured,
                d.commands_applied,
                d.vibration.received,
                d.vibration.lost,
                d.status_events,
                d.status.battery_pct,
                d.last.temperature_c,
            );
        }
        out
    }

    /// Asks the device of `session` to sample at `command.hz`, `command.after` from now.
    fn schedule_command(&self, session: &Session, id: String, command: RateCommand) {
        let session = session.clone();
        let fleet = self.fleet.clone();
        tokio::spawn(async move {
            tokio::time::sleep(command.after).await;
            // The collector calls the device, on the connection the device opened.
            let device = telemetry::DeviceClient::new(session);
            let asked = telemetry::SampleRate { hz: command.hz };
            match device.set_sample_rate(asked).await {
                Ok(applied) => {
                    println!(
                        "{id}: sample rate set to {} Hz (command applied)",
                        applied.hz
                    );
                    fleet.update(&id, |d| {
                        d.commands_applied += 1;
                        d.readings_since_rate = (0, Some(Instant::now()));
                    });
                }
                Err(status) => println!("{id}: set_sample_rate failed: {status}"),
            }
        });
    }
}

#[async_trait]
impl telemetry::Collector for Collector {
    async fn register(
        &self,
        session: &Session,
        hello: telemetry::Hello,
    ) -> Result<telemetry::Registered, Status> {
        let id = hello.device_id.trim().to_owned();
        if id.is_empty() || id.len() > 32 {
            return Err(Status::invalid_argument(
                "a device id has 1 to 32 characters",
            ));
        }
        if session.state().get::<DeviceId>().is_some() {
            return Err(Status::failed_precondition("already registered"));
        }
        {
            let mut devices = self.fleet.devices.lock().unwrap_or_else(|e| e.into_inner());
            if devices.get(&id).is_some_and(|d| d.left_at.is_none()) {
                return Err(Status::failed_precondition(format!(
                    "a device {id} is already connected"
                )));
            }
            devices.insert(
                id.clone(),
                DeviceSummary {
                    id: id.clone(),
                    readings_since_rate: (0, Some(Instant::now())),
                    ..DeviceSummary::default()
                },
            );
        }
        session.state().insert(DeviceId(id.clone()));
        println!(
            "{id} registered: {} at {} Hz, from {}",
            hello.model,
            hello.sample_rate_hz,
            session.remote_address()
        );
        if let Some(command) = self.command {
            self.schedule_command(session, id, command);
        }
        Ok(telemetry::Registered {
            session_id: session.id(),
        })
    }

    async fn goodbye(
        &self,
        session: &Session,
        goodbye: telemetry::Goodbye,
    ) -> Result<telemetry::Farewell, Status> {
        let id = device_id(session)?;
        // The device finished its readings stream before saying goodbye: wait (bounded) for the
        // readings still on their way, so that the count it gets back is final.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let received = loop {
            let notified = self.fleet.reading.notified();
            let received = self.fleet.update(&id.0, |d| d.readings).unwrap_or(0);
            if received >= goodbye.readings_sent
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                break received;
            }
        };
        self.fleet
            .update(&id.0, |d| d.left_at = Some(Instant::now()));
        println!(
            "{} said goodbye: {received} of {} readings received",
            id.0, goodbye.readings_sent
        );
        Ok(telemetry::Farewell {
            readings_received: received,
        })
    }

    async fn status(&self, session: &Session, status: telemetry::DeviceStatus) {
        let Ok(id) = device_id(session) else { return };
        if status.health() == telemetry::Health::LowBattery {
            println!("{}: low battery ({}%)", id.0, status.battery_pct);
        }
        self.fleet.update(&id.0, |d| {
            d.status_events += 1;
            d.status = status;
        });
    }

    async fn readings(
        &self,
        session: &Session,
        _stream: &StreamInfo,
        reading: Played<telemetry::Reading>,
    ) {
        let Ok(id) = device_id(session) else { return };
        self.fleet.update(&id.0, |d| {
            d.readings += 1;
            d.readings_since_rate.0 += 1;
            d.last = reading.payload;
        });
        self.fleet.reading.notify_waiters();
    }

    async fn on_readings_end(&self, session: &Session, _stream: &StreamInfo, end: StreamEnd) {
        if let (Ok(id), false) = (device_id(session), end == StreamEnd::Finished) {
            println!("{}: readings stream ended early: {end:?}", id.0);
        }
    }

    async fn vibration(
        &self,
        session: &Session,
        stream: &StreamInfo,
        _frame: Played<telemetry::Vibration>,
    ) {
        // A real collector would run an FFT here; this one keeps the stream's statistics, which
        // count what never arrived (datagrams are not retransmitted).
        let Ok(id) = device_id(session) else { return };
        self.fleet.update(&id.0, |d| d.vibration = stream.stats());
    }

    async fn on_vibration_end(&self, session: &Session, stream: &StreamInfo, _end: StreamEnd) {
        let Ok(id) = device_id(session) else { return };
        self.fleet.update(&id.0, |d| d.vibration = stream.stats());
    }
}

/// Reads a sampling rate asked for on the command line (a clap value parser).
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let hz = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if SAMPLE_RATES.contains(&hz) {
        Ok(hz)
    } else {
        Err(format!(
            "{hz} Hz is out of range: {} to {} Hz",
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        ))
    }
}
