//! The datagram wire format of unreliable streams: a compact header, a fragmenter that splits a
//! frame to fit the connection's current datagram size, and a reassembler with bounded memory.
//!
//! Every QUIC datagram of an unreliable stream starts with this header (byte by byte in
//! `docs/protocol.md`, section 9); all integers are QUIC variable-length integers (RFC 9000 §16):
//!
//! ```text
//! byte 0      version (high nibble, = 1) | flags (low nibble; bit 0 = FRAGMENTED, others 0)
//! varint      stream id
//! varint      frame seq               (per stream, +1 per frame, from 0)
//! varint      timestamp               (sender's wall clock, µs since the UNIX epoch)
//! if FRAGMENTED:
//!   varint    frame length            (bytes of the whole frame payload)
//!   varint    fragment index          (0-based, < count)
//!   varint    fragment count          (1..=MAX_FRAGMENTS)
//! ...         payload: the whole frame, or fragment `index` of it
//! ```
//!
//! A fragmented frame of `len` bytes in `count` fragments is cut into balanced pieces: piece `i`
//! has `len / count` bytes plus one if `i < len % count`, and starts at
//! `i * (len / count) + min(i, len % count)`. The receiver therefore knows exactly where each
//! fragment goes and how long it must be, so any fragment that disagrees is rejected and a
//! frame is never delivered corrupt or mixed with another.
//!
//! Nothing here touches a socket or a clock: times are passed in, so the session drives it from
//! its tasks and tests drive it step by step.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use rustc_hash::{FxHashMap, FxHashSet};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The version this module writes and the only one it reads (high nibble of byte 0).
pub const VERSION: u8 = 1;
/// Flag bit: the datagram carries one fragment of a larger frame.
pub const FLAG_FRAGMENTED: u8 = 0x01;
/// The largest value a QUIC varint holds, and so the largest stream id, seq or timestamp.
pub const MAX_VARINT: u64 = (1 << 62) - 1;
/// The most fragments one frame may be cut into: the largest count that fits a two-byte varint.
pub const MAX_FRAGMENTS: usize = (1 << 14) - 1;

/// Who a datagram frame belongs to and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameId {
    /// The stream the frame belongs to.
    pub stream_id: u64,
    /// The frame's sequence number within its stream.
    pub seq: u64,
    /// The sender's wall-clock time of the frame, in microseconds since the UNIX epoch.
    pub timestamp: u64,
}

/// Where a fragment sits in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// The length of the whole frame payload, in bytes.
    pub frame_len: usize,
    /// This fragment's 0-based index.
    pub index: usize,
    /// How many fragments the frame was cut into.
    pub count: usize,
}

impl FragmentInfo {
    /// The byte range of fragment `index` within the frame (balanced split; see module docs).
    pub fn range(&self) -> std::ops::Range<usize> {
        fragment_range(self.frame_len, self.count, self.index)
    }
}

/// A decoded datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    /// The frame this datagram carries (all of it, or a fragment of it).
    pub frame: FrameId,
    /// Present when the datagram carries one fragment of a larger frame.
    pub fragment: Option<FragmentInfo>,
}

/// Why received bytes are not a valid datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram ended inside the header.
    #[error("datagram truncated inside its header")]
    Truncated,
    /// The version nibble is not [`VERSION`].
    #[error("unsupported datagram version {0} (this peer speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// Reserved flag bits are set.
    #[error("unknown datagram flags {0:#06b}")]
    UnknownFlags(u8),
    /// The fragment count is zero or above [`MAX_FRAGMENTS`].
    #[error("fragment count {0} outside 1..={MAX_FRAGMENTS}")]
    BadFragmentCount(u64),
    /// The fragment index is not below the count.
    #[error("fragment index {index} not below fragment count {count}")]
    BadFragmentIndex {
        /// The index in the header.
        index: u64,
        /// The count in the header.
        count: u64,
    },
    /// The frame is shorter than its fragment count (a fragment would be empty), or too long
    /// for this machine's address space.
    #[error("frame length {len} impossible with {count} fragments")]
    BadFrameLength {
        /// The frame length in the header.
        len: u64,
        /// The fragment count in the header.
        count: u64,
    },
    /// The fragment's payload is not exactly as long as its index, count and frame length say.
    #[error("fragment carries {actual} bytes where {expected} were expected")]
    FragmentLength {
        /// The length the header implies.
        expected: usize,
        /// The length received.
        actual: usize,
    },
}

/// Why a frame cannot be sent as datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The frame is larger than the stream allows.
    #[error("frame of {len} bytes exceeds the stream's max_frame_bytes of {max}")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The stream's limit.
        max: usize,
    },
    /// Even the smallest fragment would not fit in a datagram of this size.
    #[error(
        "datagrams of {max_datagram_size} bytes cannot carry a {header_len}-byte header and data"
    )]
    DatagramTooSmall {
        /// The datagram size that was given.
        max_datagram_size: usize,
        /// The header length the frame needs.
        header_len: usize,
    },
    /// The frame would need more fragments than the header allows at this datagram size.
    #[error(
        "frame needs {needed} fragments at this datagram size; at most {MAX_FRAGMENTS} allowed"
    )]
    TooManyFragments {
        /// How many fragments it would take.
        needed: usize,
    },
    /// A stream id, seq or timestamp above [`MAX_VARINT`].
    #[error("{field} {value} exceeds the varint maximum {MAX_VARINT}")]
    ValueTooLarge {
        /// Which header field.
        field: &'static str,
        /// The value given.
        value: u64,
    },
}

/// Why the reassembler refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The datagram is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The frame is larger than the stream's or the reassembler's limit.
    #[error("frame of {len} bytes on stream {stream_id} exceeds the limit of {max}")]
    FrameTooLarge {
        /// The stream the frame belongs to.
        stream_id: u64,
        /// The frame length announced.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
}

