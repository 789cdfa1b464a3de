//! DNS over TCP: stream reassembly per direction and the two-byte length framing (RFC 7766).
//! Bounded in streams, bytes and idle time; streams joined mid-way resynchronise on a plausible message.

use std::net::SocketAddr;

use dnsensor_core::wire::{uncompressed_name_len, HEADER_LEN};
use hashbrown::HashMap;

use crate::stats::CaptureSummary;

/// One direction of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
}

/// The parts of a TCP segment that reassembly needs.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    /// Sequence number of the segment (of the SYN itself when `syn`).
    pub seq: u32,
    /// SYN flag: the stream starts here, on a message boundary.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// Bytes charged per stream direction on top of its buffers.
const STREAM_OVERHEAD: usize = 128;

struct Stream {
    /// Sequence number of the byte after `buf`'s end.
    next_seq: u32,
    /// Contiguous bytes not yet taken as messages.
    buf: Vec<u8>,
    /// Segments that arrived ahead of a gap: (sequence number, bytes).
    ahead: Vec<(u32, Vec<u8>)>,
    ahead_bytes: usize,
    /// True when `buf` starts on a message boundary.
    synced: bool,
    last_seen_us: u64,
}

impl Stream {
    fn cost(&self) -> usize {
        self.buf.len() + self.ahead_bytes + STREAM_OVERHEAD
    }
}

/// Caps for [`TcpReassembler`].
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Stream directions held at once.
    pub max_streams: usize,
    /// Bytes buffered per direction (contiguous and ahead of a gap together).
    pub max_stream_bytes: usize,
    /// Bytes buffered over all streams.
    pub max_total_bytes: usize,
    /// A direction without segments for this long is forgotten.
    pub idle_us: u64,
}

/// The TCP reassembly table of one shard.
pub struct TcpReassembler {
    streams: HashMap<StreamKey, Stream>,
    limits: TcpLimits,
    bytes: usize,
    last_sweep_us: u64,
    /// Counters since the last take.
    pub(crate) stats: CaptureSummary,
}

