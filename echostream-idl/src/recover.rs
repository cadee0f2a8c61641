//! Parsing a file for checking, declaration by declaration, so that one syntax error does not
//! hide the others.
//!
//! The lexical [`scan`] finds the file's top-level declaration boundaries; each *piece* (a
//! top-level declaration with the blanks and comments before it) parses on its own. A small
//! file is parsed piece by piece; a large one in runs of pieces on several threads (as
//! [`crate::parse`] does), and only a run that fails is parsed again piece by piece. The pieces
//! that parse keep their declarations, which the checker then checks as usual; each piece that
//! does not parse reports its first syntax error. What a broken piece would have declared is
//! unknown, so the checker is told what it *may* declare ([`Damage`]) and stays silent about
//! references that could name it, as rustc does after a parse error: every error shown is one
//! the user has to fix.

use std::ops::Range;

use rustc_hash::FxHashSet as HashSet;

use crate::ast::{File, Ident, Package};
use crate::diagnostic::Diagnostic;
use crate::parser::{
    Rule, Scan, error_offset, parse_chunks, parse_piece, scan, syntax_error, too_deep,
};
use crate::resolve::distance;
use crate::source::{FileId, Span};

/// A file parsed as far as it could be.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The declarations of every piece that parsed, in source order.
    pub ast: File,
    /// The first syntax error of each piece that did not parse.
    pub errors: Vec<Diagnostic>,
    /// What the pieces that did not parse may have declared; `None` when the whole file parsed.
    pub damage: Option<Damage>,
}

/// What the text that did not parse may have declared, so that the checker does not report
/// the consequences of a syntax error as errors of their own.
#[derive(Debug, Default)]
pub(crate) struct Damage {
    /// Names the broken text may declare: every name before a `{` and after `message`,
    /// `enum` or `service`, at any depth (a missing `}` turns the declarations after it into
    /// nested ones).
    pub names: HashSet<String>,
    /// The broken text may hold an `import`: which types the file can see is unknown.
    pub lost_import: bool,
    /// No `package` statement parsed and no package name could be read from the broken text
    /// (where a mistyped `package` may be): the full names of the file's types are unknown.
    pub lost_package: bool,
}

impl Damage {
    /// Whether a type reference written `name` (possibly qualified) may be to something the
    /// broken text declares: one of its segments is such a name.
    pub fn may_declare(&self, name: &str) -> bool {
        name.split('.').any(|segment| self.names.contains(segment))
    }

    /// A name of the broken text close to an unknown unqualified type name (as the checker's
    /// suggestions are), with its distance: `Mesage` when `message Message` did not parse.
    pub fn suggest(&self, name: &str) -> Option<(usize, &str)> {
        if name.contains('.') {
            return None;
        }
        let limit = 1.max(name.len() / 3);
        self.names
            .iter()
            .map(|n| (distance(n, name), n.as_str()))
            .filter(|&(d, _)| d <= limit)
            .min()
    }
}

/// Parses one file for checking. The declarations are those [`crate::parse`] returns when the
/// file parses.
pub(crate) fn parse_file(file: FileId, text: &str) -> Parsed {
    let scanned = scan(text);
    let mut recovery = Recovery {
        file,
        text,
        scanned: &scanned,
        ast: File {
            packages: Vec::new(),
            imports: Vec::new(),
            decls: Vec::new(),
        },
        errors: Vec::new(),
        broken: Vec::new(),
        last: Last::Parsed,
    };
    let chunks = if scanned.too_deep.is_empty() {
        parse_chunks(file, text, &scanned.boundaries)
    } else {
        None
    };
    match chunks {
        Some(chunks) => {
            for chunk in chunks {
                match chunk.parsed {
                    Some(parsed) => recovery.keep(parsed),
                    None => recovery.pieces(chunk.range),
                }
            }
        }
        None => recovery.pieces(0..text.len()),
    }
    recovery.finish()
}

