//! The chat example: a server and a command-line client built from one schema,
//! `schemas/chat.echo`.
//!
//! - [`server::ChatServer`] implements the generated `ChatService` trait: logins, rooms (the
//!   runtime's session groups), messages fanned out to a room by events, typing indicators, and
//!   invitations, for which the server calls an rpc *on the invited client* and waits for the
//!   user's answer.
//! - [`client::Peer`] implements the generated `ChatPeer` trait: what a client does when the
//!   server talks to it. [`client::Command`] parses what the user types.
//!
//! The binaries `chat-server` and `chat-client` (in `src/bin/`) wire these to the network.

pub mod client;
pub mod server;

/// The code generated from `schemas/chat.echo` by `build.rs`.
pub mod schema {
    echostream_runtime::include_schemas!();
}

pub use schema::chat::v1 as chat;

/// Checks a user or room name: 1 to 24 ASCII letters, digits, `-` or `_`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty"));
    }
    if name.len() > 24 {
        return Err(format!(
            "the {what} name `{name}` is longer than 24 characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "the {what} name `{name}` contains `{bad}`: use letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("user", "ann_1-b"), Ok(()));
        assert_eq!(
            check_name("room", "").unwrap_err(),
            "the room name is empty"
        );
        assert!(
            check_name("user", "a b")
                .unwrap_err()
                .contains("contains ` `")
        );
        assert!(
            check_name("user", &"x".repeat(25))
                .unwrap_err()
                .contains("longer than 24")
        );
    }
}
