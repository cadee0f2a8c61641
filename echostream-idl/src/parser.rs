//! From source text to [`ast::File`]: the pest grammar (`echo.pest`), the tree builder, and
//! the translation of pest's failures into syntax errors in plain words. Input that parses
//! takes a faster way to the same tree ([`fast`]); pest parses what it does not accept.

use pest::Parser as _;
use pest::iterators::Pair;

use crate::ast::{
    Decl, Doc, Enum, EnumValue, Field, File, Ident, Import, IntLit, LabelKw, Message, MessageItem,
    Method, MethodKw, Oneof, OptionSetting, OptionValue, OptionValueKind, Package, RangeEnd,
    Reserved, ReservedRange, Service, TypeExpr,
};
use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

mod grammar {
    #![allow(missing_docs)]
    #[derive(pest_derive::Parser)]
    #[grammar = "echo.pest"]
    pub(crate) struct EchoParser;
}

pub(crate) use grammar::{EchoParser, Rule};

mod fast;

/// How deeply `{ }` blocks may nest. Real schemas stay far below; the limit keeps hostile input
/// from exhausting the stack of the recursive-descent parser and of the checker.
pub const MAX_NESTING: usize = 64;

/// Files smaller than this are parsed and checked on the calling thread: below it, starting
/// threads costs more than it saves.
const PARALLEL_THRESHOLD: usize = 256 * 1024;

/// How many threads parse or check a file of `len` bytes: one per core (at most 8) for a large
/// file, one for a small file.
pub(crate) fn threads_for(len: usize) -> usize {
    if len < PARALLEL_THRESHOLD {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Parses one file. On a syntax error, returns the first one, in plain words.
///
/// A large file is cut at top-level declaration boundaries (found by the same lexical pass that
/// bounds nesting) and its pieces are parsed on several threads; the pieces' trees are joined in
/// order, so the result is exactly that of one sequential parse. If any piece fails, the whole
/// file is parsed again sequentially, so a syntax error is reported exactly as it would be
/// without the split.
///
/// Checking a file ([`compile`](crate::compile)) goes further on a syntax error: it reports the
/// first error of every top-level declaration that does not parse and checks the others.
pub fn parse(file: FileId, text: &str) -> Result<File, Box<Diagnostic>> {
    let scanned = scan(text);
    if let Some(&at) = scanned.too_deep.first() {
        return Err(Box::new(too_deep(file, at)));
    }
    parse_whole(file, text, &scanned.boundaries)
        .map_err(|e| Box::new(syntax_error(file, text, 0, &e)))
}

/// Parses the whole of `text`, in runs of declarations on several threads when it is large;
/// on failure, the error of one sequential parse.
pub(crate) fn parse_whole(
    file: FileId,
    text: &str,
    boundaries: &[usize],
) -> Result<File, pest::error::Error<Rule>> {
    if let Some(chunks) = parse_chunks(file, text, boundaries) {
        let mut whole = File {
            packages: Vec::new(),
            imports: Vec::new(),
            decls: Vec::new(),
        };
        let mut complete = true;
        for chunk in chunks {
            match chunk.parsed {
                Some(part) => {
                    whole.packages.extend(part.packages);
                    whole.imports.extend(part.imports);
                    whole.decls.extend(part.decls);
                }
                None => complete = false,
            }
        }
        if complete {
            return Ok(whole);
        }
    }
    parse_piece(file, text, 0, text.len(), Rule::file)
}

/// Parses `text[start..end]` with `rule` (`file` or `items`); spans in the tree are offsets
/// into the whole `text`. The [`fast`] parser builds the tree of input that parses; pest
/// parses the rest, for its error.
pub(crate) fn parse_piece(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    rule: Rule,
) -> Result<File, pest::error::Error<Rule>> {
    match fast::parse(file, text, start, end, rule == Rule::file) {
        Some(parsed) => Ok(parsed),
        None => parse_piece_with_pest(file, text, start, end, rule),
    }
}

/// [`parse_piece`] with pest alone: the tree, or pest's error that [`syntax_error`] puts in
/// plain words.
fn parse_piece_with_pest(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    rule: Rule,
) -> Result<File, pest::error::Error<Rule>> {
    let mut pairs = EchoParser::parse(rule, &text[start..end])?;
    let root = pairs.next().expect("the file rule matched");
    Ok(Builder { file, base: start }.file(root))
}

/// A run of top-level declarations of a file, parsed as one.
pub(crate) struct Chunk {
    /// Where it is in the file; it starts and ends at declaration boundaries.
    pub range: std::ops::Range<usize>,
    /// Its declarations; `None` if it does not parse.
    pub parsed: Option<File>,
}

/// For a large file on a machine with several cores: cuts `text` at `boundaries` into one run
/// of declarations per thread (at most 8) and parses the runs on scoped threads. Joined in
/// order, the runs' trees are exactly that of one sequential parse. `None` for a small file or
/// a single core, where threads cost more than they save.
pub(crate) fn parse_chunks(file: FileId, text: &str, boundaries: &[usize]) -> Option<Vec<Chunk>> {
    let threads = threads_for(text.len());
    if threads < 2 {
        return None;
    }
    parse_in_chunks(file, text, boundaries, threads)
}

/// Cuts `text` at `boundaries` into about `chunks` runs and parses them on scoped threads;
/// `None` if it does not make two runs.
fn parse_in_chunks(
    file: FileId,
    text: &str,
    boundaries: &[usize],
    chunks: usize,
) -> Option<Vec<Chunk>> {
    let target = text.len() / chunks;
    let mut cuts = vec![0];
    for &b in boundaries {
        if b - cuts[cuts.len() - 1] >= target && text.len() - b >= target / 2 {
            cuts.push(b);
        }
    }
    cuts.push(text.len());
    if cuts.len() < 3 {
        return None;
    }
    Some(std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .skip(1)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                scope.spawn(move || parse_piece(file, text, start, end, Rule::items).ok())
            })
            .collect();
        // The first run (which holds the byte-order mark and start of input) on this thread.
        let first = parse_piece(file, text, 0, cuts[1], Rule::file).ok();
        std::iter::once(first)
            .chain(handles.into_iter().map(|h| h.join().ok().flatten()))
            .zip(cuts.windows(2))
            .map(|(parsed, w)| Chunk {
                range: w[0]..w[1],
                parsed,
            })
            .collect()
    }))
}

