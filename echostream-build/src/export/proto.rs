//! `.proto` files (proto3) of a checked schema, one per package, that protoc and other protobuf
//! compilers accept, so that peers in other languages share the messages, and tools see the
//! services. The convention is documented in `docs/descriptor.md`:
//!
//! - package `chat.v1` is written to `chat/v1/chat_v1.proto`, and imports the files of the
//!   packages it refers to; type names are fully qualified with a leading dot;
//! - messages, enums, fields, oneofs, maps, `optional`, `reserved` and field options are
//!   written as in the schema, with its doc comments as `//` comments;
//! - every method is an `rpc`, with the option `(echostream.options.method)` (defined in
//!   `echostream/options.proto`, written beside) naming its kind and options: an `rpc` keeps its
//!   request and response; an `event` returns `google.protobuf.Empty`; a `stream` takes
//!   `stream T` and returns `google.protobuf.Empty`. `idempotent` is also protobuf's own
//!   `idempotency_level = IDEMPOTENT`, and `deprecated` protobuf's `deprecated`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use echostream_idl::model::{
    Delivery, Enum, Field, FieldType, Label, Message, MethodKind, ReservedRange, Schema,
    SchemaFile, Service,
};
use echostream_idl::{MAX_FIELD_NUMBER, Span};

/// The file defining the `(echostream.options.method)` option.
pub const OPTIONS_FILE: &str = "echostream/options.proto";

/// The field number of the `(echostream.options.method)` extension of `MethodOptions`, in the
/// range protobuf leaves to organisations for their own options.
pub const METHOD_OPTION_NUMBER: u32 = 50_400;

/// The text of [`OPTIONS_FILE`].
pub const OPTIONS_PROTO: &str = r#"// Options of EchoStream methods exported as protobuf services, written by `echoc export --proto`
// (see docs/descriptor.md). Do not edit.
syntax = "proto3";

package echostream.options;

import "google/protobuf/descriptor.proto";

// What an exported service method is in EchoStream, with the options the schema gives it.
message Method {
  // The kinds of EchoStream methods.
  enum Kind {
    KIND_UNSPECIFIED = 0;
    // A request answered by one response, on its own QUIC stream.
    KIND_RPC = 1;
    // A one-way message; the events of one sender arrive in order. Described as returning
    // google.protobuf.Empty: nothing is answered.
    KIND_EVENT = 2;
    // A flow of real-time frames, reliable or as datagrams. Described as a client-streaming
    // method returning google.protobuf.Empty: nothing is answered.
    KIND_STREAM = 3;
  }

  // How the frames of a stream travel.
  enum Delivery {
    DELIVERY_UNSPECIFIED = 0;
    // On a QUIC stream, in order, nothing lost.
    DELIVERY_RELIABLE = 1;
    // As QUIC datagrams, fragmented when large: unordered, lossy, late frames dropped.
    DELIVERY_DATAGRAM = 2;
  }

  Kind kind = 1;
  // rpc: the caller gives up after this many milliseconds (absent: no timeout set).
  optional uint64 timeout_ms = 2;
  // rpc: calling twice has the effect of calling once (may travel as 0-RTT data).
  bool idempotent = 3;
  // stream: how frames travel.
  Delivery delivery = 4;
  // stream: playout delay of the receiver's jitter buffer (0: frames as they arrive).
  uint32 jitter_ms = 5;
  // stream: the largest encoded frame, in bytes.
  uint32 max_frame_bytes = 6;
}

extend google.protobuf.MethodOptions {
  Method method = 50400;
}
"#;

/// Why a schema cannot be exported as one `.proto` per package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// The packages that import one another, in a cycle.
    pub packages: Vec<String>,
    /// A file of the first package, where the cycle can be broken.
    pub span: Span,
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoFile {
    /// Its path, `/`-separated, relative to the export directory.
    pub path: String,
    /// Its text.
    pub contents: String,
}

/// The path of the `.proto` file of `package`: `chat.v1` → `chat/v1/chat_v1.proto`.
pub fn proto_path(package: &str) -> String {
    format!(
        "{}/{}.proto",
        package.replace('.', "/"),
        package.replace('.', "_")
    )
}

