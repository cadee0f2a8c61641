//! `echoc`: check, format (and later generate and export) `.echo` schemas.

use std::process::ExitCode;

fn main() -> ExitCode {
    echostream_build::cli::main(std::env::args_os())
}
