//! `telemetry-server`: the collector, on its own.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use echostream_example_telemetry::collector::{Collector, RateCommand, parse_rate};
use echostream_example_telemetry::telemetry::CollectorServer;
use echostream_runtime::Server;
use echostream_runtime::tls::ServerTls;

/// The EchoStream telemetry collector.
///
/// Devices (`telemetry-device`) connect, register, stream readings and vibration, and report
/// their status. With `--set-rate`, the collector asks each device for a new sampling rate
/// some time after it registers. Prints a table of what it received when it stops: at Ctrl-C,
/// or after `--seconds`.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The UDP address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:4434")]
    listen: SocketAddr,
    /// Ask each device to sample at this rate (1 to 200 Hz)...
    #[arg(long, value_parser = parse_rate)]
    set_rate: Option<u32>,
    /// ... this many milliseconds after it registers.
    #[arg(long, default_value_t = 1000)]
    after_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("telemetry-server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let command = args.set_rate.map(|hz| RateCommand {
        hz,
        after: Duration::from_millis(args.after_ms),
    });
    let collector = Arc::new(Collector::new(command));
    let server = Server::builder()
        .tls(ServerTls::self_signed(["localhost"])?)
        .service(CollectorServer::from_arc(collector.clone()))
        .bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = server.local_addr();
    let fingerprint = server.fingerprint();
    println!("collector listening on {addr}");
    println!("fingerprint {fingerprint}");
    println!(
        "devices connect with: telemetry-device --server {addr} --fingerprint {fingerprint} --id NAME"
    );

    match args.seconds {
        Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
        None => tokio::signal::ctrl_c().await?,
    }
    server.shutdown(Duration::from_secs(1)).await;
    println!("\n{}", collector.table());
    Ok(())
}
