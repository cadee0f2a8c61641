//! `cargo run -p echostream-demo`: runs the EchoStream demo (see the library's docs) and exits
//! with status 0, or prints what failed and exits with status 1.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match echostream_demo::run().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echostream-demo: {error}");
            ExitCode::FAILURE
        }
    }
}
