//! Length-prefixed framing of [`Frame`]s on a QUIC stream, without sockets.
//!
//! Every frame is its protobuf encoding preceded by its length as a protobuf varint (protobuf's
//! "length-delimited" convention). Encoding never copies a large payload: the frame's other fields
//! are written into a small header and the payload [`Bytes`] go out as their own chunk (QUIC's
//! vectored `write_all_chunks`). Decoding slices payloads out of the received buffers, so a frame
//! that arrived in one QUIC chunk is decoded without copying its payload at all.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::proto::v1::{Frame, frame::Payload};

/// The default largest frame, in bytes without its length prefix: 4 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 4 * 1024 * 1024;

/// Payloads at least this large are sent as their own chunk instead of being copied next to the
/// frame header; below it one small copy is cheaper than one more chunk.
const COPY_THRESHOLD: usize = 2048;

/// The longest varint: ten bytes.
const MAX_VARINT_LEN: usize = 10;

/// The least room a decoder makes for the rest of an incomplete frame.
const MIN_RESERVE: usize = 64 * 1024;

/// What can be wrong with bytes received as frames.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix announces a frame over the receiver's limit.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadLength,
    /// The frame's bytes are not a valid `Frame` message.
    #[error("frame does not decode: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The frame decoded but carries no payload.
    #[error("frame has no payload")]
    MissingPayload,
    /// A frame arrived where the protocol allows none.
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes frames into chunks ready for a vectored write, reusing one header buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    scratch: Vec<u8>,
}

impl Encoder {
    /// An encoder with an empty scratch buffer.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends the length-prefixed encoding of `frame` to the pending bytes; a large payload is
    /// pushed to `chunks` as it is, after the header bytes before it. Returns the encoded size
    /// without prefix. Call [`Encoder::flush`] to move the remaining header bytes to `chunks`.
    pub fn encode(&mut self, frame: Frame, chunks: &mut Vec<Bytes>) -> usize {
        match self.encode_to(frame, usize::MAX, &mut ChunkSink::List(chunks)) {
            Ok(size) | Err(FrameTooLarge { size, .. }) => size,
        }
    }

    /// Encodes `frame` into `chunks` if its size is at most `max`; writes nothing otherwise.
    fn encode_to(
        &mut self,
        mut frame: Frame,
        max: usize,
        chunks: &mut ChunkSink<'_>,
    ) -> Result<usize, FrameTooLarge> {
        if frame.metadata.is_empty()
            && let Some(call) = frame
                .payload
                .take_if(|p| matches!(p, Payload::Request(_) | Payload::Response(_)))
        {
            return self.encode_call(call, max, chunks);
        }
        let Some(mut payload) = frame.payload.take() else {
            let len = frame.encoded_len();
            if len > max {
                return Err(FrameTooLarge { size: len, max });
            }
            let mut out = self.extend(encoded_len_varint(len as u64) + len);
            encode_varint(len as u64, &mut out);
            frame.encode_raw(&mut out);
            return Ok(len);
        };
        let data = take_data(&mut payload);
        let data_field = data
            .as_ref()
            .map_or(0, |(tag, data)| bytes_field_len(*tag, data));
        let inner_len = payload_encoded_len(&payload) + data_field;
        let tag = payload_tag(&payload);
        let frame_len =
            frame.encoded_len() + key_len(tag) + encoded_len_varint(inner_len as u64) + inner_len;
        if frame_len > max {
            return Err(FrameTooLarge {
                size: frame_len,
                max,
            });
        }
        // A payload that goes out as its own chunk is not part of the bytes written here.
        let own_chunk = data
            .as_ref()
            .filter(|(_, d)| d.len() >= COPY_THRESHOLD)
            .map_or(0, |(_, d)| d.len());
        let mut out = self.extend(encoded_len_varint(frame_len as u64) + frame_len - own_chunk);
        encode_varint(frame_len as u64, &mut out);
        frame.encode_raw(&mut out);
        encode_key(tag, WireType::LengthDelimited, &mut out);
        encode_varint(inner_len as u64, &mut out);
        payload_encode_raw(&payload, &mut out);
        if let Some((data_tag, data)) = data.filter(|(_, d)| !d.is_empty()) {
            encode_key(data_tag, WireType::LengthDelimited, &mut out);
            encode_varint(data.len() as u64, &mut out);
            if data.len() >= COPY_THRESHOLD {
                chunks.push(Bytes::from(std::mem::take(&mut self.scratch)));
                chunks.push(data);
            } else {
                out.put_slice(&data);
            }
        }
        Ok(frame_len)
    }

