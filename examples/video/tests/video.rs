//! Runs the `video` binary briefly and checks its receiver's report: frames played on both
//! streams, the clock offset measured, the A/V skew; and with `--simulate`, losses.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a run may take (debug build on a busy machine).
const WAIT: Duration = Duration::from_secs(30);

/// Runs `video` with `args`; its standard output.
fn video(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_video"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start video");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("video {args:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `word` in `line` (`"played 85"` → 85; `"+250.0 ms"` → 250).
fn field(line: &str, word: &str) -> f64 {
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == word)
        .and_then(|_| words.next())
        .and_then(|n| n.trim_start_matches('+').parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

/// The final report's lines: video, audio, clock.
fn totals(stdout: &str) -> (String, String, String) {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[total]"))
        .map(str::to_owned);
    let mut next = || {
        lines
            .next()
            .unwrap_or_else(|| panic!("no final report in:\n{stdout}"))
    };
    (next(), next(), next())
}

#[test]
fn plays_both_streams_in_sync_and_measures_the_senders_clock() {
    let stdout = video(&["--seconds", "3", "--sender-clock-offset-ms", "250"]);
    // A report every second.
    for second in 1..=3 {
        assert!(
            stdout.contains(&format!("[  {second} s] video  received ")),
            "{stdout}"
        );
    }
    let (video, audio, clock) = totals(&stdout);
    // 3 s of 30 fps and 50 fps; a loaded machine may skip a few.
    assert!(field(&video, "played") >= 60.0, "{video}");
    assert!(field(&audio, "played") >= 100.0, "{audio}");
    assert_eq!(field(&video, "late"), 0.0, "{video}");
    assert_eq!(field(&video, "target"), 120.0, "{video}");
    // The sender's clock runs 250 ms ahead: the receiver measures it...
    let offset = field(&clock, "offset");
    assert!((235.0..=265.0).contains(&offset), "{clock}");
    assert!(clock.contains("synced"), "{clock}");
    // ...and still plays audio and video aligned on the capture clock.
    let skew = field(&clock, "skew");
    assert!(skew.abs() <= 20.0, "{clock}");
    // Both keyframes (~50 datagrams each) are sent; a loaded machine may lose one on loopback.
    let sender = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("sender"))
        .unwrap_or_else(|| panic!("no sender line in:\n{stdout}"));
    assert!(field(sender, "played") >= 1.0, "{stdout}");
}

#[test]
fn a_simulated_bad_network_shows_losses() {
    let stdout = video(&[
        "--seconds",
        "3",
        "--simulate",
        "--loss",
        "0.05",
        "--seed",
        "7",
    ]);
    assert!(
        stdout.contains("simulated network, each way: loss 5.0 %, delay 30 ms ± 10 ms (seed 7)"),
        "{stdout}"
    );
    let (video, audio, _) = totals(&stdout);
    // Datagrams are never retransmitted: lost ones show as lost frames (a video frame needs
    // every fragment: `incomplete`), and the rest still plays.
    assert!(
        field(&video, "lost") + field(&audio, "lost") > 0.0,
        "{stdout}"
    );
    assert!(field(&audio, "played") > 50.0, "{stdout}");
    assert!(field(&video, "played") > 20.0, "{stdout}");
    // Random loss is not congestion: what arrives is on time, nearly all of it.
    for stream in [&video, &audio] {
        assert!(
            field(stream, "late") <= 0.1 * field(stream, "received"),
            "{stdout}"
        );
    }
    let network = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("network"))
        .unwrap_or_else(|| panic!("no network line in:\n{stdout}"));
    assert!(field(network, "datagrams,") > 0.0, "{network}");
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_video"))
        .args(["--simulate", "--loss", "1.5"])
        .output()
        .expect("run video");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1.5 is not a probability (0 to 1)"),
        "{stderr}"
    );
}
