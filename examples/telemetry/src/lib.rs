//! The telemetry example: IoT devices and the collector they report to, from one schema,
//! `schemas/telemetry.echo`.
//!
//! - [`collector::Collector`] implements the generated `Collector` trait: it registers devices,
//!   takes their readings (a reliable stream), their live vibration (a datagram stream) and their
//!   status events, and commands them with the `Device.set_sample_rate` rpc.
//! - [`device`] is a simulated device: [`device::DeviceControl`] implements the generated
//!   `Device` trait (the rpc the collector calls), and [`device::run`] samples its sensors and
//!   sends what they read, at the rate last asked for.
//!
//! The binaries: `telemetry` runs a collector and N devices in one process on loopback and
//! prints a summary; `telemetry-server` and `telemetry-device` run them apart.

pub mod collector;
pub mod device;

/// The code generated from `schemas/telemetry.echo` by `build.rs`.
pub mod schema {
    echostream_runtime::include_schemas!();
}

pub use schema::telemetry::v1 as telemetry;

/// The sampling rates a device accepts, in readings per second.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1..=200;
