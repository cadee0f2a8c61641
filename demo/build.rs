//! Generates the demo's messages, service traits and typed clients from its schema.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    echostream_build::configure().compile(&["schemas/demo.echo"], &["schemas"])?;
    Ok(())
}
