//! Names that clash only in generated code, reported as diagnostics at the schema items that
//! cause them, before any code is written.
//!
//! The schema checker already rejects names that differ in the schema but convert to the same
//! Rust name (`fooBar` and `foo_bar`). What it cannot know is what code generation adds: the
//! server, client and constants of a service (`FooServer`, `FooClient`, `mod foo`), the module
//! of a message's nested types (`mod foo`), the modules of sub-packages, the client's own
//! methods (`new`, `session`, `login_with`), the hooks of streams (`on_feed_open`), the entry
//! message of a map field (`LabelsEntry`), and the file of each package.

use std::collections::HashMap;

use echostream_idl::model::{FieldType, Message, Schema};
use echostream_idl::{Diagnostic, Span};

use crate::descriptor::map_entry_name;
use crate::names;
use crate::service::{CLIENT_RESERVED, MethodNames, NAME_CONSTANT, ServiceNames, Sides};

/// One generated name in a scope: what makes it, and where.
struct Entry {
    what: String,
    span: Option<Span>,
}

/// The names of one Rust scope, reporting the second item of a name.
struct Scope<'a> {
    names: HashMap<String, Entry>,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> Scope<'a> {
    fn new(diagnostics: &'a mut Vec<Diagnostic>) -> Self {
        Scope {
            names: HashMap::new(),
            diagnostics,
        }
    }

    /// Adds `rust`, made by `what` (declared at `span`). A name reserved by generated code has
    /// no span; a clash is then reported at the schema item alone.
    fn add(&mut self, rust: String, what: String, span: Option<Span>) {
        if let Some(first) = self.names.get(&rust) {
            let (at, other, other_span) = match (span, first.span) {
                (Some(at), _) => (at, &first.what, first.span),
                (None, Some(at)) => (at, &what, None),
                (None, None) => return,
            };
            let this = if span.is_some() { &what } else { &first.what };
            let mut diagnostic = Diagnostic::error(
                at,
                format!("{this} and {other} both become `{rust}` in generated Rust code"),
            )
            .with_label(format!("becomes `{rust}`"))
            .with_help("rename one of them");
            if let Some(other_span) = other_span {
                diagnostic = diagnostic.with_note(other_span, format!("{other} is declared here"));
            }
            self.diagnostics.push(diagnostic);
            return;
        }
        self.names.insert(rust, Entry { what, span });
    }
}

/// Every generated-name clash of `schema`, with `sides(service full name)` saying what is
/// generated for each service.
pub fn check(schema: &Schema, sides: &dyn Fn(&str) -> Sides) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    empty_names(schema, &mut diagnostics);
    package_files(schema, &mut diagnostics);
    packages(schema, sides, &mut diagnostics);
    for file in &schema.files {
        for message in &file.messages {
            map_entries(message, &mut diagnostics);
        }
        for service in &file.services {
            let sides = sides(&service.full_name);
            service_scopes(service, sides, &mut diagnostics);
        }
    }
    diagnostics.sort_by_key(|d| (d.file_id(), d.span.map(|s| s.start)));
    diagnostics
}

