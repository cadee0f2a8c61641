//! The formatter: one canonical layout for `.echo` files.
//!
//! It works on the token stream of a file that parses, so it cannot lose or reorder anything:
//! every token and every comment comes out in the order it went in, and only the whitespace
//! between them changes. The layout:
//! - two spaces of indentation per `{ }` level; one statement per line; `{}` for empty bodies;
//! - single spaces between tokens, none inside `( )`, `[ ]`, `< >`, before `;` and `,`, nor
//!   between a method name and its `(`;
//! - a blank line between top-level declarations and between the `package`, `import` and
//!   declaration groups; elsewhere a blank line is kept where the source had at least one
//!   (never right after `{` or before `}`);
//! - a comment that followed code on the same line stays at the end of that line; other
//!   comments stand on their own line, indented with the code; `/* */` comments inside a line
//!   stay inside it;
//! - trailing whitespace is removed; the file ends with one newline.
//!
//! Formatting is idempotent, and a formatted file checks to the same model as the original.

use pest::Parser as _;

use crate::diagnostic::Diagnostic;
use crate::parser::{self, EchoParser, Rule};
use crate::source::FileId;

/// Formats one file. Fails with the syntax error if the text does not parse.
pub fn format_source(file: FileId, text: &str) -> Result<String, Box<Diagnostic>> {
    parser::parse(file, text)?;
    let tokens = tokenize(text);
    Ok(Printer::default().run(&tokens))
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

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let Ok(mut pairs) = EchoParser::parse(Rule::tokens, text) else {
        // Unreachable for text that parsed as a file: every character of it is some token.
        return Vec::new();
    };
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
    tokens
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
        } else if self.after_block_comment || self.space_before(text) {
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