    /// Encodes a call's frame of the common shape, a request or a response and no metadata,
    /// without prost's generic field-by-field code: the same bytes, in field-number order,
    /// default values left out, the payload's `data` copied or sent as its own chunk as
    /// [`Encoder::encode_to`] does.
    fn encode_call(
        &mut self,
        payload: Payload,
        max: usize,
        chunks: &mut ChunkSink<'_>,
    ) -> Result<usize, FrameTooLarge> {
        // Field numbers as in `frame.proto`: request {1 id, 2 name, 3 timeout_us,
        // 4 idempotent, 5 data}, response {1 id, 2 code, 3 message, 4 data}.
        let (key, id, text, number, flag, data, request) = match payload {
            Payload::Request(r) => (
                KEY_REQUEST,
                r.id,
                r.name,
                r.timeout_us,
                r.idempotent,
                r.data,
                true,
            ),
            Payload::Response(r) => (
                KEY_RESPONSE,
                r.id,
                r.message,
                u64::from(r.code),
                false,
                r.data,
                false,
            ),
            _ => unreachable!("encode_call is given requests and responses only"),
        };
        let (text_key, number_key, data_key) = if request {
            (2 << 3 | 2, 3 << 3, 5 << 3 | 2)
        } else {
            (3 << 3 | 2, 2 << 3, 4 << 3 | 2)
        };
        let varint_field = |v: u64| if v == 0 { 0 } else { 1 + encoded_len_varint(v) };
        let bytes_field = |len: usize| {
            if len == 0 {
                0
            } else {
                1 + encoded_len_varint(len as u64) + len
            }
        };
        let body_len = varint_field(id)
            + bytes_field(text.len())
            + varint_field(number)
            + if flag { 2 } else { 0 }
            + bytes_field(data.len());
        let frame_len = 1 + encoded_len_varint(body_len as u64) + body_len;
        if frame_len > max {
            return Err(FrameTooLarge {
                size: frame_len,
                max,
            });
        }
        let own_chunk = if data.len() >= COPY_THRESHOLD {
            data.len()
        } else {
            0
        };
        let out = self.extend(encoded_len_varint(frame_len as u64) + frame_len - own_chunk);
        let mut w = SliceWriter { out, at: 0 };
        w.varint(frame_len as u64);
        w.byte(key as u8);
        w.varint(body_len as u64);
        if id != 0 {
            w.byte(1 << 3);
            w.varint(id);
        }
        let write_text = |w: &mut SliceWriter<'_>| {
            if !text.is_empty() {
                w.byte(text_key);
                w.varint(text.len() as u64);
                w.slice(text.as_bytes());
            }
        };
        let write_number = |w: &mut SliceWriter<'_>| {
            if number != 0 {
                w.byte(number_key);
                w.varint(number);
            }
        };
        if request {
            write_text(&mut w);
            write_number(&mut w);
            if flag {
                w.byte(4 << 3);
                w.byte(1);
            }
        } else {
            write_number(&mut w);
            write_text(&mut w);
        }
        if !data.is_empty() {
            w.byte(data_key);
            w.varint(data.len() as u64);
            if own_chunk == 0 {
                w.slice(&data);
            } else {
                chunks.push(Bytes::from(std::mem::take(&mut self.scratch)));
                chunks.push(data);
            }
        }
        Ok(frame_len)
    }

    /// Encodes one frame (after any bytes already pending, such as a stream-type byte) into at
    /// most two chunks, refusing it if it is larger than `max_frame_size`.
    pub fn encode_frame(
        &mut self,
        frame: Frame,
        max_frame_size: usize,
    ) -> Result<EncodedFrame, FrameTooLarge> {
        let mut encoded = EncodedFrame {
            chunks: [Bytes::new(), Bytes::new()],
            used: 0,
            size: 0,
        };
        let mut sink = ChunkSink::Frame(&mut encoded);
        let size = self.encode_to(frame, max_frame_size, &mut sink)?;
        self.flush_to(&mut sink);
        encoded.size = size;
        Ok(encoded)
    }

    /// Grows the scratch buffer by `len` zeroed bytes and returns them to be written over.
    ///
    /// Encoding into a plain slice lets every one-byte write compile to a store, where growing
    /// buffers check their capacity (and call `memcpy`) byte by byte.
    fn extend(&mut self, len: usize) -> &mut [u8] {
        let start = self.scratch.len();
        if start == 0 {
            // Exactly the size needed, so the buffer becomes `Bytes` without reallocating.
            self.scratch.reserve_exact(len);
        }
        self.scratch.resize(start + len, 0);
        &mut self.scratch[start..]
    }

    /// Appends one raw byte: the stream-type byte that opens a unidirectional stream.
    pub fn put_byte(&mut self, byte: u8) {
        self.scratch.push(byte);
    }

    /// Moves the header bytes written since the last flush to `chunks`.
    pub fn flush(&mut self, chunks: &mut Vec<Bytes>) {
        self.flush_to(&mut ChunkSink::List(chunks));
    }

    fn flush_to(&mut self, chunks: &mut ChunkSink<'_>) {
        if !self.scratch.is_empty() {
            chunks.push(Bytes::from(std::mem::take(&mut self.scratch)));
        }
    }
}

