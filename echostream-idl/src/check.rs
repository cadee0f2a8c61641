//! Semantic checks: from parsed files to the checked [`Schema`], reporting every problem.

use std::borrow::Cow;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smol_str::SmolStr;

use crate::ast::{self, LabelKw, MethodKw, RangeEnd};
use crate::diagnostic::Diagnostic;
use crate::loader::{Loaded, LoadedFile};
use crate::model::{
    Delivery, Enum, EnumValue, Field, FieldOptions, FieldType, Import, Label, Message, Method,
    MethodKind, Oneof, ReservedRange, RpcOptions, Scalar, Schema, SchemaFile, Service,
    StreamOptions,
};
use crate::naming;
use crate::options::{self, Target};
use crate::parser::threads_for;
use crate::recover::Damage;
use crate::resolve::{Lookup, SymbolKind, Symbols, qualify};
use crate::source::{FileId, Span};

/// The largest field number protobuf allows.
pub const MAX_FIELD_NUMBER: i64 = 536_870_911;
/// Field numbers protobuf reserves for its own implementation.
pub const RESERVED_FIELD_NUMBERS: std::ops::RangeInclusive<i64> = 19_000..=19_999;

/// Checks every parsed file of `loaded`. Returns the schema when there is no error, and all
/// diagnostics (those of loading included), sorted by file and position.
pub(crate) fn check(loaded: &Loaded) -> (Option<Schema>, Vec<Diagnostic>) {
    let mut diagnostics = loaded.diagnostics.clone();

    // Packages first: every later step needs them.
    let mut packages: HashMap<FileId, (String, Span, String)> = HashMap::default();
    for file in &loaded.files {
        let Some(ast) = &file.ast else { continue };
        // A `package` statement lost to a syntax error is reported as that error.
        let lost = file.damage.as_ref().is_some_and(|d| d.lost_package);
        packages.insert(file.id, package_of(file.id, ast, lost, &mut diagnostics));
    }

    // Imported files first, so that a clash is reported in the file that imports.
    let order = dependency_order(loaded);
    let mut symbols = Symbols::default();
    // The types of a file whose package is lost to a syntax error are in no known package:
    // they are not declared, and the package-wide checks see the file on its own.
    let lost_package = |f: &LoadedFile| f.damage.as_ref().is_some_and(|d| d.lost_package);
    for &id in &order {
        let file = loaded.file(id);
        if let Some(ast) = &file.ast
            && !lost_package(file)
        {
            symbols.declare_file(id, &packages[&id].0, ast, &mut diagnostics);
        }
    }

    let mut schema_files = Vec::new();
    // By package, or by file for a file whose package is lost.
    type Scope = (String, Option<FileId>);
    let mut package_types: HashMap<Scope, Vec<(&str, Span)>> = HashMap::default();
    let mut package_enums: HashMap<Scope, Vec<EnumScope>> = HashMap::default();
    for file in &loaded.files {
        let Some(ast) = &file.ast else { continue };
        let (package, package_span, doc) = packages[&file.id].clone();
        let scope: Scope = (package.clone(), lost_package(file).then_some(file.id));
        // A file cannot judge its own type references when an import is missing or cannot be
        // read, or when a syntax error may have taken an import or a package name with it.
        let complete = !file
            .damage
            .as_ref()
            .is_some_and(|d| d.lost_import || d.lost_package)
            && file.imports.iter().all(|i| {
                i.is_some_and(|id| {
                    let target = loaded.file(id);
                    target.ast.is_some() && !lost_package(target)
                })
            });
        let mut visible = vec![file.id];
        visible.extend(file.imports.iter().flatten());
        // What syntax errors in the file or in its imports may have declared.
        let damage: Vec<&Damage> = visible
            .iter()
            .filter_map(|&id| loaded.file(id).damage.as_ref())
            .collect();
        // The names of the file's declarations, for the package-wide checks below.
        let types = package_types.entry(scope.clone()).or_default();
        let enum_scopes = package_enums.entry(scope).or_default();
        for decl in &ast.decls {
            let name = match decl {
                ast::Decl::Message(m) => &m.name,
                ast::Decl::Enum(e) => {
                    enum_scopes.push(EnumScope::of(e));
                    &e.name
                }
                ast::Decl::Service(s) => &s.name,
            };
            types.push((&name.name, name.span));
        }
        let context = FileContext {
            file: file.id,
            package: &package,
            symbols: &symbols,
            sources: &loaded.sources,
            visible: &visible,
            complete,
            damage: &damage,
        };
        let threads = threads_for(loaded.sources.file(file.id).text().len());
        let checked = context.check_decls(&ast.decls, threads);
        diagnostics.extend(checked.diagnostics);
        let imports = check_imports(file, ast, loaded, &checked.used, complete, &mut diagnostics);
        schema_files.push(SchemaFile {
            id: file.id,
            name: loaded.sources.file(file.id).name().to_string(),
            is_root: file.is_root,
            package,
            package_span,
            doc,
            imports,
            messages: checked.messages,
            enums: checked.enums,
            services: checked.services,
        });
    }

    // Names that only clash once converted to Rust, across all files of a package.
    for types in package_types.values() {
        rust_clashes(types, camel, &mut diagnostics);
    }
    for scopes in package_enums.values() {
        enum_value_scope(scopes, &mut diagnostics);
    }

    diagnostics.sort_by_key(|d| (d.file_id(), d.span.map(|s| s.start)));
    if diagnostics.iter().any(Diagnostic::is_error) {
        return (None, diagnostics);
    }
    schema_files.sort_by_key(|f| order.iter().position(|&id| id == f.id));
    (
        Some(Schema {
            files: schema_files,
        }),
        diagnostics,
    )
}

