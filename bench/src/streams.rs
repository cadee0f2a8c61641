//! Streams: a reliable stream of large frames (MB/s), and a datagram stream of 1,000 B and
//! 100 KB frames (frames/s and MB/s).
//!
//! - Reliable: raw quinn writes length-prefixed frames on one long-lived uni-stream with
//!   `write_all`; EchoStream sends on a reliable named stream with `StreamSender::send_wait`
//!   (which waits for room in the stream's queue). A round sends for its length, then waits
//!   until the receiver has every byte: the rate is payload bytes over that whole time.
//! - Datagrams: raw quinn sends, for each frame, the datagrams EchoStream would send for it
//!   (header and fragments, as `datagram::fragment_in` cuts them) with `send_datagram_wait`;
//!   EchoStream sends each frame with `StreamSender::send_wait`, which also waits while quinn's
//!   datagram buffer is full. Raw quinn gives each frame its own seq and timestamp and cuts it
//!   anew in a reused 64 KiB arena, the job of a hand-rolled sender of frames
//!   ([`RawFrames::CutAnew`]); one measurement instead resends one frame's datagrams, cut once
//!   ([`RawFrames::Resent`]): quinn alone, with no header to write and the same bytes hot in the
//!   cache, the upper bound of the framework's overhead. A round sends for its length, waits
//!   30 ms for the last datagrams, and counts the frames that arrived whole (raw: datagrams
//!   received ÷ datagrams per frame); unreliable delivery may lose some on the way, and a lost
//!   frame does not count.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use echostream_runtime::datagram::{FrameId, fragment_in};
use echostream_runtime::{Delivery, StreamOptions, StreamSender};

use crate::compare::{Round, Side, Work};
use crate::peers::{BULK, MEDIA, Peers, RAW_BULK, wait_for};

/// The frame size of the reliable stream.
pub const BULK_FRAME: usize = 64 * 1024;
/// How long a datagram round waits after sending for the last datagrams to arrive.
const SETTLE: Duration = Duration::from_millis(30);
/// The size of the blocks raw quinn's frames are cut in (as EchoStream's).
const ARENA: usize = 64 * 1024;
/// How many times raw quinn cuts a frame again for a shrinking path MTU before giving up.
const MAX_RECUTS: usize = 3;

/// One reliable stream on each side; units are payload bytes.
pub struct Reliable<'a> {
    peers: &'a Peers,
    raw: quinn::SendStream,
    raw_frame: Bytes,
    stream: StreamSender,
    frame: Bytes,
    raw_sent: u64,
    sent: u64,
}

impl<'a> Reliable<'a> {
    /// Opens both streams.
    pub async fn new(peers: &'a Peers) -> Reliable<'a> {
        let mut raw = peers.raw.open_uni().await.expect("raw open_uni");
        raw.write_all(&[RAW_BULK]).await.expect("raw write");
        let mut raw_frame = (BULK_FRAME as u32).to_be_bytes().to_vec();
        raw_frame.extend_from_slice(&[0x3c; BULK_FRAME]);
        let stream = peers
            .session
            .open_stream(BULK, StreamOptions::new().delivery(Delivery::Reliable))
            .await
            .expect("EchoStream opens the reliable stream");
        Reliable {
            peers,
            raw,
            raw_frame: Bytes::from(raw_frame),
            stream,
            frame: Bytes::from(vec![0x3c; BULK_FRAME]),
            raw_sent: 0,
            sent: 0,
        }
    }
}

impl Work for Reliable<'_> {
    async fn round(&mut self, side: Side, length: Duration) -> Round {
        let start = Instant::now();
        let mut frames = 0u64;
        let received = &self.peers.received;
        let limit = length * 20 + Duration::from_secs(10);
        match side {
            Side::Raw => {
                while start.elapsed() < length {
                    self.raw
                        .write_chunk(self.raw_frame.clone())
                        .await
                        .expect("raw write");
                    frames += 1;
                }
                self.raw_sent += frames * self.raw_frame.len() as u64;
                wait_for(
                    &received.raw_bulk_bytes,
                    self.raw_sent,
                    "raw stream bytes",
                    limit,
                )
                .await;
            }
            Side::EchoStream => {
                while start.elapsed() < length {
                    self.stream
                        .send_wait(self.frame.clone())
                        .await
                        .expect("stream frame");
                    frames += 1;
                }
                self.sent += frames * BULK_FRAME as u64;
                wait_for(
                    &received.bulk_bytes,
                    self.sent,
                    "EchoStream stream bytes",
                    limit,
                )
                .await;
            }
        }
        Round {
            units: (frames * BULK_FRAME as u64) as f64,
            elapsed: start.elapsed(),
        }
    }
}

