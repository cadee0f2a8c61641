//! The README's quick start is this crate: its files are the README's code blocks, and the
//! program prints what the README says it prints.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The README's code blocks of the quick start section, in order.
fn quick_start_blocks() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("## Quick start")
        .expect("a quick start section");
    let end = start + readme[start..].find("\n## ").expect("a section after it");
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") && line.len() > 3 {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push(body.join("\n") + "\n");
        }
    }
    blocks
}

#[test]
fn the_files_are_the_readme_s() {
    let blocks = quick_start_blocks();
    for (file, text) in [
        ("schemas/hello.echo", include_str!("../schemas/hello.echo")),
        ("build.rs", include_str!("../build.rs")),
        ("src/main.rs", include_str!("../src/main.rs")),
    ] {
        assert!(
            blocks.iter().any(|b| b == text),
            "README.md's quick start has no code block equal to examples/hello/{file}"
        );
    }
}

#[test]
fn it_prints_what_the_readme_says() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hello");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hello did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello ann (pong to hub)"), "{stdout}");
    // Ten readings on loopback: all played, in order.
    let readings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('#'))
        .collect();
    assert_eq!(readings.len(), 10, "{stdout}");
    for (i, line) in readings.iter().enumerate() {
        let expected = format!("#{i} {:.1} °C (lost before: 0)", 20.0 + i as f64 / 10.0);
        assert_eq!(*line, expected, "{stdout}");
    }
    assert!(lines.iter().any(|l| l.starts_with("rtt Some(")), "{stdout}");
}
