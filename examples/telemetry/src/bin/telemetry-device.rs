//! `telemetry-device`: one simulated device, on its own.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use echostream_example_telemetry::collector::parse_rate;
use echostream_example_telemetry::device::{self, DeviceControl};
use echostream_runtime::tls::Fingerprint;

/// A simulated EchoStream telemetry device.
///
/// Connects to a collector (`telemetry-server`), registers, and for `--seconds` sends
/// temperature and humidity readings on a reliable stream, vibration bursts as datagrams and
/// its status as events. The collector may change its sampling rate with an rpc at any time.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The collector's address.
    #[arg(long, default_value = "127.0.0.1:4434")]
    server: String,
    /// The SHA-256 fingerprint of the collector's certificate, as `telemetry-server` prints it.
    #[arg(long)]
    fingerprint: Fingerprint,
    /// The device's name (unique among the connected devices).
    #[arg(long, default_value = "dev-1")]
    id: String,
    /// The sampling rate at start, in readings per second (1 to 200).
    #[arg(long, default_value_t = 10, value_parser = parse_rate)]
    rate: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("telemetry-device: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let control = Arc::new(DeviceControl::new(args.id.clone(), args.rate));
    let (client, session) = device::connect(&args.server, args.fingerprint, &control)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.server))?;
    println!("{} connected to {}", args.id, args.server);
    let run = device::run(&session, &control, Duration::from_secs(args.seconds)).await;
    client.close().await;
    let r = run.map_err(|status| format!("{}: {}", status.code(), status.message()))?;
    println!(
        "{}: sent {} readings (collector confirmed {}), {} vibration bursts ({} dropped), \
         {} status events; final rate {} Hz",
        args.id,
        r.readings_sent,
        r.readings_confirmed,
        r.vibration_sent,
        r.vibration_dropped,
        r.status_sent,
        r.final_rate_hz
    );
    Ok(())
}