/// The state of parsing one file piece by piece.
struct Recovery<'a> {
    file: FileId,
    text: &'a str,
    scanned: &'a Scan,
    ast: File,
    errors: Vec<Diagnostic>,
    /// The ranges of text that did not parse.
    broken: Vec<Range<usize>>,
    /// How the last piece ended.
    last: Last,
}

impl Recovery<'_> {
    /// Keeps the declarations of a piece or run of pieces that parsed.
    fn keep(&mut self, parsed: File) {
        self.ast.packages.extend(parsed.packages);
        self.ast.imports.extend(parsed.imports);
        self.ast.decls.extend(parsed.decls);
        self.last = Last::Parsed;
    }

    /// Parses each piece of `range` (which starts and ends at boundaries) on its own.
    fn pieces(&mut self, range: Range<usize>) {
        let boundaries = &self.scanned.boundaries;
        let from = boundaries.partition_point(|&b| b <= range.start);
        let ends = boundaries[from..]
            .iter()
            .copied()
            .take_while(|&b| b < range.end)
            .chain([range.end]);
        let mut start = range.start;
        for end in ends {
            if end > start {
                self.piece(start..end);
                start = end;
            }
        }
    }

    fn piece(&mut self, piece: Range<usize>) {
        // A block nested too deeply: pest must not recurse into it.
        let too_deep_blocks = &self.scanned.too_deep;
        let deep = too_deep_blocks
            .get(too_deep_blocks.partition_point(|&at| at < piece.start))
            .filter(|&&at| at < piece.end);
        if let Some(&at) = deep {
            self.errors.push(too_deep(self.file, at));
            self.broken.push(piece);
            self.last = Last::Broken;
            return;
        }
        let rule = if piece.start == 0 {
            Rule::file
        } else {
            Rule::items
        };
        match parse_piece(self.file, self.text, piece.start, piece.end, rule) {
            Ok(parsed) => self.keep(parsed),
            Err(e) => {
                let at = error_offset(self.text, piece.start, &e);
                let follows = follows(self.text, &piece, at, self.last);
                match (follows, self.broken.last_mut()) {
                    (Follows::Rest | Follows::End, Some(last)) => last.end = piece.end,
                    _ => {
                        let mut error = syntax_error(self.file, self.text, piece.start, &e);
                        // A statement of a body after a declaration that parsed: most likely
                        // that declaration's `}` came too early.
                        if self.last == Last::Parsed
                            && self.text[..piece.start].ends_with('}')
                            && error.help.is_none()
                            && body_statement(self.text, &piece, at)
                        {
                            let brace = Span::new(self.file, piece.start - 1, piece.start);
                            error = error
                                .with_note(brace, "the declaration before ends here")
                                .with_help(
                                    "if this belongs to the declaration before, remove the `}` \
                                     that ends it too early",
                                );
                        }
                        self.errors.push(error);
                        self.broken.push(piece);
                    }
                }
                self.last = match (follows, self.last) {
                    (Follows::End, _) | (Follows::Rest, Last::Closed) => Last::Closed,
                    _ => Last::Broken,
                };
            }
        }
    }

    fn finish(mut self) -> Parsed {
        if self.broken.is_empty() {
            return Parsed {
                ast: self.ast,
                errors: self.errors,
                damage: None,
            };
        }
        let mut damage = Damage::default();
        let mut package = None;
        for range in &self.broken {
            damage.collect(self.text, range.clone(), &mut |at| {
                if package.is_none() {
                    package = read_package(self.file, self.text, at);
                }
            });
        }
        if self.ast.packages.is_empty() {
            match package {
                Some(p) => self.ast.packages.push(p),
                None => damage.lost_package = true,
            }
        }
        Parsed {
            ast: self.ast,
            errors: self.errors,
            damage: Some(damage),
        }
    }
}

/// How a piece that fails right after a broken one relates to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follows {
    /// An error of its own.
    Apart,
    /// The rest of the broken declaration: the piece fails at its very first token (the
    /// statements of a body whose `{` is missing) and does not start like a declaration of its
    /// own (`mesage Name {`, with a mistyped keyword).
    Rest,
    /// A stray `}` that ends the rest of the broken declaration: what follows it is judged on
    /// its own again.
    End,
}

