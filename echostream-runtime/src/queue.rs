//! [`OutQueue`]: the bounded queue between a sender (`emit`, a stream's `send`) and the task that
//! writes to the QUIC stream. Bounded both in frames and in bytes, so a slow peer costs at most the
//! configured memory; what does not fit is refused at once and counted by the caller, never
//! waited for.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Limits of an outbound queue: at most `frames` frames and `bytes` encoded bytes wait at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// The most frames waiting at once.
    pub frames: usize,
    /// The most encoded bytes waiting at once. A single frame larger than this is still accepted
    /// into an empty queue (the frame size limit bounds it).
    pub bytes: usize,
}

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue is at its limit.
    Full,
    /// The writer is gone (stream finished or connection lost).
    Closed,
}

/// A bounded multi-producer, single-consumer queue of items with a byte size.
#[derive(Debug)]
pub(crate) struct OutQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    limits: QueueLimits,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

impl<T> OutQueue<T> {
    pub(crate) fn new(limits: QueueLimits) -> OutQueue<T> {
        OutQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            room: Notify::new(),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Queues `item` of `size` bytes, or refuses it without waiting.
    pub(crate) fn push(&self, item: T, size: usize) -> Result<(), PushError> {
        self.try_push(item, size).map_err(|(error, _)| error)
    }

    /// Queues `item` of `size` bytes, waiting for room while the queue is full. Fails only when
    /// the queue is closed.
    pub(crate) async fn push_wait(&self, item: T, size: usize) -> Result<(), PushError> {
        let mut item = item;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(item, size) {
                Ok(()) => return Ok(()),
                Err((PushError::Full, back)) => item = back,
                Err((error, _)) => return Err(error),
            }
            room.await;
        }
    }

