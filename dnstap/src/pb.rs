//! A protobuf reader for the dnstap fields the conversion uses, working on the frame's bytes.
//! It accepts and rejects exactly what prost's generated decoder does, but builds nothing it does not keep.
//!
//! prost decodes every field of the payload into a `Dnstap` struct, each bytes field a `Bytes`
//! slice of the frame (a reference count taken and later dropped), and that was about two thirds
//! of the io thread's work per message. This reader walks the same fields with the same checks
//! and only records where the wanted ones are; the caller slices the frame for the few it keeps.
//! Equivalence with prost (the same payloads accepted, the same values read) is checked by the
//! property tests below, which decode with both. Every read is bounded by the enclosing message's length, so a
//! field that runs past it is an error here; prost notices the same overrun one step later
//! ("delimited length exceeded"), so both reject it.

use std::ops::Range;

/// Why a payload is not a valid `Dnstap` protobuf. The reason itself is not reported anywhere:
/// a bad payload is counted, and prost's message for it is no more use to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

type Result<T> = std::result::Result<T, Invalid>;

// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// prost's nesting budget: top-level fields are skipped with this much, each enclosing message
/// or group takes one.
const RECURSION_LIMIT: u32 = 100;

/// The fields of `dnstap.Message` that the conversion reads, the bytes ones as ranges of the
/// frame. A field seen twice keeps its last value, and a second `message` field merges into the
/// first, as in prost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// `Message.type`, if the payload has a message with one.
    pub message_type: Option<i32>,
    pub socket_protocol: Option<i32>,
    pub query_address: Option<Range<usize>>,
    pub response_address: Option<Range<usize>>,
    pub query_port: Option<u32>,
    pub response_port: Option<u32>,
    pub query_time_sec: Option<u64>,
    pub query_time_nsec: Option<u32>,
    pub query_message: Option<Range<usize>>,
    pub query_zone: Option<Range<usize>>,
    pub response_time_sec: Option<u64>,
    pub response_time_nsec: Option<u32>,
    pub response_message: Option<Range<usize>>,
}

/// Reads `frame` as a `dnstap.Dnstap` message.
pub(crate) fn decode(frame: &[u8]) -> Result<Fields> {
    let mut fields = Fields::default();
    let mut r = Reader {
        buf: frame,
        pos: 0,
        end: frame.len(),
    };
    while r.pos < r.end {
        let (tag, wire) = r.key()?;
        match tag {
            // identity, version, extra
            1..=3 => {
                r.len_delimited(wire)?;
            }
            14 => {
                r.sub_message(wire)?.message(&mut fields)?;
            }
            // type
            15 => {
                r.varint_field(wire)?;
            }
            _ => r.skip(wire, tag, RECURSION_LIMIT)?,
        }
    }
    Ok(fields)
}