/// The byte length of `v` as a QUIC varint.
pub fn varint_len(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// The longest header: the first byte and six varints of at most 8 bytes.
const MAX_HEADER_LEN: usize = 1 + 6 * 8;

/// Writes `v` (at most [`MAX_VARINT`]) as a QUIC varint at the start of `out`, which has room
/// for it; returns its length.
fn write_varint(out: &mut [u8], v: u64) -> usize {
    debug_assert!(v <= MAX_VARINT);
    let len = varint_len(v);
    let tag: u64 = match len {
        1 => 0,
        2 => 0x4000,
        4 => 0x8000_0000,
        _ => 0xc000_0000_0000_0000,
    };
    out[..len].copy_from_slice(&(tag | v).to_be_bytes()[8 - len..]);
    len
}

/// Reads a QUIC varint from the front of `buf`, advancing it. With 8 bytes or more left (every
/// header field but the last of a bare header), one big-endian load and a shift read it, with
/// no branch on its length.
#[inline]
fn get_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    if let Some((word, _)) = buf.split_first_chunk::<8>() {
        let raw = u64::from_be_bytes(*word);
        let len = 1usize << (raw >> 62);
        *buf = &buf[len..];
        return Ok((raw & MAX_VARINT) >> (64 - 8 * len));
    }
    get_varint_short(buf)
}

/// [`get_varint`] near the end of `buf`, a byte at a time.
fn get_varint_short(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len).ok_or(DecodeError::Truncated)?;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |v, b| (v << 8) | u64::from(*b));
    *buf = &buf[len..];
    Ok(value)
}

fn fragment_range(frame_len: usize, count: usize, index: usize) -> std::ops::Range<usize> {
    let base = frame_len / count;
    let rem = frame_len % count;
    let start = index * base + index.min(rem);
    let len = base + usize::from(index < rem);
    start..start + len
}

impl DatagramHeader {
    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let f = &self.frame;
        let mut len = 1 + varint_len(f.stream_id) + varint_len(f.seq) + varint_len(f.timestamp);
        if let Some(frag) = &self.fragment {
            len += varint_len(frag.frame_len as u64)
                + varint_len(frag.index as u64)
                + varint_len(frag.count as u64);
        }
        len
    }

    /// Appends the header to `buf`. The caller has validated the values (the fragmenter does).
    /// Written on the stack first and appended at once: one copy per datagram, not one per
    /// field.
    fn encode(&self, buf: &mut impl BufMut) {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let flags = if self.fragment.is_some() {
            FLAG_FRAGMENTED
        } else {
            0
        };
        bytes[0] = (VERSION << 4) | flags;
        let mut len = 1;
        let f = &self.frame;
        for v in [f.stream_id, f.seq, f.timestamp] {
            len += write_varint(&mut bytes[len..], v);
        }
        if let Some(frag) = &self.fragment {
            for v in [frag.frame_len, frag.index, frag.count] {
                len += write_varint(&mut bytes[len..], v as u64);
            }
        }
        buf.put_slice(&bytes[..len]);
    }

    /// Decodes a datagram, returning the header and the offset where its payload starts. The
    /// payload length of a fragment is checked against the header. Never panics.
    pub fn decode(datagram: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut buf = datagram;
        let first = *buf.first().ok_or(DecodeError::Truncated)?;
        buf = &buf[1..];
        let version = first >> 4;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let flags = first & 0x0f;
        if flags & !FLAG_FRAGMENTED != 0 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        let frame = FrameId {
            stream_id: get_varint(&mut buf)?,
            seq: get_varint(&mut buf)?,
            timestamp: get_varint(&mut buf)?,
        };
        let fragment = if flags & FLAG_FRAGMENTED != 0 {
            let frame_len = get_varint(&mut buf)?;
            let index = get_varint(&mut buf)?;
            let count = get_varint(&mut buf)?;
            if count == 0 || count > MAX_FRAGMENTS as u64 {
                return Err(DecodeError::BadFragmentCount(count));
            }
            if index >= count {
                return Err(DecodeError::BadFragmentIndex { index, count });
            }
            let len = usize::try_from(frame_len)
                .ok()
                .filter(|&l| l as u64 >= count)
                .ok_or(DecodeError::BadFrameLength {
                    len: frame_len,
                    count,
                })?;
            let info = FragmentInfo {
                frame_len: len,
                index: index as usize,
                count: count as usize,
            };
            let expected = info.range().len();
            if buf.len() != expected {
                return Err(DecodeError::FragmentLength {
                    expected,
                    actual: buf.len(),
                });
            }
            Some(info)
        } else {
            None
        };
        Ok((Self { frame, fragment }, datagram.len() - buf.len()))
    }
}

/// How a frame of a given length is cut into datagrams, computed without touching its bytes:
/// what a sender needs to decide (pace, drop) before paying for the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentPlan {
    /// How many datagrams the frame takes (1: sent whole, without fragment fields).
    pub count: usize,
    /// The total bytes of all datagrams, headers included.
    pub wire_len: usize,
}

/// Plans how a frame of `len` bytes is cut into datagrams of at most `max_datagram_size`
/// bytes. Errors as [`fragment`].
pub fn plan(
    frame: FrameId,
    len: usize,
    max_datagram_size: usize,
    max_frame_bytes: usize,
) -> Result<FragmentPlan, FragmentError> {
    for (field, value) in [
        ("stream id", frame.stream_id),
        ("seq", frame.seq),
        ("timestamp", frame.timestamp),
    ] {
        if value > MAX_VARINT {
            return Err(FragmentError::ValueTooLarge { field, value });
        }
    }
    if len > max_frame_bytes {
        return Err(FragmentError::FrameTooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let whole = DatagramHeader {
        frame,
        fragment: None,
    };
    let whole_header = whole.encoded_len();
    if whole_header + len <= max_datagram_size {
        return Ok(FragmentPlan {
            count: 1,
            wire_len: whole_header + len,
        });
    }
    // The fragment header grows with the varints of the frame length and the count; find the
    // smallest count whose worst-case header still leaves room (at most a few rounds, since
    // the header only grows when the count crosses a varint boundary).
    let mut count = 2usize;
    loop {
        let header = whole_header
            + varint_len(len as u64)
            + varint_len((count - 1) as u64)
            + varint_len(count as u64);
        let room = max_datagram_size.saturating_sub(header);
        if room == 0 {
            return Err(FragmentError::DatagramTooSmall {
                max_datagram_size,
                header_len: header,
            });
        }
        let needed = len.div_ceil(room);
        if needed > MAX_FRAGMENTS {
            return Err(FragmentError::TooManyFragments { needed });
        }
        if needed <= count {
            // Exact size: every header but the index is the same length; indices below 64
            // take one byte, the rest two (MAX_FRAGMENTS keeps them within two).
            let index_bytes = count.min(64) + 2 * count.saturating_sub(64);
            let wire_len = count * (header - varint_len((count - 1) as u64)) + index_bytes + len;
            return Ok(FragmentPlan { count, wire_len });
        }
        count = needed;
    }
}

/// Cuts `payload` into datagrams of at most `max_datagram_size` bytes (pass quinn's
/// `Connection::max_datagram_size()` of the moment: it changes as the path MTU is discovered).
///
/// A frame that fits travels whole, without fragment fields. `max_frame_bytes` is the stream's
/// limit: a larger frame is refused, as is one that would need more than [`MAX_FRAGMENTS`]
/// fragments at this size. The returned iterator writes every datagram into one buffer
/// allocated here, so sending a frame costs one allocation and one copy of the payload.
pub fn fragment(
    frame: FrameId,
    payload: &[u8],
    max_datagram_size: usize,
    max_frame_bytes: usize,
) -> Result<Fragments<'_>, FragmentError> {
    // An empty arena: one buffer of exactly the frame's wire size is allocated.
    fragment_in(
        frame,
        payload,
        max_datagram_size,
        max_frame_bytes,
        BytesMut::new(),
        0,
    )
}

/// [`fragment`], writing the datagrams into `arena`'s spare capacity (allocating a new block
/// of `block` bytes, or the frame's size if larger, when it has too little): a sender of many
/// small frames then pays one allocation per block instead of one per frame. Take the arena
/// back with [`Fragments::into_arena`].
pub fn fragment_in(
    frame: FrameId,
    payload: &[u8],
    max_datagram_size: usize,
    max_frame_bytes: usize,
    mut arena: BytesMut,
    block: usize,
) -> Result<Fragments<'_>, FragmentError> {
    let plan = plan(frame, payload.len(), max_datagram_size, max_frame_bytes)?;
    arena.clear();
    if arena.capacity() < plan.wire_len {
        arena = BytesMut::with_capacity(plan.wire_len.max(block));
    }
    Ok(Fragments {
        frame,
        payload,
        count: plan.count,
        wire_len: plan.wire_len,
        next: 0,
        buf: arena,
    })
}

