//! The `.echo` schema language: parsing, name resolution, semantic checks, diagnostics and
//! formatting. It knows nothing of Rust code generation or the network.
//!
//! The usual entry point is [`compile`]: it reads the root files and their imports, checks
//! them, and returns a [`Compilation`] holding every diagnostic and, when there is no error,
//! the checked [`Schema`] (see [`model`]), which code generators consume.
//!
//! ```
//! use echostream_idl::{MemoryFs, compile_with};
//!
//! let mut fs = MemoryFs::new();
//! fs.insert("chat.echo", "package chat.v1;\nmessage Ping { uint64 id = 1; }\n");
//! let compilation = compile_with(&fs, &["chat.echo"], &[] as &[&str]);
//! let schema = compilation.schema.expect("no errors");
//! assert_eq!(schema.messages()[0].full_name, "chat.v1.Ping");
//! ```
//!
//! The language is described in `docs/idl.md`.

extern crate alloc;

pub mod ast;
mod check;
mod diagnostic;
pub mod format;
mod loader;
pub mod model;
pub mod naming;
mod options;
mod parser;
mod recover;
mod resolve;
mod source;

use std::path::{Path, PathBuf};

pub use check::{MAX_FIELD_NUMBER, RESERVED_FIELD_NUMBERS};
pub use diagnostic::{Diagnostic, Note, Severity, render_all};
pub use format::format_source;
pub use loader::{FileSystem, MemoryFs, RealFs};
pub use model::Schema;
pub use options::MAX_TIMEOUT_MS;
pub use parser::{MAX_NESTING, parse};
pub use source::{FileId, LineCol, SourceFile, SourceMap, Span};

/// The result of checking a set of schema files.
#[derive(Debug)]
pub struct Compilation {
    /// Every file read, for rendering diagnostics and for spans of the model.
    pub sources: SourceMap,
    /// Every error and warning, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// The checked model; `None` when there is at least one error.
    pub schema: Option<Schema>,
}

impl Compilation {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// The number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// All diagnostics rendered as text (see [`Diagnostic::render`]).
    pub fn render_diagnostics(&self, color: bool) -> String {
        render_all(&self.diagnostics, &self.sources, color)
    }
}

/// Reads `roots` and their imports from disk and checks them.
///
/// Imports are looked up in `include_dirs`, in order; when it is empty, in the directories
/// of the root files.
pub fn compile(roots: &[impl AsRef<Path>], include_dirs: &[impl AsRef<Path>]) -> Compilation {
    compile_with(&RealFs, roots, include_dirs)
}

/// Like [`compile`], reading files from `fs`.
pub fn compile_with(
    fs: &dyn FileSystem,
    roots: &[impl AsRef<Path>],
    include_dirs: &[impl AsRef<Path>],
) -> Compilation {
    let roots: Vec<PathBuf> = roots.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let includes: Vec<PathBuf> = include_dirs
        .iter()
        .map(|p| p.as_ref().to_path_buf())
        .collect();
    let loaded = loader::load(fs, &roots, &includes);
    let (schema, diagnostics) = check::check(&loaded);
    Compilation {
        sources: loaded.sources,
        diagnostics,
        schema,
    }
}

/// Checks one schema held in memory, named `name`, that imports nothing.
pub fn compile_source(name: &str, text: &str) -> Compilation {
    let mut fs = MemoryFs::new();
    fs.insert(name, text);
    compile_with(&fs, &[name], &[] as &[&str])
}
