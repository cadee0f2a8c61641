//! Parse + check of a large generated schema: 5,000 messages of 10 fields and 500 services of
//! 10 methods. Run with `cargo bench -p echostream-idl --bench parse_check`.
//!
//! A plain `harness = false` program timed with `std::time::Instant`: it reports the median and
//! the minimum of several runs, and keeps criterion's build out of the workspace.

use std::hint::black_box;
use std::time::{Duration, Instant};

use echostream_idl::{FileId, MemoryFs, compile_with, parse};

#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{FIELDS, MESSAGES, METHODS, SERVICES, schema};

/// Timed runs per measurement; `ECHO_BENCH_RUNS` overrides (e.g. 1 under valgrind).
fn runs() -> usize {
    std::env::var("ECHO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(15)
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