/// What one lexical pass over a file finds before pest parses it.
pub(crate) struct Scan {
    /// The offsets just after each top-level declaration (a `}` or `;` at depth 0), where the
    /// file may be cut into pieces that parse on their own.
    pub boundaries: Vec<usize>,
    /// The offsets of the `{` that open blocks nested more than [`MAX_NESTING`] deep (the
    /// first such `{` of each branch). pest must not parse the pieces that hold one.
    pub too_deep: Vec<usize>,
}

/// One lexical pass over the file: finds the top-level declaration boundaries and the blocks
/// nested too deeply for the recursive-descent parser and the checker.
pub(crate) fn scan(text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut scanned = Scan {
        boundaries: Vec::new(),
        too_deep: Vec::new(),
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' => {
                depth += 1;
                if depth == MAX_NESTING + 1 {
                    scanned.too_deep.push(i);
                }
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    scanned.boundaries.push(i + 1);
                }
            }
            b';' if depth == 0 => scanned.boundaries.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    scanned
}

/// The error for a block nested too deeply, at its `{`.
pub(crate) fn too_deep(file: FileId, at: usize) -> Diagnostic {
    Diagnostic::error(
        Span::new(file, at, at + 1),
        format!("declarations nest too deeply (more than {MAX_NESTING} levels)"),
    )
    .with_label("this block is too deep")
}

/// Builds the AST from pest's tree. The grammar guarantees the shapes matched here.
struct Builder {
    file: FileId,
    /// Offset of the parsed piece in the file: pest's positions are relative to the piece.
    base: usize,
}

