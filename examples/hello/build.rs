//! Generates Rust code from the schema: messages, service traits, servers and clients.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    echostream_build::configure().compile(&["schemas/hello.echo"], &["schemas"])?;
    Ok(())
}
