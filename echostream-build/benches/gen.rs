//! `echoc gen` on the language's benchmark schema: 5,000 messages of 10 fields and 500 services
//! of 10 methods (the generator is `echostream-idl/benches/support/synthetic.rs`, shared with the
//! parse + check benchmark, so that both figures are for the same schema). Run with
//! `cargo bench -p echostream-build --bench gen`.
//!
//! It times the release `echoc` binary end to end (`echoc gen --out DIR bench.echo`: read,
//! parse, check, descriptors, prost-build, service code, formatting, writing), then the steps
//! in-process, and reports the median and minimum of several runs (`ECHO_BENCH_RUNS`, default 7).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../echostream-idl/benches/support/synthetic.rs"]
mod synthetic;

use synthetic::{FIELDS, MESSAGES, METHODS, SERVICES, schema};

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
    assert_eq!(code.matches("pub struct Msg").count(), MESSAGES);
    assert_eq!(code.matches("pub trait Service").count(), SERVICES);
    println!(
        "schema: {MESSAGES} messages x {FIELDS} fields, {SERVICES} services x {METHODS} methods: {} lines, {} KiB -> {} lines, {} KiB of Rust",
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