impl Builder {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn ident(&self, pair: &Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().into(),
            span: self.span(pair),
        }
    }

    fn int(&self, pair: &Pair<'_, Rule>) -> IntLit {
        IntLit {
            value: parse_int(pair.as_str()),
            span: self.span(pair),
        }
    }

    fn file(&self, root: Pair<'_, Rule>) -> File {
        let mut file = File {
            packages: Vec::new(),
            imports: Vec::new(),
            decls: Vec::new(),
        };
        for item in root.into_inner() {
            match item.as_rule() {
                Rule::package_decl => file.packages.push(self.package(item)),
                Rule::import_decl => file.imports.push(self.import(item)),
                Rule::message_decl => file.decls.push(Decl::Message(self.message(item))),
                Rule::enum_decl => file.decls.push(Decl::Enum(self.enumeration(item))),
                Rule::service_decl => file.decls.push(Decl::Service(self.service(item))),
                _ => {}
            }
        }
        file
    }

    fn doc(&self, pair: &Pair<'_, Rule>) -> Doc {
        let lines = pair
            .clone()
            .into_inner()
            .map(|line| doc_text(line.as_str()))
            .collect();
        Doc {
            lines,
            span: self.span(pair),
        }
    }

    fn package(&self, pair: Pair<'_, Rule>) -> Package {
        let span = self.span(&pair);
        let mut doc = None;
        let mut name = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::package_name => name = Some(self.ident(&p)),
                _ => {}
            }
        }
        Package {
            doc,
            name: name.expect("grammar: package has a name"),
            span,
        }
    }

    fn import(&self, pair: Pair<'_, Rule>) -> Import {
        let (doc, span) = self.statement(&pair);
        let path = pair
            .into_inner()
            .find(|p| p.as_rule() == Rule::import_path)
            .expect("grammar: import has a path");
        Import {
            doc,
            path: unquote(path.as_str()),
            path_span: self.span(&path),
            span,
        }
    }

    /// The doc comment of a statement that cannot be documented, and the statement's span
    /// without it.
    fn statement(&self, pair: &Pair<'_, Rule>) -> (Option<Doc>, Span) {
        let mut span = self.span(pair);
        let doc = pair
            .clone()
            .into_inner()
            .next()
            .filter(|p| p.as_rule() == Rule::doc)
            .map(|d| self.doc(&d));
        if doc.is_some() {
            let keyword = pair
                .clone()
                .into_inner()
                .find(|p| matches!(p.as_rule(), Rule::kw_import | Rule::kw_reserved))
                .expect("grammar: a statement starts with its keyword");
            span.start = self.span(&keyword).start;
        }
        (doc, span)
    }

    fn message(&self, pair: Pair<'_, Rule>) -> Message {
        let span = self.span(&pair);
        let mut doc = None;
        let mut name = None;
        let mut items = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::message_name => name = Some(self.ident(&p)),
                Rule::field => items.push(MessageItem::Field(self.field(p))),
                Rule::oneof_decl => items.push(MessageItem::Oneof(self.oneof(p))),
                Rule::message_decl => items.push(MessageItem::Message(self.message(p))),
                Rule::enum_decl => items.push(MessageItem::Enum(self.enumeration(p))),
                Rule::reserved_decl => items.push(MessageItem::Reserved(self.reserved(p))),
                _ => {}
            }
        }
        Message {
            doc,
            name: name.expect("grammar: message has a name"),
            items,
            span,
        }
    }

    fn field(&self, pair: Pair<'_, Rule>) -> Field {
        let span = self.span(&pair);
        let mut doc = None;
        let mut label = None;
        let mut ty = None;
        let mut name = None;
        let mut number = None;
        let mut options = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::label => {
                    let kw = if p.as_str() == "optional" {
                        LabelKw::Optional
                    } else {
                        LabelKw::Repeated
                    };
                    label = Some((kw, self.span(&p)));
                }
                Rule::field_type => ty = Some(self.field_type(p)),
                Rule::field_name => name = Some(self.ident(&p)),
                Rule::field_number => number = Some(self.int(&p)),
                Rule::options => options = self.options(p),
                _ => {}
            }
        }
        Field {
            doc,
            label,
            ty: ty.expect("grammar: field has a type"),
            name: name.expect("grammar: field has a name"),
            number: number.expect("grammar: field has a number"),
            options,
            span,
        }
    }

    fn field_type(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let inner = pair.into_inner().next().expect("grammar: field type");
        if inner.as_rule() == Rule::map_type {
            let span = self.span(&inner);
            let mut types = inner
                .into_inner()
                .filter(|p| matches!(p.as_rule(), Rule::key_type | Rule::value_type))
                .map(|p| self.ident(&p));
            let key = types.next().expect("grammar: map key");
            let value = types.next().expect("grammar: map value");
            TypeExpr::Map { key, value, span }
        } else {
            TypeExpr::Named(self.ident(&inner))
        }
    }

    fn oneof(&self, pair: Pair<'_, Rule>) -> Oneof {
        let span = self.span(&pair);
        let mut doc = None;
        let mut name = None;
        let mut fields = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::oneof_name => name = Some(self.ident(&p)),
                Rule::field => fields.push(self.field(p)),
                _ => {}
            }
        }
        Oneof {
            doc,
            name: name.expect("grammar: oneof has a name"),
            fields,
            span,
        }
    }

    fn reserved(&self, pair: Pair<'_, Rule>) -> Reserved {
        let (doc, span) = self.statement(&pair);
        let mut ranges = Vec::new();
        let mut names = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::reserved_range => {
                    let range_span = self.span(&p);
                    let mut start = None;
                    let mut end = None;
                    for b in p.into_inner() {
                        match b.as_rule() {
                            Rule::range_bound if start.is_none() => start = Some(self.int(&b)),
                            Rule::range_bound => end = Some(RangeEnd::Number(self.int(&b))),
                            Rule::kw_max => end = Some(RangeEnd::Max(self.span(&b))),
                            _ => {}
                        }
                    }
                    ranges.push(ReservedRange {
                        start: start.expect("grammar: range has a start"),
                        end,
                        span: range_span,
                    });
                }
                Rule::reserved_name => {
                    let text = p.as_str();
                    let name = if text.starts_with('"') {
                        unquote(text).into()
                    } else {
                        text.into()
                    };
                    names.push(Ident {
                        name,
                        span: self.span(&p),
                    });
                }
                _ => {}
            }
        }
        Reserved {
            doc,
            ranges,
            names,
            span,
        }
    }

    fn enumeration(&self, pair: Pair<'_, Rule>) -> Enum {
        let span = self.span(&pair);
        let mut doc = None;
        let mut name = None;
        let mut values = Vec::new();
        let mut reserved = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::enum_name => name = Some(self.ident(&p)),
                Rule::reserved_decl => reserved.push(self.reserved(p)),
                Rule::enum_value => {
                    let value_span = self.span(&p);
                    let mut doc = None;
                    let mut name = None;
                    let mut number = None;
                    for v in p.into_inner() {
                        match v.as_rule() {
                            Rule::doc => doc = Some(self.doc(&v)),
                            Rule::value_name => name = Some(self.ident(&v)),
                            Rule::value_number => number = Some(self.int(&v)),
                            _ => {}
                        }
                    }
                    values.push(EnumValue {
                        doc,
                        name: name.expect("grammar: enum value has a name"),
                        number: number.expect("grammar: enum value has a number"),
                        span: value_span,
                    });
                }
                _ => {}
            }
        }
        Enum {
            doc,
            name: name.expect("grammar: enum has a name"),
            values,
            reserved,
            span,
        }
    }

    fn service(&self, pair: Pair<'_, Rule>) -> Service {
        let span = self.span(&pair);
        let mut doc = None;
        let mut name = None;
        let mut methods = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::service_name => name = Some(self.ident(&p)),
                Rule::method => methods.push(self.method(p)),
                _ => {}
            }
        }
        Service {
            doc,
            name: name.expect("grammar: service has a name"),
            methods,
            span,
        }
    }

    fn method(&self, pair: Pair<'_, Rule>) -> Method {
        let span = self.span(&pair);
        let mut doc = None;
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::doc => doc = Some(self.doc(&p)),
                Rule::rpc_method | Rule::event_method | Rule::stream_method => body = Some(p),
                _ => {}
            }
        }
        let body = body.expect("grammar: method has a body");
        let kind = match body.as_rule() {
            Rule::rpc_method => MethodKw::Rpc,
            Rule::event_method => MethodKw::Event,
            _ => MethodKw::Stream,
        };
        let mut kind_span = None;
        let mut name = None;
        let mut types = Vec::new();
        let mut options = Vec::new();
        for p in body.into_inner() {
            match p.as_rule() {
                Rule::kw_rpc | Rule::kw_event | Rule::kw_stream => kind_span = Some(self.span(&p)),
                Rule::method_name => name = Some(self.ident(&p)),
                Rule::message_type => types.push(self.ident(&p)),
                Rule::options => options = self.options(p),
                _ => {}
            }
        }
        let mut types = types.into_iter();
        Method {
            doc,
            kind: (kind, kind_span.expect("grammar: method keyword")),
            name: name.expect("grammar: method has a name"),
            input: types.next().expect("grammar: method has an argument"),
            output: types.next(),
            options,
            span,
        }
    }

    fn options(&self, pair: Pair<'_, Rule>) -> Vec<OptionSetting> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::option)
            .map(|p| {
                let span = self.span(&p);
                let mut name = None;
                let mut value = None;
                for part in p.into_inner() {
                    match part.as_rule() {
                        Rule::option_name => name = Some(self.ident(&part)),
                        Rule::option_value => {
                            let lit = part.into_inner().next().expect("grammar: option value");
                            let text = lit.as_str();
                            let kind = match lit.as_rule() {
                                Rule::option_int => OptionValueKind::Int(parse_int(text)),
                                Rule::option_string => OptionValueKind::Str(unquote(text)),
                                _ if text == "true" => OptionValueKind::Bool(true),
                                _ if text == "false" => OptionValueKind::Bool(false),
                                _ => OptionValueKind::Word(text.to_string()),
                            };
                            value = Some(OptionValue {
                                kind,
                                span: self.span(&lit),
                            });
                        }
                        _ => {}
                    }
                }
                OptionSetting {
                    name: name.expect("grammar: option has a name"),
                    value: value.expect("grammar: option has a value"),
                    span,
                }
            })
            .collect()
    }
}

