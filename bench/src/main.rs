//! EchoStream's benchmark suite, one command:
//!
//! ```sh
//! cargo run --release -p echostream-bench            # everything, ~3 s per side per measurement
//! cargo run --release -p echostream-bench -- --quick # a smoke run in a few seconds
//! cargo run --release -p echostream-bench -- --only rpc-64b,events --secs 5
//! ```
//!
//! Each measurement runs raw quinn and EchoStream doing the same work in the same run, in
//! alternating rounds, and reports both and their ratio (the median of the per-round ratios);
//! then memory per idle session at 1,000 sessions. Progress goes to stderr; the result is a
//! markdown table on stdout, ready for `docs/benchmarks.md`.

mod compare;
mod events;
mod memory;
mod peers;
mod progress;
mod rpc;
mod streams;

use std::time::Duration;

use clap::{Parser, ValueEnum};

use compare::{Comparison, Side, compare};
use progress::Progress;
use streams::RawFrames;

/// The measurements, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Measurement {
    /// Unary rpc latency, 64 B, one call at a time: p50 and p99.
    Latency,
    /// Unary rpc throughput, 64 B, 64 callers.
    #[value(name = "rpc-64b")]
    Rpc64b,
    /// Unary rpc throughput, 16 KiB, 64 callers.
    #[value(name = "rpc-16k")]
    Rpc16k,
    /// Events of 64 B from one sender.
    Events,
    /// A reliable stream of 64 KiB frames.
    Stream,
    /// A datagram stream of 1,000 B frames.
    #[value(name = "datagram-1k")]
    Datagram1k,
    /// A datagram stream of 100 KB frames.
    #[value(name = "datagram-100k")]
    Datagram100k,
    /// A datagram stream of 1,000 B frames against raw quinn resending one frame's datagrams.
    #[value(name = "datagram-1k-resent")]
    Datagram1kResent,
    /// Memory per idle session at 1,000 sessions.
    Memory,
}

impl Measurement {
    fn title(self) -> &'static str {
        match self {
            Measurement::Latency => "rpc latency, 64 B, concurrency 1",
            Measurement::Rpc64b => "rpc throughput, 64 B, concurrency 64",
            Measurement::Rpc16k => "rpc throughput, 16 KiB, concurrency 64",
            Measurement::Events => "events, 64 B, one sender",
            Measurement::Stream => "reliable stream, 64 KiB frames",
            Measurement::Datagram1k => "datagram stream, 1,000 B frames",
            Measurement::Datagram100k => "datagram stream, 100 KB frames",
            Measurement::Datagram1kResent => {
                "datagram stream, 1,000 B frames, against one frame resent (quinn alone)"
            }
            Measurement::Memory => "memory per idle session",
        }
    }
}

/// EchoStream's benchmark suite: each measurement beside raw quinn doing the same work.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A short run for a smoke test: 0.3 s per side, 50 ms rounds, 1,000 latency calls,
    /// 100 sessions (each can still be set below).
    #[arg(long)]
    quick: bool,
    /// Only these measurements (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Measurement>,
    /// Seconds of each side per measurement [default: 3, or 0.3 with --quick].
    #[arg(long)]
    secs: Option<f64>,
    /// Length of one round in milliseconds [default: 200, or 50 with --quick].
    #[arg(long)]
    round_ms: Option<u64>,
    /// Sequential calls per side for the latency percentiles [default: 20000, or 1000 with
    /// --quick].
    #[arg(long)]
    calls: Option<usize>,
    /// Sessions opened for the memory measurement [default: 1000, or 100 with --quick].
    #[arg(long)]
    sessions: Option<usize>,
    /// How long sessions stay idle before memory is read, in milliseconds [default: 2000, or
    /// 300 with --quick].
    #[arg(long)]
    idle_ms: Option<u64>,
    /// Internal: run one side's memory probe in this process (`raw` or `echostream`).
    #[arg(long, hide = true)]
    memory_probe: Option<String>,
}

/// The settings a run uses, after defaults.
#[derive(Clone, Copy, Debug)]
struct Settings {
    total: Duration,
    round: Duration,
    calls: usize,
    sessions: usize,
    idle: Duration,
}

