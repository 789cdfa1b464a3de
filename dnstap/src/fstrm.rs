//! Frame Streams codec: splits a byte stream into data and control frames, and writes them.
//! Decoding never copies a data frame; it is split off the read buffer as `Bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The content type of dnstap payloads; ACCEPT must echo exactly this, or Unbound hangs up.
pub const DNSTAP_CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// The largest control frame the protocol allows, in bytes (excluding its length prefix).
pub const MAX_CONTROL_FRAME_BYTES: usize = 512;

/// The largest content type the protocol allows, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 256;

/// The default cap on a data frame, the same as libfstrm's readers.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// The only control field type that exists.
const FIELD_CONTENT_TYPE: u32 = 0x01;

/// The kind of a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// Receiver → sender: the content type offered in READY is accepted.
    Accept,
    /// Sender: data frames follow.
    Start,
    /// Sender: no more data frames.
    Stop,
    /// Sender → receiver: opens the bidirectional handshake.
    Ready,
    /// Receiver → sender: STOP was seen, the stream is done.
    Finish,
}

impl ControlType {
    /// The type's number on the wire.
    pub fn code(self) -> u32 {
        match self {
            ControlType::Accept => 0x01,
            ControlType::Start => 0x02,
            ControlType::Stop => 0x03,
            ControlType::Ready => 0x04,
            ControlType::Finish => 0x05,
        }
    }

    /// The type for a number on the wire, if there is one.
    pub fn from_code(code: u32) -> Option<ControlType> {
        Some(match code {
            0x01 => ControlType::Accept,
            0x02 => ControlType::Start,
            0x03 => ControlType::Stop,
            0x04 => ControlType::Ready,
            0x05 => ControlType::Finish,
            _ => return None,
        })
    }
}

/// A decoded control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFrame {
    /// What the frame says.
    pub kind: ControlType,
    /// Its CONTENT_TYPE fields, in order, as slices of the read buffer.
    pub content_types: Vec<Bytes>,
}

impl ControlFrame {
    /// Whether one of the frame's content types is exactly `content_type`.
    pub fn has_content_type(&self, content_type: &[u8]) -> bool {
        self.content_types
            .iter()
            .any(|c| c.as_ref() == content_type)
    }
}

/// One frame of a Frame Streams stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A payload frame, split off the read buffer without copying.
    Data(Bytes),
    /// A control frame.
    Control(ControlFrame),
}

/// Why a byte stream is not valid Frame Streams. Every variant ends the connection it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A data frame longer than the configured cap.
    #[error("data frame of {len} bytes exceeds the {max} byte limit")]
    Oversized {
        /// The length the frame announced.
        len: usize,
        /// The configured cap.
        max: usize,
    },
    /// A control frame longer than the protocol's 512 bytes.
    #[error("control frame of {0} bytes exceeds the 512 byte limit")]
    ControlTooLong(usize),
    /// A control frame too short to hold its type.
    #[error("control frame of {0} bytes is too short to hold a control type")]
    ControlTooShort(usize),
    /// A control type that the protocol does not define.
    #[error("unknown control type {0:#x}")]
    UnknownControlType(u32),
    /// A control field that runs past the end of its frame.
    #[error("control field runs past the end of the control frame")]
    FieldOverrun,
    /// A content type longer than the protocol's 256 bytes.
    #[error("content type of {0} bytes exceeds the 256 byte limit")]
    ContentTypeTooLong(usize),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Splits frames off a growing read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_frame_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder {
    /// A decoder that rejects data frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Decoder {
        Decoder { max_frame_bytes }
    }

    /// The configured data-frame cap.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Splits the next complete frame off the front of `buf`. Returns `Ok(None)` when `buf` holds
    /// only part of a frame (it is then left untouched), and an error as soon as the part that is
    /// there can no longer become a valid frame, so that a 4 GiB length is refused without waiting.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len) = peek_be32(buf, 0) else {
            return Ok(None);
        };
        let len = len as usize;
        if len != 0 {
            if len > self.max_frame_bytes {
                return Err(FrameError::Oversized {
                    len,
                    max: self.max_frame_bytes,
                });
            }
            if buf.len() < 4 + len {
                return Ok(None);
            }
            buf.advance(4);
            return Ok(Some(Frame::Data(buf.split_to(len).freeze())));
        }
        let Some(clen) = peek_be32(buf, 4) else {
            return Ok(None);
        };
        let clen = clen as usize;
        if clen > MAX_CONTROL_FRAME_BYTES {
            return Err(FrameError::ControlTooLong(clen));
        }
        if clen < 4 {
            return Err(FrameError::ControlTooShort(clen));
        }
        // The control type is checked before the rest arrives, so garbage fails fast.
        if let Some(code) = peek_be32(buf, 8) {
            if ControlType::from_code(code).is_none() {
                return Err(FrameError::UnknownControlType(code));
            }
        }
        if buf.len() < 8 + clen {
            return Ok(None);
        }
        buf.advance(8);
        let body = buf.split_to(clen).freeze();
        parse_control(body).map(|c| Some(Frame::Control(c)))
    }

    /// How many more bytes `buf` needs before the frame at its front is complete, as far as its
    /// header tells; used to size the next read so a large frame arrives in one buffer.
    pub fn missing(&self, buf: &[u8]) -> usize {
        let total = match peek_be32(buf, 0) {
            None => 4,
            Some(0) => match peek_be32(buf, 4) {
                None => 8,
                Some(clen) => 8 + (clen as usize).min(MAX_CONTROL_FRAME_BYTES),
            },
            Some(len) => 4 + (len as usize).min(self.max_frame_bytes),
        };
        total.saturating_sub(buf.len())
    }
}

