//! The chat client's side: [`Peer`] implements `ChatPeer` (what the server calls on a client),
//! and [`Command`] is what the user types.

use std::sync::Mutex;

use echostream_runtime::{CallContext, Session, Status, async_trait};
use tokio::sync::oneshot;

use crate::chat;

/// The client's implementation of `ChatPeer`: prints what the server sends, and holds the
/// question of an invitation until the user answers it with [`Peer::answer`].
#[derive(Default)]
pub struct Peer {
    pending: Mutex<Option<PendingInvite>>,
}

/// An invitation waiting for the user's answer.
struct PendingInvite {
    invite: chat::Invite,
    answer: oneshot::Sender<bool>,
}

impl Peer {
    /// Answers the invitation waiting for an answer, returning it; an error if there is none
    /// (never asked, already answered, or its deadline passed).
    pub fn answer(&self, accept: bool) -> Result<chat::Invite, String> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or("no invitation is waiting for an answer")?;
        // The receiver is gone when the server stopped waiting (its deadline passed).
        pending
            .answer
            .send(accept)
            .map_err(|_| "too late: the invitation expired".to_owned())?;
        Ok(pending.invite)
    }
}

#[async_trait]
impl chat::ChatPeer for Peer {
    async fn message(&self, _session: &Session, event: chat::ChatMessage) {
        println!("[#{}] {}: {}", event.room, event.author, event.text);
    }

    async fn typing(&self, _session: &Session, event: chat::Typing) {
        println!("* {} is typing in #{}", event.user, event.room);
    }

    async fn presence(&self, _session: &Session, event: chat::Presence) {
        let verb = if event.joined { "joined" } else { "left" };
        println!("* {} {verb} #{}", event.user, event.room);
    }

    async fn notice(&self, _session: &Session, event: chat::Notice) {
        println!("! {}", event.text);
    }

    /// The server asks a question: the rpc's answer waits for the user. If the server's
    /// deadline passes first, the runtime cancels this handler (drops its future), and the
    /// user's late `/accept` finds the channel closed.
    async fn invite(
        &self,
        _session: &Session,
        invite: chat::Invite,
    ) -> Result<chat::InviteAnswer, Status> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.as_ref().is_some_and(|p| !p.answer.is_closed()) {
                return Err(Status::unavailable(
                    "busy: already answering another invitation",
                ));
            }
            *pending = Some(PendingInvite {
                invite: invite.clone(),
                answer: tx,
            });
        }
        let within = CallContext::current()
            .and_then(|call| call.remaining())
            .map(|left| format!(" within {} s", left.as_secs()))
            .unwrap_or_default();
        println!(
            "? {} invites you to #{}: answer /accept or /decline{within}",
            invite.from, invite.room
        );
        match rx.await {
            Ok(accept) => Ok(chat::InviteAnswer { accept }),
            Err(_) => Err(Status::cancelled("the client is closing")),
        }
    }
}

/// A line the user typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Text for the current room.
    Say(String),
    /// `/join ROOM`
    Join(String),
    /// `/invite USER [ROOM]`
    Invite {
        /// Who to invite.
        user: String,
        /// Into which room (`None`: the current one).
        room: Option<String>,
    },
    /// `/accept`: yes to the invitation waiting.
    Accept,
    /// `/decline`: no to the invitation waiting.
    Decline,
    /// `/typing`: tell the room you are typing.
    Typing,
    /// `/help`
    Help,
    /// `/quit`
    Quit,
}

/// What `/help` prints.
pub const HELP: &str = "\
commands:
  TEXT                 send TEXT to your current room
  /join ROOM           move to ROOM (created if empty)
  /invite USER [ROOM]  invite USER to ROOM (default: yours); they are asked to accept
  /accept, /decline    answer the invitation you were asked about
  /typing              tell your room you are typing
  /help                this list
  /quit                leave (so does end of input, Ctrl-D)";

impl Command {
    /// Parses one line; `Ok(None)` for a blank line.
    pub fn parse(line: &str) -> Result<Option<Command>, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let Some(command) = line.strip_prefix('/') else {
            return Ok(Some(Command::Say(line.to_owned())));
        };
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let arity = |min: usize, max: usize, usage: &str| {
            if (min..=max).contains(&args.len()) {
                Ok(())
            } else {
                Err(format!("usage: {usage}"))
            }
        };
        let command = match name {
            "join" => {
                arity(1, 1, "/join ROOM")?;
                Command::Join(args[0].to_owned())
            }
            "invite" => {
                arity(1, 2, "/invite USER [ROOM]")?;
                Command::Invite {
                    user: args[0].to_owned(),
                    room: args.get(1).map(|r| (*r).to_owned()),
                }
            }
            "accept" => Command::Accept,
            "decline" => Command::Decline,
            "typing" => Command::Typing,
            "help" => Command::Help,
            "quit" => Command::Quit,
            other => return Err(format!("unknown command /{other} (/help lists them)")),
        };
        Ok(Some(command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands() {
        assert_eq!(Command::parse("  "), Ok(None));
        assert_eq!(
            Command::parse("hello there"),
            Ok(Some(Command::Say("hello there".into())))
        );
        assert_eq!(
            Command::parse("/join rust"),
            Ok(Some(Command::Join("rust".into())))
        );
        assert_eq!(
            Command::parse("/invite bob"),
            Ok(Some(Command::Invite {
                user: "bob".into(),
                room: None
            }))
        );
        assert_eq!(
            Command::parse("/invite bob rust"),
            Ok(Some(Command::Invite {
                user: "bob".into(),
                room: Some("rust".into())
            }))
        );
        assert_eq!(Command::parse("/quit"), Ok(Some(Command::Quit)));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert_eq!(Command::parse("/join"), Err("usage: /join ROOM".into()));
        assert_eq!(
            Command::parse("/invite a b c"),
            Err("usage: /invite USER [ROOM]".into())
        );
        assert_eq!(
            Command::parse("/dance"),
            Err("unknown command /dance (/help lists them)".into())
        );
    }

    #[test]
    fn an_answer_needs_a_question() {
        let peer = Peer::default();
        assert_eq!(
            peer.answer(true).unwrap_err(),
            "no invitation is waiting for an answer"
        );
        let (tx, rx) = oneshot::channel();
        *peer.pending.lock().unwrap() = Some(PendingInvite {
            invite: chat::Invite {
                from: "ann".into(),
                room: "rust".into(),
            },
            answer: tx,
        });
        drop(rx); // the server's deadline passed
        assert_eq!(
            peer.answer(true).unwrap_err(),
            "too late: the invitation expired"
        );
    }
}
