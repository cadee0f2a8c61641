//! A CI-cheap smoke run of the suite: a debug build, tiny rounds, a few measurements, bounded in
//! time. It checks that the suite runs end to end, reports progress, and prints its table with
//! a figure and a ratio on every row. (The figures of a debug build mean nothing.)

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// Runs the suite with `args`, returning its exit status, stdout and stderr; killed after
/// [`LIMIT`].
fn suite(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echostream-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the suite starts");
    let started = Instant::now();
    // The output is small (a table), so the pipes cannot fill while we wait.
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the suite") {
            break status;
        }
        if started.elapsed() > LIMIT {
            child.kill().expect("killing the suite");
            child.wait().expect("reaping the suite");
            panic!("the suite ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

#[test]
fn a_quick_run_prints_its_table() {
    let (status, out, err) = suite(&[
        "--quick",
        "--only",
        "latency,rpc-16k,datagram-1k,memory",
        "--secs",
        "0.1",
        "--round-ms",
        "20",
        "--calls",
        "200",
        "--sessions",
        "10",
        "--idle-ms",
        "100",
    ]);
    assert!(status.success(), "{status}\n{out}\n{err}");

    // Progress: one numbered line per measurement, each with its time.
    for (i, title) in [
        "rpc latency",
        "rpc throughput, 16 KiB",
        "datagram stream, 1,000 B",
        "memory per idle session",
    ]
    .iter()
    .enumerate()
    {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("[{}/4] {title}", i + 1)))
            .unwrap_or_else(|| panic!("no progress line for {title}:\n{err}"));
        assert!(line.ends_with(" s"), "{line}");
    }

    // The table: a header, then one row per figure, each with both sides and a ratio.
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(
        rows[0], "| measurement | raw quinn | EchoStream | EchoStream ÷ raw |",
        "{out}"
    );
    let expected = [
        "rpc latency p50, 64 B, concurrency 1",
        "rpc latency p99, 64 B, concurrency 1",
        "rpc throughput, 16 KiB, concurrency 64",
        "datagram stream, 1,000 B frames",
        "memory per idle session, 10 sessions (both ends)",
    ];
    assert_eq!(rows.len(), 2 + expected.len(), "{out}");
    for (row, name) in rows[2..].iter().zip(expected) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "{row}");
        assert_eq!(cells[0], name, "{out}");
        for cell in &cells[1..3] {
            assert!(cell.starts_with(|c: char| c.is_ascii_digit()), "{row}");
        }
        let ratio: f64 = cells[3].trim_end_matches('x').parse().expect("a ratio");
        assert!(ratio > 0.0 && ratio.is_finite(), "{row}");
    }
    assert!(out.contains("load average"), "{out}");
}

#[test]
fn an_unknown_measurement_is_refused_with_the_names() {
    let (status, out, err) = suite(&["--only", "bogus"]);
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("invalid value 'bogus'"), "{err}");
    assert!(
        err.contains("datagram-100k"),
        "the valid names are listed: {err}"
    );
}