/// Names made only of underscores, which become empty Rust identifiers.
fn empty_names(schema: &Schema, diagnostics: &mut Vec<Diagnostic>) {
    fn check(name: &str, what: &str, span: Span, diagnostics: &mut Vec<Diagnostic>) {
        if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
            diagnostics.push(
                Diagnostic::error(span, format!("{what} `{name}` has no Rust name"))
                    .with_label("only underscores")
                    .with_help("generated Rust code needs a letter or digit in every name"),
            );
        }
    }
    fn message(m: &Message, diagnostics: &mut Vec<Diagnostic>) {
        check(&m.name, "message", m.name_span, diagnostics);
        for f in &m.fields {
            check(&f.name, "field", f.name_span, diagnostics);
        }
        for o in &m.oneofs {
            check(&o.name, "oneof", o.name_span, diagnostics);
        }
        for e in &m.enums {
            enumeration(e, diagnostics);
        }
        for nested in &m.messages {
            message(nested, diagnostics);
        }
    }
    fn enumeration(e: &echostream_idl::model::Enum, diagnostics: &mut Vec<Diagnostic>) {
        check(&e.name, "enum", e.name_span, diagnostics);
        for v in &e.values {
            check(&v.name, "enum value", v.name_span, diagnostics);
        }
    }
    for file in &schema.files {
        for segment in file.package.split('.') {
            check(segment, "package name part", file.package_span, diagnostics);
        }
        for m in &file.messages {
            message(m, diagnostics);
        }
        for e in &file.enums {
            enumeration(e, diagnostics);
        }
        for s in &file.services {
            check(&s.name, "service", s.name_span, diagnostics);
            for m in &s.methods {
                check(&m.name, "method", m.name_span, diagnostics);
            }
        }
    }
}

/// Two packages whose names differ but whose modules (and files) are the same: `chat.V1` and
/// `chat.v1`.
fn package_files(schema: &Schema, diagnostics: &mut Vec<Diagnostic>) {
    let mut scope = Scope::new(diagnostics);
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for file in &schema.files {
        if seen.insert(&file.package, ()).is_none() {
            scope.add(
                names::package_file(&file.package),
                format!("package `{}`", file.package),
                Some(file.package_span),
            );
        }
    }
}

/// The items of each package module: messages, enums, nested-type modules, service items and
/// sub-package modules (Rust's type namespace holds them all).
fn packages(schema: &Schema, sides: &dyn Fn(&str) -> Sides, diagnostics: &mut Vec<Diagnostic>) {
    // Packages in order of first appearance, each with the files that declare it.
    let mut order: Vec<&str> = Vec::new();
    for file in &schema.files {
        if !order.contains(&file.package.as_str()) {
            order.push(&file.package);
        }
    }
    // For each module path, its items: (Rust name, what makes it, where).
    type Items = Vec<(String, String, Option<Span>)>;
    let mut scopes: HashMap<Vec<String>, Items> = HashMap::new();
    for package in &order {
        let module = names::package_module(package);
        // The sub-package's module, in its parent.
        if let Some((last, parent)) = module.split_last() {
            let span = schema
                .files
                .iter()
                .find(|f| f.package == *package)
                .map(|f| f.package_span);
            scopes.entry(parent.to_vec()).or_default().push((
                last.clone(),
                format!("the module of package `{package}`"),
                span,
            ));
        }
        let items = scopes.entry(module).or_default();
        let traits = schema
            .files
            .iter()
            .filter(|f| f.package == *package)
            .flat_map(|f| &f.services)
            .any(|s| sides(&s.full_name).server);
        if traits {
            // `#[async_trait]` writes `Box` unqualified in the traits it expands.
            items.push((
                "Box".to_string(),
                "`Box`, which the generated service traits use through `#[async_trait]`,"
                    .to_string(),
                None,
            ));
        }
        for file in schema.files.iter().filter(|f| f.package == *package) {
            for message in &file.messages {
                items.push((
                    names::camel(&message.name),
                    format!("message `{}`", message.full_name),
                    Some(message.name_span),
                ));
                if names::has_nested_module(message) {
                    items.push((
                        names::snake(&message.name),
                        format!("the module of the nested types of `{}`", message.full_name),
                        Some(message.name_span),
                    ));
                }
            }
            for e in &file.enums {
                items.push((
                    names::camel(&e.name),
                    format!("enum `{}`", e.full_name),
                    Some(e.name_span),
                ));
            }
            for service in &file.services {
                let generated = ServiceNames::of(service);
                let sides = sides(&service.full_name);
                let span = Some(service.name_span);
                let full = &service.full_name;
                items.push((
                    generated.module,
                    format!("the method constants of service `{full}`"),
                    span,
                ));
                if sides.server {
                    items.push((generated.service, format!("service `{full}`"), span));
                    items.push((
                        generated.server,
                        format!("the server of service `{full}`"),
                        span,
                    ));
                }
                if sides.client {
                    items.push((
                        generated.client,
                        format!("the client of service `{full}`"),
                        span,
                    ));
                }
            }
        }
    }
    // Report in a stable order: modules sorted, items in declaration order.
    let mut keys: Vec<Vec<String>> = scopes.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let mut scope = Scope::new(diagnostics);
        for (rust, what, span) in scopes.remove(&key).unwrap_or_default() {
            scope.add(rust, what, span);
        }
    }
}

