//! Generates the Rust code of `schemas/video.echo`: the `Media` service the receiver serves
//! and the typed stream senders the sender opens.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    echostream_build::configure().compile(&["schemas/video.echo"], &["schemas"])?;
    Ok(())
}