impl Args {
    fn settings(&self) -> Settings {
        let quick = self.quick;
        Settings {
            total: Duration::from_secs_f64(self.secs.unwrap_or(if quick { 0.3 } else { 3.0 })),
            round: Duration::from_millis(
                self.round_ms.unwrap_or(if quick { 50 } else { 200 }).max(1),
            ),
            calls: self
                .calls
                .unwrap_or(if quick { 1_000 } else { 20_000 })
                .max(1),
            sessions: self
                .sessions
                .unwrap_or(if quick { 100 } else { 1_000 })
                .max(1),
            idle: Duration::from_millis(self.idle_ms.unwrap_or(if quick { 300 } else { 2_000 })),
        }
    }
}

/// One line of the result table.
struct Row {
    what: String,
    raw: String,
    echostream: String,
    ratio: String,
}

fn main() {
    let args = Args::parse();
    let settings = args.settings();
    if let Some(side) = &args.memory_probe {
        let side = match side.as_str() {
            "raw" => Side::Raw,
            "echostream" => Side::EchoStream,
            other => {
                eprintln!("--memory-probe: expected raw or echostream, got {other}");
                std::process::exit(2);
            }
        };
        memory::probe(side, settings.sessions, settings.idle);
        return;
    }
    let plan: Vec<Measurement> = if args.only.is_empty() {
        Measurement::value_variants().to_vec()
    } else {
        Measurement::value_variants()
            .iter()
            .copied()
            .filter(|m| args.only.contains(m))
            .collect()
    };
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run with --release for figures worth reading");
    }
    let load_before = load_average();
    let mut progress = Progress::new(plan.len());
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let network: Vec<Measurement> = plan
        .iter()
        .copied()
        .filter(|m| *m != Measurement::Memory)
        .collect();
    if !network.is_empty() {
        peers::current_thread().block_on(async {
            let peers = peers::Peers::start().await;
            for m in network {
                progress.start(m.title());
                run(m, &peers, settings, &mut rows, &mut notes).await;
                progress.done();
            }
        });
    }
    if plan.contains(&Measurement::Memory) {
        progress.start(Measurement::Memory.title());
        let raw = memory::measure(Side::Raw, settings.sessions, settings.idle);
        let es = memory::measure(Side::EchoStream, settings.sessions, settings.idle);
        rows.push(Row {
            what: format!(
                "memory per idle session, {} sessions (both ends)",
                thousands(settings.sessions as f64)
            ),
            raw: kib(raw.per_session),
            echostream: kib(es.per_session),
            ratio: format!("{:.2}x", es.per_session / raw.per_session),
        });
        notes.push(format!(
            "memory: resident set before the sessions {} MiB raw, {} MiB EchoStream; {} sessions opened in {:.2} s raw, {:.2} s EchoStream",
            raw.before / (1 << 20),
            es.before / (1 << 20),
            settings.sessions,
            raw.connect.as_secs_f64(),
            es.connect.as_secs_f64()
        ));
        progress.done();
    }
    progress.finish();

    println!("| measurement | raw quinn | EchoStream | EchoStream ÷ raw |");
    println!("| --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} |",
            row.what, row.raw, row.echostream, row.ratio
        );
    }
    println!();
    println!(
        "Settings: {:.1} s per side per measurement in {} alternating rounds of {} ms (after one warm-up round each); {} latency calls per side; load average {} before, {} after.",
        settings.total.as_secs_f64(),
        compare::rounds(settings.total, settings.round),
        settings.round.as_millis(),
        settings.calls,
        load_before,
        load_average()
    );
    for note in notes {
        println!("- {note}");
    }
}

