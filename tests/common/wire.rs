//! Hand-written encoders for crafting dnstap input in tests: Frame Streams framing, a tiny
//! protobuf writer, the dnstap `Dnstap`/`Message` fields, and DNS wire messages.
//! Independent of the code under test on purpose.

use std::io::{self, Read, Write};
use std::time::Duration;

// ---------------------------------------------------------------- Frame Streams

pub const FSTRM_ACCEPT: u32 = 0x01;
pub const FSTRM_START: u32 = 0x02;
pub const FSTRM_STOP: u32 = 0x03;
pub const FSTRM_READY: u32 = 0x04;
pub const FSTRM_FINISH: u32 = 0x05;
pub const FSTRM_FIELD_CONTENT_TYPE: u32 = 0x01;

/// A control frame, including the escape: `0`, BE32 length, BE32 type, fields.
pub fn fstrm_control(ctype: u32, content_types: &[&str]) -> Vec<u8> {
    let mut body = ctype.to_be_bytes().to_vec();
    for ct in content_types {
        body.extend_from_slice(&FSTRM_FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        body.extend_from_slice(ct.as_bytes());
    }
    let mut f = 0u32.to_be_bytes().to_vec();
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

/// A data frame: BE32 length, payload.
pub fn fstrm_data(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// A decoded control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub ctype: u32,
    pub content_types: Vec<String>,
}

/// Reads one control frame (escape included). Errors on a data frame or a bad layout.
pub fn read_control(r: &mut impl Read) -> io::Result<Control> {
    let mut b4 = [0u8; 4];
    r.read_exact(&mut b4)?;
    if u32::from_be_bytes(b4) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected a control frame escape (0)",
        ));
    }
    r.read_exact(&mut b4)?;
    let len = u32::from_be_bytes(b4) as usize;
    if !(4..=512).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control frame length {len}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let ctype = u32::from_be_bytes(body[0..4].try_into().unwrap());
    let mut content_types = Vec::new();
    let mut i = 4;
    while i + 8 <= body.len() {
        let ft = u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
        let fl = u32::from_be_bytes(body[i + 4..i + 8].try_into().unwrap()) as usize;
        i += 8;
        if i + fl > body.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control field overruns frame",
            ));
        }
        if ft == FSTRM_FIELD_CONTENT_TYPE {
            content_types.push(String::from_utf8_lossy(&body[i..i + fl]).into_owned());
        }
        i += fl;
    }
    if i != body.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in control frame",
        ));
    }
    Ok(Control {
        ctype,
        content_types,
    })
}

/// Sends `payloads` as a bidirectional Frame Streams session over `stream`:
/// READY → (ACCEPT) → START, data…, STOP → (FINISH). Returns the ACCEPT and FINISH frames.
pub fn fstrm_send_bidirectional<S: Read + Write>(
    stream: &mut S,
    content_type: &str,
    payloads: &[Vec<u8>],
) -> io::Result<(Control, Control)> {
    stream.write_all(&fstrm_control(FSTRM_READY, &[content_type]))?;
    stream.flush()?;
    let accept = read_control(stream)?;
    let mut out = fstrm_control(FSTRM_START, &[content_type]);
    for p in payloads {
        out.extend_from_slice(&fstrm_data(p));
    }
    out.extend_from_slice(&fstrm_control(FSTRM_STOP, &[]));
    stream.write_all(&out)?;
    stream.flush()?;
    let finish = read_control(stream)?;
    Ok((accept, finish))
}

/// Sends `payloads` unidirectionally: START, data…, STOP (no handshake).
pub fn fstrm_send_unidirectional<W: Write>(
    w: &mut W,
    content_type: &str,
    payloads: &[Vec<u8>],
) -> io::Result<()> {
    let mut out = fstrm_control(FSTRM_START, &[content_type]);
    for p in payloads {
        out.extend_from_slice(&fstrm_data(p));
    }
    out.extend_from_slice(&fstrm_control(FSTRM_STOP, &[]));
    w.write_all(&out)?;
    w.flush()
}

/// Connects to a unix socket with read/write timeouts.
pub fn connect_unix(path: &std::path::Path) -> io::Result<std::os::unix::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

// ---------------------------------------------------------------- protobuf