/// How raw quinn gets the datagrams of each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFrames {
    /// Each frame with its own seq and timestamp, cut anew: a hand-rolled sender's job.
    CutAnew,
    /// One frame's datagrams, cut once, sent again and again: quinn alone.
    Resent,
}

/// One datagram stream on each side, with frames of one size; units are frames.
pub struct Datagrams<'a> {
    peers: &'a Peers,
    stream: StreamSender,
    frame: Bytes,
    raw_frames: RawFrames,
    /// The id of raw quinn's current frame.
    id: FrameId,
    /// The largest datagram, as of the last cut.
    max: usize,
    /// The datagrams of raw quinn's current frame, as EchoStream would send them.
    datagrams: Vec<Bytes>,
    /// Where raw quinn's frames are cut, 64 KiB at a time.
    arena: BytesMut,
}

impl<'a> Datagrams<'a> {
    /// Opens EchoStream's datagram stream and cuts one frame of `size` into datagrams for raw
    /// quinn.
    pub async fn new(peers: &'a Peers, size: usize, raw_frames: RawFrames) -> Datagrams<'a> {
        let stream = peers
            .session
            .open_stream(
                MEDIA,
                StreamOptions::new()
                    .delivery(Delivery::Datagram)
                    .max_frame_bytes(size as u32),
            )
            .await
            .expect("EchoStream opens the datagram stream");
        let frame = Bytes::from(vec![0x5a; size]);
        let max = peers.raw.max_datagram_size().expect("datagrams enabled");
        let id = FrameId {
            stream_id: stream.id(),
            seq: 1_000_000,
            timestamp: 1_735_689_600_000_000,
        };
        let mut datagrams = Datagrams {
            peers,
            stream,
            frame,
            raw_frames,
            id,
            max,
            datagrams: Vec::new(),
            arena: BytesMut::new(),
        };
        datagrams.cut();
        datagrams
    }

    /// Cuts raw quinn's frame into datagrams of at most `max` bytes in the arena.
    fn cut(&mut self) {
        let arena = std::mem::take(&mut self.arena);
        let mut fragments = fragment_in(self.id, &self.frame, self.max, usize::MAX, arena, ARENA)
            .expect("the frame fits");
        self.datagrams.clear();
        self.datagrams.extend(&mut fragments);
        self.arena = fragments.into_arena();
    }

    /// Sends raw quinn's next frame, waiting for room; should the path MTU shrink under it,
    /// cuts the frame again to the new size (as EchoStream's `send_wait` does).
    async fn send_raw(&mut self) {
        if self.raw_frames == RawFrames::CutAnew {
            self.id.seq += 1;
            self.id.timestamp = unix_micros();
            self.cut();
        }
        let conn = &self.peers.raw;
        for _ in 0..MAX_RECUTS {
            let mut refused = false;
            for d in &self.datagrams {
                match conn.send_datagram_wait(d.clone()).await {
                    Ok(()) => {}
                    Err(quinn::SendDatagramError::TooLarge) => {
                        refused = true;
                        break;
                    }
                    Err(e) => panic!("raw datagram refused: {e}"),
                }
            }
            if !refused {
                return;
            }
            self.max = conn.max_datagram_size().expect("datagrams enabled");
            self.cut();
        }
        panic!("the path MTU kept shrinking");
    }

    /// How many datagrams each frame takes.
    pub fn datagrams_per_frame(&self) -> usize {
        self.datagrams.len()
    }

    /// Ends EchoStream's stream (the next measurement opens its own).
    pub fn finish(&self) {
        self.stream.finish();
    }
}

impl Work for Datagrams<'_> {
    async fn round(&mut self, side: Side, length: Duration) -> Round {
        let received = &self.peers.received;
        let (counter, per_frame) = match side {
            Side::Raw => (&received.raw_datagrams, self.datagrams.len() as f64),
            Side::EchoStream => (&received.media_frames, 1.0),
        };
        let base = counter.load(Ordering::Relaxed);
        let start = Instant::now();
        while start.elapsed() < length {
            match side {
                Side::Raw => self.send_raw().await,
                Side::EchoStream => self
                    .stream
                    .send_wait(self.frame.clone())
                    .await
                    .expect("datagram frame"),
            }
        }
        let elapsed = start.elapsed();
        tokio::time::sleep(SETTLE).await;
        let got = counter.load(Ordering::Relaxed) - base;
        Round {
            units: got as f64 / per_frame,
            elapsed,
        }
    }
}

/// Microseconds since the Unix epoch, a frame's timestamp.
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
