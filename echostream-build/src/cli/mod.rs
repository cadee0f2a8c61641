//! The `echoc` command line, kept in the library so that its commands can be tested and new
//! ones (`gen`, `export`) added beside `check` and `fmt`.
//!
//! Exit status: 0 on success, 1 when a schema has errors or (with `fmt --check`) is not
//! formatted, 2 on a usage error.

mod check;
mod fmt;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use check::CheckArgs;
pub use fmt::FmtArgs;
pub use output::Output;

/// The command line of `echoc`.
#[derive(Debug, Parser)]
#[command(
    name = "echoc",
    version,
    about = "Check and format EchoStream `.echo` schema files",
    long_about = "Check and format EchoStream `.echo` schema files.\n\n\
        Diagnostics go to standard error, one per problem, starting with \
        `path:line:col: error: message` (or `warning:`), followed by the source line \
        with the fault underlined. Colours are used only when standard error is a \
        terminal and NO_COLOR is not set.\n\n\
        Exit status: 0 on success, 1 when a schema has errors or a file is not \
        formatted (`fmt --check`), 2 on a usage error.",
    after_help = "Examples:\n  echoc check -I schemas schemas/chat.echo\n  echoc fmt schemas/*.echo\n  echoc fmt --check schemas/*.echo"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check schema files and the files they import; report every error and warning.
    #[command(
        long_about = "Check schema files and every file they import, and print all errors and \
            warnings to standard error.\n\n\
            `import \"x.echo\";` is looked up in each include directory (-I) in the order given; \
            without -I, in the directories of the files given.\n\n\
            Exit status: 0 when there is no error (warnings are printed), 1 when there is one."
    )]
    Check(CheckArgs),
    /// Format schema files in place, or check that they are formatted.
    #[command(
        long_about = "Format schema files in place, in the one canonical layout (see docs/idl.md). \
            Comments are kept where they are; a file that does not parse is reported and left \
            untouched.\n\n\
            With --check, no file is changed: the names of files that are not formatted are \
            printed to standard output.\n\n\
            Exit status: 0 when every file is (or now is) formatted, 1 when a file could not be \
            read, written or parsed, or (with --check) is not formatted."
    )]
    Fmt(FmtArgs),
}

/// Parses `args` (program name first) and runs the command, writing to the process's
/// standard output and error.
pub fn main(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let mut out = Output::stdio();
    let ok = run(&cli.command, &mut out);
    ExitCode::from(if ok { 0 } else { 1 })
}

/// Runs one command; returns whether it succeeded.
pub fn run(command: &Command, out: &mut Output) -> bool {
    match command {
        Command::Check(args) => check::run(args, out),
        Command::Fmt(args) => fmt::run(args, out),
    }
}
