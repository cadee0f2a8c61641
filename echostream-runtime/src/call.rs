//! Per-call settings and state: [`CallOptions`] for callers, [`CallContext`] for handlers.
//!
//! A handler reaches the context of the call it serves with [`CallContext::current()`]: the
//! method, the deadline, the metadata that came with the request (after inbound middleware), and
//! cancellation. The context is a task-local set by the runtime around each handler, so generated
//! trait methods keep the plain shape `async fn login(&self, session: &Session, req: Login)`; a
//! handler that spawns work hands a clone of it to that work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Frame metadata: free-form string pairs that travel with a frame (auth tokens, trace ids, ...).
pub type Metadata = std::collections::BTreeMap<String, String>;

/// How one outbound call is made: deadline, replay safety and metadata.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) no_deadline: bool,
    pub(crate) idempotent: bool,
    pub(crate) metadata: Metadata,
}

/// The options of a call made without any: a static, so a plain `request` neither builds nor
/// drops any.
pub(crate) static DEFAULT_OPTIONS: CallOptions = CallOptions {
    timeout: None,
    deadline: None,
    no_deadline: false,
    idempotent: false,
    metadata: Metadata::new(),
};

impl CallOptions {
    /// Options that use the endpoint's defaults.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// Fails the call with `DEADLINE_EXCEEDED` if no answer came within `timeout` of its start.
    /// Overrides the endpoint's default timeout.
    pub fn timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Fails the call with `DEADLINE_EXCEEDED` at `deadline`. With a timeout too, the earlier of
    /// the two applies.
    pub fn deadline(mut self, deadline: Instant) -> CallOptions {
        self.deadline = Some(deadline);
        self
    }

    /// No deadline at all for this call, whatever the endpoint's default.
    pub fn no_deadline(mut self) -> CallOptions {
        self.no_deadline = true;
        self
    }

    /// Declares the call safe to replay, so it may travel as 0-RTT early data.
    pub fn idempotent(mut self, idempotent: bool) -> CallOptions {
        self.idempotent = idempotent;
        self
    }

