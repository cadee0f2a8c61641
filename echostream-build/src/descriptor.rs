//! The checked model as a protobuf `FileDescriptorSet`, the input of prost-build's
//! `compile_fds`-style generation (no protoc anywhere).
//!
//! Everything maps as protoc would describe the same `.proto` file (proto3):
//! - a singular field is `LABEL_OPTIONAL` without presence; an `optional` field is
//!   `LABEL_OPTIONAL` with `proto3_optional` and a synthetic oneof `_name`, placed after the
//!   real oneofs;
//! - a `map<K, V>` field is a repeated field of a nested `XxxEntry` message (`map_entry`
//!   option, `key = 1`, `value = 2`), nested after the declared nested messages;
//! - type names are fully qualified with a leading dot; `json_name` is the lowerCamelCase
//!   name protoc computes;
//! - reserved message ranges are end-exclusive, reserved enum ranges end-inclusive, as in
//!   `descriptor.proto`;
//! - doc comments are `SourceCodeInfo` leading comments, with source spans (0-based line and
//!   column) of each item. Items the schema leaves undocumented get a short generated line
//!   (`Schema field `room = 1`.`), so that generated Rust code has a doc on every public item.
//!
//! Services are left out: prost only generates messages and enums, and EchoStream's service
//! code is generated from the model itself (see `service`).

use echostream_idl::model::{
    Enum, Field, FieldType, Label, Message, ReservedRange, Scalar, Schema, SchemaFile,
};
use echostream_idl::{SourceMap, Span};
use prost_types::descriptor_proto::ReservedRange as MessageReservedRange;
use prost_types::enum_descriptor_proto::EnumReservedRange;
use prost_types::field_descriptor_proto::{Label as PbLabel, Type};
use prost_types::source_code_info::Location;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FieldOptions, FileDescriptorProto, FileDescriptorSet, MessageOptions, OneofDescriptorProto,
    SourceCodeInfo,
};

use crate::docs;

/// Field numbers of `descriptor.proto`, for `SourceCodeInfo` paths.
mod tag {
    pub const FILE_MESSAGE: i32 = 4;
    pub const FILE_ENUM: i32 = 5;
    pub const MESSAGE_FIELD: i32 = 2;
    pub const MESSAGE_NESTED: i32 = 3;
    pub const MESSAGE_ENUM: i32 = 4;
    pub const MESSAGE_ONEOF: i32 = 8;
    pub const ENUM_VALUE: i32 = 2;
}

/// The descriptor set of every file of `schema`, in dependency order.
pub fn file_descriptor_set(schema: &Schema, sources: &SourceMap) -> FileDescriptorSet {
    FileDescriptorSet {
        file: schema
            .files
            .iter()
            .map(|f| file_descriptor(f, sources))
            .collect(),
    }
}

/// The descriptor of one file.
pub fn file_descriptor(file: &SchemaFile, sources: &SourceMap) -> FileDescriptorProto {
    let mut builder = Builder {
        sources,
        locations: Vec::new(),
    };
    let message_type = file
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| builder.message(m, vec![tag::FILE_MESSAGE, i as i32]))
        .collect();
    let enum_type = file
        .enums
        .iter()
        .enumerate()
        .map(|(i, e)| builder.enumeration(e, vec![tag::FILE_ENUM, i as i32]))
        .collect();
    FileDescriptorProto {
        name: Some(file.name.clone()),
        package: Some(file.package.clone()),
        dependency: file.imports.iter().map(|i| i.name.clone()).collect(),
        message_type,
        enum_type,
        source_code_info: Some(SourceCodeInfo {
            location: builder.locations,
        }),
        syntax: Some("proto3".to_string()),
        ..Default::default()
    }
}

/// Collects source locations while descriptors are built.
struct Builder<'a> {
    sources: &'a SourceMap,
    locations: Vec<Location>,
}

