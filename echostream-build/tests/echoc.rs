//! The `echoc` binary: exit codes, what it prints, and what it changes on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALID: &str = "package chat.v1;\n\nmessage Ping {\n  uint64 id = 1;\n}\n";
const UNFORMATTED: &str = "package chat.v1;\nmessage Ping{uint64 id=1;}\n";

/// A fresh directory for one test, under cargo's scratch directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("echoc")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create directory");
    }
    std::fs::write(&path, text).expect("write file");
    path
}

fn echoc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoc"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("echoc runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

#[test]
fn check_passes_a_valid_schema_silently() {
    let dir = scratch("check_valid");
    write(&dir, "chat.echo", VALID);
    let out = echoc(&dir, &["check", "chat.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out), "");
}

#[test]
fn check_reports_errors_with_location_snippet_and_exit_1() {
    let dir = scratch("check_errors");
    write(
        &dir,
        "chat.echo",
        "package chat.v1;\n\nmessage Message {}\n\nmessage Thread {\n  Mesage first = 1;\n  string name = 1;\n}\n",
    );
    let out = echoc(&dir, &["check", "chat.echo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let expected = "\
chat.echo:6:3: error: unknown type `Mesage`
  --> chat.echo:6:3
  |
6 |   Mesage first = 1;
  |   ^^^^^^ not a message or enum in scope
  |
  = help: did you mean `Message`?

chat.echo:7:17: error: field number 1 is already used by field `first`
  --> chat.echo:7:17
  |
6 |   Mesage first = 1;
  |                  - first used here
7 |   string name = 1;
  |                 ^ used again here
  |
  = help: every field of a message needs its own number

2 errors in 1 file checked
";
    assert_eq!(err, expected);
    assert!(
        !err.contains('\x1b'),
        "no colour when stderr is not a terminal"
    );
}

#[test]
fn check_prints_warnings_but_exits_0() {
    let dir = scratch("check_warnings");
    write(
        &dir,
        "chat.echo",
        "package chat.v1;\n\nmessage Ping {}\n\nservice Pinger {\n  rpc Ping(Ping) returns (Ping);\n}\n",
    );
    let out = echoc(&dir, &["check", "chat.echo"]);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.starts_with("chat.echo:6:7: warning: method name `Ping` should be snake_case\n"),
        "{err}"
    );
    assert!(err.ends_with("1 warning in 1 file checked\n"), "{err}");
}

#[test]
fn check_resolves_imports_through_include_directories() {
    let dir = scratch("check_include");
    write(
        &dir,
        "schemas/chat.echo",
        "package chat.v1;\n\nimport \"common/time.echo\";\n\nmessage Ping {\n  common.Time at = 1;\n}\n",
    );
    write(
        &dir,
        "shared/common/time.echo",
        "package common;\n\nmessage Time {\n  uint64 micros = 1;\n}\n",
    );
    let without = echoc(&dir, &["check", "schemas/chat.echo"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        stderr(&without).starts_with(
            "schemas/chat.echo:3:8: error: cannot find `common/time.echo` in the include directories\n"
        ),
        "{}",
        stderr(&without)
    );
    let with = echoc(
        &dir,
        &[
            "check",
            "-I",
            "schemas",
            "-I",
            "shared",
            "schemas/chat.echo",
        ],
    );
    assert_eq!(with.status.code(), Some(0), "{}", stderr(&with));
    assert_eq!(stderr(&with), "");
}

#[test]
fn check_reports_every_file_and_unreadable_ones() {
    let dir = scratch("check_many");
    write(&dir, "a.echo", "package a;\nmessage A { string }\n");
    write(&dir, "b.echo", "message B {}\n");
    let out = echoc(&dir, &["check", "a.echo", "b.echo", "missing.echo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("a.echo:2:20: error: expected a field name, found `}`\n"),
        "{err}"
    );
    assert!(
        err.contains("b.echo:1:1: error: missing `package` declaration\n"),
        "{err}"
    );
    assert!(
        err.contains("missing.echo: error: cannot read file: "),
        "{err}"
    );
    assert!(err.ends_with("3 errors in 3 files checked\n"), "{err}");
}

#[test]
fn fmt_rewrites_files_in_place() {
    let dir = scratch("fmt_rewrite");
    let path = write(&dir, "chat.echo", UNFORMATTED);
    let out = echoc(&dir, &["fmt", "chat.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), VALID);
    // Formatting a formatted file changes nothing.
    let again = echoc(&dir, &["fmt", "chat.echo"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), VALID);
}

#[test]
fn fmt_check_lists_unformatted_files_and_changes_nothing() {
    let dir = scratch("fmt_check");
    let messy = write(&dir, "messy.echo", UNFORMATTED);
    let clean = write(&dir, "clean.echo", VALID);
    let out = echoc(&dir, &["fmt", "--check", "clean.echo", "messy.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "messy.echo\n");
    assert_eq!(
        stderr(&out),
        "1 of 2 files not formatted; run `echoc fmt` to format them\n"
    );
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), UNFORMATTED);
    assert_eq!(std::fs::read_to_string(&clean).unwrap(), VALID);

    let ok = echoc(&dir, &["fmt", "--check", "clean.echo"]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(stdout(&ok), "");
    assert_eq!(stderr(&ok), "");
}

#[test]
fn fmt_leaves_a_file_with_a_syntax_error_untouched() {
    let dir = scratch("fmt_syntax_error");
    let broken = "package a;\nmessage A { string a = 1 }\n";
    let path = write(&dir, "broken.echo", broken);
    let out = echoc(&dir, &["fmt", "broken.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("broken.echo:2:26: error: expected `;` or `[`, found `}`\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    let missing = echoc(&dir, &["fmt", "nope.echo"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).starts_with("nope.echo: error: cannot read file: "));
}

#[test]
fn help_texts_describe_every_command_and_option() {
    let dir = scratch("help");
    let top = echoc(&dir, &["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let text = stdout(&top);
    for needle in ["check", "fmt", "Exit status", "echoc check -I schemas"] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let check = stdout(&echoc(&dir, &["check", "--help"]));
    for needle in [
        "-I, --include <DIR>",
        "<FILE>...",
        "include directory",
        "Exit status",
    ] {
        assert!(check.contains(needle), "`{needle}` missing from:\n{check}");
    }
    let fmt = stdout(&echoc(&dir, &["fmt", "--help"]));
    for needle in ["--check", "<FILE>...", "canonical layout", "Exit status"] {
        assert!(fmt.contains(needle), "`{needle}` missing from:\n{fmt}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = scratch("usage");
    assert_eq!(echoc(&dir, &["check"]).status.code(), Some(2));
    assert_eq!(echoc(&dir, &["fmt"]).status.code(), Some(2));
    assert_eq!(echoc(&dir, &["frobnicate"]).status.code(), Some(2));
}
