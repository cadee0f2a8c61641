//! The JSON descriptor of a checked schema: everything an SDK generator in another language
//! needs (packages, messages, enums, fields, services, methods with their kind and options, doc
//! comments), versioned. The format is specified in `docs/descriptor.md`; this module is its
//! reference implementation.

use std::collections::BTreeMap;

use echostream_idl::model::{
    Delivery, Enum, Field, FieldType, Label, Message, Method, MethodKind, Oneof, ReservedRange,
    Schema, SchemaFile, Service,
};
use serde::Serialize;

use crate::descriptor::json_name;

/// The value of the descriptor's `format` member.
pub const FORMAT: &str = "echostream.descriptor";

/// The version of the format this crate writes. Readers refuse a version they do not know;
/// members may be added within a version, never removed or changed.
pub const VERSION: u32 = 1;

/// The whole descriptor.
#[derive(Serialize)]
struct Descriptor<'a> {
    format: &'static str,
    version: u32,
    packages: Vec<Package<'a>>,
}

#[derive(Serialize)]
struct Package<'a> {
    name: &'a str,
    doc: String,
    files: Vec<File<'a>>,
    messages: Vec<MessageDesc<'a>>,
    enums: Vec<EnumDesc<'a>>,
    services: Vec<ServiceDesc<'a>>,
}

#[derive(Serialize)]
struct File<'a> {
    name: &'a str,
    imports: Vec<&'a str>,
}

#[derive(Serialize)]
struct MessageDesc<'a> {
    name: &'a str,
    full_name: &'a str,
    doc: &'a str,
    fields: Vec<FieldDesc<'a>>,
    oneofs: Vec<OneofDesc<'a>>,
    messages: Vec<MessageDesc<'a>>,
    enums: Vec<EnumDesc<'a>>,
    reserved_ranges: Vec<Range>,
    reserved_names: &'a [String],
}

#[derive(Serialize)]
struct FieldDesc<'a> {
    name: &'a str,
    json_name: String,
    number: u32,
    label: &'static str,
    #[serde(rename = "type")]
    ty: TypeDesc<'a>,
    oneof: Option<&'a str>,
    deprecated: bool,
    packed: Option<bool>,
    doc: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TypeDesc<'a> {
    Scalar {
        scalar: &'static str,
    },
    Message {
        name: &'a str,
    },
    Enum {
        name: &'a str,
    },
    Map {
        key: &'static str,
        value: Box<TypeDesc<'a>>,
    },
}

#[derive(Serialize)]
struct OneofDesc<'a> {
    name: &'a str,
    fields: Vec<&'a str>,
    doc: &'a str,
}

#[derive(Serialize)]
struct EnumDesc<'a> {
    name: &'a str,
    full_name: &'a str,
    doc: &'a str,
    values: Vec<ValueDesc<'a>>,
    reserved_ranges: Vec<Range>,
    reserved_names: &'a [String],
}

#[derive(Serialize)]
struct ValueDesc<'a> {
    name: &'a str,
    number: i32,
    doc: &'a str,
}

#[derive(Serialize)]
struct Range {
    start: i64,
    end: i64,
}

#[derive(Serialize)]
struct ServiceDesc<'a> {
    name: &'a str,
    full_name: &'a str,
    doc: &'a str,
    methods: Vec<MethodDesc<'a>>,
}

#[derive(Serialize)]
struct MethodDesc<'a> {
    name: &'a str,
    full_name: String,
    kind: &'static str,
    input: &'a str,
    output: Option<&'a str>,
    deprecated: bool,
    options: MethodOptions,
    doc: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum MethodOptions {
    Rpc {
        timeout_ms: Option<u64>,
        idempotent: bool,
    },
    Event {},
    Stream {
        delivery: &'static str,
        jitter_ms: u32,
        max_frame_bytes: u32,
    },
}

