//! The checked model: what code generators and exporters consume.
//!
//! A [`Schema`] is produced only when a set of files has no errors. In it every name is
//! fully qualified (`chat.v1.Message.Inner`, no leading dot), every type reference is resolved
//! to a scalar, message, enum or map, every option is typed with its default applied, and doc
//! comments are attached. Every item has a [`Span`] pointing at its source, so later tools can
//! report problems at the right place.
//!
//! Mapping to protobuf descriptors (for `FileDescriptorSet` builders):
//! - [`SchemaFile::name`] is the descriptor's file name, [`SchemaFile::imports`] its
//!   dependencies (by [`SchemaFile::name`]), [`SchemaFile::package`] its package; syntax is
//!   proto3.
//! - A [`Field`] with [`Label::Optional`] is a proto3 `optional` field (a synthetic oneof in
//!   descriptors); [`Label::None`] is a proto3 singular field; a [`FieldType::Map`] field is a
//!   repeated `XxxEntry` message in descriptors, with `key = 1`, `value = 2`.
//! - Type names in descriptors take a leading dot: `.` + [`Message::full_name`].

use crate::source::{FileId, Span};

/// All files of one compilation, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The files, each after the files it imports (a valid order for descriptor sets).
    pub files: Vec<SchemaFile>,
}

impl Schema {
    /// The file with this id.
    pub fn file(&self, id: FileId) -> Option<&SchemaFile> {
        self.files.iter().find(|f| f.id == id)
    }

    /// The files given as roots (as opposed to files only reached through imports).
    pub fn root_files(&self) -> impl Iterator<Item = &SchemaFile> {
        self.files.iter().filter(|f| f.is_root)
    }

    /// Every message, nested ones included, in file and declaration order.
    pub fn messages(&self) -> Vec<&Message> {
        let mut out = Vec::new();
        fn walk<'a>(messages: &'a [Message], out: &mut Vec<&'a Message>) {
            for m in messages {
                out.push(m);
                walk(&m.messages, out);
            }
        }
        for f in &self.files {
            walk(&f.messages, &mut out);
        }
        out
    }

    /// Every enum, nested ones included.
    pub fn enums(&self) -> Vec<&Enum> {
        let mut out = Vec::new();
        for f in &self.files {
            out.extend(f.enums.iter());
        }
        for m in self.messages() {
            out.extend(m.enums.iter());
        }
        out
    }

    /// Every service.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.files.iter().flat_map(|f| f.services.iter())
    }

    /// The message with this fully-qualified name (`chat.v1.Message.Inner`). A linear search:
    /// for many lookups, index [`messages`](Self::messages) by name once.
    pub fn message(&self, full_name: &str) -> Option<&Message> {
        self.messages()
            .into_iter()
            .find(|m| m.full_name == full_name)
    }

    /// The enum with this fully-qualified name.
    pub fn enumeration(&self, full_name: &str) -> Option<&Enum> {
        self.enums().into_iter().find(|e| e.full_name == full_name)
    }

    /// The service with this fully-qualified name.
    pub fn service(&self, full_name: &str) -> Option<&Service> {
        self.services().find(|s| s.full_name == full_name)
    }
}

/// One `.echo` file.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaFile {
    /// Its id in the [`SourceMap`](crate::SourceMap) of the compilation.
    pub id: FileId,
    /// The logical name (path relative to its include directory, `/`-separated), as imports
    /// name it: `chat/v1/chat.echo`.
    pub name: String,
    /// Whether the file was given as a root (not only reached through an import).
    pub is_root: bool,
    /// The package, dotted: `chat.v1`.
    pub package: String,
    /// The `package` statement.
    pub package_span: Span,
    /// The doc comment of the `package` statement: the file's documentation.
    pub doc: String,
    /// The imports, in order.
    pub imports: Vec<Import>,
    /// Top-level messages, in order.
    pub messages: Vec<Message>,
    /// Top-level enums, in order.
    pub enums: Vec<Enum>,
    /// Services, in order.
    pub services: Vec<Service>,
}

/// One `import` of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    /// The imported file's logical name ([`SchemaFile::name`]).
    pub name: String,
    /// The imported file.
    pub file: FileId,
    /// The `import` statement.
    pub span: Span,
}

