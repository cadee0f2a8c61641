//! `telemetry`: a collector and N simulated devices in one process, on loopback.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use echostream_example_telemetry::collector::{Collector, RateCommand, parse_rate};
use echostream_example_telemetry::device::{self, DeviceControl};
use echostream_example_telemetry::telemetry::CollectorServer;
use echostream_runtime::Server;
use echostream_runtime::tls::ServerTls;
use tokio::task::JoinSet;

/// EchoStream IoT telemetry demo: a collector and simulated devices on loopback.
///
/// Each device connects over QUIC, registers (rpc), sends sensor readings on a reliable stream
/// and vibration bursts on a datagram stream, and reports its status (events). After a while the
/// collector asks every device, with an rpc on the device's own connection, to sample at
/// another rate; the devices apply it. At the end: what each side counted.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How many devices to simulate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=200))]
    devices: u32,
    /// How long the devices run, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// The devices' sampling rate at start, in readings per second (1 to 200).
    #[arg(long, default_value_t = 10, value_parser = parse_rate)]
    rate: u32,
    /// The rate the collector then asks for (1 to 200).
    #[arg(long, default_value_t = 25, value_parser = parse_rate)]
    new_rate: u32,
    /// When the collector asks for it, in milliseconds after a device registers.
    #[arg(long, default_value_t = 2000)]
    command_after_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("telemetry: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; `Ok(false)` if a device failed.
async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let command = RateCommand {
        hz: args.new_rate,
        after: Duration::from_millis(args.command_after_ms),
    };
    let collector = Arc::new(Collector::new(Some(command)));
    let server = Server::builder()
        .tls(ServerTls::self_signed(["localhost"])?)
        .service(CollectorServer::from_arc(collector.clone()))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr().to_string();
    println!(
        "collector on {addr}; {} devices for {} s at {} Hz; {} Hz asked after {} ms",
        args.devices, args.seconds, args.rate, args.new_rate, args.command_after_ms
    );

    // Every device is its own client endpoint (its own UDP socket), as real devices would be.
    let mut devices = JoinSet::new();
    for n in 1..=args.devices {
        let control = Arc::new(DeviceControl::new(format!("dev-{n}"), args.rate));
        let (addr, fingerprint) = (addr.clone(), server.fingerprint());
        let duration = Duration::from_secs(args.seconds);
        devices.spawn(async move {
            let result = async {
                let (client, session) = device::connect(&addr, fingerprint, &control)
                    .await
                    .map_err(|e| e.to_string())?;
                let run = device::run(&session, &control, duration).await;
                client.close().await;
                run.map_err(|status| status.to_string())
            }
            .await;
            (control.id().to_owned(), result)
        });
    }

    // A line a second while they run.
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut results = Vec::new();
    let mut elapsed = 0;
    while results.len() < args.devices as usize {
        tokio::select! {
            Some(done) = devices.join_next() => results.push(done?),
            _ = ticker.tick() => {
                elapsed += 1;
                let fleet = collector.summaries();
                let sum = |f: fn(&echostream_example_telemetry::collector::DeviceSummary) -> u64| {
                    fleet.iter().map(f).sum::<u64>()
                };
                println!(
                    "[{elapsed:>3} s] devices {}  readings {}  vibration {} (lost {})  status {}",
                    fleet.iter().filter(|d| d.left_at.is_none()).count(),
                    sum(|d| d.readings),
                    sum(|d| d.vibration.received),
                    sum(|d| d.vibration.lost),
                    sum(|d| d.status_events),
                );
            }
        }
    }

    println!();
    let mut all_ok = true;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, result) in results {
        match result {
            Ok(r) => println!(
                "{id}: sent {} readings (collector confirmed {}), {} vibration bursts \
                 ({} dropped), {} status events; final rate {} Hz",
                r.readings_sent,
                r.readings_confirmed,
                r.vibration_sent,
                r.vibration_dropped,
                r.status_sent,
                r.final_rate_hz
            ),
            Err(error) => {
                all_ok = false;
                println!("{id}: failed: {error}");
            }
        }
    }
    println!("\ncollector's view:\n{}", collector.table());
    server.shutdown(Duration::from_secs(1)).await;
    Ok(all_ok)
}
