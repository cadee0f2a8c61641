//! Runs the telemetry binaries briefly on loopback and checks what they printed: readings on
//! the reliable stream (all of them), vibration on the datagram stream, status events, and the
//! collector's rate command applied by every device.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The longest any run may take (debug build on a busy machine).
const WAIT: Duration = Duration::from_secs(30);

/// Runs `exe` with `args` to completion, killing it after [`WAIT`].
fn run(exe: &str, args: &[&str]) -> Output {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{exe} {args:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The row of `device` in the collector's table, as numbers (the last column is a float).
fn row(table: &str, device: &str) -> Vec<f64> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(device))
        .unwrap_or_else(|| panic!("no row for {device} in:\n{table}"));
    line.split_whitespace()
        .skip(1)
        .map(|cell| cell.trim_end_matches('%').parse().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn devices_stream_on_both_streams_and_apply_the_collectors_command() {
    let out = run(
        env!("CARGO_BIN_EXE_telemetry"),
        &[
            "--devices",
            "3",
            "--seconds",
            "3",
            "--rate",
            "10",
            "--new-rate",
            "40",
            "--command-after-ms",
            "1000",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout
        .split("collector's view:")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    for device in ["dev-1", "dev-2", "dev-3"] {
        // The device applied the rate the collector asked for, with an rpc on its connection.
        assert!(
            stdout.contains(&format!(
                "{device}: the collector changed the sample rate: 10 Hz -> 40 Hz"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "{device}: sample rate set to 40 Hz (command applied)"
            )),
            "{stdout}"
        );
        // Columns: readings, rate, measured, commands, vib.recv, vib.lost, status, battery, temp.
        let r = row(table, device);
        let (readings, rate, commands, vibration, status) = (r[0], r[1], r[3], r[4], r[6]);
        // 1 s at 10 Hz then 2 s at 40 Hz is 90; timers on a loaded machine run late.
        assert!(
            (30.0..=100.0).contains(&readings),
            "{device}: {readings} readings\n{stdout}"
        );
        assert_eq!(rate, 40.0, "{stdout}");
        assert_eq!(commands, 1.0, "{stdout}");
        assert!(
            vibration >= 30.0,
            "{device}: {vibration} vibration bursts\n{stdout}"
        );
        assert!(status >= 2.0, "{device}: {status} status events\n{stdout}");
        // Every reading sent on the reliable stream was received: the device's own line.
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{device}: sent ")))
            .unwrap_or_else(|| panic!("no report of {device} in:\n{stdout}"));
        let sent = format!("sent {readings} readings (collector confirmed {readings})");
        assert!(line.contains(&sent), "{line}");
        assert!(line.ends_with("final rate 40 Hz"), "{line}");
    }
}

/// The lines a running process prints, read on a thread.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn server_and_device_run_apart() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_telemetry-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--set-rate",
            "20",
            "--after-ms",
            "300",
        ])
        .args(["--seconds", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let lines = lines_of(&mut server);
    let next = || {
        lines
            .recv_timeout(WAIT)
            .expect("the server prints its address and fingerprint")
    };
    let addr = next().rsplit(' ').next().expect("address").to_owned();
    let fingerprint = next()["fingerprint ".len()..].to_owned();

    let device = run(
        env!("CARGO_BIN_EXE_telemetry-device"),
        &[
            "--server",
            &addr,
            "--fingerprint",
            &fingerprint,
            "--id",
            "pump-7",
            "--seconds",
            "2",
        ],
    );
    let printed = String::from_utf8_lossy(&device.stdout);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        device.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&device.stderr)
    );
    assert!(
        printed.contains("pump-7: the collector changed the sample rate: 10 Hz -> 20 Hz"),
        "{printed}"
    );
    assert!(printed.contains("final rate 20 Hz"), "{printed}");
    let sent = printed
        .split("sent ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count of readings in:\n{printed}"));
    assert!(sent > 10, "{printed}");
    assert!(
        printed.contains(&format!("(collector confirmed {sent})")),
        "{printed}"
    );
    let server_saw: Vec<String> = lines.try_iter().collect();
    assert!(
        server_saw
            .iter()
            .any(|l| l == &format!("pump-7 said goodbye: {sent} of {sent} readings received")),
        "{server_saw:?}"
    );
}

#[test]
fn bad_arguments_and_unreachable_collectors_are_reported() {
    let out = run(env!("CARGO_BIN_EXE_telemetry"), &["--rate", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0 Hz is out of range: 1 to 200 Hz"),
        "{stderr}"
    );

    // An address that does not resolve: the device says which and exits with an error.
    let fingerprint = ["00"; 32].join(":");
    let out = run(
        env!("CARGO_BIN_EXE_telemetry-device"),
        &["--server", "not a host", "--fingerprint", &fingerprint],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("telemetry-device: cannot connect to not a host"),
        "{stderr}"
    );
}
