//! Fuzz target for DNS-over-TCP reassembly: a sequence of arbitrary segments on two stream directions.
//! Nothing may panic, every message handed out is framed, and the caps on streams and bytes always hold.
#![no_main]

use dnsensor_capture::tcp::{StreamKey, TcpLimits, TcpReassembler, TcpSegment};
use libfuzzer_sys::fuzz_target;

const LIMITS: TcpLimits = TcpLimits {
    max_streams: 3,
    max_stream_bytes: 70_000,
    max_total_bytes: 100_000,
    idle_us: 5_000_000,
};

fuzz_target!(|data: &[u8]| {
    let mut t = TcpReassembler::new(LIMITS);
    let keys: Vec<StreamKey> = (0..4u16)
        .map(|i| StreamKey {
            src: std::net::SocketAddr::from(([192, 0, 2, 1], 40_000 + i)),
            dst: std::net::SocketAddr::from(([192, 0, 2, 53], 53)),
        })
        .collect();
    let mut rest = data;
    let mut now = 0u64;
    // Each segment: flags/stream byte, 16-bit sequence number (a small space, so segments
    // overlap and reorder), 8-bit length, payload.
    while rest.len() >= 4 {
        let flags = rest[0];
        let seq = u32::from(u16::from_le_bytes([rest[1], rest[2]]));
        let len = usize::from(rest[3]);
        let end = (4 + len).min(rest.len());
        let payload = &rest[4..end];
        rest = &rest[end..];
        now += u64::from(flags >> 6) * 2_000_000;
        let seg = TcpSegment {
            seq,
            syn: flags & 1 != 0,
            fin: flags & 2 != 0,
            rst: flags & 4 == 4 && flags & 8 == 8,
            payload,
        };
        let key = keys[usize::from((flags >> 4) & 3)];
        t.segment(key, seg, now, |m| {
            assert!(m.len() >= 12, "short message handed out");
        });
        assert!(t.len() <= LIMITS.max_streams);
        assert!(t.bytes_held() <= LIMITS.max_total_bytes.max(LIMITS.max_stream_bytes) + 128);
    }
});
