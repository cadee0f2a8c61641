//! The formatter: canonical, idempotent, keeps every comment, changes no meaning.
//!
//! - Every valid golden schema formats to a fixed point, keeps its comments in order, and
//!   checks to the same model (compared without positions) once formatted.
//! - The messy inputs of `tests/format/*.echo` format to `<file>.formatted` beside them
//!   (`ECHO_BLESS=1` rewrites those).

mod common;

use std::path::{Path, PathBuf};

use echostream_idl::{FileId, MemoryFs, compile_with, format_source};

fn format(text: &str) -> String {
    format_source(FileId::default(), text)
        .unwrap_or_else(|d| panic!("does not format: {}", d.message))
}

/// Every comment of `text` (plain and doc), trimmed, in order. Skips string literals.
fn comments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['/', '"']) {
        let tail = &rest[i..];
        if let Some(string) = tail.strip_prefix('"') {
            let end = string.find('"').map_or(tail.len(), |e| e + 2);
            rest = &tail[end..];
        } else if tail.starts_with("//") {
            let end = tail.find('\n').unwrap_or(tail.len());
            out.push(tail[..end].trim_end().to_string());
            rest = &tail[end..];
        } else if tail.starts_with("/*") {
            let end = tail.find("*/").map_or(tail.len(), |e| e + 2);
            out.push(tail[..end].replace("\r\n", "\n"));
            rest = &tail[end..];
        } else {
            rest = &tail[1..];
        }
    }
    out
}

/// All files of the valid corpus, by their path relative to `tests/valid`.
fn valid_corpus() -> Vec<(PathBuf, String)> {
    let dir = Path::new("tests/valid");
    common::echo_files(dir, true)
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p.strip_prefix(dir).expect("inside").to_path_buf(), text)
        })
        .collect()
}

/// The model of `root` (without positions) when the corpus is `files`.
fn model(files: &[(PathBuf, String)], root: &Path) -> String {
    let mut fs = MemoryFs::new();
    for (path, text) in files {
        fs.insert(path, text.clone());
    }
    let compilation = compile_with(&fs, &[root], &[Path::new("")]);
    let report = compilation.render_diagnostics(false);
    let schema = compilation.schema.unwrap_or_else(|| panic!("{report}"));
    common::dump(&schema, None)
}

#[test]
fn valid_schemas_format_idempotently_keeping_comments_and_meaning() {
    let corpus = valid_corpus();
    assert!(corpus.len() >= 15);
    for (path, text) in &corpus {
        let once = format(text);
        let twice = format(&once);
        assert_eq!(
            once,
            twice,
            "{}: formatting is not idempotent",
            path.display()
        );
        assert_eq!(
            comments(text),
            comments(&once),
            "{}: comments changed",
            path.display()
        );
        let formatted: Vec<(PathBuf, String)> = corpus
            .iter()
            .map(|(p, t)| (p.clone(), if p == path { once.clone() } else { t.clone() }))
            .collect();
        assert_eq!(
            model(&corpus, path),
            model(&formatted, path),
            "{}: the formatted file means something else",
            path.display()
        );
    }
}

#[test]
fn messy_inputs_format_to_the_expected_layout() {
    let files = common::echo_files(Path::new("tests/format"), false);
    assert!(files.len() >= 4);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let once = format(&text);
        assert_eq!(once, format(&once), "{}: not idempotent", file.display());
        assert_eq!(
            comments(&text),
            comments(&once),
            "{}: comments changed",
            file.display()
        );
        failures.extend(common::golden(&file.with_extension("formatted"), &once));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn formatted_messy_input_keeps_its_model() {
    let messy = "package m.v1;message A{map<string,A>c=3;oneof o{bool x=4;}reserved 6 to 9;}\
                 service S{rpc f(A)returns(A)[timeout_ms=1];stream h(A)[delivery=datagram];}";
    let files = vec![(PathBuf::from("m.echo"), messy.to_string())];
    let formatted = vec![(PathBuf::from("m.echo"), format(messy))];
    assert_eq!(
        model(&files, Path::new("m.echo")),
        model(&formatted, Path::new("m.echo"))
    );
}

#[test]
fn formatted_file_is_canonical() {
    let text = "package a.v1;\n\nmessage A {\n  string a = 1;\n}\n";
    assert_eq!(format(text), text);
    assert_eq!(
        format("package a.v1; message E {} service S {}"),
        "package a.v1;\n\nmessage E {}\n\nservice S {}\n"
    );
}

#[test]
fn a_file_with_a_syntax_error_is_not_formatted() {
    let error = format_source(FileId::default(), "package a;\nmessage A { string }\n")
        .expect_err("syntax error");
    assert_eq!(error.message, "expected a field name, found `}`");
}
