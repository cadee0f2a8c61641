//! `echoc check`: check schema files, print every diagnostic.

use std::path::PathBuf;

use clap::Args;

use super::{Output, report_schema_diagnostics};

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
    report_schema_diagnostics(&compilation, &compilation.diagnostics, out)
}