/// The package of a file, its span and its doc; reports a missing or repeated `package`
/// (unless it is `lost` to a syntax error).
fn package_of(
    file: FileId,
    ast: &ast::File,
    lost: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> (String, Span, String) {
    let Some(first) = ast.packages.first() else {
        if lost {
            return (String::new(), Span::new(file, 0, 0), String::new());
        }
        diagnostics.push(
            Diagnostic::error(Span::new(file, 0, 0), "missing `package` declaration")
                .with_label("every file declares its package")
                .with_help("start the file with a package, such as `package chat.v1;`"),
        );
        return (String::new(), Span::new(file, 0, 0), String::new());
    };
    for again in &ast.packages[1..] {
        diagnostics.push(
            Diagnostic::error(again.span, "`package` is declared more than once")
                .with_label("second `package` declaration")
                .with_note(first.span, "first declared here")
                .with_help("a file belongs to exactly one package"),
        );
    }
    (
        first.name.name.as_str().to_owned(),
        first.span,
        first.doc.as_ref().map(ast::Doc::text).unwrap_or_default(),
    )
}

/// The model's imports of a file; warns about duplicate and unused imports.
fn check_imports(
    file: &LoadedFile,
    ast: &ast::File,
    loaded: &Loaded,
    used: &HashSet<FileId>,
    complete: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Import> {
    let mut imports: Vec<Import> = Vec::new();
    for ((import, target), cyclic) in ast.imports.iter().zip(&file.imports).zip(&file.cyclic) {
        if let Some(doc) = &import.doc {
            diagnostics.push(unused_doc(doc, "import"));
        }
        let Some(target) = *target else { continue };
        if let Some(first) = imports.iter().find(|i| i.file == target) {
            diagnostics.push(
                Diagnostic::warning(import.span, format!("`{}` is imported twice", import.path))
                    .with_label("imported again here")
                    .with_note(first.span, "first imported here")
                    .with_help("remove this import"),
            );
            continue;
        }
        // Uses may be hidden in text that did not parse, here or in the imported file; an
        // import on a cycle is reported as the cycle.
        let judged =
            complete && !cyclic && file.damage.is_none() && loaded.file(target).damage.is_none();
        if judged && !used.contains(&target) {
            diagnostics.push(
                Diagnostic::warning(import.span, format!("unused import `{}`", import.path))
                    .with_label("nothing declared in this file is used")
                    .with_help("remove this import"),
            );
        }
        imports.push(Import {
            name: loaded.sources.file(target).name().to_string(),
            file: target,
            span: import.span,
        });
    }
    imports
}

/// The warning for a doc comment before a statement that cannot be documented.
fn unused_doc(doc: &ast::Doc, keyword: &str) -> Diagnostic {
    Diagnostic::warning(doc.span, "unused doc comment")
        .with_label(format!("`{keyword}` cannot be documented"))
        .with_help("only declarations keep doc comments; use `//` for a plain comment")
}

/// Files in an order where each comes after the files it imports (cycles broken).
fn dependency_order(loaded: &Loaded) -> Vec<FileId> {
    fn visit(id: FileId, loaded: &Loaded, seen: &mut HashSet<FileId>, out: &mut Vec<FileId>) {
        if !seen.insert(id) {
            return;
        }
        for target in loaded.file(id).imports.iter().flatten() {
            visit(*target, loaded, seen, out);
        }
        out.push(id);
    }
    let mut seen = HashSet::default();
    let mut out = Vec::new();
    for file in &loaded.files {
        visit(file.id, loaded, &mut seen, &mut out);
    }
    out
}

/// Reports names that differ as written but are the same once converted with `convert`.
fn rust_clashes(
    names: &[(&str, Span)],
    convert: fn(&str) -> Cow<'_, str>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<Cow<'_, str>, (&str, Span)> =
        HashMap::with_capacity_and_hasher(names.len(), Default::default());
    for &(name, span) in names {
        let rust = convert(name);
        match seen.get(&rust) {
            Some(&(first, first_span)) if first != name => diagnostics.push(
                Diagnostic::error(
                    span,
                    format!("`{first}` and `{name}` both become `{rust}` in generated Rust code"),
                )
                .with_label(format!("becomes `{rust}`"))
                .with_note(first_span, format!("`{first}` also becomes `{rust}`"))
                .with_help("rename one of them"),
            ),
            Some(_) => {}
            None => {
                seen.insert(rust, (name, span));
            }
        }
    }
}

/// [`naming::rust_snake`], borrowing names that are already snake_case.
fn snake(name: &str) -> Cow<'_, str> {
    if naming::is_snake(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(naming::rust_snake(name))
    }
}

/// [`naming::rust_camel`], without borrowing (conversions of camel case are not trivial).
fn camel(name: &str) -> Cow<'_, str> {
    Cow::Owned(naming::rust_camel(name))
}

/// The values of one enum, for the protobuf rule that enum values share their enum's scope.
struct EnumScope {
    name: SmolStr,
    values: Vec<(SmolStr, Span)>,
}

