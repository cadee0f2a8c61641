//! Errors and warnings about schemas, and their rendering in the style of rustc.
//!
//! A rendered diagnostic starts with one line `path:line:col: error: message` (or `warning:`),
//! then shows the source with the fault underlined, labels, and `= help:` notes:
//!
//! ```text
//! chat.echo:7:3: error: unknown type `Mesage`
//!   --> chat.echo:7:3
//!   |
//! 7 |   Mesage last = 1;
//!   |   ^^^^^^ not a message or enum in scope
//!   |
//!   = help: did you mean `Message`?
//! ```
//!
//! The snippet is drawn by `codespan-reporting`; the first line is ours, because tools
//! (editors, CI annotations) parse it.

use std::fmt::Write as _;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term::{self, termcolor};

use crate::source::{FileId, SourceMap, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// A style problem; the schema is still usable.
    Warning,
    /// The schema is wrong; no model is produced.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A secondary place a diagnostic points at ("first defined here").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where.
    pub span: Span,
    /// What about it.
    pub message: String,
}

/// One error or warning, with where it is and what would help. As an error value it displays
/// as `error: message`; [`render`](Self::render) gives the full text with position and source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{severity}: {message}")]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The one-line message, in plain words, without position.
    pub message: String,
    /// The file concerned, when the problem is about a whole file (it cannot be read) rather
    /// than a place in it; `None` when [`span`](Self::span) is set.
    pub file: Option<FileId>,
    /// The place of the fault.
    pub span: Option<Span>,
    /// Text under the underline of [`span`](Self::span) (may be empty).
    pub label: String,
    /// Other places that explain the fault.
    pub notes: Vec<Note>,
    /// A hint or what was expected, shown as `= help: ...`.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Error, span, message)
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic::new(Severity::Warning, span, message)
    }

    /// An error about a whole file.
    pub fn file_error(file: FileId, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: Some(file),
            span: None,
            label: String::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    fn new(severity: Severity, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            message: message.into(),
            file: None,
            span: Some(span),
            label: String::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// Sets the text under the underline.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a secondary place.
    pub fn with_note(mut self, span: Span, message: impl Into<String>) -> Self {
        self.notes.push(Note {
            span,
            message: message.into(),
        });
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The file the diagnostic is about.
    pub fn file_id(&self) -> Option<FileId> {
        self.span.map(|s| s.file).or(self.file)
    }

    /// The first line of the rendering: `path:line:col: error: message`.
    pub fn headline(&self, sources: &SourceMap) -> String {
        let mut line = String::new();
        if let Some(span) = self.span {
            let pos = sources.line_col(span);
            let path = sources.file(span.file).path().display();
            let _ = write!(line, "{path}:{}:{}: ", pos.line, pos.column);
        } else if let Some(file) = self.file {
            let _ = write!(line, "{}: ", sources.file(file).path().display());
        }
        let _ = write!(line, "{}: {}", self.severity, self.message);
        line
    }

    /// Renders the diagnostic as text: the headline, then the source snippet with the fault
    /// underlined, labels and help. `color` adds ANSI colours (use it only for a terminal).
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let mut out = String::new();
        let headline = self.headline(sources);
        if color {
            let (code, rest) = match self.severity {
                Severity::Error => ("\x1b[1;31m", "error"),
                Severity::Warning => ("\x1b[1;33m", "warning"),
            };
            // Colour only the severity word of the headline.
            let colored = headline.replacen(
                &format!("{rest}: "),
                &format!("{code}{rest}\x1b[0m\x1b[1m: "),
                1,
            );
            let _ = writeln!(out, "{colored}\x1b[0m");
        } else {
            let _ = writeln!(out, "{headline}");
        }
        let snippet = self.snippet(sources, color);
        // codespan starts with its own header line (`error: message`): ours replaces it.
        if let Some((_, rest)) = snippet.split_once('\n') {
            out.push_str(rest);
        }
        out
    }

    fn snippet(&self, sources: &SourceMap, color: bool) -> String {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let mut labels = Vec::new();
        if let Some(span) = self.span {
            labels.push(
                cs::Label::primary(span.file.index(), span.start..span.end)
                    .with_message(&self.label),
            );
        }
        for note in &self.notes {
            labels.push(
                cs::Label::secondary(note.span.file.index(), note.span.start..note.span.end)
                    .with_message(&note.message),
            );
        }
        let mut notes = Vec::new();
        if let Some(help) = &self.help {
            notes.push(format!("help: {help}"));
        }
        let diagnostic = cs::Diagnostic::new(severity)
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(notes);
        let config = term::Config {
            chars: term::Chars::ascii(),
            ..term::Config::default()
        };
        let mut buffer = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let files = CodespanFiles(sources);
        if term::emit_to_write_style(&mut buffer, &config, &files, &diagnostic).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }
}

/// Renders all diagnostics, one after the other, with a blank line between them.
pub fn render_all(diagnostics: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(sources, color));
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
    }
    out
}

/// Adapts a [`SourceMap`] to what codespan-reporting reads.
struct CodespanFiles<'a>(&'a SourceMap);

impl<'a> Files<'a> for CodespanFiles<'a> {
    type FileId = usize;
    type Name = String;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<String, FilesError> {
        let file = self.0.files().get(id).ok_or(FilesError::FileMissing)?;
        Ok(file.path().display().to_string())
    }

    fn source(&'a self, id: usize) -> Result<&'a str, FilesError> {
        let file = self.0.files().get(id).ok_or(FilesError::FileMissing)?;
        Ok(file.text())
    }

    fn line_index(&'a self, id: usize, byte_index: usize) -> Result<usize, FilesError> {
        let file = self.0.files().get(id).ok_or(FilesError::FileMissing)?;
        Ok(file.line_index(byte_index.min(file.text().len())))
    }

    fn line_range(
        &'a self,
        id: usize,
        line_index: usize,
    ) -> Result<std::ops::Range<usize>, FilesError> {
        let file = self.0.files().get(id).ok_or(FilesError::FileMissing)?;
        let range = file.line_range(line_index);
        // codespan expects the range to include the line break.
        let text = file.text();
        let end = text[range.end..]
            .find('\n')
            .map_or(text.len(), |i| range.end + i + 1);
        Ok(range.start..end)
    }
}