/// The text of one `///` line: without the marker, one following space, and trailing blanks.
pub(crate) fn doc_text(line: &str) -> String {
    let text = line.strip_prefix("///").unwrap_or(line);
    let text = text.strip_prefix(' ').unwrap_or(text);
    text.trim_end().to_string()
}

/// Parses a decimal or `0x` integer literal, optionally negative; `None` if it does not fit
/// in 64 bits (signed or unsigned).
fn parse_int(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    let value = i128::from(magnitude);
    Some(if negative { -value } else { value })
}

/// The contents of a string literal, with `\"`, `\\`, `\n` and `\t` resolved.
fn unquote(literal: &str) -> String {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(literal);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a grammar rule stands for, in the words of an error message. `None` for rules that
/// are never worth naming (doc comments may always be added, so they are not "expected").
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::package_decl | Rule::kw_package => "`package`",
        Rule::import_decl | Rule::kw_import => "`import`",
        Rule::message_decl | Rule::kw_message => "`message`",
        Rule::enum_decl | Rule::kw_enum => "`enum`",
        Rule::service_decl | Rule::kw_service => "`service`",
        Rule::oneof_decl | Rule::kw_oneof => "`oneof`",
        Rule::reserved_decl | Rule::kw_reserved => "`reserved`",
        Rule::field => "a field",
        Rule::label | Rule::kw_optional | Rule::kw_repeated => "a field",
        Rule::field_type | Rule::map_type => "a field type such as `string` or a message name",
        Rule::key_type => "a map key type such as `string` or `uint64`",
        Rule::value_type => "a map value type",
        Rule::message_type => "a message name",
        Rule::kw_returns => "`returns`",
        Rule::kw_map => "`map`",
        Rule::kw_to => "`to`",
        Rule::kw_max => "`max`",
        Rule::method | Rule::rpc_method | Rule::event_method | Rule::stream_method => {
            "a method (`rpc`, `event` or `stream`)"
        }
        Rule::kw_rpc => "`rpc`",
        Rule::kw_event => "`event`",
        Rule::kw_stream => "`stream`",
        Rule::package_name => "a package name such as `chat.v1`",
        Rule::message_name => "a message name",
        Rule::enum_name => "an enum name",
        Rule::service_name => "a service name",
        Rule::oneof_name => "a oneof name",
        Rule::field_name => "a field name",
        Rule::enum_value | Rule::value_name => "an enum value",
        Rule::method_name => "a method name",
        Rule::options => "`[`",
        Rule::option => "an option such as `timeout_ms = 100`",
        Rule::option_name => "an option name",
        Rule::option_value | Rule::option_int | Rule::option_string | Rule::option_word => {
            "an option value (a number, `true`, `false`, a word or a string)"
        }
        Rule::field_number => "a field number",
        Rule::value_number => "a number",
        Rule::reserved_range | Rule::range_bound | Rule::reserved_name => {
            "a field number, a range such as `9 to 11`, or a name"
        }
        Rule::import_path => "a file path in double quotes",
        Rule::semi => "`;`",
        Rule::eq => "`=`",
        Rule::comma => "`,`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::langle => "`<`",
        Rule::rangle => "`>`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

/// Describes the token at `pos`: `` `word` ``, `` `}` ``, "end of file"...
fn found_token(text: &str, pos: usize) -> (String, usize) {
    let rest = &text[pos..];
    let Some(first) = rest.chars().next() else {
        return ("end of file".to_string(), 0);
    };
    if rest.starts_with("///") && !rest.starts_with("////") {
        let len = rest.find('\n').unwrap_or(rest.len());
        return ("a doc comment".to_string(), len);
    }
    let word_len = |s: &str| {
        s.char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .map_or(s.len(), |(i, _)| i)
    };
    if first.is_ascii_alphanumeric() || first == '_' {
        let len = word_len(rest);
        return (format!("`{}`", &rest[..len]), len);
    }
    if first == '-' && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        let len = 1 + word_len(&rest[1..]);
        return (format!("`{}`", &rest[..len]), len);
    }
    if first == '"' {
        // Up to the closing quote, or to the end of the line for an unterminated string.
        let len = match rest[1..].find(['"', '\n']) {
            Some(i) if rest.as_bytes()[1 + i] == b'"' => i + 2,
            Some(i) => rest[..1 + i].trim_end().len(),
            None => rest.len(),
        };
        let shown = &rest[..len];
        return if shown.chars().count() <= 40 {
            (format!("`{shown}`"), len)
        } else {
            ("a string".to_string(), len)
        };
    }
    (format!("`{first}`"), first.len_utf8())
}

