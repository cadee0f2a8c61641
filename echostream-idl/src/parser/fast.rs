//! The parser's fast path: a hand-written recursive-descent parser of the grammar in
//! `echo.pest` that builds the syntax tree straight from the text.
//!
//! pest spends most of its time on bookkeeping that only matters when the input is wrong: the
//! token queue, backtracking snapshots, a stack guard and the expected-token tracking behind
//! its error messages. Valid input does not need any of it, so this parser handles it alone,
//! several times faster, and says nothing more than "it does not parse" otherwise: then the
//! caller parses with pest, which reports the syntax error in plain words (see
//! [`super::parse_piece`]).
//!
//! Each function below is the rule of the same name in `echo.pest`, with the same ordered
//! choices and the same backtracking, and builds the nodes pest's tree builder builds, with
//! the same spans: for any input, it returns exactly the tree of the pest parse, or `None` when
//! pest would fail. A test holds the two to that on every schema of the test corpus and on
//! thousands of mutations of them.

use smol_str::SmolStr;

use crate::ast::{
    Decl, Doc, Enum, EnumValue, Field, File, Ident, Import, IntLit, LabelKw, Message, MessageItem,
    Method, MethodKw, Oneof, OptionSetting, OptionValue, OptionValueKind, Package, RangeEnd,
    Reserved, ReservedRange, Service, TypeExpr,
};
use crate::source::{FileId, Span};

use super::{MAX_NESTING, doc_text, parse_int, unquote};

/// Parses `text[start..end]` as the rule `file` (with `file_start`: at the start of the text,
/// where a byte-order mark may stand) or `items` (a run of top-level declarations after it).
/// Spans are offsets into the whole `text`. `None` if it does not parse, or nests more than
/// [`MAX_NESTING`] blocks deep (which pest is never asked to parse either).
pub(super) fn parse(
    file: FileId,
    text: &str,
    start: usize,
    end: usize,
    file_start: bool,
) -> Option<File> {
    let mut p = Parser {
        file,
        text: &text[..end],
        pos: start,
        depth: 0,
    };
    if file_start {
        p.eat("\u{FEFF}");
    }
    let mut parsed = File {
        packages: Vec::new(),
        imports: Vec::new(),
        decls: Vec::new(),
    };
    p.blanks();
    while p.pos < end {
        p.top_item(&mut parsed)?;
        p.blanks();
    }
    Some(parsed)
}

/// The state of one parse: `pos` is the byte offset in `text`, which ends where the piece ends.
struct Parser<'a> {
    file: FileId,
    text: &'a str,
    pos: usize,
    /// How many `{ }` blocks enclose `pos`.
    depth: usize,
}

