//! The symbol table of a compilation and protobuf-style name resolution.
//!
//! A reference `A.B` written in scope `pkg.Outer` is looked up as `pkg.Outer.A.B`, then
//! `pkg.A.B`, then `A.B`: innermost scope first. A leading dot (`.pkg.A`) means the name is
//! already fully qualified. Only types of the file itself and of the files it imports directly
//! are visible.

use rustc_hash::FxHashMap as HashMap;

use crate::ast;
use crate::diagnostic::Diagnostic;
use crate::model::Scalar;
use crate::source::{FileId, Span};

/// What a fully-qualified name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SymbolKind {
    Message,
    Enum,
    Service,
}

impl SymbolKind {
    pub fn describe(self) -> &'static str {
        match self {
            SymbolKind::Message => "message",
            SymbolKind::Enum => "enum",
            SymbolKind::Service => "service",
        }
    }
}

/// One declared type or service.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Symbol {
    pub kind: SymbolKind,
    pub file: FileId,
    /// The name in its declaration.
    pub span: Span,
}

/// All declared names of a compilation, by fully-qualified name.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    map: HashMap<String, Symbol>,
}

/// The outcome of looking a name up.
pub(crate) enum Lookup<'a> {
    /// Found and visible.
    Found(String, &'a Symbol),
    /// Declared, but in a file the referring file does not import.
    Hidden(String, &'a Symbol),
    /// Not declared anywhere.
    NotFound,
}

/// `package.name`, or `name` for the empty package.
pub(crate) fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        let mut s = String::with_capacity(scope.len() + 1 + name.len());
        s.push_str(scope);
        s.push('.');
        s.push_str(name);
        s
    }
}

impl Symbols {
    /// Declares every message, enum and service of a parsed file; duplicates are reported.
    pub fn declare_file(
        &mut self,
        file: FileId,
        package: &str,
        ast: &ast::File,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        for decl in &ast.decls {
            match decl {
                ast::Decl::Message(m) => self.declare_message(file, package, true, m, diagnostics),
                ast::Decl::Enum(e) => {
                    self.declare(file, package, true, &e.name, SymbolKind::Enum, diagnostics)
                }
                ast::Decl::Service(s) => self.declare(
                    file,
                    package,
                    true,
                    &s.name,
                    SymbolKind::Service,
                    diagnostics,
                ),
            }
        }
    }

    fn declare_message(
        &mut self,
        file: FileId,
        scope: &str,
        is_package: bool,
        message: &ast::Message,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.declare(
            file,
            scope,
            is_package,
            &message.name,
            SymbolKind::Message,
            diagnostics,
        );
        let inner = qualify(scope, &message.name.name);
        for item in &message.items {
            match item {
                ast::MessageItem::Message(m) => {
                    self.declare_message(file, &inner, false, m, diagnostics)
                }
                ast::MessageItem::Enum(e) => {
                    self.declare(file, &inner, false, &e.name, SymbolKind::Enum, diagnostics)
                }
                _ => {}
            }
        }
    }

    fn declare(
        &mut self,
        file: FileId,
        scope: &str,
        is_package: bool,
        name: &ast::Ident,
        kind: SymbolKind,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        if Scalar::from_name(&name.name).is_some() {
            diagnostics.push(
                Diagnostic::error(
                    name.span,
                    format!(
                        "`{}` is a built-in type and cannot name a {}",
                        name.name,
                        kind.describe()
                    ),
                )
                .with_label("reserved for the scalar type")
                .with_help("choose another name; scalar type names always mean the scalar"),
            );
            return;
        }
        let full = qualify(scope, &name.name);
        if let Some(first) = self.map.get(&full) {
            let place = if is_package {
                if scope.is_empty() {
                    "the empty package".to_string()
                } else {
                    format!("package `{scope}`")
                }
            } else {
                format!("message `{scope}`")
            };
            diagnostics.push(
                Diagnostic::error(
                    name.span,
                    format!(
                        "the name `{}` is defined more than once in {place}",
                        name.name
                    ),
                )
                .with_label(format!("`{}` defined again here", name.name))
                .with_note(
                    first.span,
                    format!("first defined here, as a {}", first.kind.describe()),
                ),
            );
            return;
        }
        self.map.insert(
            full,
            Symbol {
                kind,
                file,
                span: name.span,
            },
        );
    }

    /// Resolves `name` as written in `scope`, seeing only the types of `visible` files.
    pub fn lookup(&self, scope: &str, name: &str, visible: &[FileId]) -> Lookup<'_> {
        if let Some(absolute) = name.strip_prefix('.') {
            return match self.map.get_key_value(absolute) {
                Some((k, s)) if visible.contains(&s.file) => Lookup::Found(k.clone(), s),
                Some((k, s)) => Lookup::Hidden(k.clone(), s),
                None => Lookup::NotFound,
            };
        }
        let mut hidden = None;
        let mut scope = scope;
        // One buffer for the candidates of every enclosing scope: most lookups miss in one or
        // two scopes before they hit.
        let mut candidate = String::with_capacity(scope.len() + 1 + name.len());
        loop {
            candidate.clear();
            if !scope.is_empty() {
                candidate.push_str(scope);
                candidate.push('.');
            }
            candidate.push_str(name);
            if let Some(symbol) = self.map.get(&candidate) {
                if visible.contains(&symbol.file) {
                    return Lookup::Found(candidate, symbol);
                }
                if hidden.is_none() {
                    hidden = Some((candidate.clone(), symbol));
                }
            }
            if scope.is_empty() {
                break;
            }
            scope = scope.rfind('.').map_or("", |i| &scope[..i]);
        }
        match hidden {
            Some((full, symbol)) => Lookup::Hidden(full, symbol),
            None => Lookup::NotFound,
        }
    }

    /// A close name for an unknown type reference, written as it could be written in `scope`.
    pub fn suggest(
        &self,
        scope: &str,
        name: &str,
        visible: &[FileId],
        with_scalars: bool,
    ) -> Option<String> {
        let written = name.trim_start_matches('.');
        let segments = written.split('.').count();
        let package_of_scope = scope;
        let mut best: Option<(usize, String)> = None;
        let mut consider = |distance: usize, text: String| {
            if best
                .as_ref()
                .is_none_or(|(d, t)| (distance, &text) < (*d, t))
            {
                best = Some((distance, text));
            }
        };
        let limit = 1.max(written.len() / 3);
        for (full, symbol) in &self.map {
            if symbol.kind == SymbolKind::Service || !visible.contains(&symbol.file) {
                continue;
            }
            let parts: Vec<&str> = full.split('.').collect();
            if parts.len() < segments {
                continue;
            }
            let suffix = parts[parts.len() - segments..].join(".");
            let distance = distance(&suffix, written);
            if distance > limit {
                continue;
            }
            // Write the suggestion so that it resolves from here.
            let mut text = suffix.clone();
            for take in segments..=parts.len() {
                text = parts[parts.len() - take..].join(".");
                if let Lookup::Found(found, _) = self.lookup(package_of_scope, &text, visible)
                    && &found == full
                {
                    break;
                }
            }
            if text == written {
                continue;
            }
            consider(distance, text);
        }
        if with_scalars && segments == 1 {
            for scalar in Scalar::ALL {
                let distance = distance(scalar.name(), written);
                if distance <= limit && scalar.name() != written {
                    consider(distance, scalar.name().to_string());
                }
            }
        }
        best.map(|(_, text)| text)
    }
}

/// Edit distance ignoring ASCII case: `Strin` is one edit from `string`.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(&a.to_ascii_lowercase(), &b.to_ascii_lowercase())
}