/// The `.proto` files of `schema`: one per package, and [`OPTIONS_FILE`] when there is a
/// service. Errors when packages import one another in a cycle (files may not, but the packages
/// of several files can), which one file per package cannot express.
pub fn export(schema: &Schema) -> Result<Vec<ProtoFile>, CycleError> {
    let mut packages: BTreeMap<&str, Vec<&SchemaFile>> = BTreeMap::new();
    for file in &schema.files {
        packages.entry(&file.package).or_default().push(file);
    }
    let package_of = type_packages(schema);
    let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (package, files) in &packages {
        let used = deps.entry(package).or_default();
        for name in referenced_types(files) {
            if let Some(other) = package_of.get(name).filter(|other| *other != package) {
                used.insert(other);
            }
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        let span = packages[cycle[0]][0].package_span;
        return Err(CycleError {
            packages: cycle.iter().map(|p| p.to_string()).collect(),
            span,
        });
    }
    let mut out: Vec<ProtoFile> = packages
        .iter()
        .map(|(package, files)| ProtoFile {
            path: proto_path(package),
            contents: package_proto(package, files, &deps[package]),
        })
        .collect();
    if schema.services().next().is_some() {
        out.push(ProtoFile {
            path: OPTIONS_FILE.to_string(),
            contents: OPTIONS_PROTO.to_string(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The package of every message and enum, by full name.
fn type_packages(schema: &Schema) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    fn walk<'a>(package: &'a str, messages: &'a [Message], out: &mut HashMap<&'a str, &'a str>) {
        for m in messages {
            out.insert(m.full_name.as_str(), package);
            for e in &m.enums {
                out.insert(e.full_name.as_str(), package);
            }
            walk(package, &m.messages, out);
        }
    }
    for file in &schema.files {
        for e in &file.enums {
            out.insert(e.full_name.as_str(), file.package.as_str());
        }
        walk(&file.package, &file.messages, &mut out);
    }
    out
}

/// Every type name the files refer to (fields and methods).
fn referenced_types<'a>(files: &[&'a SchemaFile]) -> Vec<&'a str> {
    fn field_types<'a>(ty: &'a FieldType, out: &mut Vec<&'a str>) {
        match ty {
            FieldType::Scalar(_) => {}
            FieldType::Message(name) | FieldType::Enum(name) => out.push(name),
            FieldType::Map { value, .. } => field_types(value, out),
        }
    }
    fn walk<'a>(messages: &'a [Message], out: &mut Vec<&'a str>) {
        for m in messages {
            for f in &m.fields {
                field_types(&f.ty, out);
            }
            walk(&m.messages, out);
        }
    }
    let mut out = Vec::new();
    for file in files {
        walk(&file.messages, &mut out);
        for service in &file.services {
            for method in &service.methods {
                out.push(&method.input);
                if let MethodKind::Rpc { output, .. } = &method.kind {
                    out.push(output);
                }
            }
        }
    }
    out
}

