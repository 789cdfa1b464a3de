//! Fuzz target for the tap's packet path: link layer, IP, fragment reassembly, UDP/TCP and pairing.
//! Input: a link-type byte, then frames each prefixed by a 16-bit length. Nothing may panic or outgrow the caps.
#![no_main]

use std::sync::{Arc, RwLock};

use dnsensor_capture::bailiwick::ZoneTable;
use dnsensor_capture::decode::Decoder;
use dnsensor_capture::link::LinkType;
use dnsensor_capture::{Limits, TapConfig};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Loop,
];
const FRAG_CAP: usize = 200_000;
const TCP_CAP: usize = 140_000;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(sel) % LINKS.len()];
    let config = TapConfig {
        shards: 1,
        // Every response is used, so pairing, segments and learning all run.
        accept_unpaired: sel & 0x80 != 0,
        client_responses: sel & 0x40 != 0,
        ports: if sel & 0x20 != 0 { vec![53] } else { vec![] },
        limits: Limits {
            fragment_bytes: FRAG_CAP,
            tcp_streams: 8,
            tcp_total_bytes: TCP_CAP,
            pending_queries: 64,
            zone_entries: 32,
            ..Limits::default()
        },
        ..TapConfig::default()
    };
    let mut decoder = Decoder::new(&config, Arc::new(RwLock::new(ZoneTable::new(32))));
    let mut seen = 0u64;
    let mut now = 1_000_000u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let frame = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        // Packet time moves with the input so that timeouts and sweeps run too.
        now += u64::from(len as u16 % 7) * 900_000;
        decoder.packet(link, now, frame, &mut |obs| {
            assert!(obs.response.len() >= 12);
            seen += 1;
        });
        let (frag, tcp) = decoder.held_bytes();
        assert!(frag <= FRAG_CAP, "fragments hold {frag}");
        assert!(tcp <= TCP_CAP, "tcp holds {tcp}");
    }
    assert_eq!(decoder.take_stats().observations, seen);
});
