//! Events from one sender, counted when the receiver has handled them all.
//!
//! Raw quinn writes each event on one long-lived uni-stream as a length byte and the payload,
//! one `write_all` per event (the straightforward way); EchoStream calls `Session::emit`, whose
//! queue refuses at once when full (the sender then yields for the writer to drain it).

use std::time::{Duration, Instant};

use bytes::Bytes;
use echostream_runtime::Code;

use crate::compare::{Round, Side, Work};
use crate::peers::{Peers, RAW_EVENTS, TICK, wait_for};

/// The payload of each event.
pub const EVENT_BYTES: usize = 64;

/// One sender of events on each side.
pub struct Events<'a> {
    peers: &'a Peers,
    raw: quinn::SendStream,
    /// The raw event: its length byte then its payload.
    raw_event: Vec<u8>,
    event: Bytes,
    raw_sent: u64,
    sent: u64,
    /// How often EchoStream's queue was full and the sender yielded.
    pub full: u64,
}

impl<'a> Events<'a> {
    /// Opens the raw event stream.
    pub async fn new(peers: &'a Peers) -> Events<'a> {
        let mut raw = peers.raw.open_uni().await.expect("raw open_uni");
        raw.write_all(&[RAW_EVENTS]).await.expect("raw write");
        let mut raw_event = vec![EVENT_BYTES as u8];
        raw_event.extend_from_slice(&[0x11; EVENT_BYTES]);
        Events {
            peers,
            raw,
            raw_event,
            event: Bytes::from(vec![0x11; EVENT_BYTES]),
            raw_sent: 0,
            sent: 0,
            full: 0,
        }
    }
}

impl Work for Events<'_> {
    async fn round(&mut self, side: Side, length: Duration) -> Round {
        let start = Instant::now();
        let mut count = 0u64;
        let received = &self.peers.received;
        match side {
            Side::Raw => {
                while start.elapsed() < length {
                    // Time is read every 64 events: an event costs far less than a clock read.
                    for _ in 0..64 {
                        self.raw
                            .write_all(&self.raw_event)
                            .await
                            .expect("raw event");
                    }
                    count += 64;
                }
                self.raw_sent += count;
                wait_for(
                    &received.raw_events,
                    self.raw_sent,
                    "raw events",
                    length * 20 + Duration::from_secs(10),
                )
                .await;
            }
            Side::EchoStream => {
                while start.elapsed() < length {
                    for _ in 0..64 {
                        while let Err(status) =
                            self.peers.session.emit(TICK, self.event.clone()).await
                        {
                            // A full queue refuses at once; anything else is a failure.
                            assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                            self.full += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                    count += 64;
                }
                self.sent += count;
                wait_for(
                    &received.events,
                    self.sent,
                    "EchoStream events",
                    length * 20 + Duration::from_secs(10),
                )
                .await;
            }
        }
        Round {
            units: count as f64,
            elapsed: start.elapsed(),
        }
    }
}