/// A map field's entry message (`LabelsEntry`) must not be the name of a nested type.
fn map_entries(message: &Message, diagnostics: &mut Vec<Diagnostic>) {
    let mut scope = Scope::new(diagnostics);
    for nested in &message.messages {
        scope.add(
            nested.name.clone(),
            format!("message `{}`", nested.full_name),
            Some(nested.name_span),
        );
    }
    for e in &message.enums {
        scope.add(
            e.name.clone(),
            format!("enum `{}`", e.full_name),
            Some(e.name_span),
        );
    }
    for field in &message.fields {
        if let FieldType::Map { .. } = field.ty {
            scope.add(
                map_entry_name(&field.name),
                format!("the entry message of map field `{}`", field.name),
                Some(field.name_span),
            );
        }
    }
    for nested in &message.messages {
        map_entries(nested, diagnostics);
    }
}

/// The scopes inside a service's code: the constants module, the trait, the client.
fn service_scopes(
    service: &echostream_idl::model::Service,
    sides: Sides,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let full = &service.full_name;
    let mut constants = Scope::new(diagnostics);
    constants.add(
        NAME_CONSTANT.to_string(),
        format!("the name constant of service `{full}`"),
        None,
    );
    for method in &service.methods {
        constants.add(
            MethodNames::of(method).constant,
            format!("the constant of method `{}`", method.name),
            Some(method.name_span),
        );
    }
    if sides.server {
        let mut handler = Scope::new(diagnostics);
        for method in &service.methods {
            let names = MethodNames::of(method);
            let span = Some(method.name_span);
            handler.add(names.method, format!("method `{}`", method.name), span);
            if let Some((open, end)) = names.hooks {
                handler.add(
                    open,
                    format!("the open hook of stream `{}`", method.name),
                    span,
                );
                handler.add(
                    end,
                    format!("the end hook of stream `{}`", method.name),
                    span,
                );
            }
        }
    }
    if sides.client {
        let mut client = Scope::new(diagnostics);
        for reserved in CLIENT_RESERVED {
            client.add(
                reserved.to_string(),
                format!("the client's own method `{reserved}`"),
                None,
            );
        }
        for method in &service.methods {
            let names = MethodNames::of(method);
            let span = Some(method.name_span);
            client.add(names.method, format!("method `{}`", method.name), span);
            client.add(
                names.with,
                format!("the client's `_with` variant of method `{}`", method.name),
                span,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echostream_idl::compile_source;

    fn errors(text: &str) -> Vec<String> {
        let c = compile_source("t.echo", text);
        let schema = c.schema.expect("the schema itself is valid");
        let both = |_: &str| Sides {
            server: true,
            client: true,
        };
        check(&schema, &both)
            .iter()
            .map(|d| d.headline(&c.sources))
            .collect()
    }

    #[test]
    fn a_message_named_like_a_generated_client() {
        assert_eq!(
            errors("package p;\nmessage FooClient {}\nservice Foo {}\n"),
            [
                "t.echo:3:9: error: the client of service `p.Foo` and message `p.FooClient` both become `FooClient` in generated Rust code"
            ]
        );
    }

    #[test]
    fn method_names_against_generated_methods() {
        let found = errors(
            "package p;\nmessage M {}\nservice S {\n  rpc new(M) returns (M);\n  rpc get(M) returns (M);\n  event get_with(M);\n  stream feed(M);\n  event on_feed_open(M);\n  event name(M);\n}\n",
        );
        assert_eq!(
            found,
            [
                "t.echo:4:7: error: method `new` and the client's own method `new` both become `new` in generated Rust code",
                "t.echo:6:9: error: method `get_with` and the client's `_with` variant of method `get` both become `get_with` in generated Rust code",
                "t.echo:8:9: error: method `on_feed_open` and the open hook of stream `feed` both become `on_feed_open` in generated Rust code",
                "t.echo:9:9: error: the constant of method `name` and the name constant of service `p.S` both become `NAME` in generated Rust code",
            ]
        );
    }

    #[test]
    fn modules_against_sub_packages() {
        let mut fs = echostream_idl::MemoryFs::new();
        fs.insert(
            "p.echo",
            "package p;\nmessage Feed { oneof x { int32 a = 1; } }\nservice Room {}\n",
        );
        fs.insert("feed.echo", "package p.feed;\nmessage X {}\n");
        fs.insert("room.echo", "package p.room;\nmessage Y {}\n");
        let c = echostream_idl::compile_with(
            &fs,
            &["p.echo", "feed.echo", "room.echo"],
            &[] as &[&str],
        );
        let schema = c.schema.expect("valid");
        let both = |_: &str| Sides {
            server: true,
            client: true,
        };
        let found: Vec<String> = check(&schema, &both)
            .iter()
            .map(|d| d.headline(&c.sources))
            .collect();
        assert_eq!(
            found,
            [
                "feed.echo:1:1: error: the module of package `p.feed` and the module of the nested types of `p.Feed` both become `feed` in generated Rust code",
                "room.echo:1:1: error: the module of package `p.room` and the method constants of service `p.Room` both become `room` in generated Rust code",
            ]
        );
    }

    #[test]
    fn map_entries_against_nested_types() {
        assert_eq!(
            errors(
                "package p;\nmessage M {\n  message LabelsEntry {}\n  map<string, string> labels = 1;\n}\n"
            ),
            [
                "t.echo:4:23: error: the entry message of map field `labels` and message `p.M.LabelsEntry` both become `LabelsEntry` in generated Rust code"
            ]
        );
    }

    #[test]
    fn only_generated_sides_count() {
        let c = compile_source(
            "t.echo",
            "package p;\nmessage FooClient {}\nservice Foo {}\n",
        );
        let schema = c.schema.unwrap();
        let server_only = |_: &str| Sides {
            server: true,
            client: false,
        };
        assert!(check(&schema, &server_only).is_empty());
    }

    #[test]
    fn a_type_named_box_beside_a_service_trait() {
        assert_eq!(
            errors("package p;\nmessage Box {}\nservice S {}\n"),
            [
                "t.echo:2:9: error: message `p.Box` and `Box`, which the generated service traits use through `#[async_trait]`, both become `Box` in generated Rust code"
            ]
        );
        assert!(errors("package p;\nmessage Box {}\n").is_empty());
    }

    #[test]
    fn names_of_underscores_only_have_no_rust_name() {
        let found =
            errors("package p;\nmessage M {\n  int32 _ = 1;\n}\nservice S {\n  event __(M);\n}\n");
        assert_eq!(
            found,
            [
                "t.echo:3:9: error: field `_` has no Rust name",
                "t.echo:6:9: error: method `__` has no Rust name",
            ]
        );
    }

    #[test]
    fn golden_style_schemas_have_no_clash() {
        assert!(
            errors("package p;\nmessage Words { string message = 1; }\nservice Keywords {\n  rpc rpc(Words) returns (Words);\n  event event(Words);\n  stream stream(Words);\n  rpc service(Words) returns (Words);\n}\n")
                .is_empty()
        );
    }
}
