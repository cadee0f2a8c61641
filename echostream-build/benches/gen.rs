//! `echoc gen` on the language's benchmark schema: 5,000 messages of 10 fields and 500 services
//! of 10 methods (the generator below is a copy of `echostream-idl/benches/parse_check.rs`'s, so
//! that both figures are for the same schema). Run with
//! `cargo bench -p echostream-build --bench gen`.
//!
//! It times the release `echoc` binary end to end (`echoc gen --out DIR bench.echo`: read,
//! parse, check, descriptors, prost-build, service code, formatting, writing), then the steps
//! in-process, and reports the median and minimum of several runs (`ECHO_BENCH_RUNS`, default 7).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const MESSAGES: usize = 5_000;
const FIELDS: usize = 10;
const SERVICES: usize = 500;
const METHODS: usize = 10;

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

/// Timed runs per measurement; `ECHO_BENCH_RUNS` overrides (e.g. 1 under valgrind).
fn runs() -> usize {
    std::env::var("ECHO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(7)
}

/// Median and minimum of `runs()` timed runs after one warm-up.
fn measure(mut run: impl FnMut()) -> (Duration, Duration) {
    run();
    let mut times: Vec<Duration> = (0..runs())
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

fn report(what: &str, (median, min): (Duration, Duration)) {
    println!(
        "{what:<34} median {:>8.1} ms   min {:>8.1} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        runs()
    );
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-gen");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let schema_path = dir.join("bench.echo");
    let text = schema();
    std::fs::write(&schema_path, &text).expect("write the schema");
    let out = dir.join("out");

    // Sanity: the schema is valid and the output is complete, so the figures measure real work.
    let compilation = echostream_idl::compile(&[&schema_path], &[] as &[PathBuf]);
    assert!(
        !compilation.has_errors(),
        "{}",
        compilation.render_diagnostics(false)
    );
    let builder = echostream_build::configure().emit_cargo_directives(false);
    let files = builder.generate(&compilation).expect("generates");
    let bytes: usize = files.iter().map(|f| f.contents.len()).sum();
    let code = &files
        .iter()
        .find(|f| f.name == "bench.v1.rs")
        .expect("package file")
        .contents;
    assert_eq!(code.matches("pub struct Msg").count(), 5_000);
    assert_eq!(code.matches("pub trait Service").count(), 500);
    println!(
        "schema: 5000 messages x 10 fields, 500 services x 10 methods: {} lines, {} KiB -> {} lines, {} KiB of Rust",
        text.lines().count(),
        text.len() / 1024,
        code.lines().count(),
        bytes / 1024
    );

    let echoc = env!("CARGO_BIN_EXE_echoc");
    report(
        "echoc gen (process, end to end)",
        measure(|| {
            let status = Command::new(echoc)
                .arg("gen")
                .arg("--out")
                .arg(&out)
                .arg(&schema_path)
                .status()
                .expect("echoc runs");
            assert!(status.success());
        }),
    );
    report(
        "read + parse + check",
        measure(|| {
            black_box(echostream_idl::compile(&[&schema_path], &[] as &[PathBuf]));
        }),
    );
    report(
        "generate (descriptors to code)",
        measure(|| {
            black_box(builder.generate(&compilation).expect("generates"));
        }),
    );
}