/// Writes into a slice sized beforehand.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl SliceWriter<'_> {
    fn byte(&mut self, byte: u8) {
        self.out[self.at] = byte;
        self.at += 1;
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte(value as u8 | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    fn slice(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// A frame refused by [`Encoder::encode_frame`] for its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("frame of {size} bytes exceeds the limit of {max} bytes")]
pub struct FrameTooLarge {
    /// The frame's encoded size.
    pub size: usize,
    /// The limit.
    pub max: usize,
}

/// One encoded frame: a header and, for a large payload, the payload itself; ready for a
/// vectored write without any further allocation.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    chunks: [Bytes; 2],
    used: usize,
    size: usize,
}

impl EncodedFrame {
    /// The chunks to write, in order.
    pub fn chunks(&mut self) -> &mut [Bytes] {
        &mut self.chunks[..self.used]
    }

    /// The frame's size without its length prefix.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Where encoded chunks go.
enum ChunkSink<'a> {
    List(&'a mut Vec<Bytes>),
    Frame(&'a mut EncodedFrame),
}

impl ChunkSink<'_> {
    fn push(&mut self, chunk: Bytes) {
        match self {
            ChunkSink::List(list) => list.push(chunk),
            ChunkSink::Frame(frame) => {
                frame.chunks[frame.used] = chunk;
                frame.used += 1;
            }
        }
    }
}

/// Takes the `data` field out of a payload that has one, with its field number.
fn take_data(payload: &mut Payload) -> Option<(u32, Bytes)> {
    let (tag, data) = match payload {
        Payload::Request(r) => (5, &mut r.data),
        Payload::Response(r) => (4, &mut r.data),
        Payload::Event(e) => (2, &mut e.data),
        Payload::Stream(s) => (4, &mut s.data),
        _ => return None,
    };
    Some((tag, std::mem::take(data)))
}

fn bytes_field_len(tag: u32, data: &Bytes) -> usize {
    if data.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(data.len() as u64) + data.len()
    }
}

/// The field number of the payload within `Frame` (see `frame.proto`).
fn payload_tag(payload: &Payload) -> u32 {
    match payload {
        Payload::Hello(_) => 2,
        Payload::Ping(_) => 3,
        Payload::Pong(_) => 4,
        Payload::GoAway(_) => 5,
        Payload::Request(_) => 6,
        Payload::Response(_) => 7,
        Payload::Event(_) => 8,
        Payload::StreamOpen(_) => 9,
        Payload::Stream(_) => 10,
    }
}

fn payload_encoded_len(payload: &Payload) -> usize {
    match payload {
        Payload::Hello(m) => m.encoded_len(),
        Payload::Ping(m) => m.encoded_len(),
        Payload::Pong(m) => m.encoded_len(),
        Payload::GoAway(m) => m.encoded_len(),
        Payload::Request(m) => m.encoded_len(),
        Payload::Response(m) => m.encoded_len(),
        Payload::Event(m) => m.encoded_len(),
        Payload::StreamOpen(m) => m.encoded_len(),
        Payload::Stream(m) => m.encoded_len(),
    }
}

fn payload_encode_raw(payload: &Payload, buf: &mut impl BufMut) {
    match payload {
        Payload::Hello(m) => m.encode_raw(buf),
        Payload::Ping(m) => m.encode_raw(buf),
        Payload::Pong(m) => m.encode_raw(buf),
        Payload::GoAway(m) => m.encode_raw(buf),
        Payload::Request(m) => m.encode_raw(buf),
        Payload::Response(m) => m.encode_raw(buf),
        Payload::Event(m) => m.encode_raw(buf),
        Payload::StreamOpen(m) => m.encode_raw(buf),
        Payload::Stream(m) => m.encode_raw(buf),
    }
}

/// Reads the varint at the start of `buf`: `Ok(None)` if `buf` ends inside it, its value and
/// length otherwise.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, CodecError> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && *byte > 1 {
            return Err(CodecError::BadLength);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(CodecError::BadLength)
    } else {
        Ok(None)
    }
}

