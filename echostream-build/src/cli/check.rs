//! `echoc check`: check schema files, print every diagnostic.

use std::path::PathBuf;

use clap::Args;

use super::Output;

/// Arguments of `echoc check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory to look up imports in; may be repeated, searched in order.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub include: Vec<PathBuf>,
    /// The schema files to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `echoc check`; returns whether there was no error.
pub fn run(args: &CheckArgs, out: &mut Output) -> bool {
    let compilation = echostream_idl::compile(&args.files, &args.include);
    out.err(&compilation.render_diagnostics(out.color));
    let errors = compilation.error_count();
    let warnings = compilation.warning_count();
    if errors + warnings > 0 {
        let mut found = Vec::new();
        if errors > 0 {
            found.push(count(errors, "error"));
        }
        if warnings > 0 {
            found.push(count(warnings, "warning"));
        }
        out.err(&format!(
            "{} in {} checked\n",
            found.join(" and "),
            count(compilation.sources.files().len(), "file"),
        ));
    }
    errors == 0
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