    /// Adds a metadata pair to the request frame.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> CallOptions {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The deadline of a call starting `now`, given the endpoint's default timeout.
    pub(crate) fn effective_deadline(
        &self,
        now: Instant,
        default_timeout: Option<Duration>,
    ) -> Option<Instant> {
        if self.no_deadline {
            return None;
        }
        // A timeout too long to represent (e.g. `Duration::MAX`) is no deadline at all.
        let from_timeout = self
            .timeout
            .or(default_timeout)
            .and_then(|t| deadline_after(now, t));
        match (from_timeout, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The instant `timeout` after `start`, or `None` ("no deadline") if it is beyond what an
/// [`Instant`] can represent: `Duration::MAX` is a common way to write "effectively never", and
/// a peer may send any timeout.
pub(crate) fn deadline_after(start: Instant, timeout: Duration) -> Option<Instant> {
    start.checked_add(timeout)
}

/// The deadlines of one session's outbound calls, watched by one timer.
///
/// A tokio timer per call costs an insertion into the runtime's timer wheel and a removal from
/// it (about 600 instructions a call, measured), although nearly every call ends long before its
/// deadline. Here a call only notes its deadline and waker in a slab while it waits; one timer
/// task per session sleeps until the earliest deadline it knows of, marks the calls whose
/// deadline passed as expired and wakes them, then sleeps until the earliest deadline left, and
/// ends when no call is left. A call noting a deadline earlier than the timer's wakes it to sleep
/// less. The timer may wake for a call that has already ended: it then just goes back to sleep.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    watch: Arc<Watch>,
}

#[derive(Debug, Default)]
struct Watch {
    state: std::sync::Mutex<Watched>,
    /// Wakes the timer: a deadline earlier than it sleeps for, or the session dropped.
    rearm: Notify,
}

#[derive(Debug, Default)]
struct Watched {
    calls: slab::Slab<Waiting>,
    /// When the timer task wakes up, no later than any deadline in `calls`; `None` when there
    /// is no timer task.
    armed: Option<Instant>,
    /// The session is gone: the timer task ends.
    dropped: bool,
}

#[derive(Debug)]
struct Waiting {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

impl Deadlines {
    /// Runs `future` until it completes (`Some` of its output) or `at` passes (`None`; the
    /// caller then drops `future`). Pinned by the caller, so a large future is not moved.
    pub(crate) async fn timeout_at<F: Future>(
        &self,
        at: Instant,
        mut future: Pin<&mut F>,
    ) -> Option<F::Output> {
        let mut deadline = Deadline {
            watch: &self.watch,
            at,
            key: None,
        };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if deadline.poll_expired(cx) {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Calls waiting for their deadline (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.watch.lock().calls.len()
    }

    /// Whether a timer task is at work (for tests).
    #[cfg(test)]
    fn timer_armed(&self) -> bool {
        self.watch.lock().armed.is_some()
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        let mut state = self.watch.lock();
        state.dropped = true;
        if state.armed.is_some() {
            drop(state);
            self.watch.rearm.notify_one();
        }
    }
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One call's deadline, noted in its session's [`Deadlines`] from its first wait to its end.
struct Deadline<'a> {
    watch: &'a Arc<Watch>,
    at: Instant,
    key: Option<usize>,
}

impl Deadline<'_> {
    /// Whether the deadline passed; if not, the task of `cx` is woken when it does.
    fn poll_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let mut state = self.watch.lock();
        if let Some(key) = self.key {
            let call = &mut state.calls[key];
            if call.expired {
                return true;
            }
            if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                call.waker = Some(cx.waker().clone());
            }
            return false;
        }
        // A deadline already passed is noted too: the timer fires at once.
        self.key = Some(state.calls.insert(Waiting {
            at: self.at,
            waker: Some(cx.waker().clone()),
            expired: false,
        }));
        match state.armed {
            None => {
                state.armed = Some(self.at);
                drop(state);
                tokio::spawn(watch_deadlines(self.watch.clone(), self.at));
            }
            Some(armed) if self.at < armed => {
                state.armed = Some(self.at);
                drop(state);
                self.watch.rearm.notify_one();
            }
            Some(_) => {}
        }
        false
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.watch.lock().calls.remove(key);
        }
    }
}

/// The timer task of a session's [`Deadlines`], first due at `at`.
async fn watch_deadlines(watch: Arc<Watch>, at: Instant) {
    let sleep = tokio::time::sleep_until(at);
    tokio::pin!(sleep);
    let mut expired = Vec::new();
    loop {
        tokio::select! {
            () = &mut sleep => {}
            () = watch.rearm.notified() => {}
        }
        let now = Instant::now();
        let next = {
            let mut state = watch.lock();
            if state.dropped {
                return;
            }
            let mut next: Option<Instant> = None;
            for (_, call) in state.calls.iter_mut().filter(|(_, c)| !c.expired) {
                if call.at <= now {
                    call.expired = true;
                    expired.extend(call.waker.take());
                } else {
                    next = Some(next.map_or(call.at, |n| n.min(call.at)));
                }
            }
            state.armed = next;
            next
        };
        for waker in expired.drain(..) {
            waker.wake();
        }
        match next {
            Some(at) => sleep.as_mut().reset(at),
            None => return,
        }
    }
}

/// What kind of inbound traffic a handler is serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// An RPC.
    Rpc,
    /// An event.
    Event,
    /// A frame of a named stream (or its opening or end).
    Stream,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

/// The context of the inbound call, event or stream frame a handler is serving.
///
/// Cheap to clone. RPC handlers see the call's deadline and can wait for its cancellation (the
/// caller gave up, the deadline passed, or the connection was lost); the runtime also drops the
/// handler's future then, so work that must notice cancellation beyond that point (spawned tasks)
/// should hold a clone and watch [`CallContext::cancelled`].
#[derive(Clone, Debug)]
pub struct CallContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: CallKind,
    id: u64,
    name: Arc<str>,
    deadline: Option<Instant>,
    metadata: Metadata,
    early_data: bool,
    idempotent: bool,
    cancelled: AtomicBool,
    notify: Notify,
}

