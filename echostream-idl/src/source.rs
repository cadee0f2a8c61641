//! Source files and positions in them: [`SourceMap`], [`FileId`], [`Span`] and [`LineCol`].

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;

/// Identifies one file of a [`SourceMap`] (and of the [`Schema`](crate::Schema) built from it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(u32);

impl FileId {
    /// The position of the file in [`SourceMap::files`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A byte range `start..end` of one source file. Every AST node and every item of the checked
/// model carries one, so that tools can point at the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span of `file` covering `start..end`.
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }

    /// The smallest span covering both `self` and `other` (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span::new(
            self.file,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }
}

/// A 1-based line and column; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// One loaded source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(name: String, path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name,
            path,
            text,
            line_starts,
        }
    }

    /// The logical name: the path relative to the include directory the file was found in,
    /// with `/` separators (`chat/v1/chat.echo`). Imports name files by it; descriptor sets use
    /// it as the file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the file was read from, as diagnostics show it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's contents.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text a span covers (empty if the span does not fit this file).
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    /// The 0-based index of the line holding byte `offset`.
    pub fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        }
    }

    /// The byte range of 0-based line `index`, without its line break.
    pub fn line_range(&self, index: usize) -> std::ops::Range<usize> {
        let start = self
            .line_starts
            .get(index)
            .copied()
            .unwrap_or(self.text.len());
        let end = self
            .line_starts
            .get(index + 1)
            .map_or(self.text.len(), |next| next - 1);
        let end = if self.text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end.max(start)
    }

    /// Line and column (1-based, column in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.text.len());
        let line = self.line_index(offset);
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count())
            + 1;
        LineCol {
            line: line + 1,
            column,
        }
    }
}

/// All files read during one compilation, indexed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        SourceMap::default()
    }

    /// Adds a file and returns its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        text: String,
    ) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).expect("fewer than 2^32 files"));
        self.files
            .push(SourceFile::new(name.into(), path.into(), text));
        id
    }

    /// Adds a file read as bytes. Text that is not UTF-8 is kept with each bad sequence
    /// replaced by `U+FFFD`, so that the file can still be shown, and the first bad byte is
    /// returned as an error at its line and column.
    pub fn add_bytes(
        &mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        bytes: Vec<u8>,
    ) -> (FileId, Option<Diagnostic>) {
        match String::from_utf8(bytes) {
            Ok(text) => (self.add(name, path, text), None),
            Err(e) => {
                let error = e.utf8_error();
                let at = error.valid_up_to();
                let bad = error.error_len().unwrap_or(e.as_bytes().len() - at);
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let id = self.add(name, path, text);
                // The text before `at` is unchanged; the bad bytes became one `U+FFFD`.
                let span = Span::new(id, at, at + char::REPLACEMENT_CHARACTER.len_utf8());
                let shown: Vec<String> = e.as_bytes()[at..at + bad]
                    .iter()
                    .map(|b| format!("0x{b:02X}"))
                    .collect();
                let label = match shown.as_slice() {
                    [one] => format!("byte {one} is not UTF-8"),
                    _ => format!("bytes {} are not UTF-8", shown.join(" ")),
                };
                let diagnostic = Diagnostic::error(span, "file is not valid UTF-8")
                    .with_label(label)
                    .with_help("schema files are UTF-8: save the file in that encoding");
                (id, Some(diagnostic))
            }
        }
    }

    /// The file with this id.
    ///
    /// # Panics
    /// If `id` was not returned by this map's [`add`](Self::add).
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.index()]
    }

    /// All files, in the order they were added.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Iterates over `(id, file)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// Line and column of the start of `span`.
    pub fn line_col(&self, span: Span) -> LineCol {
        self.file(span.file).line_col(span.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_counts_characters() {
        let mut map = SourceMap::new();
        let id = map.add("a.echo", "a.echo", "ab\nçé x\r\nlast".to_string());
        let file = map.file(id);
        assert_eq!(file.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(file.line_col(3), LineCol { line: 2, column: 1 });
        // `x` is after two two-byte characters and a space: byte 8, column 4.
        assert_eq!(file.line_col(8), LineCol { line: 2, column: 4 });
        assert_eq!(file.line_col(11), LineCol { line: 3, column: 1 });
        assert_eq!(file.line_range(1), 3..9);
        assert_eq!(&file.text()[file.line_range(1)], "çé x");
        assert_eq!(file.line_col(1000), LineCol { line: 3, column: 5 });
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error_at_the_first_bad_byte() {
        let mut map = SourceMap::new();
        let (id, error) = map.add_bytes(
            "a.echo",
            "a.echo",
            b"package a;\n// caf\xE9 \xFF\n".to_vec(),
        );
        let error = error.expect("not UTF-8");
        assert_eq!(error.message, "file is not valid UTF-8");
        assert_eq!(error.label, "byte 0xE9 is not UTF-8");
        assert_eq!(
            map.line_col(error.span.unwrap()),
            LineCol { line: 2, column: 7 }
        );
        // Both bad bytes are shown as U+FFFD; the rest of the text is kept.
        assert_eq!(map.file(id).text(), "package a;\n// caf\u{FFFD} \u{FFFD}\n");
        assert_eq!(map.file(id).slice(error.span.unwrap()), "\u{FFFD}");

        let (_, error) = map.add_bytes("b.echo", "b.echo", b"package b;\n".to_vec());
        assert!(error.is_none());
        // A sequence cut short by the end of the file.
        let (id, error) = map.add_bytes("c.echo", "c.echo", b"ab\xE2\x82".to_vec());
        assert_eq!(error.unwrap().label, "bytes 0xE2 0x82 are not UTF-8");
        assert_eq!(map.file(id).text(), "ab\u{FFFD}");
    }
}
