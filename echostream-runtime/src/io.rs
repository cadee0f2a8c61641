//! Frames on QUIC streams: reading them with the [`Decoder`] and mapping QUIC stream errors to
//! what the rest of the runtime deals in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use quinn::{ReadError, RecvStream, VarInt, WriteError};

use crate::codec::{CodecError, Decoder};
use crate::proto::v1::Frame;
use crate::status::{Code, Status};

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadFrameError {
    /// The bytes broke the framing or did not decode: a protocol error of the peer.
    Codec(CodecError),
    /// The stream was reset by the peer (with this code) or the connection was lost.
    Read(ReadError),
    /// The session's budget of bytes in incomplete frames is spent: the peer sends more, and
    /// more slowly, than this side will hold for it.
    OverBudget {
        /// The session's limit, in bytes.
        limit: usize,
    },
}

/// A session's budget of bytes held in incomplete frames (requests being received, frames of
/// named streams), shared by the readers that draw on it: what bounds the memory a peer can pin
/// by starting many large frames and never finishing them.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Moves a reader's charge from `from` to `to` bytes; `false` (and nothing charged) if the
    /// budget cannot take the growth.
    fn recharge(&self, from: usize, to: usize) -> bool {
        if to <= from {
            self.used.fetch_sub(from - to, Relaxed);
            return true;
        }
        let growth = to - from;
        let before = self.used.fetch_add(growth, Relaxed);
        if before + growth > self.limit {
            self.used.fetch_sub(growth, Relaxed);
            return false;
        }
        true
    }
}

/// A reader's share of its session's [`Budget`].
struct Charge {
    budget: Arc<Budget>,
    held: usize,
}

impl From<CodecError> for ReadFrameError {
    fn from(e: CodecError) -> Self {
        ReadFrameError::Codec(e)
    }
}

impl From<ReadError> for ReadFrameError {
    fn from(e: ReadError) -> Self {
        ReadFrameError::Read(e)
    }
}

/// Reads length-prefixed frames from a receive stream.
pub(crate) struct FrameReader {
    recv: RecvStream,
    decoder: Decoder,
    charge: Option<Charge>,
}

impl FrameReader {
    pub(crate) fn new(recv: RecvStream, max_frame_size: usize) -> FrameReader {
        FrameReader {
            recv,
            decoder: Decoder::new(max_frame_size),
            charge: None,
        }
    }

    /// Draws the bytes of incomplete frames this reader holds from `budget`: past it, reads
    /// fail [`ReadFrameError::OverBudget`].
    pub(crate) fn with_budget(mut self, budget: Arc<Budget>) -> FrameReader {
        self.charge = Some(Charge { budget, held: 0 });
        self
    }

    /// Feeds a chunk to the decoder and brings the budget's charge up to date.
    fn feed(&mut self, chunk: bytes::Bytes) -> Result<(), ReadFrameError> {
        self.decoder.feed(chunk);
        self.account()
    }

    /// Charges the budget for what the decoder holds now.
    fn account(&mut self) -> Result<(), ReadFrameError> {
        if let Some(charge) = &mut self.charge {
            let now = self.decoder.buffered();
            if !charge.budget.recharge(charge.held, now) {
                return Err(ReadFrameError::OverBudget {
                    limit: charge.budget.limit,
                });
            }
            charge.held = now;
        }
        Ok(())
    }

    /// The next complete frame in the decoder, its bytes released from the budget.
    fn decoded(&mut self) -> Result<Option<Frame>, ReadFrameError> {
        let frame = self.decoder.next_frame()?;
        if frame.is_some() {
            self.account()?;
        }
        Ok(frame)
    }

    /// Reads the stream-type byte that opens a unidirectional stream; `None` if the stream ended
    /// before it.
    pub(crate) async fn read_stream_type(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            match self.recv.read_chunk(usize::MAX, true).await? {
                None => return Ok(None),
                Some(chunk) if chunk.bytes.is_empty() => continue,
                Some(chunk) => {
                    let kind = chunk.bytes[0];
                    self.decoder.feed(chunk.bytes.slice(1..));
                    return Ok(Some(kind));
                }
            }
        }
    }

    /// The next frame; `Ok(None)` when the stream ended cleanly between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadFrameError> {
        loop {
            if let Some(frame) = self.decoded()? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(usize::MAX, true).await? {
                Some(chunk) => self.feed(chunk.bytes)?,
                None if self.decoder.has_partial() => return Err(CodecError::Truncated.into()),
                None => return Ok(None),
            }
        }
    }

    /// Reads the one frame a side of an RPC stream carries, then the end of the stream (which
    /// normally arrives with it). Anything after the frame is a protocol error.
    pub(crate) async fn single(&mut self) -> Result<Frame, ReadFrameError> {
        let mut frame = None;
        loop {
            if frame.is_none() {
                frame = self.decoded()?;
            }
            match self.recv.read_chunk(usize::MAX, true).await? {
                Some(chunk) if frame.is_some() && !chunk.bytes.is_empty() => {
                    return Err(CodecError::Unexpected("a second frame on an RPC stream").into());
                }
                Some(chunk) => self.feed(chunk.bytes)?,
                None => {
                    if frame.is_none() {
                        frame = self.decoded()?;
                    }
                    return match frame {
                        Some(frame) if !self.decoder.has_partial() => Ok(frame),
                        Some(_) => {
                            Err(CodecError::Unexpected("a second frame on an RPC stream").into())
                        }
                        None => Err(CodecError::Truncated.into()),
                    };
                }
            }
        }
    }

    /// Asks the peer to stop sending, with a status code as the reason.
    pub(crate) fn stop(&mut self, code: Code) {
        // Fails only if the stream is already finished or stopped: nothing left to stop.
        let _ = self.recv.stop(VarInt::from_u32(code.as_u32()));
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if let Some(charge) = &self.charge {
            charge.budget.recharge(charge.held, 0);
        }
    }
}

/// The status of a call whose stream the peer reset or stopped with `code`.
pub(crate) fn status_from_stream_code(code: VarInt, what: &str) -> Status {
    let number = code.into_inner();
    match u32::try_from(number).ok().and_then(Code::from_u32) {
        Some(code) if code != Code::Ok => Status::new(code, format!("{what} by the peer")),
        _ => Status::cancelled(format!("{what} by the peer (code {number})")),
    }
}

/// The status of a call that failed while writing.
pub(crate) fn status_from_write(error: WriteError, lost: impl FnOnce() -> String) -> Status {
    match error {
        WriteError::Stopped(code) => status_from_stream_code(code, "call refused"),
        WriteError::ConnectionLost(_) => Status::unavailable(lost()),
        WriteError::ClosedStream => Status::internal("the call's stream closed unexpectedly"),
        WriteError::ZeroRttRejected => Status::unavailable("0-RTT data rejected by the peer"),
    }
}
