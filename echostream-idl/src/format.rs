//! The formatter: one canonical layout for `.echo` files.
//!
//! It works on the token stream of a file that parses, so it cannot lose or reorder anything:
//! every token and every comment comes out in the order it went in, and only the whitespace
//! between them changes. The layout:
//! - two spaces of indentation per `{ }` level; one statement per line; `{}` for empty bodies;
//! - single spaces between tokens, none inside `( )`, `[ ]`, `< >`, before `;` and `,` (after
//!   a `/* */` comment too), nor between a method name and its `(`;
//! - a blank line between top-level declarations and between the `package`, `import` and
//!   declaration groups; elsewhere a blank line is kept where the source had at least one
//!   (never right after `{` or before `}`);
//! - a comment that followed code on the same line stays at the end of that line; other
//!   comments stand on their own line, indented with the code; `/* */` comments inside a line
//!   stay inside it;
//! - trailing whitespace is removed; the file ends with one newline.
//!
//! Formatting is idempotent, and a formatted file checks to the same model as the original;
//! [`format_source`] makes sure that it changed nothing but whitespace.

use std::borrow::Cow;

use pest::Parser as _;

use crate::diagnostic::Diagnostic;
use crate::parser::{self, EchoParser, Rule};
use crate::source::FileId;

/// Formats one file. Fails with the syntax error if the text does not parse.
///
/// The result is checked to hold the same tokens and comments as `text`, in the same order:
/// should a bug in the formatter ever change more than whitespace, this fails with an
/// internal error instead of returning text that would cost the user theirs.
pub fn format_source(file: FileId, text: &str) -> Result<String, Box<Diagnostic>> {
    parser::parse(file, text)?;
    let internal = |what: &str| {
        Box::new(Diagnostic::file_error(
            file,
            format!("internal error: {what}; the file is left as it is (please report this)"),
        ))
    };
    let tokens = tokenize(text).ok_or_else(|| internal("the formatter cannot read the tokens"))?;
    let formatted = Printer::default().run(&tokens);
    match tokenize(&formatted) {
        Some(out) if same_tokens(&tokens, &out) => Ok(formatted),
        _ => Err(internal("formatting would change more than whitespace")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Doc,
    LineComment,
    BlockComment,
    Code,
}

#[derive(Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Line breaks between the previous token and this one in the source.
    newlines_before: usize,
}

/// The tokens and comments of `text`; `None` if the token grammar fails (it cannot: any
/// character is a token).
fn tokenize(text: &str) -> Option<Vec<Token<'_>>> {
    let mut pairs = EchoParser::parse(Rule::tokens, text).ok()?;
    let root = pairs.next().map(|p| p.into_inner());
    let mut tokens = Vec::new();
    let mut last_end = 0;
    for pair in root.into_iter().flatten() {
        let kind = match pair.as_rule() {
            Rule::tok_doc => Kind::Doc,
            Rule::tok_line_comment => Kind::LineComment,
            Rule::tok_block_comment => Kind::BlockComment,
            Rule::EOI => continue,
            _ => Kind::Code,
        };
        let span = pair.as_span();
        let newlines_before = text[last_end..span.start()].matches('\n').count();
        last_end = span.end();
        tokens.push(Token {
            kind,
            text: span.as_str(),
            newlines_before,
        });
    }
    Some(tokens)
}

/// Whether two token lists are the same but for what the layout may change: the line breaks
/// of block comments and the trailing blanks of line comments.
fn same_tokens(a: &[Token<'_>], b: &[Token<'_>]) -> bool {
    fn text<'a>(t: &Token<'a>) -> Cow<'a, str> {
        match t.kind {
            Kind::Code => Cow::Borrowed(t.text),
            Kind::Doc | Kind::LineComment => Cow::Borrowed(t.text.trim_end()),
            Kind::BlockComment => Cow::Owned(t.text.replace("\r\n", "\n")),
        }
    }
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.kind == y.kind && text(x) == text(y))
}

