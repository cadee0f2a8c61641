//! Runs the demo binary as a user would (`cargo run -p echostream-demo`), bounded in time, and
//! checks what it printed: each step, the stream's statistics and the clock offset it found.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo takes about 3 s; a loaded CI machine gets ten times that before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// The demo's output, or a panic with whatever it printed if it failed or overran [`LIMIT`].
fn run_demo() -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echostream-demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            break status;
        }
        if started.elapsed() > LIMIT {
            child.kill().expect("killing the demo");
            child.wait().expect("reaping the demo");
            panic!("the demo ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "demo failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}

/// The numbers after each `label` on `line`, e.g. `received    99   played    98`.
fn number_after(line: &str, label: &str) -> i64 {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("no {label} in {line}"))
        + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '+' || *c == '-')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label} in {line}"))
}

fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"))
}

#[test]
fn the_demo_shows_every_kind_of_call_and_exits() {
    let out = run_demo();

    // Each step, in order.
    let steps = [
        "1. RPC, client → server",
        "2. RPC, server → client",
        "3. Events, both ways",
        "4. Datagram stream, client → server",
        "5. Clock sync",
        "Done in ",
    ];
    let mut at = 0;
    for step in steps {
        let found = out[at..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after byte {at} in:\n{out}"));
        at += found + step.len();
    }

    // Rpcs each way, with their answers, and the error of a bad request.
    line_with(&out, "\"welcome to the studio, ann\" (1 viewer)");
    line_with(&out, "error InvalidArgument: join needs a name");
    line_with(&out, "yes: true, \"rolling\"");

    // Events each way, the client's in the order sent.
    let chats: Vec<&str> = out.lines().filter(|l| l.contains("Studio.chat")).collect();
    assert_eq!(chats.len(), 3, "{out}");
    assert!(chats[0].ends_with("ann: hello everyone"), "{out}");
    assert!(chats[2].ends_with("ann: can you see me?"), "{out}");
    line_with(&out, "Viewer.notice  studio: ann is live");

    // The stream: every frame sent, some played, none played twice or out of thin air.
    assert_eq!(
        number_after(line_with(&out, "   sent "), "sent"),
        100,
        "{out}"
    );
    let counts = line_with(&out, "   received ");
    let (received, played) = (
        number_after(counts, "received"),
        number_after(counts, "played"),
    );
    assert!(played <= received && received <= 100, "{out}");
    // How many play depends on timing (a loaded machine makes frames late); some always do.
    assert!(played >= 10, "frames were played:\n{out}");
    let losses = line_with(&out, "   lost ");
    for label in ["lost", "late", "reordered", "duplicate", "incomplete"] {
        assert!(number_after(losses, label) >= 0, "{out}");
    }
    line_with(&out, "jitter buffer target 60.0 ms");

    // The clock offset found is the 250 ms the demo put on the client's clock, seen from both sides.
    let offset = |needle: &str| -> f64 {
        let line = line_with(&out, needle);
        let value = line[line.find(needle).unwrap() + needle.len()..]
            .split_whitespace()
            .next()
            .unwrap();
        value
            .parse()
            .unwrap_or_else(|_| panic!("no offset in {line}"))
    };
    let client_ahead = offset("server sees the client's clock ");
    let server_behind = offset("client sees the server's clock ");
    assert!((client_ahead - 250.0).abs() < 100.0, "{out}");
    assert!((server_behind + 250.0).abs() < 100.0, "{out}");
}
