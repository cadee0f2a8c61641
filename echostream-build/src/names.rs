//! The Rust names of schema items in generated code, converted exactly as prost-build converts
//! them (so that service code names the types prost generates), and the relative paths between
//! package modules.

use echostream_idl::model::Message;
use echostream_idl::naming;

/// `name` as a Rust identifier: a raw identifier for keywords (`r#type`), an underscore after
/// the keywords that cannot be raw (`self_`), an underscore before a leading digit. The same
/// rule as prost-build's.
pub fn sanitize(name: &str) -> String {
    match name {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{name}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{name}_"),
        s if s.starts_with(|c: char| c.is_ascii_digit()) => format!("_{name}"),
        _ => name.to_string(),
    }
}

/// A snake_case Rust name (field, method, module): `videoFeed` → `video_feed`.
pub fn snake(name: &str) -> String {
    sanitize(&naming::rust_snake(name))
}

/// An UpperCamelCase Rust name (type, trait): `chat_service` → `ChatService`.
pub fn camel(name: &str) -> String {
    sanitize(&naming::rust_camel(name))
}

/// A SCREAMING_SNAKE_CASE Rust name (constant): `video_feed` → `VIDEO_FEED`.
pub fn screaming(name: &str) -> String {
    sanitize(&naming::screaming_snake(name))
}

/// The Rust module path of a package: `chat.v1` → `["chat", "v1"]`.
pub fn package_module(package: &str) -> Vec<String> {
    package
        .split('.')
        .filter(|s| !s.is_empty())
        .map(snake)
        .collect()
}

/// Whether prost-build gives `message` a module for its nested types (`mod message` beside
/// `struct Message`): it has nested messages, enums or oneofs (map entries and the synthetic
/// oneofs of `optional` are not generated).
pub fn has_nested_module(message: &Message) -> bool {
    !message.messages.is_empty() || !message.enums.is_empty() || !message.oneofs.is_empty()
}

/// The name of the file generated for a package: `chat.v1.rs`, as prost-build names it.
pub fn package_file(package: &str) -> String {
    format!("{}.rs", package_module(package).join("."))
}

/// The path, relative to the module of package `from`, of the message or enum `full_name` (fully
/// qualified, without leading dot): `Login`, `message::Inner`, `super::super::common::Attachment`.
/// The same resolution as prost-build's: the common prefix of the two dotted paths is skipped,
/// then one `super` per remaining segment of `from`, then the rest in snake_case modules.
pub fn type_path(from: &str, full_name: &str) -> String {
    let local: Vec<&str> = from.split('.').filter(|s| !s.is_empty()).collect();
    let mut target: Vec<&str> = full_name.split('.').collect();
    let ty = target.pop().unwrap_or_default();
    let common = local
        .iter()
        .zip(&target)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = Vec::new();
    parts.extend(local[common..].iter().map(|_| "super".to_string()));
    parts.extend(target[common..].iter().map(|s| snake(s)));
    parts.push(camel(ty));
    parts.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_prost() {
        assert_eq!(snake("type"), "r#type");
        assert_eq!(snake("self"), "self_");
        assert_eq!(camel("self"), "Self_");
        assert_eq!(snake("videoFeed"), "video_feed");
        assert_eq!(camel("chat_service"), "ChatService");
        assert_eq!(screaming("video_feed"), "VIDEO_FEED");
        assert_eq!(sanitize("2d"), "_2d");
    }

    #[test]
    fn package_modules_and_files() {
        assert_eq!(package_module("iot.control.v1"), ["iot", "control", "v1"]);
        assert_eq!(package_file("chat.v1"), "chat.v1.rs");
        assert_eq!(package_module("a.type"), ["a", "r#type"]);
    }

    #[test]
    fn type_paths_are_relative_like_prost() {
        assert_eq!(type_path("chat.v1", "chat.v1.Login"), "Login");
        assert_eq!(
            type_path("tree.v1", "tree.v1.Outer.Inner.Leaf"),
            "outer::inner::Leaf"
        );
        assert_eq!(
            type_path("chat.v1", "common.Attachment"),
            "super::super::common::Attachment"
        );
        assert_eq!(
            type_path("hub.v1", "media.v1.Frame"),
            "super::super::media::v1::Frame"
        );
        assert_eq!(type_path("a.b", "a.Top"), "super::Top");
        assert_eq!(type_path("a", "a.b.Deep"), "b::Deep");
    }
}