/// The kind of a top-level statement, for the blank lines between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKind {
    Package,
    Import,
    Declaration,
}

#[derive(Default)]
struct Printer {
    out: String,
    depth: usize,
    /// A line break is owed after the last token (a `;`, `{` or `}` ended a statement); a
    /// comment on the same source line may still take the end of the line.
    pending_newline: bool,
    /// Code tokens of the current statement written so far.
    statement_tokens: usize,
    /// The first code token of the current statement.
    first_word: Option<String>,
    /// Whether the current statement has had its first `(`.
    seen_paren: bool,
    /// The last code token written.
    last_code: String,
    /// Whether the last thing written on the current line is an inline `/* */` comment.
    after_block_comment: bool,
    /// The top-level statement before the current one.
    last_top: Option<TopKind>,
    /// Whether the line before is a `{` line (no blank line may follow it).
    after_open: bool,
    /// Whether the next token starts a new top-level statement.
    top_start: bool,
}

impl Printer {
    fn run(mut self, tokens: &[Token<'_>]) -> String {
        self.top_start = true;
        let mut i = 0;
        while i < tokens.len() {
            let token = &tokens[i];
            let trailing = token.newlines_before == 0 && !self.line_is_empty();
            match token.kind {
                Kind::LineComment if trailing => {
                    self.out.push(' ');
                    self.push_comment(token);
                }
                Kind::BlockComment if trailing && self.pending_newline => {
                    self.out.push(' ');
                    self.push_comment(token);
                }
                _ => {
                    if self.pending_newline {
                        self.newline();
                        self.pending_newline = false;
                    }
                    self.token(tokens, i);
                    if matches!(tokens.get(i + 1), Some(next) if next.text == "}")
                        && token.text == "{"
                    {
                        // `{}`: an empty body stays on the line.
                        self.out.push('}');
                        self.depth -= 1;
                        self.end_statement(true);
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        while self.out.ends_with('\n') {
            self.out.pop();
        }
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        self.out
    }

    fn line_is_empty(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn newline(&mut self) {
        if !self.line_is_empty() {
            self.out.push('\n');
        }
        self.after_block_comment = false;
    }

    fn indent(&mut self, continuation: bool) {
        let levels = self.depth + usize::from(continuation);
        for _ in 0..levels {
            self.out.push_str("  ");
        }
    }

    /// Starts a line for something that begins at `token`: blank lines, then indentation.
    fn start_line(&mut self, tokens: &[Token<'_>], index: usize) {
        self.newline();
        let token = &tokens[index];
        let continuation = self.statement_tokens > 0;
        if !continuation {
            let mut blank = token.newlines_before >= 2 && !self.after_open;
            if self.depth == 0 && self.top_start {
                let next = top_kind(tokens, index);
                if let Some(last) = self.last_top {
                    blank |= last != next || next == TopKind::Declaration;
                }
                self.top_start = false;
            }
            if blank && !self.out.is_empty() && !self.out.ends_with("\n\n") {
                self.out.push('\n');
            }
        }
        self.after_open = false;
        self.indent(continuation);
    }

    fn push_comment(&mut self, token: &Token<'_>) {
        match token.kind {
            Kind::BlockComment => {
                self.out.push_str(&token.text.replace("\r\n", "\n"));
                self.after_block_comment = true;
            }
            _ => {
                self.out.push_str(token.text.trim_end());
                self.out.push('\n');
                self.after_block_comment = false;
            }
        }
    }

    fn token(&mut self, tokens: &[Token<'_>], index: usize) {
        let token = &tokens[index];
        match token.kind {
            Kind::Doc | Kind::LineComment => {
                self.start_line(tokens, index);
                self.push_comment(token);
            }
            Kind::BlockComment => {
                if token.newlines_before > 0 || self.line_is_empty() {
                    self.start_line(tokens, index);
                } else {
                    self.out.push(' ');
                }
                self.push_comment(token);
            }
            Kind::Code => self.code(tokens, index),
        }
    }

    fn code(&mut self, tokens: &[Token<'_>], index: usize) {
        let text = tokens[index].text;
        if text == "}" {
            self.newline();
            self.depth = self.depth.saturating_sub(1);
            self.indent(false);
            self.out.push('}');
            self.after_open = false;
            self.end_statement(true);
            return;
        }
        if self.after_block_comment && tokens[index].newlines_before > 0 {
            // A block comment on lines of its own keeps them.
            self.newline();
        }
        if self.line_is_empty() {
            self.start_line(tokens, index);
        } else if self.after_block_comment {
            // `2 /* c */;`: punctuation that closes stays against the comment.
            if !matches!(text, ";" | "," | ")" | "]" | ">") {
                self.out.push(' ');
            }
        } else if self.space_before(text) {
            self.out.push(' ');
        }
        self.after_block_comment = false;
        if text == "(" {
            self.seen_paren = true;
        }
        if self.statement_tokens == 0 {
            self.first_word = Some(text.to_string());
        }
        self.out.push_str(text);
        self.statement_tokens += 1;
        self.last_code = text.to_string();
        match text {
            "{" => {
                self.depth += 1;
                self.end_statement(false);
                self.after_open = true;
            }
            ";" => self.end_statement(false),
            _ => {}
        }
    }

    fn space_before(&self, text: &str) -> bool {
        let last = self.last_code.as_str();
        if matches!(text, ";" | "," | ")" | "]" | ">" | "<") || matches!(last, "(" | "[" | "<") {
            return false;
        }
        text != "(" || self.seen_paren
    }

    /// A `;`, `{` or `}` (`closing`) ended a statement.
    fn end_statement(&mut self, closing: bool) {
        if self.depth == 0 {
            self.last_top = Some(match self.first_word.as_deref() {
                _ if closing => TopKind::Declaration,
                Some("package") => TopKind::Package,
                Some("import") => TopKind::Import,
                _ => TopKind::Declaration,
            });
            self.top_start = true;
        }
        self.statement_tokens = 0;
        self.first_word = None;
        self.seen_paren = false;
        self.pending_newline = true;
    }
}

/// The kind of the top-level statement starting at (or after the comments at) `index`.
fn top_kind(tokens: &[Token<'_>], index: usize) -> TopKind {
    match tokens[index..].iter().find(|t| t.kind == Kind::Code) {
        Some(t) if t.text == "package" => TopKind::Package,
        Some(t) if t.text == "import" => TopKind::Import,
        _ => TopKind::Declaration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token<'_>> {
        tokenize(text).expect("any text is tokens")
    }

    #[test]
    fn any_text_is_tokens() {
        for text in [
            "",
            "\u{FEFF}",
            "é \0 \u{7f}",
            "/* open",
            "\"open",
            "///",
            "a.b.c -1 0x",
        ] {
            let found = tokens(text);
            let joined: String = found.iter().map(|t| t.text).collect();
            assert_eq!(
                joined,
                text.trim_start_matches('\u{FEFF}')
                    .replace(char::is_whitespace, "")
            );
        }
    }

    #[test]
    fn only_whitespace_may_change() {
        let original = "message A { // c\r\n  int32 a = 1; /* b\r\n */\r\n}\r\n";
        let good = "message A { // c\n  int32 a = 1; /* b\n */\n}\n";
        assert!(same_tokens(&tokens(original), &tokens(good)));
        for bad in [
            "",
            "message A { int32 a = 1; /* b\n */\n}\n",
            "message A { // c\n  int32 a = 1;\n}\n",
            "message A { // c\n  int32a = 1; /* b\n */\n}\n",
            "message A { // c\n  int32 a = 1; /* b */\n}\n",
            "message A { // c\n  int32 b = 1; /* b\n */\n}\n",
        ] {
            assert!(!same_tokens(&tokens(original), &tokens(bad)), "{bad:?}");
        }
    }
}