/// How a direction's sequence position relates to a segment's, with wrap-around.
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl TcpReassembler {
    /// An empty table with these caps. `max_stream_bytes` should be at least 65,537 so that a
    /// maximal message with its length prefix fits.
    pub fn new(limits: TcpLimits) -> TcpReassembler {
        TcpReassembler {
            streams: HashMap::new(),
            limits,
            bytes: 0,
            last_sweep_us: 0,
            stats: CaptureSummary::default(),
        }
    }

    /// Stream directions held now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes held now.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Feeds one segment of direction `key` seen at `now_us`; calls `on_message` with each
    /// complete DNS message (without its length prefix) that it completes.
    pub fn segment(
        &mut self,
        key: StreamKey,
        seg: TcpSegment<'_>,
        now_us: u64,
        mut on_message: impl FnMut(&[u8]),
    ) {
        self.sweep(now_us);
        if seg.rst {
            self.close(&key);
            self.close(&StreamKey {
                src: key.dst,
                dst: key.src,
            });
            return;
        }
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if !self.streams.contains_key(&key) {
            if seg.payload.is_empty() && !seg.syn {
                // A bare ACK or FIN of a stream we never saw data of: no state for it, so
                // ACK floods cost nothing.
                return;
            }
            while self.streams.len() >= self.limits.max_streams.max(1) {
                if !self.evict_oldest(None) {
                    break;
                }
            }
            self.stats.tcp_streams += 1;
            self.bytes += STREAM_OVERHEAD;
            self.streams.insert(
                key,
                Stream {
                    next_seq: data_seq,
                    buf: Vec::new(),
                    ahead: Vec::new(),
                    ahead_bytes: 0,
                    synced: seg.syn,
                    last_seen_us: now_us,
                },
            );
        }
        let max_stream = self.limits.max_stream_bytes;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let before = stream.cost();
        stream.last_seen_us = now_us;
        if seg.syn && stream.buf.is_empty() && stream.ahead.is_empty() {
            stream.next_seq = data_seq;
            stream.synced = true;
        }
        let mut skipped = 0u64;
        if !seg.payload.is_empty() {
            let diff = seq_diff(data_seq, stream.next_seq);
            if diff <= 0 {
                let overlap = usize::try_from(-diff).unwrap_or(usize::MAX);
                if let Some(fresh) = seg.payload.get(overlap..).filter(|f| !f.is_empty()) {
                    append(stream, fresh, max_stream, &mut skipped);
                }
            } else if stream.buf.len() + stream.ahead_bytes + seg.payload.len() <= max_stream {
                stream.ahead_bytes += seg.payload.len();
                stream.ahead.push((data_seq, seg.payload.to_vec()));
            } else {
                // No room to wait for the gap: give up on what is buffered and start over at
                // this segment, looking for the next message boundary.
                skipped += (stream.buf.len() + stream.ahead_bytes) as u64;
                skipped += u64::try_from(diff).unwrap_or(0);
                stream.buf.clear();
                stream.ahead.clear();
                stream.ahead_bytes = 0;
                stream.synced = false;
                stream.next_seq = data_seq;
                append(stream, seg.payload, max_stream, &mut skipped);
            }
            // Segments that the gap's filling made contiguous.
            while let Some(i) = stream
                .ahead
                .iter()
                .position(|(s, _)| seq_diff(*s, stream.next_seq) <= 0)
            {
                let (s, bytes) = stream.ahead.swap_remove(i);
                stream.ahead_bytes -= bytes.len();
                let overlap = usize::try_from(seq_diff(stream.next_seq, s)).unwrap_or(usize::MAX);
                if let Some(fresh) = bytes.get(overlap..).filter(|f| !f.is_empty()) {
                    append(stream, fresh, max_stream, &mut skipped);
                }
            }
            let mut messages = 0u64;
            let mut short = 0u64;
            extract(stream, &mut skipped, &mut |m| {
                if m.len() < HEADER_LEN {
                    short += 1;
                } else {
                    messages += 1;
                    on_message(m);
                }
            });
            self.stats.tcp_messages += messages;
            self.stats.dns_errors += short;
        }
        let after = stream.cost();
        let finished = seg.fin && stream.ahead.is_empty();
        self.stats.tcp_bytes_skipped += skipped;
        self.bytes = (self.bytes + after).saturating_sub(before);
        if finished {
            self.close(&key);
        }
        while self.bytes > self.limits.max_total_bytes {
            if !self.evict_oldest(Some(key)) {
                break;
            }
        }
        self.stats.tcp_streams_peak = self.stats.tcp_streams_peak.max(self.streams.len() as u64);
        self.stats.tcp_bytes_peak = self.stats.tcp_bytes_peak.max(self.bytes as u64);
    }

    fn close(&mut self, key: &StreamKey) {
        if let Some(s) = self.streams.remove(key) {
            self.bytes = self.bytes.saturating_sub(s.cost());
            self.stats.tcp_bytes_skipped += (s.buf.len() + s.ahead_bytes) as u64;
        }
    }

    /// Drops the least recently active direction (other than `keep` unless it is the only
    /// one). Returns false when nothing was left to drop.
    fn evict_oldest(&mut self, keep: Option<StreamKey>) -> bool {
        let victim = self
            .streams
            .iter()
            .filter(|(k, _)| Some(**k) != keep)
            .min_by_key(|(_, s)| s.last_seen_us)
            .map(|(k, _)| *k)
            .or(keep.filter(|k| self.streams.contains_key(k)));
        match victim {
            Some(k) => {
                self.close(&k);
                self.stats.tcp_evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets idle directions; at most once a second of packet time.
    fn sweep(&mut self, now_us: u64) {
        if now_us.saturating_sub(self.last_sweep_us) < 1_000_000 {
            return;
        }
        self.last_sweep_us = now_us;
        let idle = self.limits.idle_us;
        let mut freed = 0usize;
        let mut closed = 0u64;
        let mut skipped = 0u64;
        self.streams.retain(|_, s| {
            let keep = now_us.saturating_sub(s.last_seen_us) < idle;
            if !keep {
                freed += s.cost();
                closed += 1;
                skipped += (s.buf.len() + s.ahead_bytes) as u64;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        self.stats.tcp_idle_closed += closed;
        self.stats.tcp_bytes_skipped += skipped;
    }
}

/// Appends contiguous bytes, dropping the buffer (and resynchronising) if it would overflow.
fn append(stream: &mut Stream, fresh: &[u8], max: usize, skipped: &mut u64) {
    if stream.buf.len() + stream.ahead_bytes + fresh.len() > max {
        *skipped += stream.buf.len() as u64;
        stream.buf.clear();
        stream.synced = false;
    }
    stream.buf.extend_from_slice(fresh);
    stream.next_seq = stream.next_seq.wrapping_add(fresh.len() as u32);
}

/// Takes every complete length-prefixed message from the front of the buffer.
fn extract(stream: &mut Stream, skipped: &mut u64, on_message: &mut dyn FnMut(&[u8])) {
    let mut pos = 0usize;
    loop {
        if !stream.synced {
            match resync(stream.buf.get(pos..).unwrap_or(&[])) {
                Resync::Found(at) => {
                    *skipped += at as u64;
                    pos += at;
                    stream.synced = true;
                }
                Resync::NeedMore(at) => {
                    *skipped += at as u64;
                    pos += at;
                    break;
                }
            }
        }
        let rest = stream.buf.get(pos..).unwrap_or(&[]);
        let Some(len) = rest
            .get(0..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let Some(msg) = rest.get(2..2 + len) else {
            break;
        };
        on_message(msg);
        pos += 2 + len;
    }
    if pos > 0 {
        stream.buf.drain(..pos.min(stream.buf.len()));
    }
}

enum Resync {
    /// A plausible message starts at this offset.
    Found(usize),
    /// Nothing before this offset can start a message; more bytes are needed to judge the rest.
    NeedMore(usize),
}

/// Looks for the first offset where a length prefix and a DNS header with one plausible
/// question begin.
fn resync(buf: &[u8]) -> Resync {
    for at in 0..buf.len() {
        match plausible(buf.get(at..).unwrap_or(&[])) {
            Some(true) => return Resync::Found(at),
            Some(false) => {}
            None => return Resync::NeedMore(at),
        }
    }
    Resync::NeedMore(buf.len())
}

/// Whether `b` starts with a plausible length-prefixed DNS message; None when more bytes are
/// needed to tell. The test is the header's framing and the question, which is cheap and does
/// not depend on the rest of the message having arrived.
fn plausible(b: &[u8]) -> Option<bool> {
    let word = |i: usize| b.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let len = usize::from(word(0)?);
    // A header, a root name, a type and a class.
    if len < HEADER_LEN + 5 {
        return Some(false);
    }
    let flags = word(4)?;
    let (qd, an, ns, ar) = (word(6)?, word(8)?, word(10)?, word(12)?);
    // Opcode QUERY, Z clear, one question, and no more records than the length could hold.
    let max_records = (len / 11) as u16;
    if flags & 0x7840 != 0 || qd != 1 || an > max_records || ns > max_records || ar > max_records {
        return Some(false);
    }
    let name_at = 2 + HEADER_LEN;
    let msg_end = 2 + len;
    let window = b.get(name_at..msg_end.min(b.len()))?;
    match uncompressed_name_len(window) {
        Ok(n) => {
            let class_at = name_at + n + 2;
            if class_at + 2 > msg_end {
                return Some(false);
            }
            let class = word(class_at)?;
            Some(matches!(class, 1 | 3 | 4 | 254 | 255))
        }
        Err(dnsensor_core::wire::WireError::Truncated) if b.len() < msg_end => None,
        Err(_) => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StreamKey {
        StreamKey {
            src: "192.0.2.1:53".parse().unwrap(),
            dst: "192.0.2.2:40000".parse().unwrap(),
        }
    }

    fn limits() -> TcpLimits {
        TcpLimits {
            max_streams: 4,
            max_stream_bytes: 70_000,
            max_total_bytes: 1 << 20,
            idle_us: 60_000_000,
        }
    }

    /// A minimal query for "a." with the given id, framed with its length.
    fn framed(id: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1]);
        let mut out = (m.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&m);
        out
    }

    fn seg(seq: u32, syn: bool, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            seq,
            syn,
            fin: false,
            rst: false,
            payload,
        }
    }

    fn ids(t: &mut TcpReassembler, segs: &[TcpSegment<'_>]) -> Vec<u16> {
        let mut out = Vec::new();
        for s in segs {
            t.segment(key(), *s, 1, |m| out.push(u16::from_be_bytes([m[0], m[1]])));
        }
        out
    }

    #[test]
    fn split_coalesced_and_out_of_order() {
        let mut t = TcpReassembler::new(limits());
        let mut stream = framed(1);
        stream.extend(framed(2));
        stream.extend(framed(3));
        let (a, b) = stream.split_at(10);
        let (b, c) = b.split_at(30);
        // SYN at 1000, data from 1001; the last piece arrives before the middle one.
        let got = ids(
            &mut t,
            &[
                seg(1000, true, &[]),
                seg(1001, false, a),
                seg(1041, false, c),
                seg(1011, false, b),
                seg(1011, false, b),
            ],
        );
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(t.stats.tcp_bytes_skipped, 0);
        assert_eq!(t.stats.tcp_messages, 3);
    }

    #[test]
    fn mid_stream_start_resynchronises() {
        let mut t = TcpReassembler::new(limits());
        let mut stream = framed(7)[5..].to_vec();
        let skip = stream.len();
        stream.extend(framed(8));
        stream.extend(framed(9));
        let got = ids(&mut t, &[seg(5, false, &stream)]);
        assert_eq!(got, [8, 9]);
        assert_eq!(t.stats.tcp_bytes_skipped, skip as u64);
    }

    #[test]
    fn wraps_around_sequence_space() {
        let mut t = TcpReassembler::new(limits());
        let s = framed(4);
        let (a, b) = s.split_at(7);
        let got = ids(
            &mut t,
            &[
                seg(u32::MAX - 2, true, &[]),
                seg(u32::MAX - 1, false, a),
                seg((u32::MAX - 1).wrapping_add(7), false, b),
            ],
        );
        assert_eq!(got, [4]);
    }

    #[test]
    fn half_open_streams_stay_within_caps() {
        let lim = TcpLimits {
            max_streams: 100,
            max_stream_bytes: 70_000,
            max_total_bytes: 1_000_000,
            idle_us: 60_000_000,
        };
        let mut t = TcpReassembler::new(lim);
        let junk = [0xFFu8; 1000];
        for i in 0..5_000u32 {
            let k = StreamKey {
                src: std::net::SocketAddr::new([192, 0, 2, 1].into(), (i % 60_000) as u16 + 1),
                dst: "192.0.2.2:53".parse().unwrap(),
            };
            // A stream that only ever sends data ahead of a gap it never fills.
            t.segment(k, seg(0, true, &[]), u64::from(i), |_| panic!("no message"));
            t.segment(k, seg(5000, false, &junk), u64::from(i), |_| {
                panic!("no message")
            });
            assert!(t.len() <= 100);
            assert!(t.bytes_held() <= 1_000_000);
        }
        assert!(t.stats.tcp_evictions >= 4_900);
        assert!(t.stats.tcp_streams_peak <= 100);
        // Idle streams go after the idle time.
        t.segment(key(), seg(1, false, &[0; 3]), 100_000_000, |_| {});
        assert_eq!(t.len(), 1);
    }
}
