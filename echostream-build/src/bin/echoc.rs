//! `echoc`: the command-line tool for `.echo` schemas (see `echostream_build::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    echostream_build::cli::main(std::env::args_os())
}