/// The key of `Frame.request` (field 6, length-delimited).
const KEY_REQUEST: u64 = 6 << 3 | 2;
/// The key of `Frame.response` (field 7, length-delimited).
const KEY_RESPONSE: u64 = 7 << 3 | 2;

/// Decodes a call's frame of the common shape, a request or a response and nothing else (no
/// metadata), without prost's generic merge loop; `None` for any other frame or anything
/// unusual, which prost then decodes (or reports as malformed). Where it decodes, the result is
/// prost's: the last occurrence of a field wins, `data` is sliced out of `frame`, not copied.
fn decode_call_frame(frame: &Bytes) -> Option<Frame> {
    let (key, key_len) = peek_varint(frame).ok()??;
    let request = match key {
        KEY_REQUEST => true,
        KEY_RESPONSE => false,
        _ => return None,
    };
    let (len, len_len) = peek_varint(&frame[key_len..]).ok()??;
    let start = key_len + len_len;
    // The payload must be the frame's only field.
    if len != (frame.len() - start) as u64 {
        return None;
    }
    let body = &frame[start..];
    let (mut id, mut number, mut flag) = (0u64, 0u64, false);
    let (mut text, mut data) = (0..0, 0..0);
    let mut at = 0;
    while at < body.len() {
        let (key, n) = peek_varint(&body[at..]).ok()??;
        at += n;
        // Field numbers as in `frame.proto`: request {1 id, 2 name, 3 timeout_us,
        // 4 idempotent, 5 data}, response {1 id, 2 code, 3 message, 4 data}.
        match (request, key >> 3, key & 7) {
            (_, 1, 0) => id = varint_at(body, &mut at)?,
            (true, 3, 0) | (false, 2, 0) => number = varint_at(body, &mut at)?,
            (true, 4, 0) => flag = varint_at(body, &mut at)? != 0,
            (true, 2, 2) | (false, 3, 2) => text = delimited_at(body, &mut at)?,
            (true, 5, 2) | (false, 4, 2) => data = delimited_at(body, &mut at)?,
            _ => return None,
        }
    }
    let text = std::str::from_utf8(&body[text]).ok()?.to_owned();
    let data = frame.slice(start + data.start..start + data.end);
    let payload = if request {
        Payload::Request(crate::proto::v1::RpcRequest {
            id,
            name: text,
            timeout_us: number,
            idempotent: flag,
            data,
        })
    } else {
        Payload::Response(crate::proto::v1::RpcResponse {
            id,
            // As prost reads a `uint32`: the varint's low 32 bits.
            code: number as u32,
            message: text,
            data,
        })
    };
    Some(Frame {
        metadata: Default::default(),
        payload: Some(payload),
    })
}

