//! `echoc gen`: generate Rust code from schema files, as a build script would.

use std::path::PathBuf;

use clap::Args;

use super::{Output, report_schema_diagnostics};
use crate::Error;

/// Arguments of `echoc gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Directory to look up imports in; may be repeated, searched in order.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub include: Vec<PathBuf>,
    /// Directory to write the generated files to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Generate no handler traits and servers (clients and method constants only).
    #[arg(long)]
    pub no_server: bool,
    /// Generate no clients (handler traits, servers and method constants only).
    #[arg(long)]
    pub no_client: bool,
    /// The schema files to generate code for; the files they import are generated too.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `echoc gen`; returns whether it succeeded.
pub fn run(args: &GenArgs, out: &mut Output) -> bool {
    let compilation = echostream_idl::compile(&args.files, &args.include);
    if !report_schema_diagnostics(&compilation, &compilation.diagnostics, out) {
        return false;
    }
    let builder = crate::configure()
        .emit_cargo_directives(false)
        .build_server(!args.no_server)
        .build_client(!args.no_client);
    let files = match builder.generate(&compilation) {
        Ok(files) => files,
        Err(Error::Schema { diagnostics, .. }) => {
            report_schema_diagnostics(&compilation, &diagnostics, out);
            return false;
        }
        Err(e) => {
            out.err(&format!("{e}\n"));
            return false;
        }
    };
    match crate::write_files(&args.out, &files) {
        Ok(()) => true,
        Err(e) => {
            out.err(&format!("{e}\n"));
            false
        }
    }
}
