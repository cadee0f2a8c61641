//! [`Context`]: the application-wide environment of an endpoint, with global state and start/stop
//! hooks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::state::State;

/// The error a start or stop hook returns.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

type Hook = Arc<
    dyn Fn(Context) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>> + Send + Sync,
>;

/// Shared by an endpoint and every session on it: global typed state, and hooks run when the
/// endpoint starts (a server's `bind`, a client's `build`) and when it stops (a server's
/// `shutdown`, a client's `close`).
///
/// Cheap to clone; clones share everything. Give one context to several endpoints to share state
/// between them.
#[derive(Clone, Default)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: State,
    on_start: Mutex<Vec<Hook>>,
    on_stop: Mutex<Vec<Hook>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// The global state.
    pub fn state(&self) -> &State {
        &self.inner.state
    }

    /// Stores `value` under `key` (see [`State::set`]).
    pub fn set<T: Send + Sync + 'static>(&self, key: &str, value: T) -> Option<Arc<T>> {
        self.inner.state.set(key, value)
    }

    /// The value of type `T` stored under `key` (see [`State::get_named`]).
    pub fn get<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        self.inner.state.get_named(key)
    }

    /// Adds a hook run by [`Context::start`], after the hooks added before it. A hook that fails
    /// makes the endpoint fail to start.
    pub fn on_start<F, Fut>(&self, hook: F)
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let hook: Hook = Arc::new(move |ctx| Box::pin(hook(ctx)));
        self.inner
            .on_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Adds a hook run by [`Context::stop`]. Stop hooks run in the reverse order of their
    /// addition, so what started last stops first.
    pub fn on_stop<F, Fut>(&self, hook: F)
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        let hook: Hook = Arc::new(move |ctx| Box::pin(hook(ctx)));
        self.inner
            .on_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Runs the start hooks in order; stops at the first that fails and returns its error.
    pub async fn start(&self) -> Result<(), HookError> {
        let hooks = self
            .inner
            .on_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for hook in hooks {
            hook(self.clone()).await?;
        }
        Ok(())
    }

    /// Runs every stop hook, last added first, even when some fail; returns the first error.
    pub async fn stop(&self) -> Result<(), HookError> {
        let hooks = self
            .inner
            .on_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut first_error = None;
        for hook in hooks.iter().rev() {
            if let Err(error) = hook(self.clone()).await {
                tracing::warn!(%error, "context stop hook failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("state", &self.inner.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hooks_run_in_order_and_stop_reverses() {
        let ctx = Context::new();
        ctx.set("log", Mutex::new(Vec::<&'static str>::new()));
        for (name, stop) in [("a", "stop a"), ("b", "stop b")] {
            ctx.on_start(move |ctx| async move {
                ctx.get::<Mutex<Vec<&str>>>("log")
                    .unwrap()
                    .lock()
                    .unwrap()
                    .push(name);
                Ok(())
            });
            ctx.on_stop(move |ctx| async move {
                ctx.get::<Mutex<Vec<&str>>>("log")
                    .unwrap()
                    .lock()
                    .unwrap()
                    .push(stop);
                Ok(())
            });
        }
        ctx.start().await.unwrap();
        ctx.stop().await.unwrap();
        let log = ctx.get::<Mutex<Vec<&str>>>("log").unwrap();
        assert_eq!(*log.lock().unwrap(), ["a", "b", "stop b", "stop a"]);
    }

    #[tokio::test]
    async fn a_failing_start_hook_stops_the_start() {
        let ctx = Context::new();
        ctx.on_start(|_| async { Err("database unreachable".into()) });
        ctx.on_start(|ctx| async move {
            ctx.set("reached", true);
            Ok(())
        });
        let err = ctx.start().await.unwrap_err();
        assert_eq!(err.to_string(), "database unreachable");
        assert!(ctx.get::<bool>("reached").is_none());
    }

    #[tokio::test]
    async fn stop_runs_every_hook_and_reports_the_first_error() {
        let ctx = Context::new();
        ctx.on_stop(|ctx| async move {
            ctx.set("first-added-ran", true);
            Ok(())
        });
        ctx.on_stop(|_| async { Err("flush failed".into()) });
        let err = ctx.stop().await.unwrap_err();
        assert_eq!(err.to_string(), "flush failed");
        assert_eq!(ctx.get::<bool>("first-added-ran").as_deref(), Some(&true));
    }
}