impl Builder<'_> {
    /// Records the location of the item at `path`, with its doc (or a generated one).
    fn locate(&mut self, path: &[i32], span: Span, doc: &str, fallback: impl FnOnce() -> String) {
        let start = self.sources.line_col(span);
        let end = self
            .sources
            .line_col(Span::new(span.file, span.end, span.end));
        let (line, col) = (start.line as i32 - 1, start.column as i32 - 1);
        let (end_line, end_col) = (end.line as i32 - 1, end.column as i32 - 1);
        let span = if line == end_line {
            vec![line, col, end_col]
        } else {
            vec![line, col, end_line, end_col]
        };
        self.locations.push(Location {
            path: path.to_vec(),
            span,
            leading_comments: Some(docs::leading_comment(doc, fallback)),
            ..Default::default()
        });
    }

    fn message(&mut self, message: &Message, path: Vec<i32>) -> DescriptorProto {
        self.locate(&path, message.span, &message.doc, || {
            format!("Schema message `{}`.", message.full_name)
        });
        let mut oneof_decl: Vec<OneofDescriptorProto> = Vec::new();
        for (i, oneof) in message.oneofs.iter().enumerate() {
            let mut p = path.clone();
            p.extend([tag::MESSAGE_ONEOF, i as i32]);
            self.locate(&p, oneof.span, &oneof.doc, || {
                format!("Schema oneof `{}`.", oneof.name)
            });
            oneof_decl.push(OneofDescriptorProto {
                name: Some(oneof.name.clone()),
                options: None,
            });
        }
        let mut fields = Vec::with_capacity(message.fields.len());
        let mut map_entries = Vec::new();
        for (i, field) in message.fields.iter().enumerate() {
            let mut p = path.clone();
            p.extend([tag::MESSAGE_FIELD, i as i32]);
            self.locate(&p, field.span, &field.doc, || {
                format!("Schema field `{} = {}`.", field.name, field.number)
            });
            let mut descriptor = field_descriptor(field, &message.full_name);
            if let FieldType::Map { key, value } = &field.ty {
                map_entries.push(map_entry(field, *key, value));
            }
            if field.label == Label::Optional {
                descriptor.oneof_index = Some(oneof_decl.len() as i32);
                oneof_decl.push(OneofDescriptorProto {
                    // protoc's name. It never clashes in a checked schema: a field or oneof
                    // named `_x` would clash with `x` in Rust, and is rejected.
                    name: Some(format!("_{}", field.name)),
                    options: None,
                });
            }
            fields.push(descriptor);
        }
        let mut nested_type: Vec<DescriptorProto> = message
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut p = path.clone();
                p.extend([tag::MESSAGE_NESTED, i as i32]);
                self.message(m, p)
            })
            .collect();
        nested_type.extend(map_entries);
        let enum_type = message
            .enums
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut p = path.clone();
                p.extend([tag::MESSAGE_ENUM, i as i32]);
                self.enumeration(e, p)
            })
            .collect();
        DescriptorProto {
            name: Some(message.name.clone()),
            field: fields,
            nested_type,
            enum_type,
            oneof_decl,
            reserved_range: message
                .reserved_ranges
                .iter()
                .map(message_reserved_range)
                .collect(),
            reserved_name: message.reserved_names.clone(),
            ..Default::default()
        }
    }

    fn enumeration(&mut self, e: &Enum, path: Vec<i32>) -> EnumDescriptorProto {
        self.locate(&path, e.span, &e.doc, || {
            format!("Schema enum `{}`.", e.full_name)
        });
        let value = e
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut p = path.clone();
                p.extend([tag::ENUM_VALUE, i as i32]);
                self.locate(&p, v.span, &v.doc, || {
                    format!("Schema value `{} = {}`.", v.name, v.number)
                });
                EnumValueDescriptorProto {
                    name: Some(v.name.clone()),
                    number: Some(v.number),
                    options: None,
                }
            })
            .collect();
        EnumDescriptorProto {
            name: Some(e.name.clone()),
            value,
            reserved_range: e
                .reserved_ranges
                .iter()
                .map(|r| EnumReservedRange {
                    start: Some(clamp_i32(r.start)),
                    end: Some(clamp_i32(r.end)),
                })
                .collect(),
            reserved_name: e.reserved_names.clone(),
            ..Default::default()
        }
    }
}