impl CallContext {
    pub(crate) fn new(
        kind: CallKind,
        id: u64,
        name: Arc<str>,
        deadline: Option<Instant>,
        metadata: Metadata,
    ) -> CallContext {
        CallContext {
            inner: Arc::new(Inner {
                kind,
                id,
                name,
                deadline,
                metadata,
                early_data: false,
                idempotent: false,
                cancelled: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        }
    }

    /// Marks the request as sent idempotent by its caller and as received in 0-RTT early data
    /// or not (before any clone is made).
    pub(crate) fn with_request_flags(mut self, idempotent: bool, early: bool) -> CallContext {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.idempotent = idempotent;
            inner.early_data = early;
        }
        self
    }

    /// The context of the handler running on this task, `None` outside of a handler (or in a task
    /// the handler spawned: pass it a clone instead).
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(CallContext::clone).ok()
    }

    /// Runs `future` with this context as the current one.
    pub(crate) fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// Whether this is an RPC, an event or a stream frame.
    pub fn kind(&self) -> CallKind {
        self.inner.kind
    }

    /// The request id chosen by the caller (0 for events and stream frames).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The method, event or stream name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left until the deadline (zero once passed), `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The metadata that came with the frame, as inbound middleware left it.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// Whether the request arrived as 0-RTT early data, before the TLS handshake was complete
    /// (only idempotent requests are served that early; see [`EarlyData`](crate::EarlyData)).
    /// Always `false` on the side that made the connection.
    pub fn early_data(&self) -> bool {
        self.inner.early_data
    }

    /// Whether the caller marked the request idempotent (safe to replay:
    /// [`CallOptions::idempotent`], or the schema's `idempotent` option), which is what lets it
    /// travel, and be served, as 0-RTT early data. `false` for events and stream frames.
    pub fn idempotent(&self) -> bool {
        self.inner.idempotent
    }

