//! Generates the Rust code of `schemas/chat.echo`: message types, the `ChatService` trait and
//! server the server implements, and the `ChatPeer` trait every client implements, with a typed
//! client for each side.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    echostream_build::configure().compile(&["schemas/chat.echo"], &["schemas"])?;
    Ok(())
}
