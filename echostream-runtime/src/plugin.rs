//! [`Plugin`]: code that follows an endpoint's life (start, sessions coming and going, refused
//! connections) rather than its frames.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::context::Context;
use crate::error::Error;
use crate::session::Session;

/// Lifecycle callbacks of an endpoint. Every method has an empty default; implement those you need.
///
/// Callbacks run on the runtime's tasks and must not block; spawn a task for slow work. A plugin
/// can store what it needs in the [`Context`] or the session's state, e.g. load a user's profile
/// into the session when it connects.
pub trait Plugin: Send + Sync + 'static {
    /// The endpoint started: a server is bound and about to accept connections, or a client
    /// endpoint is built (despite the name, it runs for clients too: a plugin added to both
    /// kinds of endpoint hears of both). Runs after the context's start hooks.
    fn on_server_start(&self, ctx: &Context) {
        let _ = ctx;
    }

    /// A session completed its handshake and is about to serve its first frame.
    fn on_new_session(&self, session: &Session) {
        let _ = session;
    }

    /// A session's connection closed; [`Session::close_reason`] says why.
    fn on_session_closed(&self, session: &Session) {
        let _ = session;
    }

    /// An incoming connection was refused before it became a session (TLS failure, another
    /// protocol version, no hello in time); `error` says why.
    fn on_connection_refused(&self, remote: SocketAddr, error: &Error) {
        let _ = (remote, error);
    }
}

/// Calls `callback` on every plugin; a plugin that panics is logged and skipped, so one faulty
/// plugin cannot stop the others or the endpoint's own bookkeeping.
pub(crate) fn notify(
    plugins: &[Arc<dyn Plugin>],
    what: &'static str,
    callback: impl Fn(&dyn Plugin),
) {
    for plugin in plugins {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| callback(plugin.as_ref()))) {
            let panic = crate::panic::panic_message(payload.as_ref());
            tracing::error!(callback = what, panic, "plugin panicked");
        }
    }
}