    /// Whether the call has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Completes once the call is cancelled (immediately if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Marks the call cancelled and wakes everyone waiting in [`CallContext::cancelled`].
    pub(crate) fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::AcqRel) {
            self.inner.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext::new(CallKind::Rpc, 9, "svc/m".into(), None, Metadata::new())
    }

    #[tokio::test]
    async fn current_is_set_only_inside_the_scope() {
        assert!(CallContext::current().is_none());
        let seen = ctx()
            .scope(async { CallContext::current().map(|c| (c.id(), c.name().to_string())) })
            .await;
        assert_eq!(seen, Some((9, "svc/m".to_string())));
        assert!(CallContext::current().is_none());
    }

    #[tokio::test]
    async fn cancellation_wakes_waiters_before_and_after() {
        let ctx = ctx();
        let waiter = tokio::spawn({
            let ctx = ctx.clone();
            async move { ctx.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!ctx.is_cancelled());
        ctx.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), ctx.cancelled())
            .await
            .expect("already cancelled returns at once");
    }

    #[tokio::test]
    async fn deadline_is_the_earliest_of_timeout_default_and_deadline() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(CallOptions::new().effective_deadline(now, None), None);
        assert_eq!(
            CallOptions::new().effective_deadline(now, Some(s)),
            Some(now + s)
        );
        assert_eq!(
            CallOptions::new()
                .timeout(2 * s)
                .effective_deadline(now, Some(s)),
            Some(now + 2 * s)
        );
        assert_eq!(
            CallOptions::new()
                .timeout(5 * s)
                .deadline(now + 3 * s)
                .effective_deadline(now, None),
            Some(now + 3 * s)
        );
        assert_eq!(
            CallOptions::new()
                .no_deadline()
                .effective_deadline(now, Some(s)),
            None
        );
    }

    #[tokio::test]
    async fn a_timeout_beyond_representable_instants_is_no_deadline() {
        let now = Instant::now();
        assert_eq!(
            CallOptions::new()
                .timeout(Duration::MAX)
                .effective_deadline(now, None),
            None
        );
        assert_eq!(
            CallOptions::new().effective_deadline(now, Some(Duration::MAX)),
            None
        );
        // An explicit deadline still applies beside an unrepresentable timeout.
        let at = now + Duration::from_secs(1);
        assert_eq!(
            CallOptions::new()
                .timeout(Duration::MAX)
                .deadline(at)
                .effective_deadline(now, None),
            Some(at)
        );
    }

    #[tokio::test]
    async fn remaining_counts_down_to_zero() {
        let past = CallContext::new(
            CallKind::Rpc,
            1,
            "m".into(),
            Some(Instant::now() - Duration::from_millis(5)),
            Metadata::new(),
        );
        assert_eq!(past.remaining(), Some(Duration::ZERO));
        assert_eq!(ctx().remaining(), None);
    }

    /// Bounds a test's wait: none of these should come near it.
    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_deadline_that_passes_ends_the_call() {
        let deadlines = Deadlines::default();
        let started = Instant::now();
        let at = started + Duration::from_millis(30);
        let out = tokio::time::timeout(
            BOUND,
            deadlines.timeout_at(at, std::pin::pin!(std::future::pending::<()>())),
        )
        .await
        .expect("the deadline fired");
        assert_eq!(out, None);
        assert!(Instant::now() >= at);
        assert_eq!(
            deadlines.waiting(),
            0,
            "an ended call leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn a_call_that_ends_in_time_gets_its_output() {
        let deadlines = Deadlines::default();
        let at = Instant::now() + Duration::from_secs(60);
        let call = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            7
        };
        let out = tokio::time::timeout(BOUND, deadlines.timeout_at(at, std::pin::pin!(call))).await;
        assert_eq!(out.expect("done in time"), Some(7));
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_the_timer_sooner() {
        let deadlines = Arc::new(Deadlines::default());
        let late = tokio::spawn({
            let deadlines = deadlines.clone();
            async move {
                let at = Instant::now() + Duration::from_secs(60);
                deadlines
                    .timeout_at(at, std::pin::pin!(std::future::pending::<()>()))
                    .await
            }
        });
        while deadlines.waiting() == 0 {
            tokio::time::timeout(BOUND, tokio::task::yield_now())
                .await
                .unwrap();
        }
        let at = Instant::now() + Duration::from_millis(30);
        let early = tokio::time::timeout(
            BOUND,
            deadlines.timeout_at(at, std::pin::pin!(std::future::pending::<()>())),
        )
        .await
        .expect("the earlier deadline fired, not the timer's first one");
        assert_eq!(early, None);
        assert_eq!(deadlines.waiting(), 1, "the later call still waits");
        assert!(!late.is_finished());
        late.abort();
        let _ = late.await;
        assert_eq!(
            deadlines.waiting(),
            0,
            "a dropped call leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn the_timer_ends_when_no_call_is_left() {
        let deadlines = Deadlines::default();
        let at = Instant::now() + Duration::from_millis(20);
        let out = deadlines.timeout_at(at, std::pin::pin!(async { 1 })).await;
        assert_eq!(out, Some(1), "a call ready at once needs no timer");
        assert!(!deadlines.timer_armed());
        let call = tokio::time::sleep(Duration::from_millis(1));
        assert_eq!(
            deadlines.timeout_at(at, std::pin::pin!(call)).await,
            Some(())
        );
        assert!(
            deadlines.timer_armed(),
            "the timer sleeps until the deadline it knew"
        );
        let mut waited = Duration::ZERO;
        while deadlines.timer_armed() && waited < BOUND {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
        assert!(!deadlines.timer_armed(), "no call left: the timer ended");
    }

    #[tokio::test]
    async fn many_calls_each_expire_at_their_own_deadline() {
        let deadlines = Arc::new(Deadlines::default());
        let start = Instant::now();
        let calls: Vec<_> = (1..=5u64)
            .rev()
            .map(|i| {
                let deadlines = deadlines.clone();
                let at = start + Duration::from_millis(20 * i);
                tokio::spawn(async move {
                    let out = deadlines
                        .timeout_at(at, std::pin::pin!(std::future::pending::<()>()))
                        .await;
                    (out, Instant::now() >= at)
                })
            })
            .collect();
        for call in calls {
            let (out, after) = tokio::time::timeout(BOUND, call).await.unwrap().unwrap();
            assert_eq!(out, None);
            assert!(after, "no call expired before its deadline");
        }
        assert_eq!(deadlines.waiting(), 0);
    }
}
