//! Bytes encoded by the generated Rust types decode to the same values through the exported
//! `.proto` files, as a peer in another language would decode them: the `.proto` files of the
//! golden and end-to-end schemas (`echoc export --proto`) are compiled by protox (a protoc
//! written in Rust) and the bytes decoded by prost-reflect, then compared field by field; and
//! what prost-reflect encodes decodes back to the same Rust value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use echostream_runtime::Bytes;
use echostream_runtime::prost::Message;
use echostream_tests::schemas::{chat, common, e2e, maps, oneofs, options, tree, types};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage as _, Value};

/// The exported `.proto` files of the schemas, compiled once for all tests of this binary.
fn pool() -> DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(compile_exported);
    POOL.clone()
}

/// Exports the `.proto` files of the schemas with messages of every kind and compiles them.
fn compile_exported() -> DescriptorPool {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = manifest.join("../echostream-idl/tests/valid");
    let schemas = manifest.join("schemas");
    let roots = [
        golden.join("chat.echo"),
        golden.join("maps.echo"),
        golden.join("nested.echo"),
        golden.join("oneofs.echo"),
        golden.join("options.echo"),
        golden.join("scalars.echo"),
        schemas.join("e2e.echo"),
    ];
    let compilation = echostream_idl::compile(&roots, &[golden, schemas]);
    let Some(schema) = &compilation.schema else {
        panic!("{}", compilation.render_diagnostics(false));
    };
    let files = echostream_build::export::proto::export(schema).expect("exports");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("roundtrip-proto");
    let _ = std::fs::remove_dir_all(&dir);
    for file in &files {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("in a directory")).expect("mkdir");
        std::fs::write(&path, &file.contents).expect("write");
    }
    let mut compiler = protox::Compiler::new([&dir]).expect("protox");
    compiler.include_imports(true);
    for file in &files {
        compiler
            .open_file(&file.path)
            .unwrap_or_else(|e| panic!("protox refuses {}: {e:?}", file.path));
    }
    // Through the encoded descriptor set, as a peer in another language would load it (this also
    // gives prost-reflect field options as protoc writes them).
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
        .expect("a valid descriptor set")
}

/// `message` encoded by prost, decoded by prost-reflect as `name` of the exported `.proto`; and
/// the dynamic message re-encoded, decoded back by prost into the same value.
fn through_proto<M: Message + Default + PartialEq + std::fmt::Debug>(
    pool: &DescriptorPool,
    name: &str,
    message: &M,
) -> DynamicMessage {
    let descriptor = pool
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in the exported .proto"));
    let bytes = message.encode_to_vec();
    let dynamic = DynamicMessage::decode(descriptor, bytes.as_slice()).expect("decodes");
    assert!(
        dynamic.unknown_fields().next().is_none(),
        "{name}: every field is known to the .proto"
    );
    let back = M::decode(dynamic.encode_to_vec().as_slice()).expect("decodes back");
    assert_eq!(&back, message, "{name} round-trips");
    dynamic
}

/// Asserts that field `name` of `dynamic` is `expected`.
fn field(dynamic: &DynamicMessage, name: &str, expected: Value) {
    let value = dynamic
        .get_field_by_name(name)
        .unwrap_or_else(|| panic!("no field {name}"));
    assert_eq!(*value, expected, "field {name}");
}

/// Asserts whether field `name` of `dynamic` is present (explicit presence).
fn present(dynamic: &DynamicMessage, name: &str, expected: bool) {
    assert_eq!(
        dynamic.has_field_by_name(name),
        expected,
        "presence of {name}"
    );
}

fn list(values: impl IntoIterator<Item = Value>) -> Value {
    Value::List(values.into_iter().collect())
}