/// `ident_start`
fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// `ident_char`
fn ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn span(&self, start: usize) -> Span {
        Span::new(self.file, start, self.pos)
    }

    /// Whether `f` succeeds here; either way, stays where it is (a pest look-ahead `&`).
    fn looking_at<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> bool {
        let start = self.pos;
        let found = f(self).is_some();
        self.pos = start;
        found
    }

    /// Runs `f`; if it fails, goes back to where it started, as a failed pest sequence does.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let result = f(self);
        if result.is_none() {
            self.pos = start;
        }
        result
    }

    /// A literal string.
    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    /// One punctuation character (`semi`, `lbrace`...).
    fn punct(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.pos += 1)
    }

    /// A keyword (`kw_message`...): the word, not followed by a name character.
    fn keyword(&mut self, word: &str) -> Option<Span> {
        let start = self.pos;
        let bytes = self.bytes();
        let after = start + word.len();
        let found =
            self.rest().starts_with(word) && !bytes.get(after).copied().is_some_and(ident_char);
        found.then(|| {
            self.pos = after;
            self.span(start)
        })
    }

    /// `S`: blanks and plain comments (anything that starts with `//` or `/*` but a doc
    /// comment). An unterminated block comment is not skipped; what follows then fails.
    fn blanks(&mut self) {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'/' if bytes.get(self.pos + 1) == Some(&b'*') => {
                    match self.text[self.pos + 2..].find("*/") {
                        Some(len) => self.pos += 2 + len + 2,
                        None => return,
                    }
                }
                b'/' if bytes.get(self.pos + 1) == Some(&b'/') && !self.at_doc() => {
                    self.pos = self.line_end();
                }
                _ => return,
            }
        }
    }

    /// `doc_marker`: `///` not followed by another `/`.
    fn at_doc(&self) -> bool {
        self.rest().starts_with("///") && self.bytes().get(self.pos + 3) != Some(&b'/')
    }

    /// The offset of the next line feed, or of the end of the text.
    fn line_end(&self) -> usize {
        self.rest()
            .find('\n')
            .map_or(self.text.len(), |i| self.pos + i)
    }

    /// `doc`: `///` lines, with blanks and plain comments between them.
    fn doc(&mut self) -> Option<Doc> {
        if !self.at_doc() {
            return None;
        }
        let start = self.pos;
        let mut lines = Vec::new();
        loop {
            let line = self.pos;
            self.pos = self.line_end();
            lines.push(doc_text(&self.text[line..self.pos]));
            let end = self.pos;
            self.blanks();
            if !self.at_doc() {
                self.pos = end;
                break;
            }
        }
        Some(Doc {
            lines,
            span: self.span(start),
        })
    }

    /// `(doc ~ S)?`, which every declaration starts with.
    fn leading_doc(&mut self) -> Option<Doc> {
        let doc = self.doc();
        if doc.is_some() {
            self.blanks();
        }
        doc
    }

    /// `IDENT`, as the end offset of the name that starts at `pos`.
    fn ident_end(&self) -> Option<usize> {
        let bytes = self.bytes();
        if !bytes.get(self.pos).copied().is_some_and(ident_start) {
            return None;
        }
        let len = bytes[self.pos + 1..]
            .iter()
            .position(|&b| !ident_char(b))
            .unwrap_or(bytes.len() - self.pos - 1);
        Some(self.pos + 1 + len)
    }

    /// A name rule (`message_name`, `field_name`...): `IDENT`.
    fn name(&mut self) -> Option<Ident> {
        let end = self.ident_end()?;
        let start = std::mem::replace(&mut self.pos, end);
        Some(self.ident(start))
    }

    /// The node for the text from `start` to `pos`.
    fn ident(&self, start: usize) -> Ident {
        Ident {
            name: SmolStr::new(&self.text[start..self.pos]),
            span: self.span(start),
        }
    }

    /// `("." ~ IDENT)*` after a name.
    fn dotted_rest(&mut self) {
        while self.peek() == Some(b'.') {
            self.pos += 1;
            match self.ident_end() {
                Some(end) => self.pos = end,
                None => {
                    self.pos -= 1;
                    return;
                }
            }
        }
    }

    /// `package_name`: `IDENT ~ ("." ~ IDENT)*`.
    fn package_name(&mut self) -> Option<Ident> {
        let start = self.pos;
        self.pos = self.ident_end()?;
        self.dotted_rest();
        Some(self.ident(start))
    }

    /// `TYPE` (`type_name`, `key_type`, `value_type`, `message_type`):
    /// `"."? ~ IDENT ~ ("." ~ IDENT)*`.
    fn type_name(&mut self) -> Option<Ident> {
        self.attempt(|p| {
            let start = p.pos;
            p.eat(".");
            p.pos = p.ident_end()?;
            p.dotted_rest();
            Some(p.ident(start))
        })
    }

    /// `INT` (`field_number`, `value_number`...).
    fn int(&mut self) -> Option<IntLit> {
        self.attempt(|p| {
            let start = p.pos;
            p.eat("-");
            let bytes = p.bytes();
            let digits = |from: usize, hex: bool| {
                bytes[from..]
                    .iter()
                    .take_while(|b| {
                        if hex {
                            b.is_ascii_hexdigit()
                        } else {
                            b.is_ascii_digit()
                        }
                    })
                    .count()
            };
            let rest = p.rest();
            let hex = if rest.starts_with("0x") || rest.starts_with("0X") {
                digits(p.pos + 2, true)
            } else {
                0
            };
            if hex > 0 {
                p.pos += 2 + hex;
            } else {
                let decimal = digits(p.pos, false);
                if decimal == 0 {
                    return None;
                }
                p.pos += decimal;
            }
            if p.peek().is_some_and(ident_char) {
                return None;
            }
            Some(IntLit {
                value: parse_int(&p.text[start..p.pos]),
                span: p.span(start),
            })
        })
    }

    /// `STRING`, as the span of the literal with its quotes.
    fn string(&mut self) -> Option<Span> {
        let start = self.pos;
        let bytes = self.bytes();
        if bytes.get(start) != Some(&b'"') {
            return None;
        }
        let mut i = start + 1;
        loop {
            match bytes.get(i)? {
                b'"' => break,
                b'\n' => return None,
                b'\\' => {
                    if matches!(bytes.get(i + 1), None | Some(b'\n')) {
                        return None;
                    }
                    i += 2;
                }
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Some(self.span(start))
    }

    /// `top_item`, added to `parsed`.
    fn top_item(&mut self, parsed: &mut File) -> Option<()> {
        let start = self.pos;
        let doc = self.leading_doc();
        if self.keyword("message").is_some() {
            let m = self.message_rest(start, doc)?;
            parsed.decls.push(Decl::Message(m));
        } else if self.keyword("service").is_some() {
            let s = self.service_rest(start, doc)?;
            parsed.decls.push(Decl::Service(s));
        } else if self.keyword("enum").is_some() {
            let e = self.enum_rest(start, doc)?;
            parsed.decls.push(Decl::Enum(e));
        } else if let Some(keyword) = self.keyword("import") {
            let import = self.import_rest(keyword, doc)?;
            parsed.imports.push(import);
        } else if self.keyword("package").is_some() {
            self.blanks();
            let name = self.package_name()?;
            self.blanks();
            self.punct(b';')?;
            parsed.packages.push(Package {
                doc,
                name,
                span: self.span(start),
            });
        } else {
            return None;
        }
        Some(())
    }

    /// `import_decl` after `kw_import`; its span starts at the keyword.
    fn import_rest(&mut self, keyword: Span, doc: Option<Doc>) -> Option<Import> {
        self.blanks();
        let path_span = self.string()?;
        self.blanks();
        self.punct(b';')?;
        Some(Import {
            doc,
            path: unquote(&self.text[path_span.start..path_span.end]),
            path_span,
            span: self.span(keyword.start),
        })
    }

    /// `"{" ~ S ~ (item ~ S)* ~ "}"` after a declaration's name; `item` parses one item.
    fn block(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.blanks();
        self.punct(b'{')?;
        if self.depth == MAX_NESTING {
            return None;
        }
        self.depth += 1;
        self.blanks();
        let mut body = || {
            while self.peek() != Some(b'}') {
                item(self)?;
                self.blanks();
            }
            self.pos += 1;
            Some(())
        };
        let closed = body();
        self.depth -= 1;
        closed
    }

    /// A declaration's name and its braced block of items, each read by `item`.
    fn named_block<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<(Ident, Vec<T>)> {
        self.blanks();
        let name = self.name()?;
        let mut items = Vec::new();
        self.block(|p| {
            items.push(item(p)?);
            Some(())
        })?;
        Some((name, items))
    }

    /// `message_decl` after `kw_message`.
    fn message_rest(&mut self, start: usize, doc: Option<Doc>) -> Option<Message> {
        let (name, items) = self.named_block(Self::message_item)?;
        Some(Message {
            doc,
            name,
            items,
            span: self.span(start),
        })
    }

    /// `message_item`: the forms are tried in the grammar's order.
    fn message_item(&mut self) -> Option<MessageItem> {
        let start = self.pos;
        let mut doc = self.leading_doc();
        if let Some(field) = self.field_rest(start, &mut doc) {
            return Some(MessageItem::Field(field));
        }
        if self.keyword("message").is_some() {
            return self.message_rest(start, doc).map(MessageItem::Message);
        }
        if self.keyword("enum").is_some() {
            return self.enum_rest(start, doc).map(MessageItem::Enum);
        }
        if self.keyword("oneof").is_some() {
            return self.oneof_rest(start, doc).map(MessageItem::Oneof);
        }
        let keyword = self.keyword("reserved")?;
        self.reserved_rest(keyword, doc).map(MessageItem::Reserved)
    }

    /// `field` after its doc comment, which it takes only if it parses.
    fn field_rest(&mut self, start: usize, doc: &mut Option<Doc>) -> Option<Field> {
        let (label, ty) = self
            .attempt(|p| {
                let ty = p.field_type()?;
                p.blanks();
                // The first form fails unless a name and `=` follow the type (`optional string
                // name = 1;` is the second form). When they follow, the second form cannot
                // match either if the rest of the first fails, so the choice is made here.
                p.looking_at(|p| {
                    p.name()?;
                    p.blanks();
                    p.punct(b'=')
                })
                .then_some((None, ty))
            })
            .or_else(|| {
                self.attempt(|p| {
                    let label_start = p.pos;
                    let kw = if p.keyword("optional").is_some() {
                        LabelKw::Optional
                    } else {
                        p.keyword("repeated")?;
                        LabelKw::Repeated
                    };
                    let label = (kw, p.span(label_start));
                    p.blanks();
                    let ty = p.field_type()?;
                    p.blanks();
                    Some((Some(label), ty))
                })
            })?;
        self.attempt(|p| {
            let name = p.name()?;
            p.blanks();
            p.punct(b'=')?;
            p.blanks();
            let number = p.int()?;
            p.blanks();
            let options = p.options_then_semi()?;
            Some(Field {
                doc: doc.take(),
                label,
                ty,
                name,
                number,
                options,
                span: p.span(start),
            })
        })
    }

    /// `field_type`: `map_type | type_name`.
    fn field_type(&mut self) -> Option<TypeExpr> {
        let map = self.attempt(|p| {
            let start = p.pos;
            p.keyword("map")?;
            p.blanks();
            p.punct(b'<')?;
            p.blanks();
            let key = p.type_name()?;
            p.blanks();
            p.punct(b',')?;
            p.blanks();
            let value = p.type_name()?;
            p.blanks();
            p.punct(b'>')?;
            Some(TypeExpr::Map {
                key,
                value,
                span: p.span(start),
            })
        });
        map.or_else(|| self.type_name().map(TypeExpr::Named))
    }

    /// `(options ~ S)? ~ semi`, which ends fields and methods.
    fn options_then_semi(&mut self) -> Option<Vec<OptionSetting>> {
        let options = self
            .attempt(|p| {
                let options = p.options()?;
                p.blanks();
                Some(options)
            })
            .unwrap_or_default();
        self.punct(b';')?;
        Some(options)
    }

    /// `options`: `[name = value, ...]`.
    fn options(&mut self) -> Option<Vec<OptionSetting>> {
        self.punct(b'[')?;
        self.blanks();
        let mut options = vec![self.option()?];
        self.blanks();
        while let Some(option) = self.attempt(|p| {
            p.punct(b',')?;
            p.blanks();
            let option = p.option()?;
            p.blanks();
            Some(option)
        }) {
            options.push(option);
        }
        self.punct(b']')?;
        Some(options)
    }

    /// `option`: `option_name ~ S ~ eq ~ S ~ option_value`.
    fn option(&mut self) -> Option<OptionSetting> {
        let start = self.pos;
        let name = self.name()?;
        self.blanks();
        self.punct(b'=')?;
        self.blanks();
        let value_start = self.pos;
        let kind = if let Some(int) = self.int() {
            OptionValueKind::Int(int.value)
        } else if let Some(string) = self.string() {
            OptionValueKind::Str(unquote(&self.text[string.start..string.end]))
        } else {
            let word = self.name()?;
            match word.name.as_str() {
                "true" => OptionValueKind::Bool(true),
                "false" => OptionValueKind::Bool(false),
                _ => OptionValueKind::Word(word.name.as_str().to_owned()),
            }
        };
        Some(OptionSetting {
            name,
            value: OptionValue {
                kind,
                span: self.span(value_start),
            },
            span: self.span(start),
        })
    }

    /// `oneof_decl` after `kw_oneof`.
    fn oneof_rest(&mut self, start: usize, doc: Option<Doc>) -> Option<Oneof> {
        let (name, fields) = self.named_block(|p| {
            let start = p.pos;
            let mut doc = p.leading_doc();
            p.field_rest(start, &mut doc)
        })?;
        Some(Oneof {
            doc,
            name,
            fields,
            span: self.span(start),
        })
    }

    /// `reserved_decl` after `kw_reserved`; its span starts at the keyword.
    fn reserved_rest(&mut self, keyword: Span, doc: Option<Doc>) -> Option<Reserved> {
        let mut reserved = Reserved {
            doc,
            ranges: Vec::new(),
            names: Vec::new(),
            span: keyword,
        };
        self.blanks();
        self.reserved_item(&mut reserved)?;
        self.blanks();
        while self
            .attempt(|p| {
                p.punct(b',')?;
                p.blanks();
                p.reserved_item(&mut reserved)?;
                p.blanks();
                Some(())
            })
            .is_some()
        {}
        self.punct(b';')?;
        reserved.span = self.span(keyword.start);
        Some(reserved)
    }

    /// `reserved_item`: `reserved_range | reserved_name`, added to `reserved`.
    fn reserved_item(&mut self, reserved: &mut Reserved) -> Option<()> {
        let start = self.pos;
        if let Some(first) = self.int() {
            let end = self.attempt(|p| {
                p.blanks();
                p.keyword("to")?;
                p.blanks();
                match p.keyword("max") {
                    Some(max) => Some(RangeEnd::Max(max)),
                    None => p.int().map(RangeEnd::Number),
                }
            });
            reserved.ranges.push(ReservedRange {
                start: first,
                end,
                span: self.span(start),
            });
        } else if let Some(string) = self.string() {
            reserved.names.push(Ident {
                name: unquote(&self.text[string.start..string.end]).into(),
                span: string,
            });
        } else {
            let name = self.name()?;
            reserved.names.push(name);
        }
        Some(())
    }

    /// `enum_decl` after `kw_enum`.
    fn enum_rest(&mut self, start: usize, doc: Option<Doc>) -> Option<Enum> {
        self.blanks();
        let name = self.name()?;
        let mut values = Vec::new();
        let mut reserved = Vec::new();
        self.block(|p| {
            let start = p.pos;
            let doc = p.leading_doc();
            let value = p.attempt(|p| {
                let name = p.name()?;
                p.blanks();
                p.punct(b'=')?;
                p.blanks();
                let number = p.int()?;
                p.blanks();
                p.punct(b';')?;
                Some((name, number))
            });
            match value {
                Some((name, number)) => values.push(EnumValue {
                    doc,
                    name,
                    number,
                    span: p.span(start),
                }),
                None => {
                    let keyword = p.keyword("reserved")?;
                    reserved.push(p.reserved_rest(keyword, doc)?);
                }
            }
            Some(())
        })?;
        Some(Enum {
            doc,
            name,
            values,
            reserved,
            span: self.span(start),
        })
    }

    /// `service_decl` after `kw_service`.
    fn service_rest(&mut self, start: usize, doc: Option<Doc>) -> Option<Service> {
        let (name, methods) = self.named_block(Self::method)?;
        Some(Service {
            doc,
            name,
            methods,
            span: self.span(start),
        })
    }

    /// `method`: `rpc_method | event_method | stream_method`, after a doc comment.
    fn method(&mut self) -> Option<Method> {
        let start = self.pos;
        let doc = self.leading_doc();
        let (kind, kind_span) = if let Some(span) = self.keyword("rpc") {
            (MethodKw::Rpc, span)
        } else if let Some(span) = self.keyword("event") {
            (MethodKw::Event, span)
        } else {
            (MethodKw::Stream, self.keyword("stream")?)
        };
        self.blanks();
        let name = self.name()?;
        self.blanks();
        let input = self.parenthesized_type()?;
        self.blanks();
        let output = if kind == MethodKw::Rpc {
            self.keyword("returns")?;
            self.blanks();
            let output = self.parenthesized_type()?;
            self.blanks();
            Some(output)
        } else {
            None
        };
        let options = self.options_then_semi()?;
        Some(Method {
            doc,
            kind: (kind, kind_span),
            name,
            input,
            output,
            options,
            span: self.span(start),
        })
    }

    /// `lparen ~ S ~ message_type ~ S ~ rparen`.
    fn parenthesized_type(&mut self) -> Option<Ident> {
        self.punct(b'(')?;
        self.blanks();
        let ty = self.type_name()?;
        self.blanks();
        self.punct(b')')?;
        Some(ty)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parser::{Rule, large_schema, parse_piece_with_pest, scan};

    /// The fast parser returns exactly pest's tree, or fails where pest fails: for the whole
    /// of `text`, and for the run of declarations after its first top-level declaration.
    /// Blocks nested too deeply are left out: neither parser is given them.
    fn agrees_with_pest(text: &str) {
        let file = FileId::default();
        let scanned = scan(text);
        if !scanned.too_deep.is_empty() {
            return;
        }
        let starts = std::iter::once(0).chain(scanned.boundaries.first().copied());
        for start in starts {
            let rule = if start == 0 { Rule::file } else { Rule::items };
            let fast = parse(file, text, start, text.len(), start == 0);
            let pest = parse_piece_with_pest(file, text, start, text.len(), rule).ok();
            assert!(
                fast == pest,
                "the parsers disagree from offset {start} (fast parses: {}, pest parses: {}) \
                 on:\n{text}",
                fast.is_some(),
                pest.is_some(),
            );
        }
    }

    /// Every schema of the tests: valid, invalid, and the formatter's (but the one that is not
    /// UTF-8, which is rejected before parsing).
    fn corpus() -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("the test directory is readable") {
                let path = entry.expect("a readable entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "echo") {
                    let bytes = std::fs::read(path).expect("a readable schema");
                    files.extend(String::from_utf8(bytes).ok());
                }
            }
        }
        assert!(files.len() > 100, "the corpus is found");
        files
    }

    #[test]
    fn builds_the_tree_of_pest_on_the_test_corpus() {
        for text in corpus() {
            agrees_with_pest(&text);
        }
        agrees_with_pest(&large_schema());
    }

    #[test]
    fn builds_the_tree_of_pest_on_mutations() {
        // Pieces that change which rule matches: keywords as names, labels, docs before
        // statements, comments and blanks between any two tokens, malformed literals.
        const PIECES: &[&str] = &[
            "message",
            "enum",
            "service",
            "oneof",
            "reserved",
            "optional",
            "repeated",
            "map",
            "<",
            ">",
            "rpc",
            "event",
            "stream",
            "returns",
            "package",
            "import",
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            ";",
            "=",
            ",",
            ".",
            "to",
            "max",
            "0",
            "-1",
            "0x1F",
            "0x",
            "1a",
            "\"",
            "\"a\\\"b\"",
            "\\",
            "//",
            "/*",
            "*/",
            "///",
            "////",
            "\n",
            " ",
            "\t",
            "\r",
            "string",
            "A",
            "A.B",
            ".x.y",
            "\u{FEFF}",
            "é",
        ];
        // A seeded xorshift64*, so that a failure reproduces.
        let mut state = 0x5EED_FA57_u64;
        let mut below = |n: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
        };
        for text in corpus() {
            for _ in 0..20 {
                let mut text = text.clone();
                for _ in 0..1 + below(3) {
                    let mut at = below(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    match below(3) {
                        0 => text.insert_str(at, PIECES[below(PIECES.len())]),
                        1 => {
                            let mut end = (at + below(12)).min(text.len());
                            while !text.is_char_boundary(end) {
                                end -= 1;
                            }
                            text.replace_range(at..end, "");
                        }
                        _ => text.insert(at, ' '),
                    }
                }
                agrees_with_pest(&text);
            }
        }
    }
}
