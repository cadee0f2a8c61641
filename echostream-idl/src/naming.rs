//! Naming rules: the style the language expects (warnings) and the names schema items take in
//! generated Rust code, the same conversions prost-build applies, used to find names that
//! would clash there.

use heck::{ToSnakeCase, ToUpperCamelCase};

/// The Rust name of a field, oneof field or method: `fooBar` → `foo_bar`.
pub fn rust_snake(name: &str) -> String {
    if is_snake(name) {
        // Already in the form the conversion produces (the common case, kept cheap).
        return name.to_string();
    }
    name.to_snake_case()
}

/// The Rust name of a message, enum, service or oneof enum: `foo_bar` → `FooBar`.
pub fn rust_camel(name: &str) -> String {
    let plain = is_upper_camel(name)
        && !name
            .as_bytes()
            .windows(2)
            .any(|w| w[1].is_ascii_uppercase() && !w[0].is_ascii_lowercase());
    if plain {
        // Already in the form the conversion produces (the common case, kept cheap).
        return name.to_string();
    }
    name.to_upper_camel_case()
}

/// The Rust variant name of an enum value, as prost-build makes it: upper camel case, with the
/// enum's name stripped when it is a prefix (`PRESENCE_ONLINE` in `Presence` → `Online`).
pub fn rust_variant(enum_name: &str, value: &str) -> String {
    let prefix = rust_camel(enum_name);
    let variant = rust_camel(value);
    match variant.strip_prefix(&prefix) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => rest.to_string(),
        _ => variant,
    }
}

/// `UpperCamelCase`: an upper-case first letter, letters and digits only.
pub fn is_upper_camel(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `snake_case`: lower-case letters, digits and single inner underscores.
pub fn is_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// `SCREAMING_SNAKE_CASE`: upper-case letters, digits and single inner underscores.
pub fn is_screaming_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// `name` in `SCREAMING_SNAKE_CASE`.
pub fn screaming_snake(name: &str) -> String {
    heck::ToShoutySnakeCase::to_shouty_snake_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_follow_prost() {
        assert_eq!(rust_snake("fooBar"), "foo_bar");
        assert_eq!(rust_snake("foo_bar"), "foo_bar");
        assert_eq!(rust_camel("foo_bar"), "FooBar");
        assert_eq!(rust_variant("Presence", "PRESENCE_ONLINE"), "Online");
        assert_eq!(rust_variant("Presence", "ONLINE"), "Online");
        assert_eq!(rust_variant("Foo", "FOOBAR"), "Foobar");
    }

    #[test]
    fn fast_paths_agree_with_the_full_conversion() {
        for name in [
            "field_0",
            "a1b",
            "v2_api",
            "foo2bar",
            "x",
            "Msg0",
            "FooBar",
            "Foo2bar",
            "A1B2",
            "Ab",
            "Msg0abc",
            "Http2Server",
            "X",
        ] {
            assert_eq!(rust_snake(name), name.to_snake_case(), "{name}");
            assert_eq!(rust_camel(name), name.to_upper_camel_case(), "{name}");
        }
    }

    #[test]
    fn styles() {
        assert!(is_upper_camel("HttpRequest2"));
        assert!(!is_upper_camel("http_request"));
        assert!(is_snake("video_feed2"));
        assert!(!is_snake("videoFeed"));
        assert!(!is_snake("video__feed"));
        assert!(is_screaming_snake("PRESENCE_ONLINE"));
        assert!(!is_screaming_snake("PresenceOnline"));
        assert_eq!(screaming_snake("presenceOnline"), "PRESENCE_ONLINE");
    }
}