/// A minimal protobuf writer (proto2 wire format).
#[derive(Debug, Default, Clone)]
pub struct Pb {
    pub buf: Vec<u8>,
}

impl Pb {
    pub fn new() -> Pb {
        Pb::default()
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint(((field as u64) << 3) | wire_type as u64);
    }

    /// Wire type 0 (int32/uint32/uint64/enum/bool).
    pub fn uint(mut self, field: u32, v: u64) -> Pb {
        self.tag(field, 0);
        self.varint(v);
        self
    }

    /// Wire type 2 (bytes, string, embedded message).
    pub fn bytes(mut self, field: u32, v: &[u8]) -> Pb {
        self.tag(field, 2);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// Wire type 5 (fixed32).
    pub fn fixed32(mut self, field: u32, v: u32) -> Pb {
        self.tag(field, 5);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

// ---------------------------------------------------------------- dnstap

pub mod dnstap {
    //! Field numbers and enum values of dnstap.proto.
    pub const DNSTAP_IDENTITY: u32 = 1;
    pub const DNSTAP_VERSION: u32 = 2;
    pub const DNSTAP_MESSAGE: u32 = 14;
    pub const DNSTAP_TYPE: u32 = 15;
    pub const DNSTAP_TYPE_MESSAGE: u64 = 1;

    pub const M_TYPE: u32 = 1;
    pub const M_SOCKET_FAMILY: u32 = 2;
    pub const M_SOCKET_PROTOCOL: u32 = 3;
    pub const M_QUERY_ADDRESS: u32 = 4;
    pub const M_RESPONSE_ADDRESS: u32 = 5;
    pub const M_QUERY_PORT: u32 = 6;
    pub const M_RESPONSE_PORT: u32 = 7;
    pub const M_QUERY_TIME_SEC: u32 = 8;
    pub const M_QUERY_TIME_NSEC: u32 = 9;
    pub const M_QUERY_MESSAGE: u32 = 10;
    pub const M_QUERY_ZONE: u32 = 11;
    pub const M_RESPONSE_TIME_SEC: u32 = 12;
    pub const M_RESPONSE_TIME_NSEC: u32 = 13;
    pub const M_RESPONSE_MESSAGE: u32 = 14;

    pub const AUTH_RESPONSE: u64 = 2;
    pub const RESOLVER_RESPONSE: u64 = 4;
    pub const CLIENT_RESPONSE: u64 = 6;
    pub const FORWARDER_RESPONSE: u64 = 8;

    pub const INET: u64 = 1;
    pub const INET6: u64 = 2;
    pub const UDP: u64 = 1;
    pub const TCP: u64 = 2;
}

/// A dnstap `Message` of the resolver segment, for crafting input.
#[derive(Debug, Clone)]
pub struct TapMessage {
    pub mtype: u64,
    /// Wire-format zone name (see [`wire_name`]); `None` leaves query_zone out.
    pub query_zone: Option<Vec<u8>>,
    pub query_address: [u8; 4],
    pub response_address: [u8; 4],
    pub query_port: u32,
    pub response_port: u32,
    pub response_time_sec: u64,
    pub response_time_nsec: u32,
    pub response_message: Vec<u8>,
}

impl TapMessage {
    /// A RESOLVER_RESPONSE from 192.0.2.53:53 to 192.0.2.200:40000 (UDP/IPv4), stamped now.
    pub fn resolver_response(query_zone: &str, response_message: Vec<u8>) -> TapMessage {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        TapMessage {
            mtype: dnstap::RESOLVER_RESPONSE,
            query_zone: Some(wire_name(query_zone)),
            query_address: [192, 0, 2, 200],
            response_address: [192, 0, 2, 53],
            query_port: 40000,
            response_port: 53,
            response_time_sec: now.as_secs(),
            response_time_nsec: now.subsec_nanos(),
            response_message,
        }
    }

    /// The encoded `Dnstap` frame payload (type MESSAGE, with this message).
    pub fn encode(&self) -> Vec<u8> {
        use dnstap::*;
        let mut m = Pb::new()
            .uint(M_TYPE, self.mtype)
            .uint(M_SOCKET_FAMILY, INET)
            .uint(M_SOCKET_PROTOCOL, UDP)
            .bytes(M_QUERY_ADDRESS, &self.query_address)
            .bytes(M_RESPONSE_ADDRESS, &self.response_address)
            .uint(M_QUERY_PORT, self.query_port as u64)
            .uint(M_RESPONSE_PORT, self.response_port as u64);
        if let Some(z) = &self.query_zone {
            m = m.bytes(M_QUERY_ZONE, z);
        }
        let m = m
            .uint(M_RESPONSE_TIME_SEC, self.response_time_sec)
            .fixed32(M_RESPONSE_TIME_NSEC, self.response_time_nsec)
            .bytes(M_RESPONSE_MESSAGE, &self.response_message)
            .finish();
        Pb::new()
            .bytes(DNSTAP_IDENTITY, b"test-resolver")
            .uint(DNSTAP_TYPE, DNSTAP_TYPE_MESSAGE)
            .bytes(DNSTAP_MESSAGE, &m)
            .finish()
    }
}

// ---------------------------------------------------------------- DNS

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

/// Uncompressed wire form of a presentation name ("www.d1.com." or ".").
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        assert!(label.len() < 64, "label too long");
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// One resource record for [`DnsMessage`].
#[derive(Debug, Clone)]
pub struct Rr {
    /// Owner, either a wire name or a compression pointer (see [`Rr::owner_ptr`]).
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Rr {
    pub fn new(owner: &str, rtype: u16, ttl: u32, rdata: Vec<u8>) -> Rr {
        Rr {
            owner: wire_name(owner),
            rtype,
            class: CLASS_IN,
            ttl,
            rdata,
        }
    }

    pub fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Rr {
        Rr::new(owner, TYPE_A, ttl, ip.to_vec())
    }

    /// The owner as a compression pointer to `offset` (12 = the question name).
    pub fn owner_ptr(mut self, offset: u16) -> Rr {
        self.owner = (0xC000u16 | offset).to_be_bytes().to_vec();
        self
    }
}

/// A DNS message builder.
#[derive(Debug, Clone)]
pub struct DnsMessage {
    pub id: u16,
    /// Header flags word (QR, opcode, AA, TC, RD, RA, Z, rcode).
    pub flags: u16,
    pub question: Option<(String, u16)>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

impl DnsMessage {
    /// An authoritative response (QR=1, AA=1, RD=0, NOERROR) to `qname`/`qtype`.
    pub fn response(id: u16, qname: &str, qtype: u16) -> DnsMessage {
        DnsMessage {
            id,
            flags: 0x8400,
            question: Some((qname.to_string(), qtype)),
            answer: vec![],
            authority: vec![],
            additional: vec![],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&(self.question.is_some() as u16).to_be_bytes());
        b.extend_from_slice(&(self.answer.len() as u16).to_be_bytes());
        b.extend_from_slice(&(self.authority.len() as u16).to_be_bytes());
        b.extend_from_slice(&(self.additional.len() as u16).to_be_bytes());
        if let Some((q, t)) = &self.question {
            b.extend_from_slice(&wire_name(q));
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&CLASS_IN.to_be_bytes());
        }
        for rr in self
            .answer
            .iter()
            .chain(&self.authority)
            .chain(&self.additional)
        {
            b.extend_from_slice(&rr.owner);
            b.extend_from_slice(&rr.rtype.to_be_bytes());
            b.extend_from_slice(&rr.class.to_be_bytes());
            b.extend_from_slice(&rr.ttl.to_be_bytes());
            b.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
            b.extend_from_slice(&rr.rdata);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_and_frames() {
        assert_eq!(Pb::new().uint(1, 300).finish(), vec![0x08, 0xac, 0x02]);
        assert_eq!(
            Pb::new().bytes(14, b"ab").finish(),
            vec![0x72, 2, b'a', b'b']
        );
        assert_eq!(Pb::new().fixed32(13, 1).finish(), vec![0x6d, 1, 0, 0, 0]);
        let f = fstrm_control(FSTRM_READY, &["x"]);
        assert_eq!(
            f,
            vec![0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1, b'x']
        );
        let c = read_control(&mut &f[..]).unwrap();
        assert_eq!(
            c,
            Control {
                ctype: FSTRM_READY,
                content_types: vec!["x".into()]
            }
        );
        assert_eq!(wire_name("."), vec![0]);
        assert_eq!(wire_name("d1.com."), b"\x02d1\x03com\x00".to_vec());
    }
}