impl EnumScope {
    fn of(e: &ast::Enum) -> Self {
        EnumScope {
            name: e.name.name.clone(),
            values: e
                .values
                .iter()
                .map(|v| (v.name.name.clone(), v.name.span))
                .collect(),
        }
    }
}

/// Protobuf (like C++) puts enum values in the scope that holds the enum: two enums of one
/// scope cannot have a value of the same name. Reported so that exported `.proto` files stay
/// valid for every protobuf compiler.
fn enum_value_scope(scopes: &[EnumScope], diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, (&str, Span)> = HashMap::default();
    for scope in scopes {
        let mut own = HashSet::default();
        for (value, span) in &scope.values {
            if !own.insert(value.as_str()) {
                continue;
            }
            match seen.get(value.as_str()) {
                Some((other, first)) if *other != scope.name => diagnostics.push(
                    Diagnostic::error(
                        *span,
                        format!("enum value `{value}` is also a value of enum `{other}` in the same scope"),
                    )
                    .with_label("declared again here")
                    .with_note(*first, format!("a value of `{other}`"))
                    .with_help(format!(
                        "enum values share the scope of their enum, as in protobuf; prefix them with the enum name, e.g. `{}_{value}`",
                        naming::screaming_snake(&scope.name)
                    )),
                ),
                Some(_) => {}
                None => {
                    seen.insert(value, (&scope.name, *span));
                }
            }
        }
    }
}

/// What checking the declarations of one file needs to know.
struct FileContext<'a> {
    file: FileId,
    package: &'a str,
    symbols: &'a Symbols,
    sources: &'a crate::source::SourceMap,
    visible: &'a [FileId],
    /// Whether every import of the file was found and read, and no syntax error may have
    /// taken an import or the package name with it.
    complete: bool,
    /// What syntax errors in the file and its imports may have declared.
    damage: &'a [&'a Damage],
}

/// The checked declarations of (a run of) a file, in order.
#[derive(Default)]
struct CheckedDecls {
    messages: Vec<Message>,
    enums: Vec<Enum>,
    services: Vec<Service>,
    /// The imported files a reference resolved into.
    used: HashSet<FileId>,
    diagnostics: Vec<Diagnostic>,
}

impl CheckedDecls {
    /// Appends the declarations of the run that follows.
    fn append(&mut self, next: CheckedDecls) {
        self.messages.extend(next.messages);
        self.enums.extend(next.enums);
        self.services.extend(next.services);
        self.used.extend(next.used);
        self.diagnostics.extend(next.diagnostics);
    }
}

impl FileContext<'_> {
    /// Checks `decls`, in runs on `threads` threads (each declaration is checked on its own
    /// against the symbol table); the runs' results, joined in order, are exactly those of one
    /// sequential pass.
    fn check_decls(&self, decls: &[ast::Decl], threads: usize) -> CheckedDecls {
        if threads < 2 {
            return self.check_run(decls);
        }
        let run = decls.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let mut runs = decls.chunks(run);
            let first = runs.next().unwrap_or_default();
            let handles: Vec<_> = runs
                .map(|decls| scope.spawn(move || self.check_run(decls)))
                .collect();
            let mut checked = self.check_run(first);
            for handle in handles {
                match handle.join() {
                    Ok(next) => checked.append(next),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            checked
        })
    }

    /// Checks `decls` on this thread.
    fn check_run(&self, decls: &[ast::Decl]) -> CheckedDecls {
        let mut checked = CheckedDecls::default();
        let mut checker = FileChecker {
            context: self,
            used: HashSet::default(),
            diagnostics: &mut checked.diagnostics,
            enum_scopes: Vec::new(),
        };
        for decl in decls {
            match decl {
                ast::Decl::Message(m) => {
                    checked.messages.push(checker.message(self.package, m));
                }
                ast::Decl::Enum(e) => checked.enums.push(checker.enumeration(self.package, e)),
                ast::Decl::Service(s) => checked.services.push(checker.service(s)),
            }
        }
        checked.used = checker.used;
        checked
    }
}

/// Checks the declarations of one file, or of a run of them.
struct FileChecker<'a> {
    context: &'a FileContext<'a>,
    /// The imported files a reference resolved into.
    used: HashSet<FileId>,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// Scratch: the enums of the message being checked, for [`enum_value_scope`].
    enum_scopes: Vec<EnumScope>,
}