/// The descriptor of a field of `message` (fully qualified name).
fn field_descriptor(field: &Field, message: &str) -> FieldDescriptorProto {
    let (label, ty, type_name) = match &field.ty {
        FieldType::Map { .. } => (
            PbLabel::Repeated,
            Type::Message,
            Some(format!(".{message}.{}", map_entry_name(&field.name))),
        ),
        ty => {
            let label = if field.label == Label::Repeated {
                PbLabel::Repeated
            } else {
                PbLabel::Optional
            };
            let (ty, type_name) = value_type(ty);
            (label, ty, type_name)
        }
    };
    let options =
        (field.options.deprecated || field.options.packed.is_some()).then(|| FieldOptions {
            deprecated: field.options.deprecated.then_some(true),
            packed: field.options.packed,
            ..Default::default()
        });
    FieldDescriptorProto {
        name: Some(field.name.clone()),
        number: Some(field.number as i32),
        label: Some(label as i32),
        r#type: Some(ty as i32),
        type_name,
        oneof_index: field.oneof.map(|i| i as i32),
        json_name: Some(json_name(&field.name)),
        options,
        proto3_optional: (field.label == Label::Optional).then_some(true),
        ..Default::default()
    }
}

/// The descriptor type (and type name, for messages and enums) of a non-map field type.
fn value_type(ty: &FieldType) -> (Type, Option<String>) {
    match ty {
        FieldType::Scalar(s) => (scalar_type(*s), None),
        FieldType::Message(name) => (Type::Message, Some(format!(".{name}"))),
        FieldType::Enum(name) => (Type::Enum, Some(format!(".{name}"))),
        // The model never nests maps; described as its entry would be, for completeness.
        FieldType::Map { .. } => (Type::Message, None),
    }
}

/// The descriptor type of a scalar.
pub fn scalar_type(scalar: Scalar) -> Type {
    match scalar {
        Scalar::Bool => Type::Bool,
        Scalar::Int32 => Type::Int32,
        Scalar::Int64 => Type::Int64,
        Scalar::Uint32 => Type::Uint32,
        Scalar::Uint64 => Type::Uint64,
        Scalar::Sint32 => Type::Sint32,
        Scalar::Sint64 => Type::Sint64,
        Scalar::Fixed32 => Type::Fixed32,
        Scalar::Fixed64 => Type::Fixed64,
        Scalar::Sfixed32 => Type::Sfixed32,
        Scalar::Sfixed64 => Type::Sfixed64,
        Scalar::Float => Type::Float,
        Scalar::Double => Type::Double,
        Scalar::String => Type::String,
        Scalar::Bytes => Type::Bytes,
    }
}

/// The entry message of a map field: `key = 1`, `value = 2`, option `map_entry`.
fn map_entry(field: &Field, key: Scalar, value: &FieldType) -> DescriptorProto {
    let entry_field =
        |name: &str, number: i32, (ty, type_name): (Type, Option<String>)| FieldDescriptorProto {
            name: Some(name.to_string()),
            number: Some(number),
            label: Some(PbLabel::Optional as i32),
            r#type: Some(ty as i32),
            type_name,
            json_name: Some(name.to_string()),
            ..Default::default()
        };
    DescriptorProto {
        name: Some(map_entry_name(&field.name)),
        field: vec![
            entry_field("key", 1, (scalar_type(key), None)),
            entry_field("value", 2, value_type(value)),
        ],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name protoc gives the entry message of map field `field`: `by_id` → `ByIdEntry`.
pub fn map_entry_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 5);
    let mut upper = true;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out.push_str("Entry");
    out
}

