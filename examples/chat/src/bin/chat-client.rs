//! `chat-client`: logs in to a chat server and turns the lines of standard input into chat.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use echostream_example_chat::chat;
use echostream_example_chat::client::{Command, HELP, Peer};
use echostream_runtime::tls::{ClientTls, Fingerprint};
use echostream_runtime::{Client, Session};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The EchoStream chat client.
///
/// Reads lines from standard input: text goes to your current room, commands start with `/`
/// (`/help` lists them). Prints what happens in your room. Exits on `/quit` or at the end of
/// input, so it can be scripted: `printf '/join rust\nhello\n' | chat-client ...`.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: String,
    /// The SHA-256 fingerprint of the server's certificate, as `chat-server` prints it.
    #[arg(long)]
    fingerprint: Fingerprint,
    /// Your name: 1 to 24 letters, digits, `-` or `_`.
    #[arg(long)]
    user: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-client: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    // The client serves `ChatPeer`, so the server can call it back on the same connection.
    let peer = Arc::new(Peer::default());
    let client = Client::builder()
        .tls(ClientTls::pinned(args.fingerprint))
        .service(chat::ChatPeerServer::from_arc(peer.clone()))
        .build()
        .await
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let session = client
        .connect(&args.server, "localhost")
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.server))?;
    let chat = chat::ChatServiceClient::new(session.clone());

    let welcome = chat
        .login(chat::Login {
            user: args.user.clone(),
        })
        .await
        .map_err(|status| format!("login refused: {}", status.message()))?;
    println!("{}", welcome.motd);
    println!(
        "logged in as {} (session {}), in #{}; online: {}",
        args.user,
        welcome.session_id,
        welcome.room,
        welcome.online.join(", ")
    );

    let result = chat_loop(&session, &chat, &peer).await;
    client.close().await;
    println!("bye");
    result
}

/// Runs the user's commands until `/quit`, the end of input, or the connection's end.
async fn chat_loop(
    session: &Session,
    chat: &chat::ChatServiceClient,
    peer: &Peer,
) -> Result<(), String> {
    let mut lines = stdin_lines();
    // Invitations wait for the other user's answer: they run beside the input loop.
    let mut invitations = JoinSet::new();
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            reason = session.closed() => return Err(format!("disconnected: {reason}")),
        };
        let Some(line) = line else { break };
        let command = match Command::parse(&line) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(error) => {
                println!("! {error}");
                continue;
            }
        };
        match command {
            Command::Say(text) => {
                if let Err(status) = chat.say(chat::Say { text }).await {
                    println!("! not sent: {}", status.message());
                }
            }
            Command::Join(room) => match chat.join(chat::Join { room }).await {
                Ok(joined) => println!(
                    "you are now in #{} with {}",
                    joined.room,
                    joined.members.join(", ")
                ),
                Err(status) => println!("! cannot join: {}", status.message()),
            },
            Command::Invite { user, room } => {
                let chat = chat.clone();
                let request = chat::InviteRequest {
                    user: user.clone(),
                    room: room.unwrap_or_default(),
                };
                println!("inviting {user}...");
                invitations.spawn(async move {
                    match chat.invite(request).await {
                        Ok(result) if result.accepted => {
                            println!("{user} accepted your invitation")
                        }
                        Ok(_) => println!("{user} declined your invitation"),
                        Err(status) => println!("! invitation failed: {}", status.message()),
                    }
                });
            }
            Command::Accept | Command::Decline => {
                let accept = command == Command::Accept;
                match peer.answer(accept) {
                    Ok(invite) if accept => println!("accepted: joining #{}", invite.room),
                    Ok(invite) => println!("declined {}'s invitation", invite.from),
                    Err(error) => println!("! {error}"),
                }
            }
            Command::Typing => {
                // An event: no answer, no waiting. A graphical client would send it on
                // keystrokes (throttled); a line-based terminal cannot see those.
                if let Err(status) = chat.typing(chat::Typing::default()).await {
                    println!("! {}", status.message());
                }
            }
            Command::Help => println!("{HELP}"),
            Command::Quit => break,
        }
    }
    // Let invitations in flight get their answer (each bounded by its rpc deadline).
    while invitations.join_next().await.is_some() {}
    Ok(())
}

/// The lines of standard input, read on a thread of their own (reading a terminal blocks), until
/// the end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}
