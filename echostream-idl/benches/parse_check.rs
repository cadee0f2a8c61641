//! Parse + check of a large generated schema: 5,000 messages of 10 fields and 500 services of
//! 10 methods. Run with `cargo bench -p echostream-idl --bench parse_check`.
//!
//! A plain `harness = false` program timed with `std::time::Instant`: it reports the median and
//! the minimum of several runs, and keeps criterion's build out of the workspace.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use echostream_idl::{FileId, MemoryFs, compile_with, parse};

const MESSAGES: usize = 5_000;
const FIELDS: usize = 10;
const SERVICES: usize = 500;
const METHODS: usize = 10;
/// Timed runs per measurement; `ECHO_BENCH_RUNS` overrides (e.g. 1 under valgrind).
fn runs() -> usize {
    std::env::var("ECHO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15)
}

/// The schema: fields of every scalar kind, optional/repeated labels, maps, enums, and
/// references to other messages; services mixing rpc, event and stream methods with options.
fn schema() -> String {
    const TYPES: [&str; 8] = [
        "string", "uint64", "int32", "bool", "bytes", "double", "Level", "Msg0",
    ];
    let mut s = String::from("/// Generated benchmark schema.\npackage bench.v1;\n\n");
    s.push_str(
        "enum Level {\n  LEVEL_UNSPECIFIED = 0;\n  LEVEL_LOW = 1;\n  LEVEL_HIGH = 2;\n}\n\n",
    );
    for m in 0..MESSAGES {
        let _ = writeln!(s, "/// Message number {m}.\nmessage Msg{m} {{");
        for f in 0..FIELDS {
            let n = f + 1;
            match f {
                7 => {
                    let _ = writeln!(
                        s,
                        "  map<string, Msg{}> field_{f} = {n};",
                        (m + 1) % MESSAGES
                    );
                }
                8 => {
                    let _ = writeln!(s, "  repeated Msg{} field_{f} = {n};", (m + 7) % MESSAGES);
                }
                9 => {
                    let _ = writeln!(s, "  optional string field_{f} = {n} [deprecated = true];");
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "  {} field_{f} = {n}; // field {f}",
                        TYPES[f % TYPES.len()]
                    );
                }
            }
        }
        s.push_str("}\n\n");
    }
    for v in 0..SERVICES {
        let _ = writeln!(s, "/// Service number {v}.\nservice Service{v} {{");
        for k in 0..METHODS {
            let input = (v * METHODS + k) % MESSAGES;
            let output = (input + 1) % MESSAGES;
            let _ = match k % 3 {
                0 => writeln!(
                    s,
                    "  /// Method {k}.\n  rpc method_{k}(Msg{input}) returns (Msg{output}) [timeout_ms = 500, idempotent = true];"
                ),
                1 => writeln!(s, "  event method_{k}(Msg{input});"),
                _ => writeln!(
                    s,
                    "  stream method_{k}(Msg{input}) [delivery = datagram, jitter_ms = 40, max_frame_bytes = 65536];"
                ),
            };
        }
        s.push_str("}\n\n");
    }
    s
}

fn measure(mut run: impl FnMut()) -> (Duration, Duration) {
    run(); // warm-up
    let runs = runs();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[0])
}

fn main() {
    let text = schema();
    let lines = text.lines().count();
    println!(
        "schema: {MESSAGES} messages x {FIELDS} fields, {SERVICES} services x {METHODS} methods: {lines} lines, {} KiB",
        text.len() / 1024
    );
    let mut fs = MemoryFs::new();
    fs.insert("bench.echo", text.clone());

    // Sanity: the schema is valid and complete, so the figure measures real work.
    let compilation = compile_with(&fs, &["bench.echo"], &[] as &[&str]);
    assert!(
        !compilation.has_errors(),
        "{}",
        compilation.render_diagnostics(false)
    );
    let schema = compilation.schema.expect("no errors");
    assert_eq!(schema.messages().len(), MESSAGES);
    assert_eq!(schema.services().count(), SERVICES);

    let (median, min) = measure(|| {
        black_box(parse(FileId::default(), black_box(&text)).expect("parses"));
    });
    println!(
        "parse only:    median {:>7.1} ms   min {:>7.1} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        runs()
    );
    let (median, min) = measure(|| {
        let c = compile_with(&fs, &["bench.echo"], &[] as &[&str]);
        black_box(c.schema.expect("no errors"));
    });
    println!(
        "parse + check: median {:>7.1} ms   min {:>7.1} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        runs()
    );
}
