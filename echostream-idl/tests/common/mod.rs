//! Helpers shared by the integration tests: a readable dump of the checked model, and
//! golden-file comparison with `ECHO_BLESS=1` to regenerate expected files.

#![allow(dead_code)] // Each test binary uses a part of this module.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use echostream_idl::model::{Enum, FieldType, Label, Message, MethodKind, Schema};
use echostream_idl::{SourceMap, Span};

/// Every `.echo` file under `dir`, recursively, sorted.
pub fn echo_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("test directory exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                if recursive {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "echo") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Compares `actual` with the file at `expected`; with `ECHO_BLESS=1` writes it instead.
/// Returns a description of the difference, if any.
pub fn golden(expected: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("ECHO_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(expected, actual).expect("write expected file");
        return None;
    }
    match std::fs::read_to_string(expected) {
        Ok(text) if text == actual => None,
        Ok(text) => Some(format!(
            "{} differs:\n--- expected\n{text}\n--- actual\n{actual}",
            expected.display()
        )),
        Err(_) => Some(format!(
            "{} is missing (run with ECHO_BLESS=1 to create it); actual:\n{actual}",
            expected.display()
        )),
    }
}

/// A readable, deterministic dump of the model. With `sources`, each item shows the
/// line:column of its name; without, positions are left out (to compare models ignoring
/// spans).
pub fn dump(schema: &Schema, sources: Option<&SourceMap>) -> String {
    let mut d = Dumper {
        out: String::new(),
        sources,
    };
    for file in &schema.files {
        let root = if file.is_root { " (root)" } else { "" };
        let pos = d.pos(file.package_span);
        let _ = writeln!(
            d.out,
            "file {}{root}: package {}{pos}",
            file.name, file.package
        );
        d.doc(1, &file.doc);
        for import in &file.imports {
            let pos = d.pos(import.span);
            let _ = writeln!(d.out, "  import {}{pos}", import.name);
        }
        for e in &file.enums {
            d.enumeration(1, e);
        }
        for m in &file.messages {
            d.message(1, m);
        }
        for s in &file.services {
            let pos = d.pos(s.name_span);
            let _ = writeln!(d.out, "  service {}{pos}", s.full_name);
            d.doc(2, &s.doc);
            for m in &s.methods {
                let pos = d.pos(m.name_span);
                let deprecated = if m.deprecated { " deprecated" } else { "" };
                let _ = match &m.kind {
                    MethodKind::Rpc {
                        output, options, ..
                    } => writeln!(
                        d.out,
                        "    rpc {}({}) returns ({output}) timeout_ms={:?} idempotent={}{deprecated}{pos}",
                        m.name, m.input, options.timeout_ms, options.idempotent
                    ),
                    MethodKind::Event => {
                        writeln!(d.out, "    event {}({}){deprecated}{pos}", m.name, m.input)
                    }
                    MethodKind::Stream { options } => writeln!(
                        d.out,
                        "    stream {}({}) delivery={:?} jitter_ms={} max_frame_bytes={}{deprecated}{pos}",
                        m.name,
                        m.input,
                        options.delivery,
                        options.jitter_ms,
                        options.max_frame_bytes
                    ),
                };
                d.doc(3, &m.doc);
            }
        }
    }
    d.out
}

struct Dumper<'a> {
    out: String,
    sources: Option<&'a SourceMap>,
}

impl Dumper<'_> {
    fn pos(&self, span: Span) -> String {
        match self.sources {
            Some(s) => {
                let p = s.line_col(span);
                format!(" @{}:{}", p.line, p.column)
            }
            None => String::new(),
        }
    }

    fn doc(&mut self, depth: usize, doc: &str) {
        if doc.is_empty() {
            return;
        }
        for line in doc.lines() {
            let _ = writeln!(self.out, "{}/// {line}", "  ".repeat(depth));
        }
    }

    fn enumeration(&mut self, depth: usize, e: &Enum) {
        let pad = "  ".repeat(depth);
        let pos = self.pos(e.name_span);
        let _ = writeln!(self.out, "{pad}enum {}{pos}", e.full_name);
        self.doc(depth + 1, &e.doc);
        for r in &e.reserved_ranges {
            let _ = writeln!(self.out, "{pad}  reserved {} to {}", r.start, r.end);
        }
        for n in &e.reserved_names {
            let _ = writeln!(self.out, "{pad}  reserved name {n}");
        }
        for v in &e.values {
            let pos = self.pos(v.name_span);
            let _ = writeln!(self.out, "{pad}  {} = {}{pos}", v.name, v.number);
            self.doc(depth + 2, &v.doc);
        }
    }

    fn message(&mut self, depth: usize, m: &Message) {
        let pad = "  ".repeat(depth);
        let pos = self.pos(m.name_span);
        let _ = writeln!(self.out, "{pad}message {}{pos}", m.full_name);
        self.doc(depth + 1, &m.doc);
        for r in &m.reserved_ranges {
            let _ = writeln!(self.out, "{pad}  reserved {} to {}", r.start, r.end);
        }
        for n in &m.reserved_names {
            let _ = writeln!(self.out, "{pad}  reserved name {n}");
        }
        for f in &m.fields {
            let label = match f.label {
                Label::None => "",
                Label::Optional => "optional ",
                Label::Repeated => "repeated ",
            };
            let oneof = f
                .oneof
                .map(|i| format!(" in oneof {}", m.oneofs[i].name))
                .unwrap_or_default();
            let mut options = String::new();
            if f.options.deprecated {
                options.push_str(" deprecated");
            }
            if let Some(p) = f.options.packed {
                let _ = write!(options, " packed={p}");
            }
            let pos = self.pos(f.name_span);
            let _ = writeln!(
                self.out,
                "{pad}  field {} = {}: {label}{}{oneof}{options}{pos}",
                f.name,
                f.number,
                ty(&f.ty)
            );
            self.doc(depth + 2, &f.doc);
        }
        for o in &m.oneofs {
            let members: Vec<&str> = o
                .fields
                .iter()
                .map(|&i| m.fields[i].name.as_str())
                .collect();
            let pos = self.pos(o.name_span);
            let _ = writeln!(
                self.out,
                "{pad}  oneof {} {{{}}}{pos}",
                o.name,
                members.join(", ")
            );
            self.doc(depth + 2, &o.doc);
        }
        for e in &m.enums {
            self.enumeration(depth + 1, e);
        }
        for inner in &m.messages {
            self.message(depth + 1, inner);
        }
    }
}

fn ty(t: &FieldType) -> String {
    match t {
        FieldType::Scalar(s) => s.name().to_string(),
        FieldType::Message(n) => format!("message {n}"),
        FieldType::Enum(n) => format!("enum {n}"),
        FieldType::Map { key, value } => format!("map<{}, {}>", key.name(), ty(value)),
    }
}
