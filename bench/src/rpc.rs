//! Unary rpcs: a payload sent and echoed back. Raw quinn opens a bi-stream per call, writes the
//! payload and finishes, and reads the answer to its end; EchoStream calls
//! `Session::request("echo", payload)` against a handler that returns the request's bytes, with
//! its default configuration (a 30 s deadline on every call, so every call arms a timer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::Session;

use crate::compare::{Round, Side, Work};
use crate::peers::{ECHO, Peers};

/// Callers running at once in the throughput measurements.
pub const CONCURRENCY: usize = 64;

/// One echo call on either side.
#[derive(Clone)]
pub struct Caller {
    raw: quinn::Connection,
    session: Session,
}

impl Caller {
    /// The caller of both sides of `peers`.
    pub fn new(peers: &Peers) -> Caller {
        Caller {
            raw: peers.raw.clone(),
            session: peers.session.clone(),
        }
    }

    /// Echoes `data` on `side`, checking that it came back whole.
    pub async fn call(&self, side: Side, data: Bytes) {
        let len = data.len();
        let answer = match side {
            Side::Raw => {
                let (mut send, mut recv) = self.raw.open_bi().await.expect("raw open_bi");
                send.write_all(&data).await.expect("raw write");
                send.finish().expect("raw finish");
                Bytes::from(recv.read_to_end(1 << 24).await.expect("raw read"))
            }
            Side::EchoStream => self.session.request(ECHO, data).await.expect("echo call"),
        };
        assert_eq!(answer.len(), len, "the echo came back whole");
    }
}

/// Latency percentiles (p50, p99) of sequential calls of `size` bytes, raw and EchoStream
/// interleaved call by call so both see the same machine.
pub async fn latency(
    caller: &Caller,
    size: usize,
    warmup: usize,
    calls: usize,
) -> [[Duration; 2]; 2] {
    let data = Bytes::from(vec![0xa5; size]);
    for _ in 0..warmup {
        caller.call(Side::Raw, data.clone()).await;
        caller.call(Side::EchoStream, data.clone()).await;
    }
    let mut samples = [Vec::with_capacity(calls), Vec::with_capacity(calls)];
    for _ in 0..calls {
        for (i, side) in [Side::Raw, Side::EchoStream].into_iter().enumerate() {
            let start = Instant::now();
            caller.call(side, data.clone()).await;
            samples[i].push(start.elapsed());
        }
    }
    samples.map(|mut s| {
        s.sort_unstable();
        [s[s.len() / 2], s[s.len() * 99 / 100]]
    })
}

/// Calls per second of [`CONCURRENCY`] callers making calls of a given size for a round.
pub struct Throughput {
    caller: Caller,
    data: Bytes,
}

impl Throughput {
    /// Calls of `size` bytes.
    pub fn new(caller: Caller, size: usize) -> Throughput {
        Throughput {
            caller,
            data: Bytes::from(vec![0x5a; size]),
        }
    }
}

impl Work for Throughput {
    async fn round(&mut self, side: Side, length: Duration) -> Round {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + length;
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let caller = self.caller.clone();
                let data = self.data.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        caller.call(side, data.clone()).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller task");
        }
        Round {
            units: done.load(Ordering::Relaxed) as f64,
            elapsed: start.elapsed(),
        }
    }
}
