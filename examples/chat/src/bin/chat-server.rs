//! `chat-server`: serves `ChatService` until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use echostream_example_chat::chat::ChatServiceServer;
use echostream_example_chat::server::ChatServer;
use echostream_runtime::Server;
use echostream_runtime::tls::ServerTls;

/// The EchoStream chat server.
///
/// Users log in, talk in rooms, see who is typing and invite each other (the server then asks
/// the invited user's client, with an rpc, whether they accept). It serves over QUIC with a
/// fresh self-signed certificate; clients trust it by pinning the fingerprint it prints.
/// Runs until Ctrl-C.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The UDP address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// The message of the day, shown to every user at login.
    #[arg(
        long,
        default_value = "Welcome to the EchoStream chat! /help lists the commands."
    )]
    motd: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // A certificate made up on the spot: nothing to configure for a demo. Clients pin its
    // fingerprint instead of trusting a certificate authority.
    let tls = ServerTls::self_signed(["localhost"])?;
    let server = Server::builder()
        .tls(tls)
        .service(ChatServiceServer::new(ChatServer::new(args.motd)))
        .bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;

    let addr = server.local_addr();
    let fingerprint = server.fingerprint();
    println!("chat server listening on {addr}");
    println!("fingerprint {fingerprint}");
    println!("connect with: chat-client --server {addr} --fingerprint {fingerprint} --user NAME");

    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    // Tells every client to stop calling, lets calls in flight finish, then closes.
    server.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