/// The JSON name protoc computes: underscores removed, the letter after each upper-cased.
pub fn json_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A reserved message range, end-exclusive as `descriptor.proto` has it.
fn message_reserved_range(r: &ReservedRange) -> MessageReservedRange {
    MessageReservedRange {
        start: Some(clamp_i32(r.start)),
        end: Some(clamp_i32(r.end.saturating_add(1))),
    }
}

/// Reserved bounds are checked to fit field or enum numbers; clamped for the type system.
fn clamp_i32(n: i64) -> i32 {
    n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use echostream_idl::compile_source;

    fn descriptor(text: &str) -> FileDescriptorProto {
        let c = compile_source("t.echo", text);
        let schema = c.schema.expect("valid");
        file_descriptor(&schema.files[0], &c.sources)
    }

    #[test]
    fn names_as_protoc_makes_them() {
        assert_eq!(map_entry_name("by_int32"), "ByInt32Entry");
        assert_eq!(map_entry_name("labels"), "LabelsEntry");
        assert_eq!(json_name("reply_to"), "replyTo");
        assert_eq!(json_name("a_b_c"), "aBC");
    }

    #[test]
    fn optional_fields_get_synthetic_oneofs_after_real_ones() {
        let d = descriptor(
            "package p;\nmessage M {\n  optional int32 a = 1;\n  oneof o { int32 b = 2; }\n  string s = 3;\n  optional int32 c = 4;\n}\n",
        );
        let m = &d.message_type[0];
        let names: Vec<&str> = m.oneof_decl.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["o", "_a", "_c"]);
        assert_eq!(m.field[0].oneof_index, Some(1));
        assert_eq!(m.field[0].proto3_optional, Some(true));
        assert_eq!(m.field[1].oneof_index, Some(0));
        assert_eq!(m.field[1].proto3_optional, None);
        assert_eq!(m.field[3].oneof_index, Some(2));
    }

    #[test]
    fn maps_are_repeated_entry_messages() {
        let d = descriptor(
            "package p;\nmessage V {}\nmessage M {\n  message N {}\n  map<string, V> by_name = 1;\n}\n",
        );
        let m = &d.message_type[1];
        assert_eq!(m.field[0].label(), PbLabel::Repeated);
        assert_eq!(m.field[0].type_name(), ".p.M.ByNameEntry");
        let entry = &m.nested_type[1];
        assert_eq!(entry.name(), "ByNameEntry");
        assert_eq!(entry.options.as_ref().unwrap().map_entry, Some(true));
        assert_eq!(entry.field[0].r#type(), Type::String);
        assert_eq!(entry.field[1].type_name(), ".p.V");
    }

    #[test]
    fn reserved_ranges_and_options() {
        let d = descriptor(
            "package p;\nmessage M {\n  reserved 2, 5 to max;\n  repeated int32 a = 1 [packed = false, deprecated = true];\n}\nenum E {\n  reserved 3 to 4;\n  E_ZERO = 0;\n}\n",
        );
        let m = &d.message_type[0];
        let ranges: Vec<(i32, i32)> = m
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        assert_eq!(ranges, [(2, 3), (5, 536_870_912)]);
        let options = m.field[0].options.as_ref().unwrap();
        assert_eq!(
            (options.packed, options.deprecated),
            (Some(false), Some(true))
        );
        assert_eq!(d.enum_type[0].reserved_range[0].end(), 4);
    }

    #[test]
    fn docs_and_spans_in_source_code_info() {
        let d = descriptor("package p;\n/// Doc\n/// two.\nmessage M {\n  int32 a = 1;\n}\n");
        let locations = &d.source_code_info.as_ref().unwrap().location;
        assert_eq!(locations[0].path, [4, 0]);
        assert_eq!(locations[0].leading_comments(), " Doc\n two.\n");
        assert_eq!(locations[1].path, [4, 0, 2, 0]);
        assert_eq!(locations[1].leading_comments(), " Schema field `a = 1`.\n");
        assert_eq!(locations[1].span, [4, 2, 14]);
    }
}