/// Where pest failed to parse the piece of `text` that starts at `base`, as an offset in `text`.
pub(crate) fn error_offset(text: &str, base: usize, error: &pest::error::Error<Rule>) -> usize {
    let pos = match error.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((start, _)) => start,
    };
    (base + pos).min(text.len())
}

/// Turns pest's failure to parse the piece of `text` that starts at `base` into a syntax error
/// that names what was expected in plain words.
pub(crate) fn syntax_error(
    file: FileId,
    text: &str,
    base: usize,
    error: &pest::error::Error<Rule>,
) -> Diagnostic {
    let pos = error_offset(text, base, error);
    let rest = &text[pos..];
    let (found, len) = found_token(text, pos);
    let span = Span::new(file, pos, pos + len);

    if rest.starts_with("/*") {
        return Diagnostic::error(Span::new(file, pos, pos + 2), "unterminated block comment")
            .with_label("this comment is never closed")
            .with_help("close it with `*/`");
    }
    if rest.starts_with('"') && !rest[1..].split('\n').next().unwrap_or("").contains('"') {
        return Diagnostic::error(span, "unterminated string")
            .with_label("this string is never closed")
            .with_help("strings end with `\"` on the same line");
    }
    if let Some(d) = nested_collection(file, text, pos) {
        return d;
    }

    let mut expected: Vec<&'static str> = Vec::new();
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &error.variant {
        // pest names the whole rule when it fails at its first character: at the start of a
        // file (or of a piece of one), that means a top-level declaration.
        let top_level = [
            Rule::package_decl,
            Rule::import_decl,
            Rule::message_decl,
            Rule::enum_decl,
            Rule::service_decl,
        ];
        let rules = positives.iter().flat_map(|rule| match rule {
            Rule::file | Rule::items => top_level.as_slice(),
            rule => std::slice::from_ref(rule),
        });
        for rule in rules {
            if let Some(d) = describe(*rule)
                && !expected.contains(&d)
            {
                expected.push(d);
            }
        }
    }
    // A field type is part of "a field" when a whole field could stand here.
    if expected.contains(&"a field") {
        expected.retain(|d| *d != "a field type such as `string` or a message name");
    }
    // "end of file" is only worth saying when nothing else would do.
    if expected.len() > 1 {
        expected.retain(|d| *d != "end of file");
    }
    // Keep declarations before punctuation and in a stable, readable order.
    expected.sort_by_key(|d| ORDER.iter().position(|o| o == d).unwrap_or(ORDER.len()));

    let before = text[..pos].trim_end();
    let last_line = before.rsplit('\n').next().unwrap_or("").trim_start();
    let after_doc = last_line.starts_with("///") && !last_line.starts_with("////");
    if after_doc {
        // They take a doc comment only to warn that it documents nothing.
        expected.retain(|d| !matches!(*d, "`import`" | "`reserved`"));
    }
    let what = join_or(&expected);
    let message = if after_doc && !what.is_empty() {
        format!("expected {what} after the doc comment, found {found}")
    } else if what.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {what}, found {found}")
    };

    // A missing `;` at the end of a line is best shown where it is missing.
    let mut diagnostic = if expected.contains(&"`;`") && text[before.len()..pos].contains('\n') {
        let at = before.len();
        Diagnostic::error(Span::new(file, at, at), message)
            .with_label("expected `;` here")
            .with_note(span, format!("unexpected {found}"))
    } else if what.is_empty() {
        Diagnostic::error(span, message).with_label("unexpected here")
    } else {
        Diagnostic::error(span, message).with_label(format!("expected {what}"))
    };
    // At the end of the file, show which block is still open.
    if pos == text.len()
        && expected.contains(&"`}`")
        && let Some(open) = crate::recover::unclosed_brace(text)
    {
        diagnostic =
            diagnostic.with_note(Span::new(file, open, open + 1), "this `{` is never closed");
    }
    if after_doc {
        diagnostic = diagnostic.with_help(
            "a doc comment (`///`) documents the declaration that follows it; \
             use `//` for a plain comment",
        );
    } else if found == "a doc comment" {
        diagnostic =
            diagnostic.with_help("doc comments (`///`) may only stand before a declaration");
    } else if !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii()) {
        diagnostic = diagnostic.with_help("names use ASCII letters, digits and `_` only");
    } else if let Some(keyword) = mistyped_keyword(&text[pos..pos + len], &expected) {
        diagnostic = diagnostic.with_help(format!("did you mean `{keyword}`?"));
    }
    diagnostic
}

