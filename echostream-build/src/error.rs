//! The error of code generation.

use std::fmt;
use std::path::PathBuf;

use echostream_idl::Diagnostic;

/// Why code generation failed.
///
/// Its `Debug` form is its `Display` form, so that a build script returning it from `main`
/// prints the full diagnostics, not an escaped one-line struct.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The schemas have errors (or names that would clash in generated code): every
    /// diagnostic, rendered with file:line:col and the source line.
    #[error("{rendered}error: could not generate code: {count} in the schemas", count = plural(*.errors, "error"))]
    Schema {
        /// The diagnostics, warnings included.
        diagnostics: Vec<Diagnostic>,
        /// The diagnostics rendered as text (no colour).
        rendered: String,
        /// How many of them are errors.
        errors: usize,
    },
    /// The builder names something the schemas do not have, such as an unknown service.
    #[error("error: {0}")]
    Config(String),
    /// No output directory: `out_dir` was not set and `OUT_DIR` is not in the environment
    /// (`compile` runs outside a build script).
    #[error(
        "error: no output directory: set one with `out_dir`, or run from a build script (OUT_DIR is not set)"
    )]
    NoOutDir,
    /// A generated file could not be written.
    #[error("error: cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// prost-build refused the descriptors of the schemas: a bug of this crate.
    #[error(
        "error: prost-build failed on the schemas' descriptors (a bug of echostream-build): {0}"
    )]
    Prost(std::io::Error),
    /// The generated code does not parse as Rust: a bug of this crate.
    #[error(
        "error: generated code for `{package}` does not parse (a bug of echostream-build): {message}"
    )]
    Internal {
        /// The package being generated.
        package: String,
        /// The parser's message.
        message: String,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