#[test]
fn every_scalar_plain_optional_and_repeated() {
    let pool = pool();
    let m = types::v1::AllScalars {
        a_bool: true,
        a_int32: -32,
        a_int64: -64_000_000_000,
        a_uint32: 32,
        a_uint64: u64::MAX,
        a_sint32: i32::MIN,
        a_sint64: i64::MIN,
        a_fixed32: u32::MAX,
        a_fixed64: 1 << 60,
        a_sfixed32: -7,
        a_sfixed64: -(1 << 60),
        a_float: 1.5,
        a_double: -2.25,
        a_string: "héllo".into(),
        a_bytes: Bytes::from_static(&[0, 1, 255]),
        o_bool: Some(false),
        o_int32: Some(0),
        o_int64: None,
        o_uint32: Some(3),
        o_uint64: None,
        o_sint32: Some(-1),
        o_sint64: None,
        o_fixed32: Some(0),
        o_fixed64: None,
        o_sfixed32: Some(-2),
        o_sfixed64: None,
        o_float: Some(0.0),
        o_double: None,
        o_string: Some(String::new()),
        o_bytes: None,
        r_bool: vec![true, false],
        r_int32: vec![-1, 2],
        r_int64: vec![i64::MAX],
        r_uint32: vec![0, u32::MAX],
        r_uint64: vec![5],
        r_sint32: vec![-3, 3],
        r_sint64: vec![-4],
        r_fixed32: vec![9],
        r_fixed64: vec![10],
        r_sfixed32: vec![-11],
        r_sfixed64: vec![-12],
        r_float: vec![0.5],
        r_double: vec![0.25, -0.125],
        r_string: vec!["a".into(), String::new()],
        r_bytes: vec![Bytes::from_static(b"x"), Bytes::new()],
    };
    let d = through_proto(&pool, "types.v1.AllScalars", &m);
    field(&d, "a_bool", Value::Bool(true));
    field(&d, "a_int32", Value::I32(-32));
    field(&d, "a_int64", Value::I64(-64_000_000_000));
    field(&d, "a_uint32", Value::U32(32));
    field(&d, "a_uint64", Value::U64(u64::MAX));
    field(&d, "a_sint32", Value::I32(i32::MIN));
    field(&d, "a_sint64", Value::I64(i64::MIN));
    field(&d, "a_fixed32", Value::U32(u32::MAX));
    field(&d, "a_fixed64", Value::U64(1 << 60));
    field(&d, "a_sfixed32", Value::I32(-7));
    field(&d, "a_sfixed64", Value::I64(-(1 << 60)));
    field(&d, "a_float", Value::F32(1.5));
    field(&d, "a_double", Value::F64(-2.25));
    field(&d, "a_string", Value::String("héllo".into()));
    field(
        &d,
        "a_bytes",
        Value::Bytes(Bytes::from_static(&[0, 1, 255])),
    );

    // Optional fields keep their presence, zero values included.
    for (name, set) in [
        ("o_bool", true),
        ("o_int32", true),
        ("o_int64", false),
        ("o_uint32", true),
        ("o_uint64", false),
        ("o_sint32", true),
        ("o_sint64", false),
        ("o_fixed32", true),
        ("o_fixed64", false),
        ("o_sfixed32", true),
        ("o_sfixed64", false),
        ("o_float", true),
        ("o_double", false),
        ("o_string", true),
        ("o_bytes", false),
    ] {
        present(&d, name, set);
    }
    field(&d, "o_bool", Value::Bool(false));
    field(&d, "o_uint32", Value::U32(3));
    field(&d, "o_sint32", Value::I32(-1));
    field(&d, "o_sfixed32", Value::I32(-2));
    field(&d, "o_string", Value::String(String::new()));

    field(&d, "r_bool", list([Value::Bool(true), Value::Bool(false)]));
    field(&d, "r_int32", list([Value::I32(-1), Value::I32(2)]));
    field(&d, "r_int64", list([Value::I64(i64::MAX)]));
    field(&d, "r_uint32", list([Value::U32(0), Value::U32(u32::MAX)]));
    field(&d, "r_uint64", list([Value::U64(5)]));
    field(&d, "r_sint32", list([Value::I32(-3), Value::I32(3)]));
    field(&d, "r_sint64", list([Value::I64(-4)]));
    field(&d, "r_fixed32", list([Value::U32(9)]));
    field(&d, "r_fixed64", list([Value::U64(10)]));
    field(&d, "r_sfixed32", list([Value::I32(-11)]));
    field(&d, "r_sfixed64", list([Value::I64(-12)]));
    field(&d, "r_float", list([Value::F32(0.5)]));
    field(&d, "r_double", list([Value::F64(0.25), Value::F64(-0.125)]));
    field(
        &d,
        "r_string",
        list([Value::String("a".into()), Value::String(String::new())]),
    );
    field(
        &d,
        "r_bytes",
        list([
            Value::Bytes(Bytes::from_static(b"x")),
            Value::Bytes(Bytes::new()),
        ]),
    );
}

