//! Catching panics of handlers, so one failing handler answers `INTERNAL` instead of taking its
//! session's task (and the calls multiplexed on it) down.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that completes with `Err(message)` if the inner future panics while polled.
pub(crate) struct CatchUnwind<F> {
    inner: F,
}

/// Wraps `future` so its panics become `Err(message)`.
pub(crate) fn catch_unwind_future<F: Future + Unpin>(future: F) -> CatchUnwind<F> {
    CatchUnwind { inner: future }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        // The future is not polled again after a panic, so no broken invariant is observed.
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_become_errors_with_their_message() {
        let ok = catch_unwind_future(Box::pin(async { 5 })).await;
        assert_eq!(ok, Ok(5));
        let boom = catch_unwind_future(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 42);
        }))
        .await;
        assert_eq!(boom, Err::<(), _>("boom 42".to_owned()));
    }
}