/// How the piece before the current one ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last {
    /// It parsed.
    Parsed,
    /// It did not parse.
    Broken,
    /// It was the stray `}` that ends a broken declaration: only a stray `;` may follow as its
    /// rest (`};`).
    Closed,
}

/// Whether a piece that fails at `error_at` starts like a statement of a body (a field, an
/// enum value, a method): with a name that fails at once, and not like a declaration.
fn body_statement(text: &str, piece: &Range<usize>, error_at: usize) -> bool {
    let first = Lexer::new(text, piece.clone()).next();
    matches!(first, Some(Token { kind: Tok::Word(_), start, .. }) if start == error_at)
        && follows(text, piece, error_at, Last::Broken) == Follows::Rest
}

/// How a piece that fails at `error_at` relates to the piece before it, which ended `last`.
fn follows(text: &str, piece: &Range<usize>, error_at: usize, last: Last) -> Follows {
    let mut tokens = Lexer::new(text, piece.clone()).map(|t| (t.kind, t.start));
    let Some((first, _)) = tokens.next().filter(|&(_, at)| at == error_at) else {
        // Not failing at its first token: an error of its own.
        return Follows::Apart;
    };
    match (last, first) {
        (Last::Parsed, _) => Follows::Apart,
        (Last::Closed, Tok::Punct(b';')) => Follows::Rest,
        (Last::Closed, _) => Follows::Apart,
        (Last::Broken, Tok::Punct(b'}')) => Follows::End,
        (Last::Broken, Tok::Word(_)) => {
            let declaration = matches!(tokens.next(), Some((Tok::Word(_), _)))
                && matches!(tokens.next(), Some((Tok::Punct(b'{'), _)));
            if declaration {
                Follows::Apart
            } else {
                Follows::Rest
            }
        }
        (Last::Broken, _) => Follows::Rest,
    }
}

impl Damage {
    /// Adds what `text[range]` may declare; calls `package` with the offset just after each
    /// `package` keyword at depth 0.
    fn collect(&mut self, text: &str, range: Range<usize>, package: &mut dyn FnMut(usize)) {
        let mut previous: Option<Token<'_>> = None;
        for token in Lexer::new(text, range) {
            match (&previous, &token.kind) {
                (
                    Some(Token {
                        kind: Tok::Word(name),
                        ..
                    }),
                    Tok::Punct(b'{'),
                ) => {
                    self.names.insert((*name).to_string());
                }
                (
                    Some(Token {
                        kind: Tok::Word("message" | "enum" | "service"),
                        ..
                    }),
                    Tok::Word(name),
                ) => {
                    self.names.insert((*name).to_string());
                }
                _ => {}
            }
            match token.kind {
                Tok::Word("import") if token.depth == 0 => self.lost_import = true,
                Tok::Word("package") if token.depth == 0 => package(token.start + "package".len()),
                _ => {}
            }
            previous = Some(token);
        }
    }
}

