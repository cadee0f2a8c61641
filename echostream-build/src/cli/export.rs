//! `echoc export`: describe schemas for other languages, as `.proto` files or a JSON descriptor.

use std::path::{Path, PathBuf};

use clap::Args;
use echostream_idl::Diagnostic;

use super::{Output, report_schema_diagnostics};
use crate::export::{json, proto};

/// Arguments of `echoc export`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("format").required(true).multiple(true).args(["proto", "json"]))]
pub struct ExportArgs {
    /// Write `.proto` files (proto3), one per package, into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub proto: Option<PathBuf>,
    /// Write the JSON descriptor of the whole schema to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Directory to look up imports in; may be repeated, searched in order.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub include: Vec<PathBuf>,
    /// The schema files to export; the files they import are exported too.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `echoc export`; returns whether it succeeded.
pub fn run(args: &ExportArgs, out: &mut Output) -> bool {
    let compilation = echostream_idl::compile(&args.files, &args.include);
    if !report_schema_diagnostics(&compilation, &compilation.diagnostics, out) {
        return false;
    }
    let Some(schema) = &compilation.schema else {
        return false;
    };
    // Everything is prepared before anything is written, so that an error writes nothing.
    let protos = match args
        .proto
        .as_ref()
        .map(|_| proto::export(schema))
        .transpose()
    {
        Ok(protos) => protos,
        Err(cycle) => {
            let diagnostic = Diagnostic::error(
                cycle.span,
                format!(
                    "packages {} refer to one another, which one .proto file per package cannot express",
                    cycle
                        .packages
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
            .with_label("this package is part of the cycle")
            .with_help("move the types both packages need into a package of their own");
            report_schema_diagnostics(&compilation, &[diagnostic], out);
            return false;
        }
    };
    let mut ok = true;
    if let (Some(dir), Some(files)) = (&args.proto, protos) {
        for file in files {
            ok &= write(out, &dir.join(&file.path), &file.contents);
        }
    }
    if let Some(path) = &args.json {
        let text = json::export(schema);
        if path.as_os_str() == "-" {
            out.out(&text);
        } else {
            ok &= write(out, path, &text);
        }
    }
    ok
}

/// Writes `text` to `path`, creating its directory; reports a failure.
fn write(out: &mut Output, path: &Path, text: &str) -> bool {
    let result = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
    .and_then(|()| std::fs::write(path, text));
    match result {
        Ok(()) => true,
        Err(e) => {
            out.err(&format!(
                "{}: error: cannot write file: {e}\n",
                path.display()
            ));
            false
        }
    }
}