    fn try_push(&self, item: T, size: usize) -> Result<(), (PushError, T)> {
        let mut state = self.lock();
        if state.closed {
            return Err((PushError::Closed, item));
        }
        let full = state.items.len() >= self.limits.frames
            || (!state.items.is_empty() && state.bytes + size > self.limits.bytes);
        if full {
            return Err((PushError::Full, item));
        }
        state.items.push_back((item, size));
        state.bytes += size;
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Moves the items of `run` (with their sizes, `run_bytes` in all) into the queue in order,
    /// under one lock and one wake-up of the consumer, each accepted or refused as
    /// [`OutQueue::push`] would; `run` is left empty. When all fit (the usual case) the run is
    /// moved whole (into an empty queue, by a swap of buffers) instead of an item at a time.
    /// Returns how many were refused because the queue was full, and how many because it was
    /// closed.
    pub(crate) fn push_run(&self, run: &mut VecDeque<(T, usize)>, run_bytes: usize) -> (u64, u64) {
        if run.is_empty() {
            return (0, 0);
        }
        let mut state = self.lock();
        if state.closed {
            let closed = run.len() as u64;
            run.clear();
            return (0, closed);
        }
        // Every item fits: under the frame limit, and under the byte limit (or alone in an
        // empty queue, which takes one item of any size).
        let fits = state.items.len() + run.len() <= self.limits.frames
            && (state.bytes + run_bytes <= self.limits.bytes
                || (state.items.is_empty() && run.len() == 1));
        let mut full = 0;
        if fits {
            state.bytes += run_bytes;
            if state.items.is_empty() {
                std::mem::swap(&mut state.items, run);
            } else {
                state.items.append(run);
            }
        } else {
            let before = state.items.len();
            for (item, size) in run.drain(..) {
                if state.items.len() >= self.limits.frames
                    || (!state.items.is_empty() && state.bytes + size > self.limits.bytes)
                {
                    full += 1;
                } else {
                    state.items.push_back((item, size));
                    state.bytes += size;
                }
            }
            if state.items.len() == before {
                return (full, 0);
            }
        }
        drop(state);
        self.notify.notify_one();
        (full, 0)
    }

    /// [`OutQueue::pop_batch`] into a queue of items with their sizes: when `out` is empty (the
    /// usual case), the waiting items are moved whole, by a swap of buffers, instead of an item
    /// at a time (and those beyond `max_items` moved back, when they are the fewer).
    pub(crate) async fn pop_run(&self, out: &mut VecDeque<(T, usize)>, max_items: usize) -> bool {
        let max = max_items.max(1);
        self.pop_with(|state| {
            if out.is_empty() && state.items.len() <= 2 * max {
                // All of them, and those beyond `max` (fewer) moved back.
                std::mem::swap(&mut state.items, out);
                let mut rest = 0;
                if out.len() > max {
                    state
                        .items
                        .extend(out.drain(max..).inspect(|(_, size)| rest += size));
                }
                state.bytes = rest;
            } else {
                let n = state.items.len().min(max);
                let bytes = &mut state.bytes;
                out.extend(state.items.drain(..n).inspect(|(_, size)| *bytes -= size));
            }
        })
        .await
    }

    /// Waits for items and moves up to `max_items` of them (but at least one) into `out`.
    /// Returns `false` once the queue is closed and drained.
    pub(crate) async fn pop_batch(&self, out: &mut impl Extend<T>, max_items: usize) -> bool {
        self.pop_with(|state| {
            let n = state.items.len().min(max_items.max(1));
            let bytes = &mut state.bytes;
            out.extend(state.items.drain(..n).map(|(item, size)| {
                *bytes -= size;
                item
            }));
        })
        .await
    }

    /// Waits for items, lets `take` move some out of the state (never empty when it runs) and
    /// wakes the producers waiting for room. Returns `false` once the queue is closed and
    /// drained.
    async fn pop_with(&self, mut take: impl FnMut(&mut State<T>)) -> bool {
        loop {
            {
                let mut state = self.lock();
                if !state.items.is_empty() {
                    take(&mut state);
                    drop(state);
                    self.room.notify_waiters();
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Refuses new items; the consumer still drains what is queued. Returns how many items were
    /// waiting.
    pub(crate) fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let waiting = state.items.len();
        drop(state);
        self.notify.notify_one();
        self.room.notify_waiters();
        waiting
    }

    /// Refuses new items and discards the queued ones; returns how many were discarded.
    pub(crate) fn close_and_clear(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let discarded = state.items.len();
        state.items.clear();
        state.bytes = 0;
        drop(state);
        self.notify.notify_one();
        self.room.notify_waiters();
        discarded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn queue(frames: usize, bytes: usize) -> OutQueue<u32> {
        OutQueue::new(QueueLimits { frames, bytes })
    }

    #[test]
    fn refuses_past_the_frame_limit() {
        let q = queue(2, 1000);
        assert_eq!(q.push(1, 10), Ok(()));
        assert_eq!(q.push(2, 10), Ok(()));
        assert_eq!(q.push(3, 10), Err(PushError::Full));
    }

    #[test]
    fn refuses_past_the_byte_limit_but_takes_one_big_frame_when_empty() {
        let q = queue(10, 100);
        assert_eq!(
            q.push(1, 500),
            Ok(()),
            "an empty queue takes a frame of any size"
        );
        assert_eq!(q.push(2, 1), Err(PushError::Full));
        let q = queue(10, 100);
        assert_eq!(q.push(1, 60), Ok(()));
        assert_eq!(q.push(2, 41), Err(PushError::Full));
        assert_eq!(q.push(3, 40), Ok(()));
    }

    #[test]
    fn pushes_a_run_in_order_and_counts_what_is_refused() {
        let q = queue(3, 100);
        let mut run = VecDeque::from([(1, 10), (2, 10), (3, 95), (4, 10), (5, 10)]);
        assert_eq!(q.push_run(&mut run, 135), (2, 0));
        assert!(run.is_empty());
        let mut out = Vec::new();
        assert!(futures_ready(q.pop_batch(&mut out, 10)));
        assert_eq!(
            out,
            [1, 2, 4],
            "what did not fit was refused, the rest kept its order"
        );
        q.close();
        let mut run = VecDeque::from([(6, 1), (7, 1)]);
        assert_eq!(q.push_run(&mut run, 2), (0, 2));
        assert!(run.is_empty());
    }

    proptest::proptest! {
        /// A run pushed whole, or popped whole, leaves the queue, the counts and the items taken
        /// exactly as pushing and popping them one at a time would.
        #[test]
        fn runs_push_and_pop_as_single_items_do(
            frames in 0usize..6,
            bytes in 0usize..60,
            before in proptest::collection::vec(0usize..30, 0..5),
            run in proptest::collection::vec(0usize..30, 0..8),
            max_items in 0usize..8,
            taken_before in 0usize..3,
        ) {
            let (whole, single) = (queue(frames, bytes), queue(frames, bytes));
            for (i, size) in before.iter().enumerate() {
                let i = i as u32;
                proptest::prop_assert_eq!(whole.push(i, *size), single.push(i, *size));
            }
            let mut items: VecDeque<(u32, usize)> =
                run.iter().enumerate().map(|(i, s)| (100 + i as u32, *s)).collect();
            let total = run.iter().sum();
            let (mut full, mut closed) = (0, 0);
            for &(item, size) in &items {
                match single.push(item, size) {
                    Ok(()) => {}
                    Err(PushError::Full) => full += 1,
                    Err(PushError::Closed) => closed += 1,
                }
            }
            proptest::prop_assert_eq!(whole.push_run(&mut items, total), (full, closed));
            proptest::prop_assert!(items.is_empty());
            let (mut a, mut b) = (VecDeque::new(), Vec::new());
            // Some items may be in hand already (not moved whole then).
            a.extend((0..taken_before as u32).map(|i| (1000 + i, 0)));
            loop {
                let more_a = futures_ready_or_none(whole.pop_run(&mut a, max_items));
                let more_b = futures_ready_or_none(single.pop_batch(&mut b, max_items));
                proptest::prop_assert_eq!(more_a, more_b);
                let popped: Vec<u32> =
                    a.drain(..).map(|(i, _)| i).filter(|i| *i < 1000).collect();
                proptest::prop_assert_eq!(&popped, &b);
                b.clear();
                proptest::prop_assert_eq!(whole.lock().bytes, single.lock().bytes);
                if more_a.is_none() {
                    break;
                }
            }
        }
    }

    /// The output of a future if it is ready at once.
    fn futures_ready_or_none<F: std::future::Future>(future: F) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    /// The output of a future that is ready at once.
    fn futures_ready<F: std::future::Future>(future: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the future was not ready"),
        }
    }

    #[tokio::test]
    async fn pops_in_order_in_batches_and_frees_room() {
        let q = queue(3, 1000);
        for i in 0..3 {
            q.push(i, 10).unwrap();
        }
        let mut out = Vec::new();
        assert!(q.pop_batch(&mut out, 2).await);
        assert_eq!(out, [0, 1]);
        q.push(3, 10).unwrap();
        q.push(4, 10).unwrap();
        out.clear();
        assert!(q.pop_batch(&mut out, 10).await);
        assert_eq!(out, [2, 3, 4]);
    }

    #[tokio::test]
    async fn close_lets_the_consumer_drain_then_stop() {
        let q = queue(10, 1000);
        q.push(7, 1).unwrap();
        assert_eq!(q.close(), 1);
        assert_eq!(q.push(8, 1), Err(PushError::Closed));
        let mut out = Vec::new();
        assert!(q.pop_batch(&mut out, 10).await);
        assert_eq!(out, [7]);
        assert!(!q.pop_batch(&mut out, 10).await);
    }

    #[tokio::test]
    async fn a_waiting_producer_gets_room_when_the_consumer_takes_or_the_queue_closes() {
        let q = std::sync::Arc::new(queue(1, 1000));
        q.push(1, 1).unwrap();
        let producer = tokio::spawn({
            let q = q.clone();
            async move { (q.push_wait(2, 1).await, q.push_wait(3, 1).await) }
        });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        assert!(q.pop_batch(&mut out, 10).await);
        assert_eq!(out, [1]);
        tokio::task::yield_now().await;
        assert_eq!(q.close(), 1, "2 got in, 3 waits");
        let (second, third) = tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .expect("producer finished")
            .unwrap();
        assert_eq!((second, third), (Ok(()), Err(PushError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_push_and_on_close() {
        let q = std::sync::Arc::new(queue(10, 1000));
        let consumer = tokio::spawn({
            let q = q.clone();
            async move {
                let mut out = Vec::new();
                let first = q.pop_batch(&mut out, 10).await;
                let second = q.pop_batch(&mut out, 10).await;
                (first, second, out)
            }
        });
        tokio::task::yield_now().await;
        q.push(1, 1).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(q.close_and_clear(), 0);
        let (first, second, out) = tokio::time::timeout(Duration::from_secs(5), consumer)
            .await
            .expect("consumer finished")
            .unwrap();
        assert!(first);
        assert!(!second);
        assert_eq!(out, [1]);
    }
}