/// The datagrams of one frame, produced by [`fragment`]. Each item is ready for
/// `Connection::send_datagram`.
pub struct Fragments<'a> {
    frame: FrameId,
    payload: &'a [u8],
    count: usize,
    wire_len: usize,
    next: usize,
    buf: BytesMut,
}

impl std::fmt::Debug for Fragments<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragments")
            .field("frame", &self.frame)
            .field("len", &self.payload.len())
            .field("count", &self.count)
            .field("next", &self.next)
            .finish()
    }
}

impl Fragments<'_> {
    /// How many datagrams the frame takes.
    pub fn fragment_count(&self) -> usize {
        self.count
    }

    /// The total bytes of all datagrams, headers included: what a pacer should admit.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// The buffer the datagrams were written into, with its spare capacity, for the next frame
    /// (see [`fragment_in`]).
    pub fn into_arena(self) -> BytesMut {
        self.buf
    }
}

impl Iterator for Fragments<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.next >= self.count {
            return None;
        }
        let (header, chunk) = if self.count == 1 {
            (
                DatagramHeader {
                    frame: self.frame,
                    fragment: None,
                },
                self.payload,
            )
        } else {
            let info = FragmentInfo {
                frame_len: self.payload.len(),
                index: self.next,
                count: self.count,
            };
            (
                DatagramHeader {
                    frame: self.frame,
                    fragment: Some(info),
                },
                &self.payload[info.range()],
            )
        };
        self.next += 1;
        header.encode(&mut self.buf);
        self.buf.extend_from_slice(chunk);
        Some(self.buf.split().freeze())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

/// A complete frame received as datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramFrame {
    /// Stream, seq and sender timestamp.
    pub id: FrameId,
    /// The frame payload (a slice of the datagram when it came whole: no copy).
    pub payload: Bytes,
}

/// Settings of a [`Reassembler`].
#[derive(Debug, Clone)]
pub struct ReassemblerConfig {
    /// The most frames held partially reassembled at once; the oldest is dropped beyond it.
    pub max_partial_frames: usize,
    /// The most bytes held in partial frame buffers at once; the oldest are dropped beyond it.
    pub max_buffered_bytes: usize,
    /// How long a partial frame waits for its missing fragments before it is dropped.
    pub timeout: Duration,
    /// The largest frame accepted on streams without their own limit.
    pub max_frame_bytes: usize,
    /// How many recently finished frames are remembered, so that a straggling or duplicated
    /// fragment of one does not start a new partial frame.
    pub finished_memory: usize,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        Self {
            max_partial_frames: 64,
            max_buffered_bytes: 8 << 20,
            timeout: Duration::from_millis(500),
            max_frame_bytes: 1 << 20,
            finished_memory: 256,
        }
    }
}

/// Counters of a [`Reassembler`], all cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Datagrams accepted (whole frames and fragments).
    pub datagrams: u64,
    /// Frames delivered (whole or reassembled).
    pub frames: u64,
    /// Frames delivered after reassembly from several fragments.
    pub reassembled: u64,
    /// Fragments received twice for a frame still being reassembled (ignored).
    pub duplicate_fragments: u64,
    /// Fragments of frames already delivered or dropped (ignored).
    pub stale_fragments: u64,
    /// Frames dropped because a fragment did not arrive within the timeout.
    pub timed_out: u64,
    /// Frames dropped to make room under the partial-frame or byte limits.
    pub evicted: u64,
    /// Partial frames dropped because a fragment disagreed with the others (length, count or
    /// timestamp).
    pub inconsistent: u64,
    /// Datagrams refused as malformed.
    pub malformed: u64,
    /// Datagrams refused because their frame exceeds the size limit.
    pub oversized: u64,
}

type Key = (u64, u64);

/// The stream and seq of a frame, as reported by [`Reassembler::expire_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey {
    /// The stream the frame belongs to.
    pub stream_id: u64,
    /// The frame's sequence number.
    pub seq: u64,
}

#[derive(Debug)]
struct Partial {
    generation: u64,
    timestamp: u64,
    frame_len: usize,
    count: usize,
    received: usize,
    have: Box<[u64]>,
    /// The frame so far: filled in order while fragments come in order (the usual case, no
    /// zeroing), the whole length (zeroed) once one comes out of order.
    buf: BytesMut,
}

