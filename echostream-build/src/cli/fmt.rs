//! `echoc fmt`: format schema files in place, or check that they are formatted.

use std::path::{Path, PathBuf};

use clap::Args;
use echostream_idl::SourceMap;

use super::Output;

/// Arguments of `echoc fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Change nothing; list the files that are not formatted and exit with 1 if any.
    #[arg(long)]
    pub check: bool,
    /// The schema files to format.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `echoc fmt`; returns whether it succeeded.
pub fn run(args: &FmtArgs, out: &mut Output) -> bool {
    let mut ok = true;
    let mut unformatted = 0;
    for path in &args.files {
        match format_file(path, out.color) {
            Err(report) => {
                out.err(&report);
                ok = false;
            }
            Ok(None) => {}
            Ok(Some(_)) if args.check => {
                out.out(&format!("{}\n", path.display()));
                unformatted += 1;
            }
            Ok(Some(formatted)) => {
                if let Err(e) = write_atomically(path, &formatted) {
                    out.err(&format!(
                        "{}: error: cannot write file: {e}\n",
                        path.display()
                    ));
                    ok = false;
                }
            }
        }
    }
    if unformatted > 0 {
        out.err(&format!(
            "{unformatted} of {} files not formatted; run `echoc fmt` to format them\n",
            args.files.len()
        ));
        ok = false;
    }
    ok
}

/// The formatted text if it differs from the file, `None` if the file is formatted, or the
/// rendered error.
fn format_file(path: &Path, color: bool) -> Result<Option<String>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{}: error: cannot read file: {e}\n", path.display()))?;
    let mut sources = SourceMap::new();
    let (id, not_utf8) = sources.add_bytes(path.display().to_string(), path, bytes);
    if let Some(diagnostic) = not_utf8 {
        return Err(format!("{}\n", diagnostic.render(&sources, color)));
    }
    let original = sources.file(id).text();
    match echostream_idl::format_source(id, original) {
        Ok(formatted) if formatted == original => Ok(None),
        Ok(formatted) => Ok(Some(formatted)),
        Err(diagnostic) => Err(format!("{}\n", diagnostic.render(&sources, color))),
    }
}

/// Replaces the file at `path` with `text` through a temporary file in the same directory, so
/// that a failure half-way leaves the original intact. A symbolic link is followed: the file
/// it points to is replaced, and the link stays a link.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!(".{name}.echoc-fmt.tmp"));
    std::fs::write(&tmp, text)?;
    if let Ok(meta) = std::fs::metadata(&target) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
