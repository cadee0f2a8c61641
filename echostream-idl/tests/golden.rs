//! The golden corpus.
//!
//! - `tests/valid/**/*.echo`: each file, checked as a root with include directory
//!   `tests/valid`, has no diagnostic at all, and its checked model (with the position of
//!   every name) equals `<file>.model` beside it.
//! - `tests/invalid/*.echo`: each file, checked with include directory `tests/invalid`
//!   (whose subdirectories hold the files some cases import), renders exactly the diagnostics
//!   in `<file>.stderr` beside it. Files named `warn_*` have warnings only; the others have at
//!   least one error.
//!
//! `ECHO_BLESS=1 cargo test -p echostream-idl --test golden` rewrites the expected files;
//! review the diff before committing it.

mod common;

use std::path::Path;

use echostream_idl::compile;

#[test]
fn valid_schemas_check_cleanly_to_the_expected_model() {
    let dir = Path::new("tests/valid");
    let files = common::echo_files(dir, true);
    assert!(
        files.len() >= 15,
        "the valid corpus has {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let compilation = compile(&[file], &[dir]);
        if !compilation.diagnostics.is_empty() {
            failures.push(format!(
                "{} has diagnostics:\n{}",
                file.display(),
                compilation.render_diagnostics(false)
            ));
            continue;
        }
        let schema = compilation.schema.expect("no errors, so a schema");
        let dump = common::dump(&schema, Some(&compilation.sources));
        failures.extend(common::golden(&file.with_extension("model"), &dump));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_schemas_report_the_expected_diagnostics() {
    let dir = Path::new("tests/invalid");
    let files = common::echo_files(dir, false);
    let errors = files
        .iter()
        .filter(|f| {
            !f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("warn_")
        })
        .count();
    assert!(errors >= 40, "the invalid corpus has {errors} error cases");
    let mut failures = Vec::new();
    for file in &files {
        let compilation = compile(&[file], &[dir]);
        let rendered = compilation.render_diagnostics(false);
        let warn_only = file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("warn_");
        if warn_only {
            if compilation.has_errors() || compilation.warning_count() == 0 {
                failures.push(format!(
                    "{} should have warnings and no error:\n{rendered}",
                    file.display()
                ));
            }
            if compilation.schema.is_none() {
                failures.push(format!(
                    "{}: warnings must not stop the model",
                    file.display()
                ));
            }
        } else if !compilation.has_errors() || compilation.schema.is_some() {
            failures.push(format!(
                "{} should have an error:\n{rendered}",
                file.display()
            ));
        }
        // The first line names the place: `path:line:col: error: ...`.
        let first = rendered.lines().next().unwrap_or("");
        let prefix = format!("{}:", file.display());
        if !first.starts_with(&prefix) && !first.contains(".echo:") {
            failures.push(format!(
                "{}: first line is not located: {first}",
                file.display()
            ));
        }
        failures.extend(common::golden(&file.with_extension("stderr"), &rendered));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