/// A message type.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The name as declared: `Inner`.
    pub name: String,
    /// Fully qualified: `chat.v1.Message.Inner`.
    pub full_name: String,
    /// Doc comment (lines joined with `\n`; empty if none).
    pub doc: String,
    /// All fields in declaration order, oneof members included (see [`Field::oneof`]).
    pub fields: Vec<Field>,
    /// The oneofs, in order.
    pub oneofs: Vec<Oneof>,
    /// Nested messages.
    pub messages: Vec<Message>,
    /// Nested enums.
    pub enums: Vec<Enum>,
    /// Reserved field numbers.
    pub reserved_ranges: Vec<ReservedRange>,
    /// Reserved field names.
    pub reserved_names: Vec<String>,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
}

/// A message field.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The name: `author`.
    pub name: String,
    /// Doc comment (empty if none).
    pub doc: String,
    /// The field number, in `1..=536870911` outside `19000..=19999`.
    pub number: u32,
    /// `optional`, `repeated` or neither. Map fields and oneof members are always
    /// [`Label::None`].
    pub label: Label,
    /// The resolved type.
    pub ty: FieldType,
    /// Index into [`Message::oneofs`] when the field is a member of a oneof.
    pub oneof: Option<usize>,
    /// Field options.
    pub options: FieldOptions,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
    /// The type in the declaration.
    pub type_span: Span,
}

/// The label of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// A singular field (proto3 implicit presence for scalars).
    None,
    /// `optional`: explicit presence (`Option<T>` in Rust).
    Optional,
    /// `repeated`: a list.
    Repeated,
}

/// A resolved field type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A built-in scalar.
    Scalar(Scalar),
    /// A message, fully qualified (`chat.v1.Message.Inner`).
    Message(String),
    /// An enum, fully qualified.
    Enum(String),
    /// `map<K, V>`: the key is an integer, `bool` or `string` scalar; the value is not a map.
    Map {
        /// Key type.
        key: Scalar,
        /// Value type (a scalar, message or enum).
        value: Box<FieldType>,
    },
}

/// The protobuf scalar types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // Each variant is the protobuf scalar of the same name.
pub enum Scalar {
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Float,
    Double,
    String,
    Bytes,
}

impl Scalar {
    /// Every scalar, in the order of the reference.
    pub const ALL: [Scalar; 15] = [
        Scalar::Bool,
        Scalar::Int32,
        Scalar::Int64,
        Scalar::Uint32,
        Scalar::Uint64,
        Scalar::Sint32,
        Scalar::Sint64,
        Scalar::Fixed32,
        Scalar::Fixed64,
        Scalar::Sfixed32,
        Scalar::Sfixed64,
        Scalar::Float,
        Scalar::Double,
        Scalar::String,
        Scalar::Bytes,
    ];

    /// The keyword: `uint64`.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::Bool => "bool",
            Scalar::Int32 => "int32",
            Scalar::Int64 => "int64",
            Scalar::Uint32 => "uint32",
            Scalar::Uint64 => "uint64",
            Scalar::Sint32 => "sint32",
            Scalar::Sint64 => "sint64",
            Scalar::Fixed32 => "fixed32",
            Scalar::Fixed64 => "fixed64",
            Scalar::Sfixed32 => "sfixed32",
            Scalar::Sfixed64 => "sfixed64",
            Scalar::Float => "float",
            Scalar::Double => "double",
            Scalar::String => "string",
            Scalar::Bytes => "bytes",
        }
    }

    /// The scalar with this keyword.
    pub fn from_name(name: &str) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the type may be a map key (integers, `bool`, `string`).
    pub fn is_valid_map_key(self) -> bool {
        !matches!(self, Scalar::Float | Scalar::Double | Scalar::Bytes)
    }

    /// Whether a repeated field of this type can use the packed encoding (numeric types).
    pub fn is_packable(self) -> bool {
        !matches!(self, Scalar::String | Scalar::Bytes)
    }
}

/// Options of a field (see docs/idl.md, "Options").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldOptions {
    /// `deprecated = true`: generated code marks the field deprecated.
    pub deprecated: bool,
    /// `packed = false|true` on a repeated numeric or enum field; `None` means the proto3
    /// default (packed).
    pub packed: Option<bool>,
}

/// A `oneof`: at most one of its fields is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Oneof {
    /// The name: `target`.
    pub name: String,
    /// Doc comment (empty if none).
    pub doc: String,
    /// Indices into [`Message::fields`] of the members, in order.
    pub fields: Vec<usize>,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
}

/// An inclusive range of reserved numbers (`start == end` for a single number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRange {
    /// First reserved number.
    pub start: i64,
    /// Last reserved number, inclusive (`max` resolved to the largest allowed number).
    pub end: i64,
    /// Where it is written.
    pub span: Span,
}