fn peek_be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a control frame body (control type and fields, without the escape and length).
fn parse_control(mut body: Bytes) -> Result<ControlFrame, FrameError> {
    let clen = body.len();
    if clen < 4 {
        return Err(FrameError::ControlTooShort(clen));
    }
    let code = body.get_u32();
    let kind = ControlType::from_code(code).ok_or(FrameError::UnknownControlType(code))?;
    let mut content_types = Vec::new();
    while !body.is_empty() {
        if body.len() < 8 {
            return Err(FrameError::FieldOverrun);
        }
        let field = body.get_u32();
        let flen = body.get_u32() as usize;
        if flen > body.len() {
            return Err(FrameError::FieldOverrun);
        }
        let value = body.split_to(flen);
        // Unknown field types are skipped rather than refused: the frame is bounded anyway, and a
        // future sender's extra field should not cost us its stream.
        if field == FIELD_CONTENT_TYPE {
            if flen > MAX_CONTENT_TYPE_BYTES {
                return Err(FrameError::ContentTypeTooLong(flen));
            }
            content_types.push(value);
        }
    }
    Ok(ControlFrame {
        kind,
        content_types,
    })
}

/// Decodes a complete byte string (for example a Frame Streams file) into its frames.
/// A partial frame at the end is an error, like any other framing error.
pub fn decode_frames(data: &[u8], max_frame_bytes: usize) -> Result<Vec<Frame>, FrameError> {
    let decoder = Decoder::new(max_frame_bytes);
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        frames.push(frame);
    }
    if buf.is_empty() {
        Ok(frames)
    } else {
        Err(FrameError::Truncated(buf.len()))
    }
}

/// Appends a control frame, escape and length included.
///
/// # Panics
/// If a content type is longer than 256 bytes or the frame would exceed 512 bytes: that is a bug
/// in the caller, not something a peer can cause.
pub fn encode_control(kind: ControlType, content_types: &[&[u8]], out: &mut impl BufMut) {
    let body_len: usize = 4 + content_types.iter().map(|c| 8 + c.len()).sum::<usize>();
    assert!(
        content_types
            .iter()
            .all(|c| c.len() <= MAX_CONTENT_TYPE_BYTES),
        "content type longer than {MAX_CONTENT_TYPE_BYTES} bytes"
    );
    assert!(
        body_len <= MAX_CONTROL_FRAME_BYTES,
        "control frame longer than {MAX_CONTROL_FRAME_BYTES} bytes"
    );
    out.put_u32(0);
    out.put_u32(body_len as u32);
    out.put_u32(kind.code());
    for c in content_types {
        out.put_u32(FIELD_CONTENT_TYPE);
        out.put_u32(c.len() as u32);
        out.put_slice(c);
    }
}

/// Appends a data frame with its length prefix.
///
/// # Panics
/// If `payload` is empty (a zero length is the control escape) or longer than `u32::MAX`.
pub fn encode_data(payload: &[u8], out: &mut impl BufMut) {
    assert!(!payload.is_empty(), "a data frame cannot be empty");
    let len = u32::try_from(payload.len()).expect("data frame longer than u32::MAX");
    out.put_u32(len);
    out.put_slice(payload);
}

/// A control frame as a fresh byte vector; convenient for a sender's one-off writes.
pub fn control_bytes(kind: ControlType, content_types: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_CONTROL_FRAME_BYTES);
    encode_control(kind, content_types, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = BytesMut::new();
        encode_control(ControlType::Start, &[DNSTAP_CONTENT_TYPE], &mut out);
        encode_data(b"hello", &mut out);
        encode_control(ControlType::Stop, &[], &mut out);
        let frames = decode_frames(&out, 16).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Control(ControlFrame {
                    kind: ControlType::Start,
                    content_types: vec![Bytes::from_static(DNSTAP_CONTENT_TYPE)],
                }),
                Frame::Data(Bytes::from_static(b"hello")),
                Frame::Control(ControlFrame {
                    kind: ControlType::Stop,
                    content_types: vec![],
                }),
            ]
        );
    }

    #[test]
    fn exact_start_bytes() {
        let got = control_bytes(ControlType::Start, &[DNSTAP_CONTENT_TYPE]);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 22];
        want.extend_from_slice(DNSTAP_CONTENT_TYPE);
        assert_eq!(got, want);
    }

    #[test]
    fn partial_frames_wait_and_oversize_fails_early() {
        let d = Decoder::new(10);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 5, 1, 2][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 6);
        assert_eq!(d.missing(&buf), 3);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 11][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::Oversized { len: 11, max: 10 })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 2, 1][..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::ControlTooLong(513)));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 9][..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::UnknownControlType(9)));
        assert_eq!(
            decode_frames(&[0, 0, 0, 3, 1], 10),
            Err(FrameError::Truncated(5))
        );
    }

    #[test]
    fn content_type_limits() {
        let long = [b'x'; 257];
        let mut raw = vec![0u8, 0, 0, 0];
        raw.extend_from_slice(&(4u32 + 8 + 257).to_be_bytes());
        raw.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1]);
        raw.extend_from_slice(&257u32.to_be_bytes());
        raw.extend_from_slice(&long);
        assert_eq!(
            decode_frames(&raw, 10),
            Err(FrameError::ContentTypeTooLong(257))
        );
        // A field length that points past the frame.
        let raw = [
            0u8, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 9,
        ];
        assert_eq!(decode_frames(&raw, 10), Err(FrameError::FieldOverrun));
    }
}