/// The expected keyword that `word` is a likely typo of (`mesage`, `sevice`, `retruns`).
fn mistyped_keyword<'a>(word: &str, expected: &[&'a str]) -> Option<&'a str> {
    if !word.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    expected
        .iter()
        .filter_map(|d| d.strip_prefix('`')?.strip_suffix('`'))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase()) && *k != word)
        .map(|k| (strsim::damerau_levenshtein(k, word), k))
        .filter(|&(distance, k)| distance <= if k.len() <= 4 { 1 } else { 2 })
        .min()
        .map(|(_, k)| k)
}

/// A map inside a map, or a list as a map value: the grammar stops at the inner `<` or at the
/// value type after `repeated`, where "expected `>`" would not say what is wrong.
fn nested_collection(file: FileId, text: &str, pos: usize) -> Option<Diagnostic> {
    let before = &text[..pos];
    // `map <` + key + `,` + what is at `pos`.
    let map_value_position = |s: &str| {
        strip_char(s, ',')
            .and_then(|s| strip_word(s, None))
            .and_then(|s| strip_char(s, '<'))
            .and_then(|s| strip_word(s, Some("map")))
            .is_some()
    };
    if text[pos..].starts_with('<') {
        let inner = strip_word(before, Some("map"))?;
        let start = before.trim_end().len() - "map".len();
        let span = Span::new(file, start, pos + 1);
        if map_value_position(inner) {
            return Some(
                Diagnostic::error(span, "a map value cannot be a map")
                    .with_label("a map inside a map")
                    .with_help(
                        "put the inner map in a message (`message Inner { map<K, V> entries = 1; }`) \
                         and use that message as the value",
                    ),
            );
        }
        if strip_char(inner, '<')
            .and_then(|s| strip_word(s, Some("map")))
            .is_some()
        {
            return Some(
                Diagnostic::error(span, "a map key cannot be a map")
                    .with_label("a map as a key")
                    .with_help("map keys are integer types, `bool` or `string`"),
            );
        }
        return None;
    }
    for label in ["repeated", "optional"] {
        if let Some(inner) = strip_word(before, Some(label))
            && map_value_position(inner)
        {
            let start = before.trim_end().len() - label.len();
            return Some(
                Diagnostic::error(
                    Span::new(file, start, start + label.len()),
                    format!("a map value cannot be `{label}`"),
                )
                .with_label(format!("`{label}` inside `map<...>`"))
                .with_help(if label == "repeated" {
                    "put the list in a message and use that message as the value"
                } else {
                    "map values are always present: remove `optional`"
                }),
            );
        }
    }
    None
}

