//! `video`: a synthetic camera streaming to a viewer, in one process on loopback.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use echostream_example_video::{sender, video, viewer::Viewer};
use echostream_runtime::clock::{OffsetClock, SystemClock};
use echostream_runtime::netsim::{LinkConfig, NetSimConfig};
use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, Server};

/// EchoStream live media demo: 30 fps video and 50 fps audio over QUIC datagrams.
///
/// A sender streams synthetic video (a ~60 KB keyframe every 2 s, ~5 KB deltas: fragmented
/// into datagrams) and audio (~200 B frames) to a receiver, which plays both out through
/// jitter buffers. Once a second the receiver prints each stream's jitter buffer statistics,
/// the estimated offset between the two peers' clocks, and the A/V skew. With `--simulate`
/// the sender's traffic crosses a simulated bad network.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How long to stream, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Run over the network simulator (loss, delay and jitter both ways).
    #[arg(long)]
    simulate: bool,
    /// With --simulate: the probability that a datagram is lost (0 to 1).
    #[arg(long, default_value_t = 0.05, value_parser = probability)]
    loss: f64,
    /// With --simulate: the one-way delay, in milliseconds.
    #[arg(long, default_value_t = 30)]
    delay_ms: u64,
    /// With --simulate: the delay's random variation, ± this many milliseconds (datagrams keep
    /// their order, as through a router's queue).
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
    /// With --simulate: the seed of the simulator's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Make the sender's clock run this many milliseconds ahead (negative: behind), to see the
    /// receiver measure the offset and still play in sync.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    sender_clock_offset_ms: i64,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability (0 to 1)"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("video: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // The receiver: a server serving `Media`.
    let viewer = Arc::new(Viewer::default());
    let server = Server::builder()
        .tls(ServerTls::self_signed(["localhost"])?)
        .service(video::MediaServer::from_arc(viewer.clone()))
        .bind("127.0.0.1:0")
        .await?;

    // The sender: a client, whose clock may be set wrong on purpose, and whose socket may be a
    // simulated bad network (both directions of the connection cross it).
    let offset_us = args.sender_clock_offset_ms.saturating_mul(1000);
    let mut sender = Client::builder()
        .tls(ClientTls::pinned(server.fingerprint()))
        .clock(Arc::new(OffsetClock::new(SystemClock, offset_us)));
    if args.simulate {
        let link = LinkConfig {
            loss: args.loss,
            delay: Duration::from_millis(args.delay_ms),
            jitter: Duration::from_millis(args.jitter_ms),
            ..LinkConfig::default()
        };
        println!(
            "simulated network, each way: loss {:.1} %, delay {} ms ± {} ms (seed {})",
            args.loss * 100.0,
            args.delay_ms,
            args.jitter_ms,
            args.seed
        );
        sender = sender.netsim(NetSimConfig::symmetric(link, args.seed));
    }
    let client = sender.build().await?;
    let session = client.connect(server.local_addr(), "localhost").await?;
    println!(
        "streaming {} s: video {} fps (keyframe ~{} KB every {} frames, deltas ~{} KB), audio {} fps (~{} B); sender clock {:+} ms",
        args.seconds,
        sender::VIDEO_FPS,
        sender::KEYFRAME_BYTES / 1000,
        sender::KEYFRAME_EVERY,
        sender::DELTA_BYTES / 1000,
        sender::AUDIO_FPS,
        sender::AUDIO_BYTES,
        args.sender_clock_offset_ms
    );

    let sending = tokio::spawn({
        let session = session.clone();
        let duration = Duration::from_secs(args.seconds);
        async move { sender::run(&session, duration).await }
    });

    // The receiver's report, once a second while the sender runs.
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    for second in 1..=args.seconds {
        ticker.tick().await;
        print!("{}", viewer.report().render(&format!("[{second:>3} s]")));
    }
    let sent = sending.await??;
    // Let the jitter buffers play out what they hold (the target is 120 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!();
    let report = viewer.report();
    print!("{}", report.render("[total]"));
    println!(
        "        sender  video sent {} dropped {}  audio sent {} dropped {}  datagrams {}  keyframes played {}",
        sent.video.sent,
        sent.video.dropped,
        sent.audio.sent,
        sent.audio.dropped,
        sent.video.datagrams + sent.audio.datagrams,
        report.keyframes
    );
    if let Some(sim) = client.netsim() {
        let s = sim.stats();
        println!(
            "        network  sender->receiver {} datagrams, {} lost  receiver->sender {} datagrams, {} lost",
            s.outbound.datagrams, s.outbound.dropped, s.inbound.datagrams, s.inbound.dropped
        );
    }
    client.close().await;
    server.shutdown(Duration::from_millis(500)).await;
    Ok(())
}