/// The varint at `*at` in `buf`, moving `*at` past it.
fn varint_at(buf: &[u8], at: &mut usize) -> Option<u64> {
    let (value, n) = peek_varint(&buf[*at..]).ok()??;
    *at += n;
    Some(value)
}

/// The range of the length-delimited value at `*at` in `buf`, moving `*at` past it.
fn delimited_at(buf: &[u8], at: &mut usize) -> Option<std::ops::Range<usize>> {
    let len = usize::try_from(varint_at(buf, at)?).ok()?;
    let start = *at;
    let end = start.checked_add(len).filter(|&end| end <= buf.len())?;
    *at = end;
    Some(start..end)
}

/// Splits received chunks into frames, enforcing the frame size limit.
///
/// Feed it every chunk read from a stream, then take frames until it has none complete. Frames
/// that lie entirely inside one chunk are decoded without copying; only frames split across
/// chunks are gathered into an internal buffer.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of a frame that spans chunks.
    partial: BytesMut,
    /// The unread rest of the last chunk fed, while `partial` is empty.
    head: Bytes,
    max_frame_size: usize,
}

impl Decoder {
    /// A decoder that refuses frames larger than `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Decoder {
        Decoder {
            partial: BytesMut::new(),
            head: Bytes::new(),
            max_frame_size,
        }
    }

    /// Adds received bytes.
    pub fn feed(&mut self, chunk: Bytes) {
        if self.partial.is_empty() && self.head.is_empty() {
            self.head = chunk;
        } else {
            self.gather();
            self.partial.extend_from_slice(&chunk);
        }
    }

    /// Bytes held of frames not complete yet (and the unread rest of the last chunk).
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.head.len()
    }

    /// Whether bytes of an incomplete frame are waiting (a stream ending now would be truncated).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || !self.head.is_empty()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        let from_head = self.partial.is_empty();
        let buf: &[u8] = if from_head { &self.head } else { &self.partial };
        let Some((len, prefix)) = peek_varint(buf)? else {
            self.gather();
            return Ok(None);
        };
        if len > self.max_frame_size as u64 {
            return Err(CodecError::TooLarge {
                size: len,
                max: self.max_frame_size,
            });
        }
        let total = prefix + len as usize;
        if buf.len() < total {
            self.gather();
            // Room for the rest, but never more than what arrived so far (and 64 KiB): a peer
            // announcing a large frame and sending little of it pins little memory, while the
            // buffer of a frame that does arrive still grows by doubling.
            let missing = total - self.partial.len();
            self.partial
                .reserve(missing.min(self.partial.len().max(MIN_RESERVE)));
            return Ok(None);
        }
        let mut bytes = if from_head {
            self.head.split_to(total)
        } else {
            self.partial.split_to(total).freeze()
        };
        bytes.advance(prefix);
        let frame = match decode_call_frame(&bytes) {
            Some(frame) => frame,
            None => Frame::decode(bytes)?,
        };
        if frame.payload.is_none() {
            return Err(CodecError::MissingPayload);
        }
        Ok(Some(frame))
    }

    /// Moves the unread rest of the last chunk into the gathering buffer.
    fn gather(&mut self) {
        if !self.head.is_empty() {
            self.partial.extend_from_slice(&self.head);
            self.head = Bytes::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{EventPack, Ping, RpcRequest, RpcResponse, StreamFrame};

    fn request(data: Bytes) -> Frame {
        Frame {
            metadata: [("auth".to_string(), "token".to_string())].into(),
            payload: Some(Payload::Request(RpcRequest {
                id: 7,
                name: "chat.v1.Chat/login".into(),
                timeout_us: 1_500_000,
                idempotent: true,
                data,
            })),
        }
    }

    fn concat(chunks: &[Bytes]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    fn samples() -> Vec<Frame> {
        let big = Bytes::from(vec![0xab; 100_000]);
        vec![
            request(Bytes::from_static(b"hi")),
            request(big.clone()),
            request(Bytes::new()),
            Frame {
                metadata: Default::default(),
                payload: Some(Payload::Response(RpcResponse {
                    id: 7,
                    code: 0,
                    message: String::new(),
                    data: big.clone(),
                })),
            },
            Frame {
                metadata: Default::default(),
                payload: Some(Payload::Event(EventPack {
                    name: "typing".into(),
                    data: Bytes::from_static(b"x"),
                })),
            },
            Frame {
                metadata: Default::default(),
                payload: Some(Payload::Stream(StreamFrame {
                    stream_id: 3,
                    seq: 9,
                    timestamp: u64::MAX,
                    data: big,
                })),
            },
            Frame {
                metadata: Default::default(),
                payload: Some(Payload::Ping(Ping { t1: 42 })),
            },
        ]
    }

    fn call_frame() -> impl proptest::strategy::Strategy<Value = Frame> {
        use proptest::prelude::*;
        // Small payloads, and payloads about the size from which they go as their own chunk.
        let data = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), COPY_THRESHOLD - 2..COPY_THRESHOLD + 2),
        ]
        .prop_map(Bytes::from);
        let request = (
            any::<u64>(),
            ".{0,12}",
            any::<u64>(),
            any::<bool>(),
            data.clone(),
        )
            .prop_map(|(id, name, timeout_us, idempotent, data)| {
                Payload::Request(RpcRequest {
                    id,
                    name,
                    timeout_us,
                    idempotent,
                    data,
                })
            });
        let response =
            (any::<u64>(), any::<u32>(), ".{0,12}", data).prop_map(|(id, code, message, data)| {
                Payload::Response(RpcResponse {
                    id,
                    code,
                    message,
                    data,
                })
            });
        let metadata = proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..2);
        (prop_oneof![request, response], metadata).prop_map(|(payload, metadata)| Frame {
            metadata,
            payload: Some(payload),
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Calls' frames encode to prost's very bytes, in at most two chunks.
        #[test]
        fn call_frames_encode_as_prost_encodes_them(frame in call_frame()) {
            let expected = frame.encode_length_delimited_to_vec();
            let mut encoded = Encoder::new()
                .encode_frame(frame.clone(), usize::MAX)
                .expect("no limit");
            proptest::prop_assert_eq!(encoded.size(), frame.encoded_len());
            proptest::prop_assert_eq!(concat(encoded.chunks()), expected);
            let own_chunk = encoded.chunks().len() == 2;
            let data_len = match &frame.payload {
                Some(Payload::Request(r)) => r.data.len(),
                Some(Payload::Response(r)) => r.data.len(),
                _ => 0,
            };
            proptest::prop_assert_eq!(own_chunk, data_len >= COPY_THRESHOLD);
        }

        /// A call's frame over the limit is refused with its size, and nothing is written.
        #[test]
        fn call_frames_over_the_limit_are_refused(frame in call_frame()) {
            let size = frame.encoded_len();
            let refused = Encoder::new().encode_frame(frame, size - 1);
            proptest::prop_assert_eq!(refused.err(), Some(FrameTooLarge { size, max: size - 1 }));
        }

        /// The fast path decodes every request and response without metadata, as prost does.
        #[test]
        fn call_frames_decode_as_prost_decodes_them(frame in call_frame()) {
            let bytes = Bytes::from(frame.encode_to_vec());
            match decode_call_frame(&bytes) {
                Some(fast) => {
                    proptest::prop_assert!(frame.metadata.is_empty());
                    proptest::prop_assert_eq!(fast, frame);
                }
                None => proptest::prop_assert!(!frame.metadata.is_empty()),
            }
        }

        /// Whatever bytes it is given (a call's frame cut short, extended or altered, or noise),
        /// the fast path decodes nothing that prost would decode otherwise or refuse.
        #[test]
        fn the_fast_path_never_disagrees_with_prost(
            frame in call_frame(),
            cut in 0usize..3,
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            at in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let mut bytes = frame.encode_to_vec();
            bytes.truncate(bytes.len().saturating_sub(cut));
            let spot = at.index(bytes.len() + 1);
            bytes.splice(spot..spot, noise);
            let bytes = Bytes::from(bytes);
            if let Some(fast) = decode_call_frame(&bytes) {
                proptest::prop_assert_eq!(Some(fast), Frame::decode(bytes).ok());
            }
        }
    }

    #[test]
    fn encoding_is_byte_identical_to_prost() {
        let mut encoder = Encoder::new();
        for frame in samples() {
            let expected = frame.encode_length_delimited_to_vec();
            let mut encoded = encoder.encode_frame(frame, usize::MAX).unwrap();
            assert_eq!(concat(encoded.chunks()), expected);
            assert_eq!(
                encoded.size() + prost::length_delimiter_len(encoded.size()),
                expected.len()
            );
        }
    }

    #[test]
    fn the_protocol_documents_example_bytes() {
        // docs/protocol.md, "A complete call, byte by byte".
        let call = Frame {
            metadata: Default::default(),
            payload: Some(Payload::Request(RpcRequest {
                id: 42,
                name: "echo".into(),
                timeout_us: 1_000_000,
                idempotent: false,
                data: Bytes::from_static(b"hi"),
            })),
        };
        let mut encoded = Encoder::new().encode_frame(call, usize::MAX).unwrap();
        assert_eq!(
            concat(encoded.chunks()),
            [
                0x12, 0x32, 0x10, 0x08, 0x2a, 0x12, 0x04, b'e', b'c', b'h', b'o', 0x18, 0xc0, 0x84,
                0x3d, 0x2a, 0x02, b'h', b'i'
            ]
        );
        let answer = Frame {
            metadata: Default::default(),
            payload: Some(Payload::Response(RpcResponse {
                id: 42,
                code: 0,
                message: String::new(),
                data: Bytes::from_static(b"hi"),
            })),
        };
        let mut encoded = Encoder::new().encode_frame(answer, usize::MAX).unwrap();
        assert_eq!(
            concat(encoded.chunks()),
            [0x08, 0x3a, 0x06, 0x08, 0x2a, 0x22, 0x02, b'h', b'i']
        );
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let data = Bytes::from(vec![1u8; 64 * 1024]);
        let mut encoded = Encoder::new()
            .encode_frame(request(data.clone()), usize::MAX)
            .unwrap();
        let chunks = encoded.chunks();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[1].as_ptr(),
            data.as_ptr(),
            "payload sent as the caller's buffer"
        );
        let mut small = Encoder::new()
            .encode_frame(request(Bytes::from_static(b"tiny")), usize::MAX)
            .unwrap();
        assert_eq!(
            small.chunks().len(),
            1,
            "small payloads ride in the header chunk"
        );
        let refused = Encoder::new().encode_frame(request(Bytes::from(vec![0; 100])), 50);
        assert!(matches!(refused, Err(FrameTooLarge { max: 50, .. })));
    }

    #[test]
    fn decodes_frames_split_at_every_byte() {
        let frames = samples();
        let mut encoder = Encoder::new();
        let mut chunks = Vec::new();
        for frame in frames.clone() {
            encoder.encode(frame, &mut chunks);
        }
        encoder.flush(&mut chunks);
        let wire = concat(&chunks);
        for step in [1, 2, 3, 7, 1000, 70_000, wire.len()] {
            let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
            let mut out = Vec::new();
            for piece in wire.chunks(step) {
                decoder.feed(Bytes::copy_from_slice(piece));
                while let Some(frame) = decoder.next_frame().unwrap() {
                    out.push(frame);
                }
            }
            assert!(!decoder.has_partial());
            assert_eq!(out, frames, "chunk size {step}");
        }
    }

    #[test]
    fn frames_within_one_chunk_decode_without_copying() {
        let data = Bytes::from(vec![5u8; 10_000]);
        let wire = Bytes::from(request(data).encode_length_delimited_to_vec());
        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        decoder.feed(wire.clone());
        let frame = decoder.next_frame().unwrap().unwrap();
        let Some(Payload::Request(req)) = frame.payload else {
            panic!("not a request")
        };
        let offset = req.data.as_ptr() as usize - wire.as_ptr() as usize;
        assert!(
            offset < wire.len(),
            "payload is a slice of the received chunk"
        );
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let wire = request(Bytes::from(vec![0; 2000])).encode_length_delimited_to_vec();
        let mut decoder = Decoder::new(1000);
        decoder.feed(Bytes::copy_from_slice(&wire[..3]));
        match decoder.next_frame() {
            Err(CodecError::TooLarge { size, max: 1000 }) => assert!(size > 2000),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        decoder.feed(Bytes::from_static(&[0xff; 11]));
        assert!(matches!(decoder.next_frame(), Err(CodecError::BadLength)));

        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        decoder.feed(Bytes::from_static(&[3, 0xff, 0xff, 0xff]));
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::Malformed(_))
        ));

        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        decoder.feed(Bytes::from_static(&[0]));
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::MissingPayload)
        ));
    }

    #[test]
    fn incomplete_input_waits_for_more() {
        let wire = request(Bytes::from_static(b"abc")).encode_length_delimited_to_vec();
        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        decoder.feed(Bytes::copy_from_slice(&wire[..wire.len() - 1]));
        assert!(decoder.next_frame().unwrap().is_none());
        assert!(decoder.has_partial());
        decoder.feed(Bytes::copy_from_slice(&wire[wire.len() - 1..]));
        assert!(decoder.next_frame().unwrap().is_some());
    }

    #[test]
    fn ten_byte_varints_are_the_limit() {
        assert_eq!(
            peek_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap(),
            Some((u64::MAX, 10))
        );
        assert!(peek_varint(&[0x80; 9]).unwrap().is_none());
        assert!(
            peek_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]).is_err()
        );
    }

    #[test]
    fn an_announced_frame_reserves_no_more_than_what_arrived() {
        let mut d = Decoder::new(DEFAULT_MAX_FRAME_SIZE);
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(DEFAULT_MAX_FRAME_SIZE as u64, &mut prefix);
        prefix.extend_from_slice(&[0; 10]);
        let fed = prefix.len();
        d.feed(Bytes::from(prefix));
        assert!(d.next_frame().unwrap().is_none());
        assert!(
            d.partial.capacity() <= 2 * MIN_RESERVE,
            "{}",
            d.partial.capacity()
        );
        assert_eq!(d.buffered(), fed);
    }
}