#[test]
fn maps_of_every_key_and_of_enums_and_messages() {
    let pool = pool();
    let mut m = maps::v1::Maps::default();
    m.by_int32.insert(-1, "a".into());
    m.by_int64.insert(i64::MIN, "b".into());
    m.by_uint32.insert(7, "c".into());
    m.by_uint64.insert(u64::MAX, "d".into());
    m.by_sint32.insert(-9, "e".into());
    m.by_sint64.insert(-10, "f".into());
    m.by_fixed32.insert(11, "g".into());
    m.by_fixed64.insert(12, "h".into());
    m.by_sfixed32.insert(-13, "i".into());
    m.by_sfixed64.insert(-14, "j".into());
    m.by_bool.insert(true, "k".into());
    m.blobs
        .insert("blob".into(), Bytes::from_static(b"\x00\x01"));
    m.colors.insert("red".into(), maps::v1::Color::Red as i32);
    m.points
        .insert("p".into(), maps::v1::Point { x: 1.0, y: -1.0 });
    m.qualified_points
        .insert(3, maps::v1::Point { x: 0.5, y: 0.0 });
    let d = through_proto(&pool, "maps.v1.Maps", &m);
    let map =
        |pairs: Vec<(MapKey, Value)>| Value::Map(pairs.into_iter().collect::<HashMap<_, _>>());
    let s = |v: &str| Value::String(v.into());
    field(&d, "by_int32", map(vec![(MapKey::I32(-1), s("a"))]));
    field(&d, "by_int64", map(vec![(MapKey::I64(i64::MIN), s("b"))]));
    field(&d, "by_uint32", map(vec![(MapKey::U32(7), s("c"))]));
    field(&d, "by_uint64", map(vec![(MapKey::U64(u64::MAX), s("d"))]));
    field(&d, "by_sint32", map(vec![(MapKey::I32(-9), s("e"))]));
    field(&d, "by_sint64", map(vec![(MapKey::I64(-10), s("f"))]));
    field(&d, "by_fixed32", map(vec![(MapKey::U32(11), s("g"))]));
    field(&d, "by_fixed64", map(vec![(MapKey::U64(12), s("h"))]));
    field(&d, "by_sfixed32", map(vec![(MapKey::I32(-13), s("i"))]));
    field(&d, "by_sfixed64", map(vec![(MapKey::I64(-14), s("j"))]));
    field(&d, "by_bool", map(vec![(MapKey::Bool(true), s("k"))]));
    field(
        &d,
        "blobs",
        map(vec![(
            MapKey::String("blob".into()),
            Value::Bytes(Bytes::from_static(b"\x00\x01")),
        )]),
    );
    field(
        &d,
        "colors",
        map(vec![(MapKey::String("red".into()), Value::EnumNumber(1))]),
    );
    let point = d.get_field_by_name("points").expect("field");
    let point = point.as_map().expect("a map")[&MapKey::String("p".into())]
        .as_message()
        .expect("a message")
        .clone();
    assert_eq!(point.descriptor().full_name(), "maps.v1.Point");
    field(&point, "x", Value::F64(1.0));
    field(&point, "y", Value::F64(-1.0));
}

