//! [`Sessions`]: the live sessions of an endpoint, by id and by group, and broadcasting events
//! to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::session::Session;
use crate::status::Status;

/// The live sessions of an endpoint. Cheap to clone; clones share the same registry.
///
/// A session appears here once its handshake is done and disappears when it closes (before
/// `Plugin::on_session_closed` runs). Groups are named sets of sessions for fan-out: a chat room,
/// a game match. Sessions join and leave them with [`Session::join`] and [`Session::leave`].
/// A handler, which has only its session, reaches the registry with [`Session::sessions`].
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    by_id: RwLock<HashMap<u64, Session>>,
    groups: RwLock<HashMap<String, BTreeMap<u64, Session>>>,
}

/// The outcome of a broadcast.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// Sessions the event was queued for.
    pub sent: usize,
    /// Sessions that refused it (full queue, closed, middleware), with why.
    pub failed: Vec<(u64, Status)>,
}

impl Sessions {
    /// A new id for a session of this endpoint (ids start at 1).
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Relaxed) + 1
    }

    pub(crate) fn insert(&self, session: &Session) {
        self.inner
            .by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.id(), session.detached());
    }

    pub(crate) fn remove(&self, session: &Session) {
        self.inner
            .by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id());
        for group in session.groups() {
            self.leave(&group, session.id());
        }
    }

    pub(crate) fn join(&self, group: &str, session: &Session) {
        self.inner
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(group.to_owned())
            .or_default()
            .insert(session.id(), session.detached());
    }

    pub(crate) fn leave(&self, group: &str, id: u64) {
        let mut groups = self.inner.groups.write().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// The session with this id, if it is live.
    pub fn get(&self, id: u64) -> Option<Session> {
        self.inner
            .by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(Session::attached)
    }

    /// Every live session, in id order (a snapshot).
    pub fn list(&self) -> Vec<Session> {
        let mut all: Vec<Session> = self
            .inner
            .by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Session::attached)
            .collect();
        all.sort_by_key(Session::id);
        all
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.inner
            .by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members of `group`, in id order (a snapshot; empty for an unknown group).
    pub fn group(&self, group: &str) -> Vec<Session> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .map(|members| members.values().map(Session::attached).collect())
            .unwrap_or_default()
    }

    /// The groups with at least one member, sorted.
    pub fn groups(&self) -> Vec<String> {
        let groups = self.inner.groups.read().unwrap_or_else(|e| e.into_inner());
        groups
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Emits event `name` with `data` to every live session.
    pub async fn broadcast(&self, name: &str, data: Bytes) -> Broadcast {
        emit_all(self.list(), name, data).await
    }

    /// Emits event `name` with `data` to every member of `group`.
    pub async fn broadcast_to(&self, group: &str, name: &str, data: Bytes) -> Broadcast {
        emit_all(self.group(group), name, data).await
    }
}

async fn emit_all(sessions: Vec<Session>, name: &str, data: Bytes) -> Broadcast {
    let mut outcome = Broadcast::default();
    for session in sessions {
        match session.emit(name, data.clone()).await {
            Ok(()) => outcome.sent += 1,
            Err(status) => outcome.failed.push((session.id(), status)),
        }
    }
    outcome
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .field("groups", &self.groups())
            .finish()
    }
}