/// Puts fragmented frames back together, with bounded memory and time.
///
/// One reassembler serves a whole connection (the header names the stream). Memory is bounded
/// by [`ReassemblerConfig::max_partial_frames`] and [`ReassemblerConfig::max_buffered_bytes`];
/// a frame missing a fragment is dropped after [`ReassemblerConfig::timeout`]. Each frame's
/// buffer is allocated once at its first fragment; fragments are copied into place, checked
/// against the frame's length, count and timestamp, and deduplicated with a bitmap, so a
/// delivered frame is exactly what was sent. Every drop is counted in [`ReassemblyStats`].
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblerConfig,
    // Keys come from the peer, but these maps are small and bounded (partial frames, finished
    // frames, streams): a fast hash cannot be made to degrade them much.
    partial: FxHashMap<Key, Partial>,
    /// Partial frames in creation order, with their deadlines; entries whose frame is gone or
    /// was replaced (generation mismatch) are skipped lazily.
    deadlines: VecDeque<(Key, u64, Instant)>,
    finished: FxHashSet<Key>,
    finished_order: VecDeque<Key>,
    stream_limits: FxHashMap<u64, usize>,
    buffered_bytes: usize,
    generation: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(config: ReassemblerConfig) -> Self {
        Self {
            config,
            partial: FxHashMap::default(),
            deadlines: VecDeque::new(),
            finished: FxHashSet::default(),
            finished_order: VecDeque::new(),
            stream_limits: FxHashMap::default(),
            buffered_bytes: 0,
            generation: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Sets the largest frame accepted on `stream_id` (the stream's `max_frame_bytes`),
    /// overriding [`ReassemblerConfig::max_frame_bytes`] for it.
    pub fn set_stream_limit(&mut self, stream_id: u64, max_frame_bytes: usize) {
        self.stream_limits.insert(stream_id, max_frame_bytes);
    }

    /// Forgets the limit of `stream_id` (the stream ended); its frames meet
    /// [`ReassemblerConfig::max_frame_bytes`] again.
    pub fn clear_stream_limit(&mut self, stream_id: u64) {
        self.stream_limits.remove(&stream_id);
    }

    /// The counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// How many frames are partially reassembled now.
    pub fn partial_frames(&self) -> usize {
        self.partial.len()
    }

    /// How many frames of `stream_id` are partially reassembled now.
    pub fn partial_frames_of(&self, stream_id: u64) -> usize {
        self.partial.keys().filter(|(s, _)| *s == stream_id).count()
    }

    /// How many bytes partial frames hold now.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// When the oldest partial frame times out, if any: a task can sleep until then and call
    /// [`Reassembler::expire`].
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale_deadlines();
        self.deadlines.front().map(|&(_, _, at)| at)
    }

    /// Drops the partial frames whose timeout passed at `now`, counting them; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.expire_with(now, |_| {})
    }

    /// [`Reassembler::expire`], telling `dropped` the stream and seq of each frame dropped.
    pub fn expire_with(&mut self, now: Instant, mut dropped_frame: impl FnMut(FrameKey)) -> usize {
        let mut dropped = 0;
        while let Some(&(key, generation, at)) = self.deadlines.front() {
            if self.is_stale(key, generation) {
                self.deadlines.pop_front();
                continue;
            }
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            self.remove_partial(key);
            self.stats.timed_out += 1;
            dropped += 1;
            dropped_frame(FrameKey {
                stream_id: key.0,
                seq: key.1,
            });
            tracing::debug!(
                stream_id = key.0,
                seq = key.1,
                "datagram frame timed out incomplete"
            );
        }
        dropped
    }

    /// Takes one received datagram at local time `now`. Returns the frame it completes, if
    /// any; `Ok(None)` when the frame still misses fragments or the datagram was a harmless
    /// duplicate; an error when the datagram is malformed or its frame too large (the datagram
    /// is dropped and counted; the connection may go on).
    pub fn push(
        &mut self,
        datagram: Bytes,
        now: Instant,
    ) -> Result<Option<DatagramFrame>, ReassemblyError> {
        self.push_with(datagram, now, |_| {})
    }

    /// [`Reassembler::push`], telling `dropped` the stream and seq of each partial frame it
    /// drops on the way (timed out, evicted for room, or replaced by an inconsistent fragment),
    /// so that the drops can be attributed to their streams.
    pub fn push_with(
        &mut self,
        datagram: Bytes,
        now: Instant,
        mut dropped: impl FnMut(FrameKey),
    ) -> Result<Option<DatagramFrame>, ReassemblyError> {
        if !self.deadlines.is_empty() {
            self.expire_with(now, &mut dropped);
        }
        let (header, offset) = DatagramHeader::decode(&datagram).inspect_err(|_| {
            self.stats.malformed += 1;
        })?;
        let id = header.frame;
        let limit = self
            .stream_limits
            .get(&id.stream_id)
            .copied()
            .unwrap_or(self.config.max_frame_bytes);
        // A frame in one datagram (the usual case) is a slice of it; the path of fragments,
        // out of line, keeps this one short.
        match header.fragment {
            None => self.push_whole(id, datagram, offset, limit),
            Some(info) => self.push_fragment(id, info, &datagram[offset..], limit, now, dropped),
        }
    }

    /// [`Reassembler::push_with`] for a datagram carrying a whole frame, its payload from
    /// `offset`.
    fn push_whole(
        &mut self,
        id: FrameId,
        mut datagram: Bytes,
        offset: usize,
        limit: usize,
    ) -> Result<Option<DatagramFrame>, ReassemblyError> {
        let len = datagram.len() - offset;
        if len > limit {
            self.stats.oversized += 1;
            return Err(ReassemblyError::FrameTooLarge {
                stream_id: id.stream_id,
                len,
                max: limit,
            });
        }
        self.stats.datagrams += 1;
        self.stats.frames += 1;
        datagram.advance(offset);
        Ok(Some(DatagramFrame {
            id,
            payload: datagram,
        }))
    }

    /// [`Reassembler::push_with`] for a datagram carrying `fragment` of a frame.
    #[inline(never)]
    fn push_fragment(
        &mut self,
        id: FrameId,
        info: FragmentInfo,
        fragment: &[u8],
        limit: usize,
        now: Instant,
        mut dropped: impl FnMut(FrameKey),
    ) -> Result<Option<DatagramFrame>, ReassemblyError> {
        let limit = limit.min(self.config.max_buffered_bytes);
        if info.frame_len > limit {
            self.stats.oversized += 1;
            return Err(ReassemblyError::FrameTooLarge {
                stream_id: id.stream_id,
                len: info.frame_len,
                max: limit,
            });
        }
        self.stats.datagrams += 1;
        let key = (id.stream_id, id.seq);

        if let Some(p) = self.partial.get(&key)
            && (p.timestamp != id.timestamp
                || p.count != info.count
                || p.frame_len != info.frame_len)
        {
            // Never mix two frames: drop what we had and start over with this fragment.
            self.remove_partial(key);
            self.stats.inconsistent += 1;
            dropped(FrameKey {
                stream_id: key.0,
                seq: key.1,
            });
            tracing::debug!(
                stream_id = key.0,
                seq = key.1,
                "inconsistent fragment; partial frame dropped"
            );
        } else if !self.partial.contains_key(&key) && self.finished.contains(&key) {
            self.stats.stale_fragments += 1;
            return Ok(None);
        }

        if !self.partial.contains_key(&key) {
            self.make_room(info.frame_len, &mut dropped);
            self.generation += 1;
            let partial = Partial {
                generation: self.generation,
                timestamp: id.timestamp,
                count: info.count,
                received: 0,
                have: vec![0u64; info.count.div_ceil(64)].into_boxed_slice(),
                frame_len: info.frame_len,
                buf: BytesMut::with_capacity(info.frame_len),
            };
            self.buffered_bytes += info.frame_len;
            self.deadlines
                .push_back((key, self.generation, now + self.config.timeout));
            self.partial.insert(key, partial);
        }
        let Entry::Occupied(mut entry) = self.partial.entry(key) else {
            unreachable!("inserted above");
        };
        let p = entry.get_mut();
        let (word, bit) = (info.index / 64, 1u64 << (info.index % 64));
        if p.have[word] & bit != 0 {
            self.stats.duplicate_fragments += 1;
            return Ok(None);
        }
        p.have[word] |= bit;
        let range = info.range();
        if range.start == p.buf.len() {
            p.buf.extend_from_slice(fragment);
        } else {
            if p.buf.len() < p.frame_len {
                p.buf.resize(p.frame_len, 0);
            }
            p.buf[range].copy_from_slice(fragment);
        }
        p.received += 1;
        if p.received < p.count {
            return Ok(None);
        }
        let p = entry.remove();
        self.buffered_bytes -= p.frame_len;
        self.remember_finished(key);
        self.stats.frames += 1;
        self.stats.reassembled += 1;
        Ok(Some(DatagramFrame {
            id,
            payload: p.buf.freeze(),
        }))
    }

    fn is_stale(&self, key: Key, generation: u64) -> bool {
        self.partial
            .get(&key)
            .is_none_or(|p| p.generation != generation)
    }

    fn skip_stale_deadlines(&mut self) {
        while let Some(&(key, generation, _)) = self.deadlines.front() {
            if self.is_stale(key, generation) {
                self.deadlines.pop_front();
            } else {
                break;
            }
        }
    }

    /// Evicts the oldest partial frames until one of `len` bytes fits under both limits.
    fn make_room(&mut self, len: usize, mut dropped: impl FnMut(FrameKey)) {
        while !self.partial.is_empty()
            && (self.partial.len() >= self.config.max_partial_frames.max(1)
                || self.buffered_bytes + len > self.config.max_buffered_bytes)
        {
            self.skip_stale_deadlines();
            let Some((key, _, _)) = self.deadlines.pop_front() else {
                break;
            };
            self.remove_partial(key);
            self.stats.evicted += 1;
            dropped(FrameKey {
                stream_id: key.0,
                seq: key.1,
            });
            tracing::debug!(
                stream_id = key.0,
                seq = key.1,
                "partial datagram frame evicted"
            );
        }
    }

    fn remove_partial(&mut self, key: Key) {
        if let Some(p) = self.partial.remove(&key) {
            self.buffered_bytes -= p.frame_len;
            self.remember_finished(key);
        }
    }

    fn remember_finished(&mut self, key: Key) {
        if self.config.finished_memory == 0 || !self.finished.insert(key) {
            return;
        }
        self.finished_order.push_back(key);
        if self.finished_order.len() > self.config.finished_memory
            && let Some(old) = self.finished_order.pop_front()
        {
            self.finished.remove(&old);
        }
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: FrameId = FrameId {
        stream_id: 3,
        seq: 77,
        timestamp: 1_735_689_600_000_000,
    };

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    fn frags(id: FrameId, data: &[u8], mtu: usize) -> Vec<Bytes> {
        fragment(id, data, mtu, usize::MAX).unwrap().collect()
    }

    #[test]
    fn varints_round_trip_at_every_boundary() {
        for v in [
            0,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            MAX_VARINT,
        ] {
            let mut bytes = [0u8; 8];
            let len = write_varint(&mut bytes, v);
            assert_eq!(len, varint_len(v));
            let buf = &bytes[..len];
            let mut slice = buf;
            assert_eq!(get_varint(&mut slice), Ok(v));
            assert!(slice.is_empty());
            let mut short = &buf[..buf.len() - 1];
            if !short.is_empty() {
                assert_eq!(get_varint(&mut short), Err(DecodeError::Truncated));
            }
        }
    }

    #[test]
    fn varints_read_the_same_with_and_without_bytes_after_them() {
        // With 8 bytes or more left the one-load path reads; near the end, the byte-wise one.
        for v in [
            0,
            1,
            63,
            64,
            300,
            16_383,
            16_384,
            1_000_000,
            (1 << 30) - 1,
            1 << 30,
            1_763_000_000_000_000,
            MAX_VARINT,
        ] {
            let mut bytes = [0u8; 8];
            let len = write_varint(&mut bytes, v);
            for trailing in 0..=9 {
                let mut buf = bytes[..len].to_vec();
                buf.extend((0..trailing).map(|i| 0xa5 ^ i as u8));
                let mut slice = &buf[..];
                assert_eq!(get_varint(&mut slice), Ok(v), "{v} with {trailing} after");
                assert_eq!(slice, &buf[len..], "{v} with {trailing} after");
            }
        }
    }

    #[test]
    fn small_frame_travels_whole_with_a_compact_header() {
        let id = FrameId {
            stream_id: 1,
            seq: 5,
            timestamp: 40,
        };
        let d = frags(id, b"hello", 1200);
        assert_eq!(d.len(), 1);
        assert_eq!(&d[0][..], &[0x10, 1, 5, 40, b'h', b'e', b'l', b'l', b'o']);
        let mut r = Reassembler::default();
        let f = r.push(d[0].clone(), Instant::now()).unwrap().unwrap();
        assert_eq!(f.id, id);
        assert_eq!(&f.payload[..], b"hello");
        assert_eq!(r.stats().frames, 1);
        assert_eq!(r.stats().reassembled, 0);
    }

    #[test]
    fn empty_frame_is_a_bare_header() {
        let d = frags(ID, b"", 100);
        assert_eq!(d.len(), 1);
        let f = Reassembler::default()
            .push(d[0].clone(), Instant::now())
            .unwrap()
            .unwrap();
        assert!(f.payload.is_empty());
    }

    #[test]
    fn fragments_written_into_an_arena_share_its_allocation() {
        let data = payload(1_000);
        let mut arena = BytesMut::new();
        let mut sent = Vec::new();
        for seq in 0..10 {
            let id = FrameId { seq, ..ID };
            let mut frags = fragment_in(id, &data, 1_200, 1 << 20, arena, 64 * 1024).unwrap();
            sent.extend(&mut frags);
            arena = frags.into_arena();
        }
        // One block of 64 KiB holds all ten, each a separate, intact datagram.
        assert!(arena.capacity() >= 64 * 1024 - 10 * 1_020);
        let mut r = Reassembler::default();
        for (seq, d) in sent.into_iter().enumerate() {
            let frame = r.push(d, Instant::now()).unwrap().unwrap();
            assert_eq!((frame.id.seq, &frame.payload[..]), (seq as u64, &data[..]));
        }
        // A frame larger than what is left gets its own block.
        let big = payload(100_000);
        let frags = fragment_in(ID, &big, 1_200, 1 << 20, BytesMut::new(), 4_096).unwrap();
        assert_eq!(
            frags
                .collect::<Vec<_>>()
                .iter()
                .map(Bytes::len)
                .sum::<usize>(),
            plan(ID, 100_000, 1_200, 1 << 20).unwrap().wire_len
        );
    }

    #[test]
    fn the_plan_is_what_fragmenting_produces() {
        for len in [0, 1, 500, 1_186, 1_187, 5_000, 100_000, 1 << 20] {
            for mtu in [1_200, 1_452, 300] {
                let data = payload(len);
                let plan = plan(ID, len, mtu, 1 << 20).unwrap();
                let d: Vec<Bytes> = fragment(ID, &data, mtu, 1 << 20).unwrap().collect();
                assert_eq!(plan.count, d.len(), "{len} at {mtu}");
                assert_eq!(plan.wire_len, d.iter().map(Bytes::len).sum::<usize>());
            }
        }
        assert_eq!(
            plan(ID, 11, 1_200, 10),
            Err(FragmentError::FrameTooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn large_frame_is_split_into_balanced_fragments_that_fit() {
        let data = payload(100_000);
        for mtu in [1200, 1452, 1_000, 64, 30] {
            let it = fragment(ID, &data, mtu, 1 << 20).unwrap();
            let (count, wire) = (it.fragment_count(), it.wire_len());
            let d: Vec<Bytes> = it.collect();
            assert_eq!(d.len(), count);
            assert_eq!(d.iter().map(Bytes::len).sum::<usize>(), wire);
            assert!(d.iter().all(|x| x.len() <= mtu), "mtu {mtu}");
            let sizes: Vec<usize> = d
                .iter()
                .map(|x| DatagramHeader::decode(x).unwrap())
                .map(|(h, _)| h.fragment.unwrap().range().len())
                .collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            // No fewer fragments would do.
            let header = d.iter().map(|x| x.len()).max().unwrap() - sizes.iter().max().unwrap();
            assert!(
                (count - 1) * (mtu - header) < data.len(),
                "mtu {mtu}: wasteful split"
            );
            let mut r = Reassembler::new(ReassemblerConfig {
                max_frame_bytes: 1 << 20,
                ..Default::default()
            });
            let now = Instant::now();
            let mut out = None;
            for x in d {
                assert!(out.is_none());
                out = r.push(x, now).unwrap();
            }
            assert_eq!(out.unwrap().payload, data);
            assert_eq!(r.partial_frames(), 0);
            assert_eq!(r.buffered_bytes(), 0);
        }
    }

    #[test]
    fn fragmenting_refuses_what_cannot_be_sent() {
        let data = payload(5_000);
        assert_eq!(
            fragment(ID, &data, 1200, 4_999).unwrap_err(),
            FragmentError::FrameTooLarge {
                len: 5_000,
                max: 4_999
            }
        );
        assert!(matches!(
            fragment(ID, &data, 15, 1 << 20).unwrap_err(),
            FragmentError::DatagramTooSmall {
                max_datagram_size: 15,
                ..
            }
        ));
        assert!(matches!(
            fragment(ID, &payload(100_000), 24, 1 << 20).unwrap_err(),
            FragmentError::TooManyFragments { needed } if needed > MAX_FRAGMENTS
        ));
        let bad = FrameId {
            seq: MAX_VARINT + 1,
            ..ID
        };
        assert_eq!(
            fragment(bad, b"x", 1200, 10).unwrap_err(),
            FragmentError::ValueTooLarge {
                field: "seq",
                value: MAX_VARINT + 1
            }
        );
        let msg = fragment(ID, &data, 1200, 100).unwrap_err().to_string();
        assert!(
            msg.contains("5000") && msg.contains("max_frame_bytes"),
            "{msg}"
        );
    }

    #[test]
    fn decode_rejects_each_kind_of_bad_header() {
        let good = frags(ID, &payload(3_000), 1200);
        let (h, off) = DatagramHeader::decode(&good[1]).unwrap();
        let info = h.fragment.unwrap();
        assert_eq!((info.index, info.count, info.frame_len), (1, 3, 3_000));

        assert_eq!(DatagramHeader::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(
            DatagramHeader::decode(&good[0][..off - 1]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            DatagramHeader::decode(&[0x20, 0, 0, 0]),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            DatagramHeader::decode(&[0x12, 0, 0, 0]),
            Err(DecodeError::UnknownFlags(2))
        );
        // frame_len 10, index 0, count 0 / index 3 of 3 / count above the maximum.
        assert_eq!(
            DatagramHeader::decode(&[0x11, 0, 0, 0, 10, 0, 0]),
            Err(DecodeError::BadFragmentCount(0))
        );
        assert_eq!(
            DatagramHeader::decode(&[0x11, 0, 0, 0, 10, 3, 3]),
            Err(DecodeError::BadFragmentIndex { index: 3, count: 3 })
        );
        assert_eq!(
            DatagramHeader::decode(&[0x11, 0, 0, 0, 10, 0, 0x80, 0, 0x40, 0]),
            Err(DecodeError::BadFragmentCount(16_384))
        );
        // Two fragments of a 1-byte frame: one would be empty.
        assert_eq!(
            DatagramHeader::decode(&[0x11, 0, 0, 0, 1, 0, 2, 9]),
            Err(DecodeError::BadFrameLength { len: 1, count: 2 })
        );
        // Fragment 0 of a 10-byte frame in 2 must carry exactly 5 bytes.
        assert_eq!(
            DatagramHeader::decode(&[0x11, 0, 0, 0, 10, 0, 2, 1, 2, 3, 4]),
            Err(DecodeError::FragmentLength {
                expected: 5,
                actual: 4
            })
        );
        let mut r = Reassembler::default();
        assert!(matches!(
            r.push(Bytes::from_static(&[0x20]), Instant::now()),
            Err(ReassemblyError::Decode(DecodeError::UnsupportedVersion(2)))
        ));
        assert_eq!(r.stats().malformed, 1);
    }

    #[test]
    fn whole_frames_pass_beside_partial_ones_and_still_expire_them() {
        let mut r = Reassembler::new(ReassemblerConfig {
            timeout: Duration::from_millis(100),
            ..Default::default()
        });
        let t0 = Instant::now();
        let big = frags(ID, &payload(5_000), 1200);
        assert_eq!(r.push(big[0].clone(), t0).unwrap(), None);
        // A whole frame of another stream while the fragmented one is partial: delivered at
        // once, a slice of its datagram (no copy), the partial frame untouched.
        let small_id = FrameId {
            stream_id: 4,
            seq: 1 << 40,
            timestamp: 1_763_000_000_000_000,
        };
        let small = frags(small_id, &payload(900), 1200);
        let mut dropped = Vec::new();
        let frame = r
            .push_with(small[0].clone(), t0, |key| dropped.push(key))
            .unwrap()
            .unwrap();
        assert_eq!(frame.id, small_id);
        assert_eq!(&frame.payload[..], &payload(900)[..]);
        assert_eq!(
            frame.payload.as_ptr(),
            small[0][small[0].len() - 900..].as_ptr()
        );
        assert_eq!((r.partial_frames(), dropped.len()), (1, 0));
        // One past the partial frame's deadline: it is dropped, told and counted, and the
        // whole frame still comes through.
        let later = t0 + Duration::from_millis(100);
        let frame = r
            .push_with(small[0].clone(), later, |key| dropped.push(key))
            .unwrap()
            .unwrap();
        assert_eq!(frame.id, small_id);
        assert_eq!(
            dropped,
            [FrameKey {
                stream_id: ID.stream_id,
                seq: ID.seq
            }]
        );
        let stats = r.stats();
        assert_eq!(
            (
                stats.timed_out,
                stats.frames,
                stats.reassembled,
                stats.datagrams
            ),
            (1, 2, 0, 3)
        );
        assert_eq!((r.partial_frames(), r.buffered_bytes()), (0, 0));
        // A whole frame cut short inside its header is malformed and counted.
        assert_eq!(
            r.push(small[0].slice(..3), later),
            Err(ReassemblyError::Decode(DecodeError::Truncated))
        );
        assert_eq!(r.stats().malformed, 1);
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut r = Reassembler::new(ReassemblerConfig {
            max_frame_bytes: 2_000,
            ..Default::default()
        });
        r.set_stream_limit(9, 500);
        let now = Instant::now();
        let big = frags(ID, &payload(3_000), 1200);
        assert_eq!(
            r.push(big[0].clone(), now),
            Err(ReassemblyError::FrameTooLarge {
                stream_id: 3,
                len: 3_000,
                max: 2_000
            })
        );
        let whole = frags(FrameId { stream_id: 9, ..ID }, &payload(600), 1200);
        assert!(matches!(
            r.push(whole[0].clone(), now),
            Err(ReassemblyError::FrameTooLarge {
                stream_id: 9,
                len: 600,
                max: 500
            })
        ));
        assert_eq!(r.stats().oversized, 2);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn missing_fragment_times_out_and_is_counted() {
        let mut r = Reassembler::new(ReassemblerConfig {
            timeout: Duration::from_millis(100),
            ..Default::default()
        });
        let t0 = Instant::now();
        let d = frags(ID, &payload(5_000), 1200);
        for x in d.iter().skip(1) {
            assert_eq!(r.push(x.clone(), t0).unwrap(), None);
        }
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_millis(100)));
        assert_eq!(r.expire(t0 + Duration::from_millis(99)), 0);
        let mut dropped = Vec::new();
        assert_eq!(
            r.expire_with(t0 + Duration::from_millis(100), |key| dropped.push(key)),
            1
        );
        assert_eq!(
            dropped,
            [FrameKey {
                stream_id: ID.stream_id,
                seq: ID.seq
            }]
        );
        assert_eq!(r.stats().timed_out, 1);
        assert_eq!((r.partial_frames(), r.buffered_bytes()), (0, 0));
        assert_eq!(r.next_deadline(), None);
        // The straggler arrives afterwards: ignored, never a corrupt frame.
        let late = r
            .push(d[0].clone(), t0 + Duration::from_millis(150))
            .unwrap();
        assert_eq!(late, None);
        assert_eq!(r.stats().stale_fragments, 1);
        assert_eq!(r.partial_frames(), 0);
    }

    #[test]
    fn duplicates_are_harmless_before_and_after_completion() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let data = payload(4_000);
        let d = frags(ID, &data, 1200);
        assert_eq!(r.push(d[0].clone(), now).unwrap(), None);
        assert_eq!(r.push(d[0].clone(), now).unwrap(), None);
        assert_eq!(r.stats().duplicate_fragments, 1);
        let mut out = None;
        for x in &d[1..] {
            out = r.push(x.clone(), now).unwrap();
        }
        assert_eq!(out.unwrap().payload, data);
        assert_eq!(r.push(d[2].clone(), now).unwrap(), None);
        assert_eq!(r.stats().stale_fragments, 1);
        assert_eq!(r.partial_frames(), 0);
        assert_eq!(r.stats().frames, 1);
    }

    #[test]
    fn interleaved_frames_of_one_stream_are_never_mixed() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let a = payload(3_000);
        let b: Vec<u8> = payload(3_000).iter().map(|x| !x).collect();
        let da = frags(ID, &a, 1200);
        let db = frags(
            FrameId {
                seq: ID.seq + 1,
                ..ID
            },
            &b,
            1200,
        );
        assert_eq!(r.push(da[0].clone(), now).unwrap(), None);
        assert_eq!(r.push(db[0].clone(), now).unwrap(), None);
        assert_eq!(r.push(db[1].clone(), now).unwrap(), None);
        assert_eq!(r.push(da[1].clone(), now).unwrap(), None);
        let fb = r.push(db[2].clone(), now).unwrap().unwrap();
        assert_eq!((fb.id.seq, &fb.payload[..]), (ID.seq + 1, &b[..]));
        let fa = r.push(da[2].clone(), now).unwrap().unwrap();
        assert_eq!((fa.id.seq, &fa.payload[..]), (ID.seq, &a[..]));
    }

    #[test]
    fn a_disagreeing_fragment_restarts_the_frame_instead_of_mixing() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let old = frags(ID, &payload(3_000), 1200);
        // The sender restarted and reuses seq 77 for a different, longer frame.
        let newer = FrameId {
            timestamp: ID.timestamp + 1,
            ..ID
        };
        let data = payload(3_500);
        let new = frags(newer, &data, 1200);
        assert_eq!(r.push(old[0].clone(), now).unwrap(), None);
        assert_eq!(r.push(old[1].clone(), now).unwrap(), None);
        assert_eq!(r.push(new[2].clone(), now).unwrap(), None);
        assert_eq!(r.stats().inconsistent, 1);
        // The old frame's last fragment disagrees again: restart again, never a mix.
        assert_eq!(r.push(old[2].clone(), now).unwrap(), None);
        assert_eq!(r.stats().inconsistent, 2);
        for x in &new {
            if let Some(f) = r.push(x.clone(), now).unwrap() {
                assert_eq!(f.payload, data);
                assert_eq!(f.id, newer);
            }
        }
        assert_eq!(r.stats().inconsistent, 3);
        assert_eq!(r.stats().frames, 1);
    }

    #[test]
    fn memory_limits_evict_the_oldest_partial_frame() {
        let mut r = Reassembler::new(ReassemblerConfig {
            max_partial_frames: 3,
            max_buffered_bytes: 10_000,
            ..Default::default()
        });
        let now = Instant::now();
        let frames: Vec<Vec<Bytes>> = (0..4)
            .map(|seq| frags(FrameId { seq, ..ID }, &payload(3_000), 1200))
            .collect();
        for f in &frames {
            r.push(f[0].clone(), now).unwrap();
        }
        assert_eq!(r.partial_frames(), 3);
        assert_eq!(r.stats().evicted, 1);
        assert_eq!(r.buffered_bytes(), 9_000);
        // A 4,000-byte frame needs room under the 10,000-byte cap: evicts seq 1 (oldest left).
        let big = frags(FrameId { seq: 10, ..ID }, &payload(4_000), 1200);
        r.push(big[0].clone(), now).unwrap();
        assert_eq!(r.stats().evicted, 2);
        assert_eq!(r.buffered_bytes(), 10_000);
        // Seqs 0 and 1 (evicted) are gone; seq 3 still completes.
        assert_eq!(r.push(frames[0][1].clone(), now).unwrap(), None);
        assert_eq!(r.push(frames[1][1].clone(), now).unwrap(), None);
        assert_eq!(r.stats().stale_fragments, 2);
        assert_eq!(r.push(frames[3][1].clone(), now).unwrap(), None);
        assert!(r.push(frames[3][2].clone(), now).unwrap().is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_order_with_duplicates_reassembles_exactly(
            len in 0usize..20_000,
            mtu in 40usize..1_500,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..200),
            seed in any::<u8>(),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed | 1)).collect();
            let d = frags(ID, &data, mtu);
            // Deliver in a random order, with the random picks acting as duplicates, then every
            // fragment once more to be sure all arrive.
            let mut r = Reassembler::new(ReassemblerConfig { max_frame_bytes: 1 << 20, ..Default::default() });
            let now = Instant::now();
            let mut done = Vec::new();
            for i in order.iter().map(|ix| ix.index(d.len())).chain(0..d.len()) {
                if let Some(f) = r.push(d[i].clone(), now).unwrap() {
                    done.push(f);
                }
            }
            // A frame that fits one datagram has no fragment state to deduplicate with: each
            // copy is delivered (the jitter buffer drops duplicates by seq). A fragmented frame
            // is delivered exactly once.
            if d.len() > 1 {
                prop_assert_eq!(done.len(), 1);
            }
            for f in &done {
                prop_assert_eq!(&f.payload[..], &data[..]);
                prop_assert_eq!(f.id, ID);
            }
            prop_assert_eq!(r.partial_frames(), 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reassembler::default();
            let _ = DatagramHeader::decode(&bytes);
            let _ = r.push(Bytes::from(bytes), Instant::now());
        }

        #[test]
        fn interleaved_frames_with_losses_are_exact_or_absent(
            lens in proptest::collection::vec(1usize..6_000, 1..6),
            picks in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..10), 0..400),
        ) {
            // Several frames of one stream, fragments shuffled together, some lost (about 1 in
            // 10 deliveries is skipped), some duplicated.
            let frames: Vec<(FrameId, Vec<u8>)> = lens
                .iter()
                .enumerate()
                .map(|(seq, &len)| {
                    let data: Vec<u8> = payload(len).iter().map(|b| b ^ seq as u8).collect();
                    (FrameId { seq: seq as u64, ..ID }, data)
                })
                .collect();
            let all: Vec<(usize, Bytes)> = frames
                .iter()
                .enumerate()
                .flat_map(|(i, (id, data))| frags(*id, data, 500).into_iter().map(move |d| (i, d)))
                .collect();
            let mut r = Reassembler::default();
            let now = Instant::now();
            let mut delivered = vec![0usize; frames.len()];
            for (ix, roll) in picks {
                if roll == 0 {
                    continue;
                }
                let (_, d) = &all[ix.index(all.len())];
                if let Some(f) = r.push(d.clone(), now).unwrap() {
                    let i = f.id.seq as usize;
                    prop_assert_eq!(f.id, frames[i].0);
                    prop_assert_eq!(&f.payload[..], &frames[i].1[..]);
                    delivered[i] += 1;
                }
            }
            // Whole frames (one datagram) may be delivered once per copy; fragmented ones once.
            for (i, (id, data)) in frames.iter().enumerate() {
                if fragment(*id, data, 500, usize::MAX).unwrap().fragment_count() > 1 {
                    prop_assert!(delivered[i] <= 1);
                }
            }
            prop_assert_eq!(r.stats().inconsistent, 0);
        }
    }
}
