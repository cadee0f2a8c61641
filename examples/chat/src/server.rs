//! The chat server's side: [`ChatServer`] implements `ChatService`.
//!
//! Rooms are the runtime's session groups: a logged-in session is in exactly one group, its
//! room, so fanning a message out to a room is one [`Sessions::broadcast_to`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use echostream_runtime::prost::Message as _;
use echostream_runtime::{Bytes, Session, Sessions, Status, async_trait};

use crate::{chat, check_name};

/// The room every user starts in.
pub const LOBBY: &str = "lobby";

/// The longest message the server passes on, in bytes.
pub const MAX_TEXT: usize = 2000;

/// The server's implementation of `ChatService`.
///
/// Handlers reach the server's live sessions (to fan out to a room, to find an invited user)
/// through the session they serve: [`Session::sessions`].
pub struct ChatServer {
    hub: Arc<Hub>,
}

/// What the handlers share; in an `Arc` so that a task watching a session can hold it.
struct Hub {
    motd: String,
    /// Who is online: name → session id. The one place where names are made unique.
    users: Mutex<BTreeMap<String, u64>>,
}

/// What the server keeps about a logged-in session, in the session's own state.
struct Member {
    name: String,
    room: Mutex<String>,
}

impl Member {
    fn room(&self) -> String {
        self.room.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ChatServer {
    /// A server greeting users with `motd`.
    pub fn new(motd: impl Into<String>) -> ChatServer {
        ChatServer {
            hub: Arc::new(Hub {
                motd: motd.into(),
                users: Mutex::default(),
            }),
        }
    }
}

impl Hub {
    /// Names of the members of `room` among `sessions`, sorted.
    fn members(sessions: &Sessions, room: &str) -> Vec<String> {
        let mut names: Vec<String> = sessions
            .group(room)
            .iter()
            .filter_map(|s| s.state().get::<Member>().map(|m| m.name.clone()))
            .collect();
        names.sort();
        names
    }

    /// Tells everyone in `room` that `user` came or went. Encoded once, queued to each member.
    async fn announce(sessions: &Sessions, room: &str, user: &str, joined: bool) {
        let presence = chat::Presence {
            room: room.to_owned(),
            user: user.to_owned(),
            joined,
        };
        let data = Bytes::from(presence.encode_to_vec());
        sessions
            .broadcast_to(room, chat::chat_peer::PRESENCE.name(), data)
            .await;
    }

    /// Moves `session` (logged in as `member`) to `room`, telling both rooms.
    async fn move_to(&self, session: &Session, member: &Member, room: &str) {
        let old = std::mem::replace(
            &mut *member.room.lock().unwrap_or_else(|e| e.into_inner()),
            room.to_owned(),
        );
        if old == room {
            return;
        }
        session.leave(&old);
        Hub::announce(session.sessions(), &old, &member.name, false).await;
        session.join(room);
        Hub::announce(session.sessions(), room, &member.name, true).await;
        println!("{} moved from #{old} to #{room}", member.name);
    }
}

/// The caller's membership, or `UNAUTHENTICATED` before login.
fn member(session: &Session) -> Result<Arc<Member>, Status> {
    session
        .state()
        .get::<Member>()
        .ok_or_else(|| Status::unauthenticated("log in first"))
}

#[async_trait]
impl chat::ChatService for ChatServer {
    async fn login(
        &self,
        session: &Session,
        request: chat::Login,
    ) -> Result<chat::Welcome, Status> {
        let name = request.user.trim().to_owned();
        check_name("user", &name).map_err(Status::invalid_argument)?;
        if let Some(me) = session.state().get::<Member>() {
            return Err(Status::failed_precondition(format!(
                "already logged in as {}",
                me.name
            )));
        }
        {
            let mut users = self.hub.users.lock().unwrap_or_else(|e| e.into_inner());
            if users.contains_key(&name) {
                return Err(Status::failed_precondition(format!(
                    "the name {name} is taken"
                )));
            }
            users.insert(name.clone(), session.id());
        }
        session.state().insert(Member {
            name: name.clone(),
            room: Mutex::new(LOBBY.to_owned()),
        });
        session.join(LOBBY);
        println!(
            "{name} logged in (session {}, from {})",
            session.id(),
            session.remote_address()
        );
        Hub::announce(session.sessions(), LOBBY, &name, true).await;

        // When the connection goes (quit, crash, network), free the name and tell the room.
        // `closed()` resolves after the runtime removed the session from its groups.
        let hub = self.hub.clone();
        let watched = session.clone();
        tokio::spawn(async move {
            let reason = watched.closed().await;
            if let Some(me) = watched.state().get::<Member>() {
                hub.users
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&me.name);
                println!("{} left ({reason})", me.name);
                Hub::announce(watched.sessions(), &me.room(), &me.name, false).await;
            }
        });

        let online = self
            .hub
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        Ok(chat::Welcome {
            session_id: session.id(),
            room: LOBBY.to_owned(),
            online,
            motd: self.hub.motd.clone(),
        })
    }

    async fn join(&self, session: &Session, request: chat::Join) -> Result<chat::Joined, Status> {
        let me = member(session)?;
        let room = request.room.trim().trim_start_matches('#').to_owned();
        check_name("room", &room).map_err(Status::invalid_argument)?;
        self.hub.move_to(session, &me, &room).await;
        Ok(chat::Joined {
            members: Hub::members(session.sessions(), &room),
            room,
        })
    }

    async fn say(&self, session: &Session, request: chat::Say) -> Result<chat::Said, Status> {
        let me = member(session)?;
        if request.text.trim().is_empty() {
            return Err(Status::invalid_argument("the message is empty"));
        }
        if request.text.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "the message has {} bytes; the limit is {MAX_TEXT}",
                request.text.len()
            )));
        }
        let room = me.room();
        let message = chat::ChatMessage {
            room: room.clone(),
            author: me.name.clone(),
            text: request.text,
            sent_at_us: session.clock().now_micros(),
        };
        // Encode once, queue to every member of the room (the sender too: its echo is its
        // confirmation that the room saw it).
        let data = Bytes::from(message.encode_to_vec());
        let outcome = session
            .sessions()
            .broadcast_to(&room, chat::chat_peer::MESSAGE.name(), data)
            .await;
        for (id, status) in &outcome.failed {
            println!("message to session {id} dropped: {status}");
        }
        println!(
            "[#{room}] {}: {} (to {})",
            me.name, message.text, outcome.sent
        );
        Ok(chat::Said {
            delivered_to: u32::try_from(outcome.sent).unwrap_or(u32::MAX),
        })
    }

    async fn invite(
        &self,
        session: &Session,
        request: chat::InviteRequest,
    ) -> Result<chat::InviteResult, Status> {
        let me = member(session)?;
        let room = match request.room.trim().trim_start_matches('#') {
            "" => me.room(),
            room => room.to_owned(),
        };
        check_name("room", &room).map_err(Status::invalid_argument)?;
        if request.user == me.name {
            return Err(Status::invalid_argument("you cannot invite yourself"));
        }
        let target_id = self
            .hub
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.user)
            .copied();
        let target = target_id
            .and_then(|id| session.sessions().get(id))
            .ok_or_else(|| Status::not_found(format!("{} is not online", request.user)))?;
        let target_member = member(&target)?;

        // The server calls an rpc on the invited user's client, exactly as a client calls the
        // server, and waits (up to `ChatPeer.invite`'s `timeout_ms`) for the user to answer.
        println!(
            "{} invites {} to #{room}: asking them",
            me.name, request.user
        );
        let question = chat::Invite {
            from: me.name.clone(),
            room: room.clone(),
        };
        let answer = chat::ChatPeerClient::new(target.clone())
            .invite(question)
            .await
            .map_err(|status| {
                println!("{} did not answer the invitation: {status}", request.user);
                Status::unavailable(format!(
                    "{} did not answer: {}",
                    request.user,
                    status.message()
                ))
            })?;
        let verdict = if answer.accept {
            "accepted"
        } else {
            "declined"
        };
        println!(
            "{} {verdict} {}'s invitation to #{room}",
            request.user, me.name
        );
        if answer.accept {
            self.hub.move_to(&target, &target_member, &room).await;
            let notice = chat::Notice {
                text: format!(
                    "you are now in #{room} with {}",
                    Hub::members(session.sessions(), &room).join(", ")
                ),
            };
            let _ = chat::ChatPeerClient::new(target).notice(notice).await;
        }
        Ok(chat::InviteResult {
            accepted: answer.accept,
        })
    }

    async fn typing(&self, session: &Session, _event: chat::Typing) {
        // Events have no answer: a caller that is not logged in is simply ignored.
        let Ok(me) = member(session) else { return };
        let typing = chat::Typing {
            room: me.room(),
            user: me.name.clone(),
        };
        let sessions = session.sessions();
        // Everyone in the room but the typist, through the typed client of each session.
        for peer in sessions.group(&typing.room) {
            if peer.id() != session.id() {
                // Best effort: a full queue drops a typing hint, which nobody misses.
                let _ = chat::ChatPeerClient::new(peer).typing(&typing).await;
            }
        }
    }
}