/// `s` without trailing blanks and a trailing `c`, then without the blanks before it.
fn strip_char(s: &str, c: char) -> Option<&str> {
    s.trim_end().strip_suffix(c).map(str::trim_end)
}

/// `s` without trailing blanks and a trailing name (`word`, or any name or dotted type name
/// when `None`), then without the blanks before it.
fn strip_word<'a>(s: &'a str, word: Option<&str>) -> Option<&'a str> {
    let s = s.trim_end();
    let start = s
        .char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        .last()
        .map(|(i, _)| i)?;
    let found = &s[start..];
    if word.is_some_and(|w| w != found) {
        return None;
    }
    Some(s[..start].trim_end())
}

/// The order in which expectations are listed.
const ORDER: &[&str] = &[
    "`package`",
    "`import`",
    "a field",
    "`message`",
    "`enum`",
    "`service`",
    "`oneof`",
    "`reserved`",
    "an enum value",
    "a method (`rpc`, `event` or `stream`)",
];

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A file large enough to be parsed in runs, with comments, strings and braces in places the
/// lexical scan must not mistake for declaration boundaries.
#[cfg(test)]
pub(crate) fn large_schema() -> String {
    let mut text = String::from("\u{FEFF}/// Docs.\npackage big.v1;\nimport \"x;}.echo\";\n");
    let mut n = 0;
    while text.len() < 2 * PARALLEL_THRESHOLD {
        text.push_str(&format!(
            "/* a }} block; comment */\n/// Message {n}; with }} in its doc.\nmessage M{n} {{\n  \
             message Inner {{ string s = 1; }}\n  reserved \"a;}}\", 9;\n  \
             Inner inner = 1; // trailing }} comment\n}}\nenum E{n} {{ E{n}_ZERO = 0; }}\n"
        ));
        n += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("-12"), Some(-12));
        assert_eq!(parse_int("0x1F"), Some(31));
        assert_eq!(parse_int("18446744073709551615"), Some(u64::MAX as i128));
        assert_eq!(parse_int("18446744073709551616"), None);
    }

    #[test]
    fn strings_unescape() {
        assert_eq!(unquote(r#""a\"b\\c""#), "a\"b\\c");
    }

    #[test]
    fn parsing_in_pieces_equals_one_sequential_parse() {
        let text = large_schema();
        let file = FileId::default();
        let scanned = scan(&text);
        assert!(scanned.too_deep.is_empty());
        let chunks = parse_in_chunks(file, &text, &scanned.boundaries, 4).expect("four runs");
        assert_eq!(chunks.len(), 4);
        let mut joined = File {
            packages: Vec::new(),
            imports: Vec::new(),
            decls: Vec::new(),
        };
        for chunk in chunks {
            let part = chunk.parsed.expect("every run parses");
            joined.packages.extend(part.packages);
            joined.imports.extend(part.imports);
            joined.decls.extend(part.decls);
        }
        let whole = parse_piece(file, &text, 0, text.len(), Rule::file).unwrap();
        assert_eq!(joined, whole);
        assert_eq!(parse(file, &text).unwrap(), whole);
    }

    #[test]
    fn a_syntax_error_in_a_large_file_is_reported_as_by_a_sequential_parse() {
        let mut text = large_schema();
        let at = text.len() * 3 / 4;
        let at = at + text[at..].find("string s").unwrap();
        text.replace_range(at..at + "string s".len(), "string 9");
        let file = FileId::default();
        let sequential = parse_piece(file, &text, 0, text.len(), Rule::file).unwrap_err();
        let expected = syntax_error(file, &text, 0, &sequential);
        let reported = parse(file, &text).unwrap_err();
        assert_eq!(reported.message, expected.message);
        assert_eq!(reported.span, expected.span);
        assert!(reported.span.unwrap().start > text.len() / 2);
    }
}