/// A cursor over `buf[pos..end]`, `end` being the end of the message being read.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(Invalid);
        }
        let b = *self.buf.get(self.pos).ok_or(Invalid)?;
        self.pos += 1;
        Ok(b)
    }

    /// A base-128 varint of at most 10 bytes whose value fits 64 bits (prost's rule: the tenth
    /// byte may only be 0 or 1).
    #[inline]
    fn varint(&mut self) -> Result<u64> {
        // Keys, enums and most lengths are one byte: that case stays inline.
        if self.pos < self.end {
            if let Some(&b) = self.buf.get(self.pos) {
                if b < 0x80 {
                    self.pos += 1;
                    return Ok(u64::from(b));
                }
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                if i == 9 && b >= 0x02 {
                    return Err(Invalid);
                }
                return Ok(value);
            }
        }
        Err(Invalid)
    }

    fn key(&mut self) -> Result<(u32, u8)> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Invalid)?;
        let wire = (key & 0x07) as u8;
        if wire > FIXED32 {
            return Err(Invalid);
        }
        let tag = key >> 3;
        if tag == 0 {
            return Err(Invalid);
        }
        Ok((tag, wire))
    }

    fn advance(&mut self, n: u64) -> Result<()> {
        let left = self.end.checked_sub(self.pos).ok_or(Invalid)?;
        if n > left as u64 {
            return Err(Invalid);
        }
        self.pos += n as usize;
        Ok(())
    }

    fn varint_field(&mut self, wire: u8) -> Result<u64> {
        if wire != VARINT {
            return Err(Invalid);
        }
        self.varint()
    }

    fn fixed32_field(&mut self, wire: u8) -> Result<u32> {
        if wire != FIXED32 {
            return Err(Invalid);
        }
        let start = self.pos;
        self.advance(4)?;
        match self.buf.get(start..self.pos) {
            Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
            _ => Err(Invalid),
        }
    }

    /// A length-delimited field's bytes, as a range of `buf`.
    fn len_delimited(&mut self, wire: u8) -> Result<Range<usize>> {
        if wire != LEN {
            return Err(Invalid);
        }
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok(start..self.pos)
    }

    /// A reader over an embedded message field's bytes.
    fn sub_message(&mut self, wire: u8) -> Result<Self> {
        let range = self.len_delimited(wire)?;
        Ok(Reader {
            buf: self.buf,
            pos: range.start,
            end: range.end,
        })
    }

    /// Skips a field this reader does not know, as prost does: groups are walked to their
    /// matching end, and nesting is limited to `budget` levels.
    fn skip(&mut self, wire: u8, tag: u32, budget: u32) -> Result<()> {
        if budget == 0 {
            return Err(Invalid);
        }
        match wire {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.advance(8),
            FIXED32 => self.advance(4),
            LEN => {
                let len = self.varint()?;
                self.advance(len)
            }
            START_GROUP => loop {
                let (inner_tag, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    return if inner_tag == tag {
                        Ok(())
                    } else {
                        Err(Invalid)
                    };
                }
                self.skip(inner_wire, inner_tag, budget - 1)?;
            },
            _ => Err(Invalid),
        }
    }

    /// The fields of a `dnstap.Message`, merged into `f`.
    fn message(&mut self, f: &mut Fields) -> Result<()> {
        while self.pos < self.end {
            let (tag, wire) = self.key()?;
            match tag {
                // Enums are int32: the varint's low 32 bits, as prost reads them.
                1 => f.message_type = Some(self.varint_field(wire)? as i32),
                // socket_family, http_protocol
                2 | 16 => {
                    self.varint_field(wire)?;
                }
                3 => f.socket_protocol = Some(self.varint_field(wire)? as i32),
                4 => f.query_address = Some(self.len_delimited(wire)?),
                5 => f.response_address = Some(self.len_delimited(wire)?),
                6 => f.query_port = Some(self.varint_field(wire)? as u32),
                7 => f.response_port = Some(self.varint_field(wire)? as u32),
                8 => f.query_time_sec = Some(self.varint_field(wire)?),
                9 => f.query_time_nsec = Some(self.fixed32_field(wire)?),
                10 => f.query_message = Some(self.len_delimited(wire)?),
                11 => f.query_zone = Some(self.len_delimited(wire)?),
                12 => f.response_time_sec = Some(self.varint_field(wire)?),
                13 => f.response_time_nsec = Some(self.fixed32_field(wire)?),
                14 => f.response_message = Some(self.len_delimited(wire)?),
                15 => self.sub_message(wire)?.policy()?,
                _ => self.skip(wire, tag, RECURSION_LIMIT - 1)?,
            }
        }
        Ok(())
    }

    /// A `dnstap.Policy`: nothing of it is used, but prost checks its fields' wire types.
    fn policy(&mut self) -> Result<()> {
        while self.pos < self.end {
            let (tag, wire) = self.key()?;
            match tag {
                // type, rule, value
                1 | 2 | 5 => {
                    self.len_delimited(wire)?;
                }
                // action, match
                3 | 4 => {
                    self.varint_field(wire)?;
                }
                _ => self.skip(wire, tag, RECURSION_LIMIT - 2)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use proptest::prelude::*;

    /// One protobuf field, to build payloads that are valid, nearly valid or wrong in one place.
    #[derive(Debug, Clone)]
    enum Field {
        Varint(u32, u64),
        Fixed32(u32, u32),
        Fixed64(u32, u64),
        Bytes(u32, Vec<u8>),
        /// A length-delimited field holding these fields, like an embedded message.
        Nested(u32, Vec<Field>),
        Group(u32, Vec<Field>),
        /// Bytes as they come, usually breaking the framing.
        Raw(Vec<u8>),
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7F) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
        put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
    }

    fn encode(fields: &[Field], out: &mut Vec<u8>) {
        for f in fields {
            match f {
                Field::Varint(t, v) => {
                    put_key(out, *t, VARINT);
                    put_varint(out, *v);
                }
                Field::Fixed32(t, v) => {
                    put_key(out, *t, FIXED32);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Field::Fixed64(t, v) => {
                    put_key(out, *t, FIXED64);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Field::Bytes(t, b) => {
                    put_key(out, *t, LEN);
                    put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                Field::Nested(t, inner) => {
                    let mut body = Vec::new();
                    encode(inner, &mut body);
                    put_key(out, *t, LEN);
                    put_varint(out, body.len() as u64);
                    out.extend_from_slice(&body);
                }
                Field::Group(t, inner) => {
                    put_key(out, *t, START_GROUP);
                    encode(inner, out);
                    put_key(out, *t, END_GROUP);
                }
                Field::Raw(b) => out.extend_from_slice(b),
            }
        }
    }

    fn tag() -> impl Strategy<Value = u32> {
        prop_oneof![8 => 1u32..=16, 1 => Just(0u32), 1 => 17u32..300, 1 => Just((1 << 29) - 1)]
    }

    fn field() -> impl Strategy<Value = Field> {
        let leaf = prop_oneof![
            4 => (tag(), prop_oneof![any::<u64>(), 0u64..20]).prop_map(|(t, v)| Field::Varint(t, v)),
            1 => (tag(), any::<u32>()).prop_map(|(t, v)| Field::Fixed32(t, v)),
            1 => (tag(), any::<u64>()).prop_map(|(t, v)| Field::Fixed64(t, v)),
            4 => (tag(), proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(|(t, b)| Field::Bytes(t, b)),
            1 => proptest::collection::vec(any::<u8>(), 1..4).prop_map(Field::Raw),
        ];
        leaf.prop_recursive(3, 48, 8, |inner| {
            prop_oneof![
                3 => (tag(), proptest::collection::vec(inner.clone(), 0..8))
                    .prop_map(|(t, f)| Field::Nested(t, f)),
                1 => (tag(), proptest::collection::vec(inner, 0..4))
                    .prop_map(|(t, f)| Field::Group(t, f)),
            ]
        })
    }

    /// The frame bytes of a range, to compare with prost's `Bytes`.
    fn at<'a>(frame: &'a [u8], r: &Option<Range<usize>>) -> Option<&'a [u8]> {
        r.clone().map(|r| &frame[r])
    }

    /// `decode` accepts exactly what prost accepts, and reads the same values.
    fn check_against_prost(frame: &[u8]) -> std::result::Result<(), TestCaseError> {
        use prost::Message as _;
        let ours = decode(frame);
        let theirs = proto::Dnstap::decode(frame);
        prop_assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "ours {:?}, prost {:?}",
            ours,
            theirs
        );
        let (Ok(f), Ok(d)) = (ours, theirs) else {
            return Ok(());
        };
        let Some(m) = d.message else {
            prop_assert_eq!(f, Fields::default());
            return Ok(());
        };
        prop_assert_eq!(f.message_type.unwrap_or(1), m.r#type);
        prop_assert_eq!(f.socket_protocol, m.socket_protocol);
        prop_assert_eq!(at(frame, &f.query_address), m.query_address.as_deref());
        prop_assert_eq!(
            at(frame, &f.response_address),
            m.response_address.as_deref()
        );
        prop_assert_eq!(f.query_port, m.query_port);
        prop_assert_eq!(f.response_port, m.response_port);
        prop_assert_eq!(f.query_time_sec, m.query_time_sec);
        prop_assert_eq!(f.query_time_nsec, m.query_time_nsec);
        prop_assert_eq!(at(frame, &f.query_message), m.query_message.as_deref());
        prop_assert_eq!(at(frame, &f.query_zone), m.query_zone.as_deref());
        prop_assert_eq!(f.response_time_sec, m.response_time_sec);
        prop_assert_eq!(f.response_time_nsec, m.response_time_nsec);
        prop_assert_eq!(
            at(frame, &f.response_message),
            m.response_message.as_deref()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn agrees_with_prost_on_field_soup(fields in proptest::collection::vec(field(), 0..10)) {
            let mut frame = Vec::new();
            encode(&fields, &mut frame);
            check_against_prost(&frame)?;
        }

        #[test]
        fn agrees_with_prost_on_damaged_messages(
            message in proptest::collection::vec(field(), 0..12),
            outer in proptest::collection::vec(field(), 0..3),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            // A Dnstap with a message field (14) and its type (15), plus whatever else.
            let mut fields = outer;
            fields.push(Field::Nested(14, message));
            fields.push(Field::Varint(15, 1));
            let mut frame = Vec::new();
            encode(&fields, &mut frame);
            for (at, b) in flips {
                if !frame.is_empty() {
                    let i = at.index(frame.len());
                    frame[i] = b;
                }
            }
            if let Some(cut) = cut {
                let n = cut.index(frame.len() + 1);
                frame.truncate(n);
            }
            check_against_prost(&frame)?;
        }

        #[test]
        fn agrees_with_prost_on_arbitrary_bytes(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_against_prost(&frame)?;
        }
    }

    #[test]
    fn agrees_with_prost_on_a_real_message() {
        use prost::Message as _;
        let d = proto::Dnstap {
            identity: Some(b"resolver".to_vec().into()),
            version: Some(b"unbound 1.17.1".to_vec().into()),
            extra: None,
            message: Some(proto::Message {
                r#type: proto::message::Type::ResolverResponse as i32,
                socket_family: Some(1),
                socket_protocol: Some(1),
                query_address: Some(vec![127, 0, 0, 1].into()),
                response_address: Some(vec![192, 0, 2, 53].into()),
                query_port: Some(40000),
                response_port: Some(53),
                query_time_sec: Some(1_700_000_000),
                query_time_nsec: Some(5),
                query_message: Some(vec![1, 2, 3].into()),
                query_zone: Some(vec![3, b'c', b'o', b'm', 0].into()),
                response_time_sec: Some(1_700_000_001),
                response_time_nsec: Some(7),
                response_message: Some(vec![9; 40].into()),
                policy: Some(proto::Policy {
                    r#type: Some(b"rpz".to_vec().into()),
                    ..Default::default()
                }),
                http_protocol: Some(2),
            }),
            r#type: proto::dnstap::Type::Message as i32,
        };
        let frame = d.encode_to_vec();
        check_against_prost(&frame).unwrap();
        assert!(decode(&frame).unwrap().response_message.is_some());
    }

    #[test]
    fn varints_follow_prosts_limits() {
        let read = |b: &[u8]| {
            Reader {
                buf: b,
                pos: 0,
                end: b.len(),
            }
            .varint()
        };
        assert_eq!(read(&[0x05]), Ok(5));
        assert_eq!(read(&[0x96, 0x01]), Ok(150));
        let mut max = vec![0xFF; 9];
        max.push(0x01);
        assert_eq!(read(&max), Ok(u64::MAX));
        *max.last_mut().unwrap() = 0x02;
        assert_eq!(read(&max), Err(Invalid));
        assert_eq!(read(&[0x80; 11]), Err(Invalid));
        assert_eq!(read(&[0x80]), Err(Invalid));
        assert_eq!(read(&[]), Err(Invalid));
    }

    #[test]
    fn groups_nest_up_to_the_budget() {
        // Field 99 as a group, nested `depth` times, each closed by its end tag.
        let nested = |depth: usize| {
            let open = [0x9B, 0x06]; // (99 << 3) | 3
            let close = [0x9C, 0x06]; // (99 << 3) | 4
            let mut b = Vec::new();
            for _ in 0..depth {
                b.extend_from_slice(&open);
            }
            for _ in 0..depth {
                b.extend_from_slice(&close);
            }
            b
        };
        assert!(decode(&nested(100)).is_ok());
        assert_eq!(decode(&nested(101)), Err(Invalid));
    }
}
