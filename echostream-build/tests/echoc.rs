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
    let generate = stdout(&echoc(&dir, &["gen", "--help"]));
    for needle in [
        "-I, --include <DIR>",
        "--out <DIR>",
        "--no-server",
        "--no-client",
        "<FILE>...",
        "byte for byte",
        "echostream-include.rs",
        "Exit status",
    ] {
        assert!(
            generate.contains(needle),
            "`{needle}` missing from:\n{generate}"
        );
    }
    let export = stdout(&echoc(&dir, &["export", "--help"]));
    for needle in [
        "--proto <DIR>",
        "--json <FILE>",
        "-I, --include <DIR>",
        "google.protobuf.Empty",
        "echostream.descriptor",
        "Exit status",
    ] {
        assert!(
            export.contains(needle),
            "`{needle}` missing from:\n{export}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = scratch("usage");
    assert_eq!(echoc(&dir, &["check"]).status.code(), Some(2));
    assert_eq!(echoc(&dir, &["fmt"]).status.code(), Some(2));
    assert_eq!(echoc(&dir, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        echoc(&dir, &["gen", "x.echo"]).status.code(),
        Some(2),
        "no --out"
    );
    assert_eq!(
        echoc(&dir, &["gen", "--out", "o"]).status.code(),
        Some(2),
        "no file"
    );
    let no_format = echoc(&dir, &["export", "x.echo"]);
    assert_eq!(
        no_format.status.code(),
        Some(2),
        "neither --proto nor --json"
    );
    assert!(
        stderr(&no_format).contains("--proto <DIR>"),
        "{}",
        stderr(&no_format)
    );
}

const SERVICE: &str = "/// Chat.\npackage chat.v1;\n\nmessage Ping {\n  uint64 id = 1;\n}\n\nservice Chat {\n  rpc ping(Ping) returns (Ping) [timeout_ms = 100];\n  event poke(Ping);\n}\n";

fn names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut names);
    names.sort();
    names
}

#[test]
fn gen_writes_the_generated_files_silently() {
    let dir = scratch("gen_ok");
    write(&dir, "schemas/chat.echo", SERVICE);
    let out = echoc(
        &dir,
        &[
            "gen",
            "-I",
            "schemas",
            "--out",
            "src/gen",
            "schemas/chat.echo",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        names(&dir.join("src/gen")),
        ["chat.v1.rs", "echostream-include.rs"]
    );
    let code = std::fs::read_to_string(dir.join("src/gen/chat.v1.rs")).unwrap();
    assert!(code.contains("pub struct ChatServer<T>") && code.contains("pub struct ChatClient"));

    let out = echoc(
        &dir,
        &["gen", "--no-client", "--out", "server", "schemas/chat.echo"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let code = std::fs::read_to_string(dir.join("server/chat.v1.rs")).unwrap();
    assert!(code.contains("pub struct ChatServer<T>") && !code.contains("ChatClient"));
    let out = echoc(
        &dir,
        &["gen", "--no-server", "--out", "client", "schemas/chat.echo"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let code = std::fs::read_to_string(dir.join("client/chat.v1.rs")).unwrap();
    assert!(!code.contains("ChatServer") && code.contains("pub struct ChatClient"));
}

#[test]
fn gen_reports_schema_errors_and_clashes_and_writes_nothing() {
    let dir = scratch("gen_errors");
    write(
        &dir,
        "bad.echo",
        "package p;\nmessage M { Missing m = 1; }\n",
    );
    let out = echoc(&dir, &["gen", "--out", "out", "bad.echo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("bad.echo:2:13: error: unknown type `Missing`\n"),
        "{err}"
    );
    assert!(err.ends_with("1 error in 1 file checked\n"), "{err}");
    assert!(!dir.join("out").exists());

    write(
        &dir,
        "clash.echo",
        "package p;\nmessage M {}\nservice S {\n  rpc new(M) returns (M);\n}\n",
    );
    let out = echoc(&dir, &["gen", "--out", "out", "clash.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "\
clash.echo:4:7: error: method `new` and the client's own method `new` both become `new` in generated Rust code
  --> clash.echo:4:7
  |
4 |   rpc new(M) returns (M);
  |       ^^^ becomes `new`
  |
  = help: rename one of them

1 error in 1 file checked
"
    );
    assert!(!dir.join("out").exists());
    // Without the client, the name is free.
    let out = echoc(&dir, &["gen", "--no-client", "--out", "out", "clash.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn gen_reports_an_unwritable_output_directory() {
    let dir = scratch("gen_unwritable");
    write(&dir, "chat.echo", SERVICE);
    write(&dir, "taken", "a file, not a directory");
    let out = echoc(&dir, &["gen", "--out", "taken", "chat.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: cannot write taken: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn export_writes_proto_files_and_the_json_descriptor() {
    let dir = scratch("export_ok");
    write(&dir, "schemas/chat.echo", SERVICE);
    let out = echoc(
        &dir,
        &[
            "export",
            "--proto",
            "proto",
            "--json",
            "desc/chat.json",
            "-I",
            "schemas",
            "schemas/chat.echo",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        names(&dir.join("proto")),
        ["chat/v1/chat_v1.proto", "echostream/options.proto"]
    );
    let proto = std::fs::read_to_string(dir.join("proto/chat/v1/chat_v1.proto")).unwrap();
    assert!(proto.contains("package chat.v1;"), "{proto}");
    assert!(
        proto.contains("  rpc poke(.chat.v1.Ping) returns (.google.protobuf.Empty) {"),
        "{proto}"
    );
    let json = std::fs::read_to_string(dir.join("desc/chat.json")).unwrap();
    assert!(json.starts_with("{\n  \"format\": \"echostream.descriptor\",\n  \"version\": 1,"));

    let out = echoc(&dir, &["export", "--json", "-", "schemas/chat.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), json, "the same descriptor on standard output");
}

#[test]
fn export_reports_errors() {
    let dir = scratch("export_errors");
    write(
        &dir,
        "bad.echo",
        "package p;\nmessage M { Missing m = 1; }\n",
    );
    let out = echoc(&dir, &["export", "--json", "-", "bad.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).starts_with("bad.echo:2:13: error: unknown type `Missing`"));

    // Packages that import one another cannot be one .proto file each.
    write(
        &dir,
        "a1.echo",
        "package a;\nimport \"b1.echo\";\nmessage A { b.B b = 1; }\n",
    );
    write(&dir, "b1.echo", "package b;\nmessage B {}\n");
    write(
        &dir,
        "b2.echo",
        "package b;\nimport \"a1.echo\";\nmessage C { a.A a = 1; }\n",
    );
    let out = echoc(&dir, &["export", "--proto", "proto", "a1.echo", "b2.echo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("a1.echo:1:1: error: packages `a` and `b` refer to one another, which one .proto file per package cannot express\n"),
        "{err}"
    );
    assert!(!dir.join("proto").exists(), "nothing is written");
    // The JSON descriptor has no such limit.
    let out = echoc(&dir, &["export", "--json", "-", "a1.echo", "b2.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    write(&dir, "ok.echo", SERVICE);
    write(&dir, "taken", "a file");
    let out = echoc(&dir, &["export", "--json", "taken/x.json", "ok.echo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("taken/x.json: error: cannot write file: "));
}