/// The `package` statement whose name starts after `at`, if the name can be read: a dotted
/// name alone on its line (or before a `;`), as in `package chat.v1` without its `;`.
fn read_package(file: FileId, text: &str, at: usize) -> Option<Package> {
    let rest = &text[at..];
    let name_start = at + (rest.len() - rest.trim_start().len());
    let name_len = text[name_start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len() - name_start);
    let name = &text[name_start..name_start + name_len];
    let well_formed = name
        .split('.')
        .all(|part| part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
    let after = text[name_start + name_len..].trim_start_matches([' ', '\t']);
    let ends = after.is_empty() || after.starts_with([';', '\r', '\n', '/']);
    (well_formed && ends).then(|| Package {
        doc: None,
        name: Ident {
            name: name.into(),
            span: Span::new(file, name_start, name_start + name_len),
        },
        span: Span::new(file, at - "package".len(), name_start + name_len),
    })
}

/// The offset of the innermost `{` of `text` that is never closed.
pub(crate) fn unclosed_brace(text: &str) -> Option<usize> {
    let mut open = Vec::new();
    for token in Lexer::new(text, 0..text.len()) {
        match token.kind {
            Tok::Punct(b'{') => open.push(token.start),
            Tok::Punct(b'}') => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

/// A token of the lexical view recovery takes of text that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// A name or number (ASCII letters, digits and `_`).
    Word(&'a str),
    /// A string literal (possibly unterminated).
    Str,
    /// A `///` doc comment.
    Doc,
    /// Any other character (its first byte).
    Punct(u8),
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Tok<'a>,
    /// Offset in the file.
    start: usize,
    /// How many `{` enclose it in the lexed range.
    depth: usize,
}

/// Tokens of `text[range]`, without blanks and plain comments, by the lexical rules of the
/// grammar (and of [`scan`]).
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    end: usize,
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, range: Range<usize>) -> Self {
        Lexer {
            text,
            pos: range.start,
            end: range.end,
            depth: 0,
        }
    }

    /// Moves to the first byte at or after `pos` that is `byte` (or to the end).
    fn skip_to(&mut self, byte: u8) {
        let bytes = &self.text.as_bytes()[..self.end];
        while self.pos < bytes.len() && bytes[self.pos] != byte {
            self.pos += 1;
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let bytes = &self.text.as_bytes()[..self.end];
        while self.pos < bytes.len() {
            let start = self.pos;
            let rest = &bytes[start..];
            let depth = self.depth;
            let token = |kind| Some(Token { kind, start, depth });
            match rest[0] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'/' if rest.starts_with(b"///") && !rest.starts_with(b"////") => {
                    self.skip_to(b'\n');
                    return token(Tok::Doc);
                }
                b'/' if rest.starts_with(b"//") => self.skip_to(b'\n'),
                b'/' if rest.starts_with(b"/*") => {
                    self.pos = match self.text[start + 2..self.end].find("*/") {
                        Some(i) => start + 2 + i + 2,
                        None => self.end,
                    };
                }
                b'"' => {
                    self.pos += 1;
                    while self.pos < bytes.len() && !matches!(bytes[self.pos], b'"' | b'\n') {
                        self.pos += if bytes[self.pos] == b'\\' { 2 } else { 1 };
                    }
                    self.pos = (self.pos + 1).min(bytes.len());
                    return token(Tok::Str);
                }
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    while self.pos < bytes.len()
                        && (bytes[self.pos].is_ascii_alphanumeric() || bytes[self.pos] == b'_')
                    {
                        self.pos += 1;
                    }
                    return token(Tok::Word(&self.text[start..self.pos]));
                }
                c => {
                    // One character (all its bytes, so that offsets stay on boundaries).
                    self.pos += self.text[start..].chars().next().map_or(1, char::len_utf8);
                    match c {
                        b'{' => self.depth += 1,
                        b'}' => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                    return token(Tok::Punct(c));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovered(text: &str) -> Parsed {
        parse_file(FileId::default(), text)
    }

    fn names(parsed: &Parsed) -> Vec<&str> {
        let mut names: Vec<&str> = parsed
            .damage
            .as_ref()
            .expect("damaged")
            .names
            .iter()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    fn declared(parsed: &Parsed) -> Vec<&str> {
        parsed
            .ast
            .decls
            .iter()
            .map(|d| match d {
                crate::ast::Decl::Message(m) => m.name.name.as_str(),
                crate::ast::Decl::Enum(e) => e.name.name.as_str(),
                crate::ast::Decl::Service(s) => s.name.name.as_str(),
            })
            .collect()
    }

    #[test]
    fn a_file_that_parses_gives_the_tree_of_parse() {
        for text in [
            "",
            "\u{FEFF}/// The file.\npackage p; // c\nimport \"a;}.echo\";\n/* } */\nmessage A {\n  \
             message B { string s = 1; }\n  reserved \"x;}\", 9;\n}\nservice S { rpc a(A) returns (A); }\n\
             enum E { E_ZERO = 0; } // trailing\n",
            "message M { map<string, M> m = 1 [deprecated = true]; oneof o { int32 i = 2; } }",
        ] {
            let parsed = recovered(text);
            assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
            assert!(parsed.damage.is_none());
            assert_eq!(parsed.ast, crate::parse(FileId::default(), text).unwrap());
        }
    }

    #[test]
    fn a_large_file_is_parsed_again_only_in_the_run_that_fails() {
        let valid = crate::parser::large_schema();
        let total = recovered(&valid).ast.decls.len();
        let mut text = valid.clone();
        let at = text.len() * 3 / 4;
        let at = at + text[at..].find("string s").unwrap();
        text.replace_range(at..at + "string s".len(), "string 9");
        let parsed = recovered(&text);
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(
            parsed.errors[0],
            *crate::parse(FileId::default(), &text).unwrap_err()
        );
        // Every declaration but the broken message is kept, in order.
        assert_eq!(parsed.ast.decls.len(), total - 1);
        let names = names(&parsed);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0] == "Inner" && names[1].starts_with('M'),
            "{names:?}"
        );
    }

    #[test]
    fn a_file_that_parses_has_no_damage() {
        let parsed = recovered("package p;\nmessage A { int32 x = 1; }\n");
        assert!(parsed.errors.is_empty());
        assert!(parsed.damage.is_none());
        assert_eq!(declared(&parsed), ["A"]);
    }

    #[test]
    fn each_broken_piece_reports_its_first_error_and_the_others_are_kept() {
        let text = "package p;\nmessage A { int32 x = 1 }\nmessage B { int32 = 2; }\n\
                    message C { D d = 1; }\nenum E { E_ZERO = 0 }\n";
        let parsed = recovered(text);
        let messages: Vec<&str> = parsed.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "expected `;` or `[`, found `}`",
                "expected a field name, found `=`",
                "expected `;`, found `}`"
            ]
        );
        assert_eq!(declared(&parsed), ["C"]);
        assert_eq!(parsed.ast.packages[0].name.name, "p");
        assert_eq!(names(&parsed), ["A", "B", "E"]);
    }

    #[test]
    fn the_rest_of_a_broken_declaration_is_not_an_error_of_its_own() {
        // The missing `{` puts the fields and the `}` at the top level.
        let text = "package p;\nmessage A\n  int32 x = 1;\n  int32 y = 2;\n}\n;\nmessage B {}\n";
        let parsed = recovered(text);
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.errors[0].message, "expected `{`, found `int32`");
        assert_eq!(declared(&parsed), ["B"]);
        assert_eq!(names(&parsed), ["A"]);
    }

    #[test]
    fn what_follows_the_stray_brace_of_a_broken_declaration_is_judged_on_its_own() {
        // The `}` closes the body that lost its `{`; the line after it is an error of its own.
        let text = "package p;\nmessage A\n  int32 x = 1;\n}\nthis is garbage;\nmessage B {}\n";
        let parsed = recovered(text);
        let messages: Vec<&str> = parsed.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "expected `{`, found `int32`",
                "expected `package`, `import`, `message`, `enum` or `service`, found `this`"
            ]
        );
        assert_eq!(declared(&parsed), ["B"]);
    }

    #[test]
    fn a_mistyped_keyword_after_a_broken_piece_is_reported_too() {
        let text = "package p;\nmesage A {}\nmesage B {}\n";
        let parsed = recovered(text);
        assert_eq!(parsed.errors.len(), 2, "{:?}", parsed.errors);
        assert_eq!(names(&parsed), ["A", "B"]);
    }

    #[test]
    fn a_stray_brace_after_a_good_declaration_is_reported() {
        let parsed = recovered("package p;\nmessage A {}\n}\nmessage B {}\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(
            parsed.errors[0].message,
            "expected `package`, `import`, `message`, `enum` or `service`, found `}`"
        );
        assert_eq!(declared(&parsed), ["A", "B"]);
    }

    #[test]
    fn an_unclosed_declaration_may_declare_every_name_after_it() {
        let text = "package p;\nmessage A { int32 x = 1;\nmessage B {}\nenum C { C_ZERO = 0; }\n";
        let parsed = recovered(text);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(names(&parsed), ["A", "B", "C"]);
        let damage = parsed.damage.as_ref().unwrap();
        assert!(damage.may_declare("B"));
        assert!(damage.may_declare("p.A.Inner"));
        assert!(!damage.may_declare("D"));
        assert!(!damage.lost_import && !damage.lost_package);
    }

    #[test]
    fn names_of_the_broken_text_are_suggested_for_close_unknown_names() {
        let parsed =
            recovered("package p;\nmessage Message { int32 x = 1 }\nenum Mode { A = 0 }\n");
        let damage = parsed.damage.as_ref().unwrap();
        assert_eq!(damage.suggest("Mesage"), Some((1, "Message")));
        assert_eq!(damage.suggest("mode"), Some((0, "Mode")));
        assert_eq!(damage.suggest("Other"), None);
        assert_eq!(damage.suggest("p.Mesage"), None);
    }

    #[test]
    fn a_package_without_its_semicolon_is_read_from_the_broken_text() {
        let parsed = recovered("package chat.v1\nmessage A {}\nmessage B {}\n");
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.ast.packages.len(), 1);
        assert_eq!(parsed.ast.packages[0].name.name, "chat.v1");
        assert_eq!(
            parsed.ast.packages[0].name.span,
            Span::new(FileId::default(), 8, 15)
        );
        assert!(!parsed.damage.as_ref().unwrap().lost_package);
        assert_eq!(declared(&parsed), ["B"]);
    }

    #[test]
    fn an_unreadable_package_name_is_lost() {
        let parsed = recovered("package chat..v1;\nmessage A {}\n");
        assert!(parsed.ast.packages.is_empty());
        assert!(parsed.damage.as_ref().unwrap().lost_package);
        // A package statement that parsed elsewhere makes the broken one moot.
        let parsed = recovered("package a;\npackage 9;\nmessage A {}\n");
        assert_eq!(parsed.ast.packages.len(), 1);
        assert!(!parsed.damage.as_ref().unwrap().lost_package);
    }

    #[test]
    fn a_broken_import_is_lost() {
        let parsed = recovered("package p;\nimport \"a.echo\"\nmessage A {}\n");
        let damage = parsed.damage.as_ref().unwrap();
        assert!(damage.lost_import);
        assert!(parsed.ast.imports.is_empty());
    }

    #[test]
    fn a_block_nested_too_deeply_is_one_error_and_pest_never_sees_it() {
        let deep = format!(
            "package p;\n{}{}message B {{ int32 = 1; }}\nmessage C {{}}\n",
            "message M {\n".repeat(100),
            "}\n".repeat(100)
        );
        let parsed = recovered(&deep);
        let messages: Vec<&str> = parsed.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "declarations nest too deeply (more than 64 levels)",
                "expected a field name, found `=`"
            ]
        );
        assert_eq!(declared(&parsed), ["C"]);
    }

    #[test]
    fn the_lexer_skips_comments_and_strings_and_counts_depth() {
        let text = "/// doc\nmessage /* { */ A { // }\n reserved \"x{\"; }é";
        let tokens: Vec<(Tok<'_>, usize)> = Lexer::new(text, 0..text.len())
            .map(|t| (t.kind, t.depth))
            .collect();
        assert_eq!(
            tokens,
            [
                (Tok::Doc, 0),
                (Tok::Word("message"), 0),
                (Tok::Word("A"), 0),
                (Tok::Punct(b'{'), 0),
                (Tok::Word("reserved"), 1),
                (Tok::Str, 1),
                (Tok::Punct(b';'), 1),
                (Tok::Punct(b'}'), 1),
                (Tok::Punct(0xC3), 0),
            ]
        );
    }
}