#[test]
fn oneofs_nested_types_and_enums() {
    let pool = pool();
    let post = oneofs::v1::Post {
        id: 9,
        content: Some(oneofs::v1::post::Content::Mood(
            oneofs::v1::Mood::Happy as i32,
        )),
        audience: Some(oneofs::v1::post::Audience::Group("g".into())),
        tags: vec!["t".into()],
    };
    let d = through_proto(&pool, "oneofs.v1.Post", &post);
    field(&d, "id", Value::U64(9));
    field(&d, "mood", Value::EnumNumber(1));
    present(&d, "mood", true);
    present(&d, "text", false);
    present(&d, "image", false);
    field(&d, "group", Value::String("g".into()));
    present(&d, "everyone", false);
    // A oneof member set to its default value is still the one set.
    let text = oneofs::v1::Post {
        content: Some(oneofs::v1::post::Content::Text(oneofs::v1::Text::default())),
        ..Default::default()
    };
    let d = through_proto(&pool, "oneofs.v1.Post", &text);
    present(&d, "text", true);

    let mut leaf = tree::v1::outer::inner::Leaf::default();
    leaf.set_kind(tree::v1::outer::inner::Kind::Leaf);
    leaf.set_mode(tree::v1::outer::Mode::Fast);
    let user = tree::v1::User {
        inner: Some(tree::v1::outer::Inner {
            leaves: vec![leaf, tree::v1::outer::inner::Leaf::default()],
            kind: tree::v1::outer::inner::Kind::Leaf as i32,
        }),
        leaf: Some(leaf),
        kind: 1,
        mode: 1,
        outer: Some(tree::v1::Outer {
            first_leaf: Some(leaf),
            ..Default::default()
        }),
    };
    let d = through_proto(&pool, "tree.v1.User", &user);
    field(&d, "kind", Value::EnumNumber(1));
    field(&d, "mode", Value::EnumNumber(1));
    let inner = d.get_field_by_name("inner").expect("field");
    let inner = inner.as_message().expect("a message");
    assert_eq!(inner.descriptor().full_name(), "tree.v1.Outer.Inner");
    let leaves = inner.get_field_by_name("leaves").expect("field");
    let leaves = leaves.as_list().expect("a list");
    assert_eq!(leaves.len(), 2);
    let first = leaves[0].as_message().expect("a message");
    field(first, "kind", Value::EnumNumber(1));
    field(first, "mode", Value::EnumNumber(1));
}

#[test]
fn optional_messages_from_other_packages() {
    let pool = pool();
    let mut labels = HashMap::new();
    labels.insert("k".to_string(), "v".to_string());
    let message = chat::v1::Message {
        room: "r".into(),
        author: "a".into(),
        text: "t".into(),
        attachment: Some(common::Attachment {
            url: "u".into(),
            mime_type: "image/png".into(),
            size_bytes: 3,
            thumbnail: Some(Bytes::from_static(b"png")),
        }),
        mentions: vec!["m".into()],
        labels,
        target: Some(chat::v1::message::Target::ReplyTo(77)),
    };
    let d = through_proto(&pool, "chat.v1.Message", &message);
    field(&d, "room", Value::String("r".into()));
    field(&d, "mentions", list([Value::String("m".into())]));
    field(&d, "reply_to", Value::U64(77));
    present(&d, "broadcast", false);
    let attachment = d.get_field_by_name("attachment").expect("field");
    let attachment = attachment.as_message().expect("a message");
    assert_eq!(attachment.descriptor().full_name(), "common.Attachment");
    field(attachment, "mime_type", Value::String("image/png".into()));
    field(attachment, "size_bytes", Value::U64(3));
    field(
        attachment,
        "thumbnail",
        Value::Bytes(Bytes::from_static(b"png")),
    );

    let mut hello = e2e::v1::Hello {
        name: "n".into(),
        avatar: None,
        ..Default::default()
    };
    hello.set_mood(e2e::v1::Mood::Grumpy);
    let d = through_proto(&pool, "e2e.v1.Hello", &hello);
    field(&d, "mood", Value::EnumNumber(2));
    present(&d, "avatar", false);
}

#[test]
fn field_options_keep_the_same_encoding() {
    let pool = pool();
    // `packed = false` and `packed = true` travel as the schema says: the dynamic message,
    // encoding by the exported .proto, writes the same bytes prost writes.
    let sample = options::v1::Sample {
        values: vec![1, 2, 300],
        deltas: vec![-1, 1],
        #[allow(deprecated)]
        old_name: "x".into(),
        levels: vec![1, 0],
    };
    let d = through_proto(&pool, "options.v1.Sample", &sample);
    let descriptor = d.descriptor();
    let values = descriptor.get_field_by_name("values").expect("field");
    assert!(!values.is_packed(), "{:?}", values.field_descriptor_proto());
    assert!(
        descriptor
            .get_field_by_name("deltas")
            .expect("field")
            .is_packed()
    );
    assert!(
        !descriptor
            .get_field_by_name("levels")
            .expect("field")
            .is_packed()
    );
    assert_eq!(d.encode_to_vec(), sample.encode_to_vec());
}