/// Runs one network measurement and adds its rows and notes.
async fn run(
    m: Measurement,
    peers: &peers::Peers,
    s: Settings,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) {
    match m {
        Measurement::Latency => {
            let caller = rpc::Caller::new(peers);
            let warmup = (s.calls / 10).max(10);
            let [[raw50, raw99], [es50, es99]] = rpc::latency(&caller, 64, warmup, s.calls).await;
            for (label, raw, es) in [("p50", raw50, es50), ("p99", raw99, es99)] {
                rows.push(Row {
                    what: format!("rpc latency {label}, 64 B, concurrency 1"),
                    raw: micros(raw),
                    echostream: micros(es),
                    ratio: format!("{:.2}x", es.as_secs_f64() / raw.as_secs_f64()),
                });
            }
        }
        Measurement::Rpc64b | Measurement::Rpc16k => {
            let size = if m == Measurement::Rpc64b {
                64
            } else {
                16 * 1024
            };
            let mut work = rpc::Throughput::new(rpc::Caller::new(peers), size);
            let c = compare(&mut work, s.total, s.round).await;
            rows.push(rate_row(m.title(), c, "calls/s", None));
        }
        Measurement::Events => {
            let mut work = events::Events::new(peers).await;
            let c = compare(&mut work, s.total, s.round).await;
            rows.push(rate_row(m.title(), c, "events/s", None));
            notes.push(format!(
                "events: EchoStream's sender met its full queue {} times and yielded for it to drain",
                work.full
            ));
        }
        Measurement::Stream => {
            let mut work = streams::Reliable::new(peers).await;
            let c = compare(&mut work, s.total, s.round).await;
            rows.push(Row {
                what: m.title().into(),
                raw: format!("{:.0} MB/s", c.raw / 1e6),
                echostream: format!("{:.0} MB/s", c.echostream / 1e6),
                ratio: format!("{:.2}x", c.ratio),
            });
        }
        Measurement::Datagram1k | Measurement::Datagram100k | Measurement::Datagram1kResent => {
            let (size, raw_frames) = match m {
                Measurement::Datagram100k => (100_000, RawFrames::CutAnew),
                Measurement::Datagram1kResent => (1_000, RawFrames::Resent),
                _ => (1_000, RawFrames::CutAnew),
            };
            let mut work = streams::Datagrams::new(peers, size, raw_frames).await;
            let c = compare(&mut work, s.total, s.round).await;
            work.finish();
            rows.push(rate_row(m.title(), c, "frames/s", Some(size)));
            notes.push(format!(
                "{}: {} datagram(s) per frame",
                m.title(),
                work.datagrams_per_frame()
            ));
        }
        Measurement::Memory => unreachable!("memory runs in child processes"),
    }
}

fn rate_row(what: &str, c: Comparison, unit: &str, frame_bytes: Option<usize>) -> Row {
    let show = |rate: f64| match frame_bytes {
        Some(bytes) => format!(
            "{} {unit} ({:.0} MB/s)",
            thousands(rate),
            rate * bytes as f64 / 1e6
        ),
        None => format!("{} {unit}", thousands(rate)),
    };
    Row {
        what: what.into(),
        raw: show(c.raw),
        echostream: show(c.echostream),
        ratio: format!("{:.2}x", c.ratio),
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// The 1-minute load average (Linux), or "?" elsewhere.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn quick_settings_and_overrides() {
        let s = Args::parse_from(["bench", "--quick"]).settings();
        assert_eq!(
            (s.round, s.calls, s.sessions),
            (Duration::from_millis(50), 1_000, 100)
        );
        let s =
            Args::parse_from(["bench", "--quick", "--secs", "1.5", "--sessions", "7"]).settings();
        assert_eq!((s.total, s.sessions), (Duration::from_millis(1_500), 7));
        let s = Args::parse_from(["bench"]).settings();
        assert_eq!(
            (s.total, s.calls, s.sessions),
            (Duration::from_secs(3), 20_000, 1_000)
        );
    }

    #[test]
    fn only_takes_a_comma_separated_list_and_refuses_unknown_names() {
        let a = Args::parse_from(["bench", "--only", "rpc-64b,datagram-100k"]);
        assert_eq!(a.only, [Measurement::Rpc64b, Measurement::Datagram100k]);
        let e = Args::try_parse_from(["bench", "--only", "bogus"]).unwrap_err();
        assert!(e.to_string().contains("possible values"), "{e}");
    }
}