/// A cycle of package dependencies, if there is one.
fn find_cycle<'a>(deps: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        package: &'a str,
        deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|p| *p == package) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(package) {
            return None;
        }
        path.push(package);
        for dep in deps.get(package).into_iter().flatten() {
            if let Some(cycle) = visit(dep, deps, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for package in deps.keys() {
        if let Some(cycle) = visit(package, deps, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The text of the `.proto` file of one package.
fn package_proto(package: &str, files: &[&SchemaFile], deps: &BTreeSet<&str>) -> String {
    let mut out = String::new();
    let sources: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let _ = writeln!(
        out,
        "// Generated by `echoc export --proto` from {}. Do not edit.",
        sources.join(", ")
    );
    for file in files {
        if !file.doc.is_empty() {
            out.push_str("//\n");
            comment(&mut out, 0, &file.doc);
        }
    }
    out.push_str("syntax = \"proto3\";\n\n");
    let _ = writeln!(out, "package {package};\n");
    let has_services = files.iter().any(|f| !f.services.is_empty());
    let mut imports: Vec<String> = deps.iter().map(|p| proto_path(p)).collect();
    if has_services {
        imports.push(OPTIONS_FILE.to_string());
        let needs_empty = files
            .iter()
            .flat_map(|f| &f.services)
            .flat_map(|s| &s.methods)
            .any(|m| !matches!(m.kind, MethodKind::Rpc { .. }));
        if needs_empty {
            imports.push("google/protobuf/empty.proto".to_string());
        }
    }
    imports.sort();
    for import in &imports {
        let _ = writeln!(out, "import \"{import}\";");
    }
    if !imports.is_empty() {
        out.push('\n');
    }
    let mut first = true;
    let mut separate = |out: &mut String| {
        if !first {
            out.push('\n');
        }
        first = false;
    };
    for file in files {
        for e in &file.enums {
            separate(&mut out);
            enumeration(&mut out, 0, e);
        }
        for m in &file.messages {
            separate(&mut out);
            message(&mut out, 0, m);
        }
        for s in &file.services {
            separate(&mut out);
            service(&mut out, s);
        }
    }
    out
}

/// Writes `doc` as `//` comment lines at `indent` levels.
fn comment(out: &mut String, indent: usize, doc: &str) {
    for line in doc.lines() {
        pad(out, indent);
        if line.is_empty() {
            out.push_str("//\n");
        } else {
            let _ = writeln!(out, "// {line}");
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

fn enumeration(out: &mut String, indent: usize, e: &Enum) {
    comment(out, indent, &e.doc);
    pad(out, indent);
    let _ = writeln!(out, "enum {} {{", e.name);
    for v in &e.values {
        comment(out, indent + 1, &v.doc);
        pad(out, indent + 1);
        let _ = writeln!(out, "{} = {};", v.name, v.number);
    }
    reserved(
        out,
        indent + 1,
        &e.reserved_ranges,
        &e.reserved_names,
        i64::MAX,
    );
    pad(out, indent);
    out.push_str("}\n");
}

fn message(out: &mut String, indent: usize, m: &Message) {
    comment(out, indent, &m.doc);
    pad(out, indent);
    let _ = writeln!(out, "message {} {{", m.name);
    for e in &m.enums {
        enumeration(out, indent + 1, e);
    }
    for nested in &m.messages {
        message(out, indent + 1, nested);
    }
    let mut written_oneofs = vec![false; m.oneofs.len()];
    for f in &m.fields {
        match f.oneof {
            None => field(out, indent + 1, f),
            Some(i) if !written_oneofs[i] => {
                written_oneofs[i] = true;
                let oneof = &m.oneofs[i];
                comment(out, indent + 1, &oneof.doc);
                pad(out, indent + 1);
                let _ = writeln!(out, "oneof {} {{", oneof.name);
                for &member in &oneof.fields {
                    field(out, indent + 2, &m.fields[member]);
                }
                pad(out, indent + 1);
                out.push_str("}\n");
            }
            Some(_) => {}
        }
    }
    reserved(
        out,
        indent + 1,
        &m.reserved_ranges,
        &m.reserved_names,
        MAX_FIELD_NUMBER,
    );
    pad(out, indent);
    out.push_str("}\n");
}

fn field(out: &mut String, indent: usize, f: &Field) {
    comment(out, indent, &f.doc);
    pad(out, indent);
    let label = match f.label {
        Label::None => "",
        Label::Optional => "optional ",
        Label::Repeated => "repeated ",
    };
    let mut options = Vec::new();
    if let Some(packed) = f.options.packed {
        options.push(format!("packed = {packed}"));
    }
    if f.options.deprecated {
        options.push("deprecated = true".to_string());
    }
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(" [{}]", options.join(", "))
    };
    let _ = writeln!(
        out,
        "{label}{} {} = {}{options};",
        type_name(&f.ty),
        f.name,
        f.number
    );
}

/// A field type as protobuf writes it, names fully qualified with a leading dot.
fn type_name(ty: &FieldType) -> String {
    match ty {
        FieldType::Scalar(s) => s.name().to_string(),
        FieldType::Message(name) | FieldType::Enum(name) => format!(".{name}"),
        FieldType::Map { key, value } => format!("map<{}, {}>", key.name(), type_name(value)),
    }
}

/// `reserved` statements; `max` is the largest number an item allows (`to max`).
fn reserved(out: &mut String, indent: usize, ranges: &[ReservedRange], names: &[String], max: i64) {
    if !ranges.is_empty() {
        let ranges: Vec<String> = ranges
            .iter()
            .map(|r| match (r.start == r.end, r.end == max) {
                (true, _) => r.start.to_string(),
                (false, true) => format!("{} to max", r.start),
                (false, false) => format!("{} to {}", r.start, r.end),
            })
            .collect();
        pad(out, indent);
        let _ = writeln!(out, "reserved {};", ranges.join(", "));
    }
    if !names.is_empty() {
        let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        pad(out, indent);
        let _ = writeln!(out, "reserved {};", names.join(", "));
    }
}

fn service(out: &mut String, s: &Service) {
    comment(out, 0, &s.doc);
    let _ = writeln!(out, "service {} {{", s.name);
    for m in &s.methods {
        comment(out, 1, &m.doc);
        let mut option = Vec::new();
        let mut standard = Vec::new();
        let signature = match &m.kind {
            MethodKind::Rpc {
                output, options, ..
            } => {
                option.push("kind: KIND_RPC".to_string());
                if let Some(ms) = options.timeout_ms {
                    option.push(format!("timeout_ms: {ms}"));
                }
                if options.idempotent {
                    option.push("idempotent: true".to_string());
                    standard.push("idempotency_level = IDEMPOTENT");
                }
                format!("(.{}) returns (.{output})", m.input)
            }
            MethodKind::Event => {
                option.push("kind: KIND_EVENT".to_string());
                format!("(.{}) returns (.google.protobuf.Empty)", m.input)
            }
            MethodKind::Stream { options } => {
                option.push("kind: KIND_STREAM".to_string());
                option.push(format!(
                    "delivery: {}",
                    match options.delivery {
                        Delivery::Reliable => "DELIVERY_RELIABLE",
                        Delivery::Datagram => "DELIVERY_DATAGRAM",
                    }
                ));
                option.push(format!("jitter_ms: {}", options.jitter_ms));
                option.push(format!("max_frame_bytes: {}", options.max_frame_bytes));
                format!("(stream .{}) returns (.google.protobuf.Empty)", m.input)
            }
        };
        if m.deprecated {
            standard.push("deprecated = true");
        }
        let _ = writeln!(out, "  rpc {}{signature} {{", m.name);
        for s in standard {
            let _ = writeln!(out, "    option {s};");
        }
        let _ = writeln!(
            out,
            "    option (echostream.options.method) = {{{}}};",
            option.join(", ")
        );
        out.push_str("  }\n");
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use echostream_idl::{MemoryFs, compile_source, compile_with};

    fn export_one(text: &str) -> Vec<ProtoFile> {
        let c = compile_source("t.echo", text);
        export(&c.schema.expect("valid")).expect("no cycle")
    }

    #[test]
    fn paths_mirror_packages() {
        assert_eq!(proto_path("chat.v1"), "chat/v1/chat_v1.proto");
        assert_eq!(proto_path("common"), "common/common.proto");
    }

    #[test]
    fn a_message_and_a_service() {
        let files = export_one(
            "/// Doc.\npackage p.v1;\n/// A thing.\nmessage M {\n  optional int32 a = 1 [deprecated = true];\n  map<string, M> m = 2;\n  oneof o {\n    bool b = 3;\n  }\n  reserved 4, 10 to max;\n  reserved \"x\";\n}\nservice S {\n  rpc get(M) returns (M) [timeout_ms = 5, idempotent = true];\n  event tell(M) [deprecated = true];\n  stream feed(M) [delivery = datagram, jitter_ms = 20];\n}\n",
        );
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["echostream/options.proto", "p/v1/p_v1.proto"]);
        assert_eq!(
            files[1].contents,
            "// Generated by `echoc export --proto` from t.echo. Do not edit.
//
// Doc.
syntax = \"proto3\";

package p.v1;

import \"echostream/options.proto\";
import \"google/protobuf/empty.proto\";

// A thing.
message M {
  optional int32 a = 1 [deprecated = true];
  map<string, .p.v1.M> m = 2;
  oneof o {
    bool b = 3;
  }
  reserved 4, 10 to max;
  reserved \"x\";
}

service S {
  rpc get(.p.v1.M) returns (.p.v1.M) {
    option idempotency_level = IDEMPOTENT;
    option (echostream.options.method) = {kind: KIND_RPC, timeout_ms: 5, idempotent: true};
  }
  rpc tell(.p.v1.M) returns (.google.protobuf.Empty) {
    option deprecated = true;
    option (echostream.options.method) = {kind: KIND_EVENT};
  }
  rpc feed(stream .p.v1.M) returns (.google.protobuf.Empty) {
    option (echostream.options.method) = {kind: KIND_STREAM, delivery: DELIVERY_DATAGRAM, jitter_ms: 20, max_frame_bytes: 1048576};
  }
}
"
        );
    }

    #[test]
    fn packages_that_import_one_another_are_refused() {
        let mut fs = MemoryFs::new();
        fs.insert(
            "a1.echo",
            "package a;\nimport \"b1.echo\";\nmessage A { b.B b = 1; }\n",
        );
        fs.insert("b1.echo", "package b;\nmessage B {}\n");
        fs.insert(
            "b2.echo",
            "package b;\nimport \"a1.echo\";\nmessage C { a.A a = 1; }\n",
        );
        let c = compile_with(&fs, &["a1.echo", "b2.echo"], &[] as &[&str]);
        let error = export(&c.schema.expect("valid")).unwrap_err();
        assert_eq!(error.packages, ["a", "b"]);
    }
}
