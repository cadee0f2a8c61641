//! `echoc fmt` and the files it reads and writes: symbolic links stay links, and a file that
//! is not UTF-8 is reported at its first bad byte and left untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FORMATTED: &str = "package chat.v1;\n\nmessage Ping {\n  uint64 id = 1;\n}\n";
const UNFORMATTED: &str = "package chat.v1;\nmessage Ping{uint64 id=1;}\n";

/// A fresh directory for one test, under cargo's scratch directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("echoc-fmt-files")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

fn echoc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("echoc runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(unix)]
#[test]
fn fmt_formats_the_file_a_symlink_points_to_and_keeps_the_link() {
    use std::os::unix::fs::symlink;

    let dir = scratch("symlink");
    std::fs::create_dir(dir.join("real")).unwrap();
    let real = dir.join("real/chat.echo");
    std::fs::write(&real, UNFORMATTED).unwrap();
    symlink("real/chat.echo", dir.join("link.echo")).unwrap();
    // A link to the directory, too.
    symlink("real", dir.join("linked_dir")).unwrap();

    let out = echoc(&dir, &["fmt", "--check", "link.echo"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&real).unwrap(), UNFORMATTED);

    let out = echoc(&dir, &["fmt", "link.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let link = std::fs::symlink_metadata(dir.join("link.echo")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    assert_eq!(
        std::fs::read_link(dir.join("link.echo")).unwrap(),
        Path::new("real/chat.echo")
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), FORMATTED);
    // No temporary file is left beside the link or the file.
    assert_eq!(entries(&dir), ["link.echo", "linked_dir", "real"]);
    assert_eq!(entries(&dir.join("real")), ["chat.echo"]);

    std::fs::write(&real, UNFORMATTED).unwrap();
    let out = echoc(&dir, &["fmt", "linked_dir/chat.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(dir.join("linked_dir"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), FORMATTED);
    assert_eq!(entries(&dir.join("real")), ["chat.echo"]);
}

#[cfg(unix)]
#[test]
fn fmt_keeps_the_permissions_of_the_file() {
    use std::os::unix::fs::PermissionsExt;

    let dir = scratch("permissions");
    let path = dir.join("chat.echo");
    std::fs::write(&path, UNFORMATTED).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = echoc(&dir, &["fmt", "chat.echo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FORMATTED);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn fmt_reports_a_file_that_is_not_utf8_at_its_first_bad_byte() {
    let dir = scratch("not_utf8");
    let bytes = b"package chat.v1;\n\n// caf\xE9\nmessage Ping{}\n";
    let path = dir.join("latin1.echo");
    std::fs::write(&path, bytes).unwrap();
    for args in [
        &["fmt", "latin1.echo"][..],
        &["fmt", "--check", "latin1.echo"],
    ] {
        let out = echoc(&dir, args);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.starts_with(
                "latin1.echo:3:7: error: file is not valid UTF-8\n  --> latin1.echo:3:7\n"
            ),
            "{err}"
        );
        assert!(err.contains("^ byte 0xE9 is not UTF-8"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
    }
}
