//! The syntax tree of one `.echo` file, as written: names unresolved, numbers as literals,
//! options untyped. Every node has a [`Span`]. The checker turns it into the
//! [model](crate::model).

use smol_str::SmolStr;

use crate::source::Span;

/// A name as written, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The text (for qualified names, with the dots: `common.Attachment`). Names are short:
    /// a [`SmolStr`] holds them without allocating.
    pub name: SmolStr,
    /// Where it is.
    pub span: Span,
}

/// The `///` lines before a declaration, without the `///` and one following space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// The lines, trailing whitespace removed.
    pub lines: Vec<String>,
    /// All the lines.
    pub span: Span,
}

impl Doc {
    /// The lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// An integer literal (decimal or `0x` hexadecimal, optionally negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntLit {
    /// The value; `None` if it does not fit in 64 bits (signed or unsigned).
    pub value: Option<i128>,
    /// Where it is.
    pub span: Span,
}

/// One parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Every `package` statement, in order (the checker requires exactly one).
    pub packages: Vec<Package>,
    /// The `import` statements, in order.
    pub imports: Vec<Import>,
    /// Top-level declarations, in order.
    pub decls: Vec<Decl>,
}

/// `package a.b.c;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The doc comment before it: the file's documentation.
    pub doc: Option<Doc>,
    /// The dotted name.
    pub name: Ident,
    /// The whole statement.
    pub span: Span,
}

/// `import "path.echo";`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// A doc comment written before it; it documents nothing (the checker warns).
    pub doc: Option<Doc>,
    /// The path between the quotes, escapes resolved.
    pub path: String,
    /// The string literal.
    pub path_span: Span,
    /// The whole statement, from `import` (without the doc comment).
    pub span: Span,
}

/// A top-level or nested declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decl {
    /// `message`
    Message(Message),
    /// `enum`
    Enum(Enum),
    /// `service` (top level only)
    Service(Service),
}

/// `message Name { ... }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The name.
    pub name: Ident,
    /// The body, in order.
    pub items: Vec<MessageItem>,
    /// The whole declaration.
    pub span: Span,
}

/// One item of a message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageItem {
    /// A field.
    Field(Field),
    /// A `oneof`.
    Oneof(Oneof),
    /// A nested message.
    Message(Message),
    /// A nested enum.
    Enum(Enum),
    /// A `reserved` statement.
    Reserved(Reserved),
}

/// `optional`/`repeated`, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKw {
    /// `optional`
    Optional,
    /// `repeated`
    Repeated,
}

/// A field type as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    /// A scalar or a (possibly qualified) message or enum name.
    Named(Ident),
    /// `map<K, V>`
    Map {
        /// Key type.
        key: Ident,
        /// Value type.
        value: Ident,
        /// The whole `map<...>`.
        span: Span,
    },
}

impl TypeExpr {
    /// The span of the whole type.
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(id) => id.span,
            TypeExpr::Map { span, .. } => *span,
        }
    }
}

/// `[optional|repeated] Type name = N [options];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The label keyword and its place.
    pub label: Option<(LabelKw, Span)>,
    /// The type.
    pub ty: TypeExpr,
    /// The name.
    pub name: Ident,
    /// The field number.
    pub number: IntLit,
    /// Options in `[...]`.
    pub options: Vec<OptionSetting>,
    /// The whole declaration.
    pub span: Span,
}

/// `oneof name { fields }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oneof {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The name.
    pub name: Ident,
    /// Member fields.
    pub fields: Vec<Field>,
    /// The whole declaration.
    pub span: Span,
}

/// `reserved 1, 5 to 9, 20 to max, "name", other;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// A doc comment written before it; it documents nothing (the checker warns).
    pub doc: Option<Doc>,
    /// The reserved numbers and ranges.
    pub ranges: Vec<ReservedRange>,
    /// The reserved names.
    pub names: Vec<Ident>,
    /// The whole statement, from `reserved` (without the doc comment).
    pub span: Span,
}

/// `N`, `N to M` or `N to max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedRange {
    /// First number.
    pub start: IntLit,
    /// Last number (inclusive); `None` for a single number.
    pub end: Option<RangeEnd>,
    /// The whole range.
    pub span: Span,
}

/// The end of a reserved range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeEnd {
    /// A number.
    Number(IntLit),
    /// `max`: the largest number allowed in the context.
    Max(Span),
}

/// `enum Name { VALUE = N; ... }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enum {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The name.
    pub name: Ident,
    /// The values, in order.
    pub values: Vec<EnumValue>,
    /// `reserved` statements.
    pub reserved: Vec<Reserved>,
    /// The whole declaration.
    pub span: Span,
}

/// `NAME = N;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumValue {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The name.
    pub name: Ident,
    /// The number.
    pub number: IntLit,
    /// The whole declaration.
    pub span: Span,
}

/// `service Name { methods }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The name.
    pub name: Ident,
    /// The methods, in order.
    pub methods: Vec<Method>,
    /// The whole declaration.
    pub span: Span,
}

/// The keyword of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKw {
    /// `rpc`
    Rpc,
    /// `event`
    Event,
    /// `stream`
    Stream,
}

/// `rpc name(A) returns (B) [opts];`, `event name(A) [opts];` or `stream name(A) [opts];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// Doc comment.
    pub doc: Option<Doc>,
    /// The keyword and its place.
    pub kind: (MethodKw, Span),
    /// The name.
    pub name: Ident,
    /// The argument type.
    pub input: Ident,
    /// The `returns` type (rpc only).
    pub output: Option<Ident>,
    /// Options in `[...]`.
    pub options: Vec<OptionSetting>,
    /// The whole declaration.
    pub span: Span,
}

/// `name = value` inside `[...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionSetting {
    /// The option name.
    pub name: Ident,
    /// The value.
    pub value: OptionValue,
    /// `name = value`.
    pub span: Span,
}

/// An option value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionValue {
    /// What kind of literal it is.
    pub kind: OptionValueKind,
    /// Where it is.
    pub span: Span,
}

/// The literal forms an option value can take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionValueKind {
    /// An integer (`None` if too large for 64 bits).
    Int(Option<i128>),
    /// `true` or `false`.
    Bool(bool),
    /// A bare word, such as `datagram`.
    Word(String),
    /// A quoted string.
    Str(String),
}

impl OptionValueKind {
    /// How the value's type is called in messages ("an integer", "a word").
    pub fn describe(&self) -> &'static str {
        match self {
            OptionValueKind::Int(_) => "an integer",
            OptionValueKind::Bool(_) => "a boolean",
            OptionValueKind::Word(_) => "a word",
            OptionValueKind::Str(_) => "a string",
        }
    }
}
