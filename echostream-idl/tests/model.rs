//! The checked model through its public API, as a code generator reads it; and import
//! resolution (include directory order, defaults, files reached twice).

use echostream_idl::model::{Delivery, FieldType, Label, MethodKind, Scalar, StreamOptions};
use echostream_idl::{MemoryFs, compile_with};

const COMMON: &str = "/// Shared.\npackage common;\n\nmessage Attachment {\n  string url = 1;\n}\n";

const CHAT: &str = r#"/// Chat.
package chat.v1;

import "common.echo";

enum Presence {
  PRESENCE_OFFLINE = 0;
  PRESENCE_ONLINE = 1;
}

/// One chat message.
message Message {
  message Inner {
    uint64 id = 1;
  }
  optional common.Attachment attachment = 4;
  repeated Inner inners = 5;
  map<string, Presence> presence = 6;
  oneof target {
    uint64 reply_to = 7;
    bool broadcast = 8 [deprecated = true];
  }
  reserved 9, 12 to 15, "old";
}

service ChatService {
  /// Log in.
  rpc login(Message) returns (Message.Inner) [timeout_ms = 2000, idempotent = true];
  event typing(Message) [deprecated = true];
  stream video(Message) [delivery = datagram, jitter_ms = 80];
  stream plain(Message);
}
"#;

fn chat_fs() -> MemoryFs {
    let mut fs = MemoryFs::new();
    fs.insert("schemas/chat.echo", CHAT);
    fs.insert("schemas/common.echo", COMMON);
    fs
}

#[test]
fn the_model_has_fully_qualified_resolved_typed_items() {
    let compilation = compile_with(&chat_fs(), &["schemas/chat.echo"], &["schemas"]);
    assert!(
        compilation.diagnostics.is_empty(),
        "{}",
        compilation.render_diagnostics(false)
    );
    let schema = compilation.schema.expect("valid");

    // Files: the import first, each with its logical name, package and doc.
    let names: Vec<&str> = schema.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["common.echo", "chat.echo"]);
    let chat = &schema.files[1];
    assert!(chat.is_root && !schema.files[0].is_root);
    assert_eq!(chat.package, "chat.v1");
    assert_eq!(chat.doc, "Chat.");
    assert_eq!(chat.imports[0].name, "common.echo");
    assert_eq!(chat.imports[0].file, schema.files[0].id);

    let message = schema.message("chat.v1.Message").expect("declared");
    assert_eq!(message.doc, "One chat message.");
    assert_eq!(message.messages[0].full_name, "chat.v1.Message.Inner");
    let field = |name: &str| message.fields.iter().find(|f| f.name == name).expect(name);
    let attachment = field("attachment");
    assert_eq!(attachment.label, Label::Optional);
    assert_eq!(
        attachment.ty,
        FieldType::Message("common.Attachment".into())
    );
    assert_eq!(attachment.number, 4);
    assert_eq!(
        field("inners").ty,
        FieldType::Message("chat.v1.Message.Inner".into())
    );
    assert_eq!(field("inners").label, Label::Repeated);
    assert_eq!(
        field("presence").ty,
        FieldType::Map {
            key: Scalar::String,
            value: Box::new(FieldType::Enum("chat.v1.Presence".into()))
        }
    );
    assert_eq!(field("reply_to").oneof, Some(0));
    assert!(field("broadcast").options.deprecated);
    assert_eq!(message.oneofs[0].name, "target");
    let members: Vec<&str> = message.oneofs[0]
        .fields
        .iter()
        .map(|&i| message.fields[i].name.as_str())
        .collect();
    assert_eq!(members, ["reply_to", "broadcast"]);
    let reserved: Vec<(i64, i64)> = message
        .reserved_ranges
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(reserved, [(9, 9), (12, 15)]);
    assert_eq!(message.reserved_names, ["old"]);

    let presence = schema.enumeration("chat.v1.Presence").expect("declared");
    assert_eq!(presence.values[1].name, "PRESENCE_ONLINE");
    assert_eq!(presence.values[1].number, 1);

    let service = schema.service("chat.v1.ChatService").expect("declared");
    let login = &service.methods[0];
    assert_eq!(login.doc, "Log in.");
    assert_eq!(login.input, "chat.v1.Message");
    match &login.kind {
        MethodKind::Rpc {
            output, options, ..
        } => {
            assert_eq!(output, "chat.v1.Message.Inner");
            assert_eq!(options.timeout_ms, Some(2000));
            assert!(options.idempotent);
        }
        other => panic!("not an rpc: {other:?}"),
    }
    assert_eq!(service.methods[1].kind, MethodKind::Event);
    assert!(service.methods[1].deprecated);
    match &service.methods[2].kind {
        MethodKind::Stream { options } => {
            assert_eq!(options.delivery, Delivery::Datagram);
            assert_eq!(options.jitter_ms, 80);
            assert_eq!(
                options.max_frame_bytes,
                StreamOptions::DEFAULT_MAX_FRAME_BYTES
            );
        }
        other => panic!("not a stream: {other:?}"),
    }
    assert_eq!(
        service.methods[3].kind,
        MethodKind::Stream {
            options: StreamOptions::default()
        }
    );

    // Spans point at the source.
    let text = compilation.sources.file(chat.id).text();
    assert_eq!(&text[login.name_span.start..login.name_span.end], "login");
    assert_eq!(
        &text[attachment.type_span.start..attachment.type_span.end],
        "common.Attachment"
    );
}

#[test]
fn include_directories_are_searched_in_order() {
    let mut fs = chat_fs();
    // A second `common.echo`, in a directory listed first, wins.
    fs.insert(
        "override/common.echo",
        "package common;\n\nmessage Attachment {\n  bytes data = 1;\n}\n",
    );
    let compilation = compile_with(&fs, &["schemas/chat.echo"], &["override", "schemas"]);
    let schema = compilation.schema.expect("valid");
    let attachment = schema.message("common.Attachment").expect("declared");
    assert_eq!(attachment.fields[0].name, "data");
    assert_eq!(
        compilation.sources.file(schema.files[0].id).path(),
        std::path::Path::new("override/common.echo")
    );
}

#[test]
fn without_include_directories_the_root_directory_is_used() {
    let compilation = compile_with(&chat_fs(), &["schemas/chat.echo"], &[] as &[&str]);
    assert!(
        compilation.diagnostics.is_empty(),
        "{}",
        compilation.render_diagnostics(false)
    );
}

#[test]
fn a_file_imported_twice_is_read_once() {
    let mut fs = MemoryFs::new();
    fs.insert("base.echo", "package base;\n\nmessage B {}\n");
    fs.insert(
        "left.echo",
        "package left;\n\nimport \"base.echo\";\n\nmessage L {\n  base.B b = 1;\n}\n",
    );
    fs.insert(
        "right.echo",
        "package right;\n\nimport \"base.echo\";\n\nmessage R {\n  base.B b = 1;\n}\n",
    );
    fs.insert(
        "top.echo",
        "package top;\n\nimport \"left.echo\";\nimport \"right.echo\";\n\nmessage T {\n  left.L l = 1;\n  right.R r = 2;\n}\n",
    );
    // `base.echo` is also a root: still one file.
    let compilation = compile_with(&fs, &["top.echo", "base.echo"], &["."]);
    let schema = compilation.schema.expect("valid");
    let names: Vec<&str> = schema.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["base.echo", "left.echo", "right.echo", "top.echo"]);
    assert_eq!(compilation.sources.files().len(), 4);
    assert_eq!(schema.root_files().count(), 2);
}
