//! Generates the Rust code of `schemas/telemetry.echo`: the `Collector` service the server
//! implements and the `Device` service every device implements, with their typed clients.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    echostream_build::configure().compile(&["schemas/telemetry.echo"], &["schemas"])?;
    Ok(())
}