impl FileChecker<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Warns when `name` is not in `style`; `fixed` computes the suggested name.
    fn style(
        &mut self,
        ok: bool,
        name: &ast::Ident,
        what: &str,
        style: &str,
        fixed: fn(&str) -> String,
    ) {
        if !ok {
            self.diagnostics.push(
                Diagnostic::warning(
                    name.span,
                    format!("{what} `{}` should be {style}", name.name),
                )
                .with_label(format!("not {style}"))
                .with_help(format!("rename it to `{}`", fixed(&name.name))),
            );
        }
    }

    fn type_style(&mut self, name: &ast::Ident, what: &str) {
        let ok = naming::is_upper_camel(&name.name);
        self.style(ok, name, what, "UpperCamelCase", naming::rust_camel);
    }

    fn snake_style(&mut self, name: &ast::Ident, what: &str) {
        let ok = naming::is_snake(&name.name);
        self.style(ok, name, what, "snake_case", naming::rust_snake);
    }

    fn message(&mut self, scope: &str, m: &ast::Message) -> Message {
        self.type_style(&m.name, "message name");
        let full_name = qualify(scope, &m.name.name);
        let mut out = Message {
            name: m.name.name.as_str().to_owned(),
            full_name: full_name.clone(),
            doc: doc(&m.doc),
            fields: Vec::new(),
            oneofs: Vec::new(),
            messages: Vec::new(),
            enums: Vec::new(),
            reserved_ranges: Vec::new(),
            reserved_names: Vec::new(),
            span: m.span,
            name_span: m.name.span,
        };

        // Reserved numbers and names first: fields are checked against them.
        for item in &m.items {
            if let ast::MessageItem::Reserved(r) = item {
                let (ranges, names) = self.reserved(r, 1, MAX_FIELD_NUMBER, "field number");
                out.reserved_ranges.extend(ranges);
                out.reserved_names.extend(names);
            }
        }

        // Everything named in the message body, for duplicates and Rust clashes.
        let mut member_names: Vec<(&str, Span, &'static str)> = Vec::new();
        let mut type_names: Vec<(&str, Span)> = Vec::new();
        let mut numbers: HashMap<i64, (&str, Span)> = HashMap::default();
        let saved_scopes = std::mem::take(&mut self.enum_scopes);
        for item in &m.items {
            match item {
                ast::MessageItem::Field(f) => {
                    member_names.push((&f.name.name, f.name.span, "field"));
                    let field = self.field(&full_name, &out, f, None, &mut numbers);
                    out.fields.extend(field);
                }
                ast::MessageItem::Oneof(o) => {
                    self.snake_style(&o.name, "oneof name");
                    member_names.push((&o.name.name, o.name.span, "oneof"));
                    type_names.push((&o.name.name, o.name.span));
                    if o.fields.is_empty() {
                        self.error(
                            Diagnostic::error(
                                o.name.span,
                                format!("oneof `{}` has no fields", o.name.name),
                            )
                            .with_label("empty oneof")
                            .with_help("a oneof needs at least one field"),
                        );
                    }
                    let index = out.oneofs.len();
                    let mut members = Vec::new();
                    for f in &o.fields {
                        member_names.push((&f.name.name, f.name.span, "field"));
                        if let Some(field) =
                            self.field(&full_name, &out, f, Some(index), &mut numbers)
                        {
                            members.push(out.fields.len());
                            out.fields.push(field);
                        }
                    }
                    out.oneofs.push(Oneof {
                        name: o.name.name.as_str().to_owned(),
                        doc: doc(&o.doc),
                        fields: members,
                        span: o.span,
                        name_span: o.name.span,
                    });
                }
                ast::MessageItem::Message(inner) => {
                    member_names.push((&inner.name.name, inner.name.span, "message"));
                    type_names.push((&inner.name.name, inner.name.span));
                    let checked = self.message(&full_name, inner);
                    out.messages.push(checked);
                }
                ast::MessageItem::Enum(e) => {
                    member_names.push((&e.name.name, e.name.span, "enum"));
                    type_names.push((&e.name.name, e.name.span));
                    let checked = self.enumeration(&full_name, e);
                    self.enum_scopes.push(EnumScope::of(e));
                    out.enums.push(checked);
                }
                ast::MessageItem::Reserved(_) => {}
            }
        }
        let scopes = std::mem::replace(&mut self.enum_scopes, saved_scopes);
        enum_value_scope(&scopes, self.diagnostics);

        // Exact duplicates among fields, oneofs and nested types (one protobuf scope); nested
        // types are already reported by the symbol table among themselves.
        let mut seen: HashMap<&str, (Span, &str)> = HashMap::default();
        for (name, span, kind) in &member_names {
            match seen.get(name) {
                Some((first, first_kind)) => {
                    if matches!(*kind, "message" | "enum")
                        && matches!(*first_kind, "message" | "enum")
                    {
                        continue;
                    }
                    let d = if *kind == "field" && *first_kind == "field" {
                        Diagnostic::error(
                            *span,
                            format!(
                                "field `{name}` is defined twice in message `{}`",
                                m.name.name
                            ),
                        )
                    } else {
                        Diagnostic::error(
                            *span,
                            format!(
                                "the name `{name}` is used by both a {first_kind} and a {kind} of message `{}`",
                                m.name.name
                            ),
                        )
                    };
                    self.error(
                        d.with_label("defined again here")
                            .with_note(*first, "first defined here"),
                    );
                }
                None => {
                    seen.insert(name, (*span, kind));
                }
            }
        }
        let fields: Vec<(&str, Span)> = member_names
            .iter()
            .filter(|(_, _, kind)| matches!(*kind, "field" | "oneof"))
            .map(|&(n, s, _)| (n, s))
            .collect();
        rust_clashes(&fields, snake, self.diagnostics);
        rust_clashes(&type_names, camel, self.diagnostics);
        out
    }

    /// Checks one field; `None` if it cannot be in the model (its errors are reported).
    fn field<'m>(
        &mut self,
        scope: &str,
        message: &Message,
        f: &'m ast::Field,
        oneof: Option<usize>,
        numbers: &mut HashMap<i64, (&'m str, Span)>,
    ) -> Option<Field> {
        self.snake_style(&f.name, "field name");
        let mut label = match f.label {
            None => Label::None,
            Some((LabelKw::Optional, _)) => Label::Optional,
            Some((LabelKw::Repeated, _)) => Label::Repeated,
        };
        if let Some((kw, span)) = f.label {
            let word = if kw == LabelKw::Optional {
                "optional"
            } else {
                "repeated"
            };
            if oneof.is_some() {
                self.error(
                    Diagnostic::error(span, format!("`{word}` is not allowed on a oneof member"))
                        .with_label("not allowed in a oneof")
                        .with_help(if kw == LabelKw::Optional {
                            "oneof members are optional already: remove `optional`"
                        } else {
                            "put the list in a message and use that message as the member"
                        }),
                );
                label = Label::None;
            } else if matches!(f.ty, ast::TypeExpr::Map { .. }) {
                self.error(
                    Diagnostic::error(span, format!("`{word}` is not allowed on a map field"))
                        .with_label("not allowed on a map")
                        .with_help("a map is a collection already: remove the label"),
                );
                label = Label::None;
            }
        }
        if oneof.is_some()
            && let ast::TypeExpr::Map { span, .. } = &f.ty
        {
            self.error(
                Diagnostic::error(*span, "a map field cannot be a oneof member")
                    .with_label("map inside a oneof")
                    .with_help("put the map in a message and use that message as the member"),
            );
        }

        let number = self.field_number(f, message, numbers);
        self.reserved_name(&f.name, &message.reserved_names, "field name");

        let ty = match &f.ty {
            ast::TypeExpr::Named(name) => self.field_type(scope, name),
            ast::TypeExpr::Map { key, value, .. } => {
                let key_ty = self.field_type(scope, key);
                let value_ty = self.field_type(scope, value);
                let key_scalar = match key_ty {
                    Some(FieldType::Scalar(s)) if s.is_valid_map_key() => Some(s),
                    Some(other) => {
                        let found = match other {
                            FieldType::Scalar(s) => format!("`{}`", s.name()),
                            FieldType::Message(n) => format!("message `{n}`"),
                            FieldType::Enum(n) => format!("enum `{n}`"),
                            FieldType::Map { .. } => "a map".to_string(),
                        };
                        self.error(
                            Diagnostic::error(key.span, format!("{found} cannot be a map key"))
                                .with_label("not a valid key type")
                                .with_help("map keys are integer types, `bool` or `string`"),
                        );
                        None
                    }
                    None => None,
                };
                match (key_scalar, value_ty) {
                    (Some(key), Some(value)) => Some(FieldType::Map {
                        key,
                        value: Box::new(value),
                    }),
                    _ => None,
                }
            }
        };

        let checked = options::check(&f.options, Target::Field, self.diagnostics);
        let packed = checked.bool("packed");
        if let Some(span) = checked.span("packed") {
            let packable = label == Label::Repeated
                && match &ty {
                    Some(FieldType::Scalar(s)) => s.is_packable(),
                    Some(FieldType::Enum(_)) => true,
                    _ => false,
                };
            if !packable && ty.is_some() {
                self.error(
                    Diagnostic::error(
                        span,
                        "option `packed` applies only to repeated numeric or enum fields",
                    )
                    .with_label("this field cannot be packed")
                    .with_help("remove the option"),
                );
            }
        }
        Some(Field {
            name: f.name.name.as_str().to_owned(),
            doc: doc(&f.doc),
            number: u32::try_from(number?).ok()?,
            label,
            ty: ty?,
            oneof,
            options: FieldOptions {
                deprecated: checked.bool("deprecated").unwrap_or(false),
                packed,
            },
            span: f.span,
            name_span: f.name.span,
            type_span: f.ty.span(),
        })
    }

    /// Checks a field number: range, implementation range, reserved, duplicates.
    fn field_number<'m>(
        &mut self,
        f: &'m ast::Field,
        message: &Message,
        numbers: &mut HashMap<i64, (&'m str, Span)>,
    ) -> Option<i64> {
        let span = f.number.span;
        let value = f.number.value.and_then(|v| i64::try_from(v).ok());
        let Some(n) = value.filter(|n| (1..=MAX_FIELD_NUMBER).contains(n)) else {
            let shown = value.map_or_else(|| "this large".to_string(), |n| n.to_string());
            self.error(
                Diagnostic::error(span, format!("field number {shown} is out of range"))
                    .with_label("out of range")
                    .with_help(format!("field numbers go from 1 to {MAX_FIELD_NUMBER}")),
            );
            return None;
        };
        if RESERVED_FIELD_NUMBERS.contains(&n) {
            self.error(
                Diagnostic::error(
                    span,
                    format!("field number {n} is reserved for the protobuf implementation"),
                )
                .with_label("in 19000 to 19999")
                .with_help("choose a number outside 19000 to 19999"),
            );
            return None;
        }
        if let Some(range) = message.reserved_ranges.iter().find(|r| r.contains(n)) {
            self.error(
                Diagnostic::error(span, format!("field number {n} is reserved"))
                    .with_label("reserved number")
                    .with_note(range.span, "reserved here")
                    .with_help("reserved numbers must not be reused: choose another number"),
            );
            return None;
        }
        if let Some((first, first_span)) = numbers.get(&n) {
            self.error(
                Diagnostic::error(
                    span,
                    format!("field number {n} is already used by field `{first}`"),
                )
                .with_label("used again here")
                .with_note(*first_span, "first used here")
                .with_help("every field of a message needs its own number"),
            );
            return None;
        }
        numbers.insert(n, (&f.name.name, span));
        Some(n)
    }

    fn reserved_name(&mut self, name: &ast::Ident, reserved: &[String], what: &str) {
        if reserved.iter().any(|r| *r == name.name) {
            self.error(
                Diagnostic::error(name.span, format!("{what} `{}` is reserved", name.name))
                    .with_label("reserved name")
                    .with_help("reserved names must not be reused: choose another name"),
            );
        }
    }

    /// Checks a `reserved` statement whose numbers must lie in `min..=max`.
    fn reserved(
        &mut self,
        r: &ast::Reserved,
        min: i64,
        max: i64,
        what: &str,
    ) -> (Vec<ReservedRange>, Vec<String>) {
        if let Some(doc) = &r.doc {
            self.diagnostics.push(unused_doc(doc, "reserved"));
        }
        let mut ranges = Vec::new();
        for range in &r.ranges {
            let bound = |lit: &ast::IntLit| lit.value.and_then(|v| i64::try_from(v).ok());
            let start = bound(&range.start);
            let end = match range.end {
                None => start,
                Some(RangeEnd::Max(_)) => Some(max),
                Some(RangeEnd::Number(n)) => bound(&n),
            };
            let in_range = |v: Option<i64>| v.filter(|v| (min..=max).contains(v));
            match (in_range(start), in_range(end)) {
                (Some(s), Some(e)) if s <= e => ranges.push(ReservedRange {
                    start: s,
                    end: e,
                    span: range.span,
                }),
                (Some(s), Some(e)) => self.error(
                    Diagnostic::error(
                        range.span,
                        format!("reserved range {s} to {e} ends before it starts"),
                    )
                    .with_label("empty range")
                    .with_help(format!("write it as `{e} to {s}`")),
                ),
                _ => self.error(
                    Diagnostic::error(range.span, format!("reserved {what} out of range"))
                        .with_label("out of range")
                        .with_help(format!("{what}s go from {min} to {max}")),
                ),
            }
        }
        let names = r.names.iter().map(|n| n.name.as_str().to_owned()).collect();
        (ranges, names)
    }

    /// Resolves a field type; reports unknown and invisible types.
    fn field_type(&mut self, scope: &str, name: &ast::Ident) -> Option<FieldType> {
        if let Some(s) = Scalar::from_name(&name.name) {
            return Some(FieldType::Scalar(s));
        }
        let (full, kind) = self.resolve(scope, name, true)?;
        match kind {
            SymbolKind::Message => Some(FieldType::Message(full)),
            SymbolKind::Enum => Some(FieldType::Enum(full)),
            SymbolKind::Service => {
                self.error(
                    Diagnostic::error(
                        name.span,
                        format!("`{}` is a service, not a message or enum", name.name),
                    )
                    .with_label("a service is not a type"),
                );
                None
            }
        }
    }

    /// Resolves a type name to its full name and kind; reports failures.
    fn resolve(
        &mut self,
        scope: &str,
        name: &ast::Ident,
        with_scalars: bool,
    ) -> Option<(String, SymbolKind)> {
        match self
            .context
            .symbols
            .lookup(scope, &name.name, self.context.visible)
        {
            Lookup::Found(full, symbol) => {
                if symbol.file != self.context.file {
                    self.used.insert(symbol.file);
                }
                Some((full, symbol.kind))
            }
            Lookup::Hidden(..) if !self.context.complete => None,
            Lookup::Hidden(full, symbol) => {
                self.error(
                    Diagnostic::error(
                        name.span,
                        format!("`{full}` is declared in a file this file does not import"),
                    )
                    .with_label("not imported")
                    .with_note(symbol.span, "declared here")
                    .with_help(format!(
                        "add `import \"{}\";`",
                        self.context.sources.file(symbol.file).name()
                    )),
                );
                None
            }
            Lookup::NotFound
                if !self.context.complete
                    || self
                        .context
                        .damage
                        .iter()
                        .any(|d| d.may_declare(&name.name)) =>
            {
                None
            }
            Lookup::NotFound => {
                let mut d = Diagnostic::error(name.span, format!("unknown type `{}`", name.name))
                    .with_label("not a message or enum in scope");
                // A close name may be declared by text that did not parse.
                let suggestion = self
                    .context
                    .symbols
                    .suggest(scope, &name.name, self.context.visible, with_scalars)
                    .or_else(|| {
                        let close = self
                            .context
                            .damage
                            .iter()
                            .filter_map(|d| d.suggest(&name.name));
                        close.min().map(|(_, n)| n.to_string())
                    });
                if let Some(s) = suggestion {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                None
            }
        }
    }

    fn enumeration(&mut self, scope: &str, e: &ast::Enum) -> Enum {
        self.type_style(&e.name, "enum name");
        let mut out = Enum {
            name: e.name.name.as_str().to_owned(),
            full_name: qualify(scope, &e.name.name),
            doc: doc(&e.doc),
            values: Vec::new(),
            reserved_ranges: Vec::new(),
            reserved_names: Vec::new(),
            span: e.span,
            name_span: e.name.span,
        };
        for r in &e.reserved {
            let (ranges, names) = self.reserved(
                r,
                i64::from(i32::MIN),
                i64::from(i32::MAX),
                "enum value number",
            );
            out.reserved_ranges.extend(ranges);
            out.reserved_names.extend(names);
        }
        if e.values.is_empty() {
            self.error(
                Diagnostic::error(e.name.span, format!("enum `{}` has no values", e.name.name))
                    .with_label("empty enum")
                    .with_help(format!(
                        "an enum needs at least its zero value, such as `{}_UNSPECIFIED = 0;`",
                        naming::screaming_snake(&e.name.name)
                    )),
            );
        }
        let mut names: HashMap<&str, Span> = HashMap::default();
        let mut numbers: HashMap<i32, (&str, Span)> = HashMap::default();
        let mut variants: Vec<(String, Span)> = Vec::new();
        for (i, v) in e.values.iter().enumerate() {
            let ok = naming::is_screaming_snake(&v.name.name);
            self.style(
                ok,
                &v.name,
                "enum value",
                "SCREAMING_SNAKE_CASE",
                naming::screaming_snake,
            );
            let number = v.number.value.and_then(|n| i32::try_from(n).ok());
            if i == 0 && number != Some(0) {
                self.error(
                    Diagnostic::error(
                        v.number.span,
                        format!("the first value of enum `{}` must be 0", e.name.name),
                    )
                    .with_label("not 0")
                    .with_help(format!(
                        "the first value is the default; add one such as `{}_UNSPECIFIED = 0;` first",
                        naming::screaming_snake(&e.name.name)
                    )),
                );
            }
            if let Some(first) = names.get(v.name.name.as_str()) {
                self.error(
                    Diagnostic::error(
                        v.name.span,
                        format!(
                            "enum value `{}` is defined twice in enum `{}`",
                            v.name.name, e.name.name
                        ),
                    )
                    .with_label("defined again here")
                    .with_note(*first, "first defined here"),
                );
                continue;
            }
            names.insert(&v.name.name, v.name.span);
            variants.push((
                naming::rust_variant(&e.name.name, &v.name.name),
                v.name.span,
            ));
            self.reserved_name(&v.name, &out.reserved_names, "enum value name");
            let Some(number) = number else {
                self.error(
                    Diagnostic::error(v.number.span, "enum value number is out of range")
                        .with_label("not a 32-bit signed integer")
                        .with_help("enum values go from -2147483648 to 2147483647"),
                );
                continue;
            };
            if let Some(range) = out
                .reserved_ranges
                .iter()
                .find(|r| r.contains(i64::from(number)))
            {
                self.error(
                    Diagnostic::error(
                        v.number.span,
                        format!("enum value number {number} is reserved"),
                    )
                    .with_label("reserved number")
                    .with_note(range.span, "reserved here")
                    .with_help("reserved numbers must not be reused: choose another number"),
                );
                continue;
            }
            if let Some((first, first_span)) = numbers.get(&number) {
                self.error(
                    Diagnostic::error(
                        v.number.span,
                        format!("enum value number {number} is already used by `{first}`"),
                    )
                    .with_label("used again here")
                    .with_note(*first_span, "first used here")
                    .with_help("every value of an enum needs its own number"),
                );
                continue;
            }
            numbers.insert(number, (&v.name.name, v.number.span));
            out.values.push(EnumValue {
                name: v.name.name.as_str().to_owned(),
                number,
                doc: doc(&v.doc),
                span: v.span,
                name_span: v.name.span,
            });
        }
        // Variant names, after prefix stripping, with the original names for messages.
        let mut seen: HashMap<String, (String, Span)> = HashMap::default();
        for ((variant, span), v) in variants.iter().zip(
            e.values
                .iter()
                .filter(|v| names.get(v.name.name.as_str()) == Some(&v.name.span)),
        ) {
            match seen.get(variant) {
                Some((first, first_span)) if *first != v.name.name => self.error(
                    Diagnostic::error(
                        *span,
                        format!(
                            "`{first}` and `{}` both become `{variant}` in generated Rust code",
                            v.name.name
                        ),
                    )
                    .with_label(format!("becomes `{variant}`"))
                    .with_note(*first_span, format!("`{first}` also becomes `{variant}`"))
                    .with_help("rename one of them"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(variant.clone(), (v.name.name.as_str().to_owned(), *span));
                }
            }
        }
        out
    }

    fn service(&mut self, s: &ast::Service) -> Service {
        self.type_style(&s.name, "service name");
        let mut out = Service {
            name: s.name.name.as_str().to_owned(),
            full_name: qualify(self.context.package, &s.name.name),
            doc: doc(&s.doc),
            methods: Vec::new(),
            span: s.span,
            name_span: s.name.span,
        };
        let mut names: HashMap<&str, Span> = HashMap::default();
        let mut rust_names: Vec<(&str, Span)> = Vec::new();
        for m in &s.methods {
            self.snake_style(&m.name, "method name");
            if let Some(first) = names.get(m.name.name.as_str()) {
                self.error(
                    Diagnostic::error(
                        m.name.span,
                        format!(
                            "method `{}` is defined twice in service `{}`",
                            m.name.name, s.name.name
                        ),
                    )
                    .with_label("defined again here")
                    .with_note(*first, "first defined here"),
                );
                continue;
            }
            names.insert(&m.name.name, m.name.span);
            rust_names.push((&m.name.name, m.name.span));
            if let Some(method) = self.method(m) {
                out.methods.push(method);
            }
        }
        rust_clashes(&rust_names, snake, self.diagnostics);
        out
    }

    fn method(&mut self, m: &ast::Method) -> Option<Method> {
        let keyword = match m.kind.0 {
            MethodKw::Rpc => "rpc",
            MethodKw::Event => "event",
            MethodKw::Stream => "stream",
        };
        let input = self.method_type(m, &m.input, keyword, "argument");
        let output = m
            .output
            .as_ref()
            .map(|o| (self.method_type(m, o, keyword, "return type"), o.span));
        let target = match m.kind.0 {
            MethodKw::Rpc => Target::Rpc,
            MethodKw::Event => Target::Event,
            MethodKw::Stream => Target::Stream,
        };
        let checked = options::check(&m.options, target, self.diagnostics);
        let kind = match m.kind.0 {
            MethodKw::Rpc => {
                let (output, output_span) = output?;
                MethodKind::Rpc {
                    output: output?,
                    output_span,
                    options: RpcOptions {
                        timeout_ms: checked.uint("timeout_ms"),
                        idempotent: checked.bool("idempotent").unwrap_or(false),
                    },
                }
            }
            MethodKw::Event => MethodKind::Event,
            MethodKw::Stream => {
                let defaults = StreamOptions::default();
                MethodKind::Stream {
                    options: StreamOptions {
                        delivery: match checked.word("delivery") {
                            Some("datagram") => Delivery::Datagram,
                            Some(_) => Delivery::Reliable,
                            None => defaults.delivery,
                        },
                        jitter_ms: checked
                            .uint("jitter_ms")
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(defaults.jitter_ms),
                        max_frame_bytes: checked
                            .uint("max_frame_bytes")
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(defaults.max_frame_bytes),
                    },
                }
            }
        };
        Some(Method {
            name: m.name.name.as_str().to_owned(),
            doc: doc(&m.doc),
            input: input?,
            kind,
            deprecated: checked.bool("deprecated").unwrap_or(false),
            span: m.span,
            name_span: m.name.span,
            input_span: m.input.span,
        })
    }

    /// Resolves a method's argument or return type, which must be a message.
    fn method_type(
        &mut self,
        m: &ast::Method,
        name: &ast::Ident,
        keyword: &str,
        role: &str,
    ) -> Option<String> {
        let found = if let Some(s) = Scalar::from_name(&name.name) {
            format!("scalar `{}`", s.name())
        } else {
            let package = self.context.package.to_string();
            let (full, kind) = self.resolve(&package, name, false)?;
            if kind == SymbolKind::Message {
                return Some(full);
            }
            format!("{} `{full}`", kind.describe())
        };
        self.error(
            Diagnostic::error(
                name.span,
                format!(
                    "the {role} of {keyword} `{}` must be a message, found {found}",
                    m.name.name
                ),
            )
            .with_label("not a message")
            .with_help("wrap the value in a message, so that fields can be added later"),
        );
        None
    }
}

fn doc(doc: &Option<ast::Doc>) -> String {
    doc.as_ref().map(ast::Doc::text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::path::PathBuf;

    use super::*;
    use crate::loader::{self, MemoryFs};

    #[test]
    fn checking_in_runs_equals_one_sequential_pass() {
        // Many declarations, with errors and warnings spread over all of them: unknown types,
        // repeated field numbers, names not in style, services referring to enums.
        let mut text = String::from("package big.v1;\n");
        for n in 0..600 {
            let next = (n + 1) % 600;
            let _ = writeln!(text, "message M{n} {{ M{next} next = 1; E{n} e = 2; }}");
            let _ = writeln!(text, "enum E{n} {{ E{n}_ZERO = 0; }}");
            if n % 37 == 0 {
                let _ = writeln!(text, "message bad_{n} {{ Unknown{n} x = 1; int32 y = 1; }}");
            }
            if n % 41 == 0 {
                let _ = writeln!(text, "service S{n} {{ rpc call(M{n}) returns (E{n}); }}");
            }
        }
        let mut fs = MemoryFs::new();
        fs.insert("big.echo", text);
        let loaded = loader::load(&fs, &[PathBuf::from("big.echo")], &[]);
        let file = &loaded.files[0];
        let ast = file.ast.as_ref().expect("the schema parses");
        let mut symbols = Symbols::default();
        symbols.declare_file(file.id, "big.v1", ast, &mut Vec::new());
        let context = FileContext {
            file: file.id,
            package: "big.v1",
            symbols: &symbols,
            sources: &loaded.sources,
            visible: &[file.id],
            complete: true,
            damage: &[],
        };

        let sequential = context.check_decls(&ast.decls, 1);
        assert_eq!(sequential.messages.len(), 600 + 17);
        assert!(sequential.diagnostics.len() > 60);
        for threads in [2, 3, 8] {
            let parallel = context.check_decls(&ast.decls, threads);
            assert_eq!(parallel.messages, sequential.messages);
            assert_eq!(parallel.enums, sequential.enums);
            assert_eq!(parallel.services, sequential.services);
            assert_eq!(parallel.used, sequential.used);
            assert_eq!(parallel.diagnostics, sequential.diagnostics);
        }
    }
}
