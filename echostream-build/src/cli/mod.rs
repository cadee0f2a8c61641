//! The `echoc` command line, kept in the library so that its commands can be tested.
//!
//! Exit status: 0 on success, 1 when a schema has errors, a file cannot be read or written, or
//! (with `fmt --check`) a file is not formatted, 2 on a usage error.

mod check;
mod export;
mod fmt;
mod generate;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use echostream_idl::{Compilation, Diagnostic};

pub use check::CheckArgs;
pub use export::ExportArgs;
pub use fmt::FmtArgs;
pub use generate::GenArgs;
pub use output::Output;

/// The command line of `echoc`.
#[derive(Debug, Parser)]
#[command(
    name = "echoc",
    version,
    about = "Check, format, generate code from and export EchoStream `.echo` schema files",
    long_about = "Check, format, generate Rust code from, and export EchoStream `.echo` schema \
        files.\n\n\
        Diagnostics go to standard error, one per problem, starting with \
        `path:line:col: error: message` (or `warning:`), followed by the source line \
        with the fault underlined. Colours are used only when standard error is a \
        terminal and NO_COLOR is not set.\n\n\
        Exit status: 0 on success, 1 when a schema has errors, a file cannot be read or \
        written, or a file is not formatted (`fmt --check`), 2 on a usage error.",
    after_help = "Examples:\n  echoc check -I schemas schemas/chat.echo\n  echoc fmt schemas/*.echo\n  echoc fmt --check schemas/*.echo\n  echoc gen -I schemas --out src/generated schemas/chat.echo\n  echoc export --proto proto -I schemas schemas/chat.echo\n  echoc export --json chat.json -I schemas schemas/chat.echo"
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
    /// Generate Rust code from schema files, exactly as a build script would.
    #[command(
        long_about = "Generate Rust code from schema files and every file they import: one \
            `<package>.rs` per package (messages, enums, and for each service its method \
            constants, handler trait, server and client) and `echostream-include.rs`, the \
            module tree of all packages. The files are byte for byte those \
            `echostream_build::configure().compile(..)` writes from a build script, so they can \
            be checked in or inspected. Unchanged files are not rewritten.\n\n\
            Generated code needs `echostream-runtime` as its only dependency; include it with \
            `include!(\"<dir>/echostream-include.rs\");` (see docs/codegen.md).\n\n\
            Exit status: 0 when the files are written, 1 when a schema has errors (or names \
            that would clash in generated code) or a file cannot be written; nothing is \
            written then.",
        after_help = "Examples:\n  echoc gen -I schemas --out src/generated schemas/chat.echo\n  echoc gen --no-server --out gen schemas/*.echo"
    )]
    Gen(GenArgs),
    /// Describe schema files for other languages: `.proto` files, or a JSON descriptor.
    #[command(
        long_about = "Describe schema files and every file they import for other languages \
            (docs/descriptor.md has both formats).\n\n\
            --proto DIR writes proto3 files that protoc accepts, one per package \
            (`chat.v1` → DIR/chat/v1/chat_v1.proto), with messages and enums as in the schema \
            and every method as an rpc carrying the option (echostream.options.method) that \
            names its kind and options (DIR/echostream/options.proto defines it): events \
            return google.protobuf.Empty, streams take `stream T` and return \
            google.protobuf.Empty.\n\n\
            --json FILE writes the versioned JSON descriptor of the whole checked schema \
            (`\"format\": \"echostream.descriptor\", \"version\": 1`): packages, messages, enums, \
            fields, services, methods with kind and options, doc comments; `-` writes it to \
            standard output. Both may be given at once.\n\n\
            Exit status: 0 when everything is written, 1 when a schema has errors, the \
            packages import one another in a cycle (--proto), or a file cannot be written.",
        after_help = "Examples:\n  echoc export --proto proto -I schemas schemas/chat.echo\n  echoc export --json chat.json -I schemas schemas/chat.echo\n  echoc export --json - schemas/chat.echo | jq .packages[].name"
    )]
    Export(ExportArgs),
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
        Command::Gen(args) => generate::run(args, out),
        Command::Export(args) => export::run(args, out),
    }
}

/// Prints `diagnostics` of `compilation` to standard error, followed by a count of errors and
/// warnings when there is any; returns whether there was no error.
fn report_schema_diagnostics(
    compilation: &Compilation,
    diagnostics: &[Diagnostic],
    out: &mut Output,
) -> bool {
    out.err(&echostream_idl::render_all(
        diagnostics,
        &compilation.sources,
        out.color,
    ));
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
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