/// The descriptor of `schema`, as pretty-printed JSON ending with a newline.
pub fn export(schema: &Schema) -> String {
    let mut packages: BTreeMap<&str, Vec<&SchemaFile>> = BTreeMap::new();
    for file in &schema.files {
        packages.entry(&file.package).or_default().push(file);
    }
    let descriptor = Descriptor {
        format: FORMAT,
        version: VERSION,
        packages: packages
            .into_iter()
            .map(|(name, files)| package(name, &files))
            .collect(),
    };
    let mut json = serde_json::to_string_pretty(&descriptor).expect("plain data serializes");
    json.push('\n');
    json
}

fn package<'a>(name: &'a str, files: &[&'a SchemaFile]) -> Package<'a> {
    let docs: Vec<&str> = files
        .iter()
        .map(|f| f.doc.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    Package {
        name,
        doc: docs.join("\n\n"),
        files: files
            .iter()
            .map(|f| File {
                name: &f.name,
                imports: f.imports.iter().map(|i| i.name.as_str()).collect(),
            })
            .collect(),
        messages: files
            .iter()
            .flat_map(|f| &f.messages)
            .map(message)
            .collect(),
        enums: files
            .iter()
            .flat_map(|f| &f.enums)
            .map(enumeration)
            .collect(),
        services: files
            .iter()
            .flat_map(|f| &f.services)
            .map(service)
            .collect(),
    }
}

fn message(m: &Message) -> MessageDesc<'_> {
    MessageDesc {
        name: &m.name,
        full_name: &m.full_name,
        doc: &m.doc,
        fields: m.fields.iter().map(|f| field(m, f)).collect(),
        oneofs: m.oneofs.iter().map(|o| oneof(m, o)).collect(),
        messages: m.messages.iter().map(message).collect(),
        enums: m.enums.iter().map(enumeration).collect(),
        reserved_ranges: ranges(&m.reserved_ranges),
        reserved_names: &m.reserved_names,
    }
}

fn field<'a>(m: &'a Message, f: &'a Field) -> FieldDesc<'a> {
    FieldDesc {
        name: &f.name,
        json_name: json_name(&f.name),
        number: f.number,
        label: match f.label {
            Label::None => "none",
            Label::Optional => "optional",
            Label::Repeated => "repeated",
        },
        ty: type_desc(&f.ty),
        oneof: f.oneof.map(|i| m.oneofs[i].name.as_str()),
        deprecated: f.options.deprecated,
        packed: f.options.packed,
        doc: &f.doc,
    }
}

fn type_desc(ty: &FieldType) -> TypeDesc<'_> {
    match ty {
        FieldType::Scalar(s) => TypeDesc::Scalar { scalar: s.name() },
        FieldType::Message(name) => TypeDesc::Message { name },
        FieldType::Enum(name) => TypeDesc::Enum { name },
        FieldType::Map { key, value } => TypeDesc::Map {
            key: key.name(),
            value: Box::new(type_desc(value)),
        },
    }
}

fn oneof<'a>(m: &'a Message, o: &'a Oneof) -> OneofDesc<'a> {
    OneofDesc {
        name: &o.name,
        fields: o
            .fields
            .iter()
            .map(|&i| m.fields[i].name.as_str())
            .collect(),
        doc: &o.doc,
    }
}

fn enumeration(e: &Enum) -> EnumDesc<'_> {
    EnumDesc {
        name: &e.name,
        full_name: &e.full_name,
        doc: &e.doc,
        values: e
            .values
            .iter()
            .map(|v| ValueDesc {
                name: &v.name,
                number: v.number,
                doc: &v.doc,
            })
            .collect(),
        reserved_ranges: ranges(&e.reserved_ranges),
        reserved_names: &e.reserved_names,
    }
}

fn ranges(ranges: &[ReservedRange]) -> Vec<Range> {
    ranges
        .iter()
        .map(|r| Range {
            start: r.start,
            end: r.end,
        })
        .collect()
}