impl ReservedRange {
    /// Whether `n` is in the range.
    pub fn contains(&self, n: i64) -> bool {
        self.start <= n && n <= self.end
    }
}

/// An enum type.
#[derive(Clone, Debug, PartialEq)]
pub struct Enum {
    /// The name as declared.
    pub name: String,
    /// Fully qualified: `chat.v1.Presence`.
    pub full_name: String,
    /// Doc comment (empty if none).
    pub doc: String,
    /// The values, in order; the first is 0.
    pub values: Vec<EnumValue>,
    /// Reserved numbers.
    pub reserved_ranges: Vec<ReservedRange>,
    /// Reserved names.
    pub reserved_names: Vec<String>,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
}

/// One enum value.
#[derive(Clone, Debug, PartialEq)]
pub struct EnumValue {
    /// The name: `PRESENCE_ONLINE`.
    pub name: String,
    /// The number.
    pub number: i32,
    /// Doc comment (empty if none).
    pub doc: String,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
}

/// A service: a set of methods one peer serves and the other calls.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// The name: `ChatService`.
    pub name: String,
    /// Fully qualified: `chat.v1.ChatService`.
    pub full_name: String,
    /// Doc comment (empty if none).
    pub doc: String,
    /// The methods, in order.
    pub methods: Vec<Method>,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
}

/// One method of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    /// The name: `login`.
    pub name: String,
    /// Doc comment (empty if none).
    pub doc: String,
    /// The argument message, fully qualified.
    pub input: String,
    /// What kind of method, with the options of that kind.
    pub kind: MethodKind,
    /// `deprecated = true`: generated code marks the method deprecated.
    pub deprecated: bool,
    /// The whole declaration.
    pub span: Span,
    /// The name in the declaration.
    pub name_span: Span,
    /// The argument type in the declaration.
    pub input_span: Span,
}

/// The kind of a method and its typed options.
#[derive(Clone, Debug, PartialEq)]
pub enum MethodKind {
    /// `rpc name(In) returns (Out)`: a request answered by one response.
    Rpc {
        /// The response message, fully qualified.
        output: String,
        /// The `returns` type in the declaration.
        output_span: Span,
        /// Options.
        options: RpcOptions,
    },
    /// `event name(T)`: a one-way message, ordered per sender.
    Event,
    /// `stream name(T)`: a flow of real-time frames.
    Stream {
        /// Options.
        options: StreamOptions,
    },
}

impl MethodKind {
    /// The keyword: `rpc`, `event` or `stream`.
    pub fn keyword(&self) -> &'static str {
        match self {
            MethodKind::Rpc { .. } => "rpc",
            MethodKind::Event => "event",
            MethodKind::Stream { .. } => "stream",
        }
    }
}

/// Options of an `rpc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcOptions {
    /// `timeout_ms = N` (N in `1..=`[`MAX_TIMEOUT_MS`](crate::MAX_TIMEOUT_MS)): the caller
    /// gives up after N milliseconds. `None`: no timeout set by the schema.
    pub timeout_ms: Option<u64>,
    /// `idempotent = true`: calling twice has the effect of calling once, so the call may be
    /// sent as 0-RTT data and retried. Default `false`.
    pub idempotent: bool,
}

/// How a stream's frames travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// `delivery = reliable` (default): on a QUIC stream, in order, nothing lost.
    #[default]
    Reliable,
    /// `delivery = datagram`: as QUIC datagrams, unordered and lossy; late frames are dropped
    /// (and counted) rather than waited for.
    Datagram,
}

/// Options of a `stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// How frames travel. Default [`Delivery::Reliable`].
    pub delivery: Delivery,
    /// Playout delay of the receiver's jitter buffer, in milliseconds (`0..=10000`). `0`
    /// (default): frames are handed over as they arrive, in sequence order.
    pub jitter_ms: u32,
    /// The largest frame, in bytes of data (`1..=16777216`); larger frames are refused by the
    /// sender and rejected by the receiver. Default [`StreamOptions::DEFAULT_MAX_FRAME_BYTES`].
    /// A frame must also fit the receiving peer's maximum frame size (a runtime setting, 4 MiB
    /// by default), less the frame's other fields; docs/idl.md says more.
    pub max_frame_bytes: u32,
}

impl StreamOptions {
    /// Default of `max_frame_bytes`: 1 MiB.
    pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            delivery: Delivery::Reliable,
            jitter_ms: 0,
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
        }
    }
}