fn service(s: &Service) -> ServiceDesc<'_> {
    ServiceDesc {
        name: &s.name,
        full_name: &s.full_name,
        doc: &s.doc,
        methods: s.methods.iter().map(|m| method(s, m)).collect(),
    }
}

fn method<'a>(s: &'a Service, m: &'a Method) -> MethodDesc<'a> {
    let (output, options) = match &m.kind {
        MethodKind::Rpc {
            output, options, ..
        } => (
            Some(output.as_str()),
            MethodOptions::Rpc {
                timeout_ms: options.timeout_ms,
                idempotent: options.idempotent,
            },
        ),
        MethodKind::Event => (None, MethodOptions::Event {}),
        MethodKind::Stream { options } => (
            None,
            MethodOptions::Stream {
                delivery: match options.delivery {
                    Delivery::Reliable => "reliable",
                    Delivery::Datagram => "datagram",
                },
                jitter_ms: options.jitter_ms,
                max_frame_bytes: options.max_frame_bytes,
            },
        ),
    };
    MethodDesc {
        name: &m.name,
        full_name: format!("{}/{}", s.full_name, m.name),
        kind: m.kind.keyword(),
        input: &m.input,
        output,
        deprecated: m.deprecated,
        options,
        doc: &m.doc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echostream_idl::compile_source;
    use serde_json::{Value, json};

    fn export_one(text: &str) -> Value {
        let c = compile_source("t.echo", text);
        serde_json::from_str(&export(&c.schema.expect("valid"))).expect("valid JSON")
    }

    #[test]
    fn header_and_every_kind_of_member() {
        let d = export_one(
            "/// Pkg.\npackage p.v1;\nenum E {\n  E_ZERO = 0;\n}\n/// M doc.\nmessage M {\n  map<string, E> by_name = 1;\n  oneof o {\n    M child = 2;\n  }\n  repeated sint32 v = 3 [packed = false];\n}\nservice S {\n  rpc get(M) returns (M) [timeout_ms = 2147483647];\n  event tell(M);\n  stream feed(M) [delivery = datagram];\n}\n",
        );
        assert_eq!(d["format"], "echostream.descriptor");
        assert_eq!(d["version"], 1);
        let p = &d["packages"][0];
        assert_eq!(p["name"], "p.v1");
        assert_eq!(p["doc"], "Pkg.");
        assert_eq!(p["files"], json!([{"name": "t.echo", "imports": []}]));
        let m = &p["messages"][0];
        assert_eq!(m["full_name"], "p.v1.M");
        assert_eq!(m["doc"], "M doc.");
        assert_eq!(
            m["fields"][0],
            json!({
                "name": "by_name", "json_name": "byName", "number": 1, "label": "none",
                "type": {"kind": "map", "key": "string", "value": {"kind": "enum", "name": "p.v1.E"}},
                "oneof": null, "deprecated": false, "packed": null, "doc": ""
            })
        );
        assert_eq!(m["fields"][1]["oneof"], "o");
        assert_eq!(m["fields"][2]["packed"], false);
        assert_eq!(m["oneofs"][0]["fields"], json!(["child"]));
        let methods = &p["services"][0]["methods"];
        assert_eq!(methods[0]["full_name"], "p.v1.S/get");
        assert_eq!(methods[0]["kind"], "rpc");
        assert_eq!(methods[0]["output"], "p.v1.M");
        assert_eq!(
            methods[0]["options"],
            json!({"timeout_ms": 2147483647, "idempotent": false})
        );
        assert_eq!(methods[1]["kind"], "event");
        assert_eq!(methods[1]["output"], Value::Null);
        assert_eq!(methods[1]["options"], json!({}));
        assert_eq!(
            methods[2]["options"],
            json!({"delivery": "datagram", "jitter_ms": 0, "max_frame_bytes": 1048576})
        );
    }
}
