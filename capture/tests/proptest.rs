//! Property tests: no frame, fragment or segment sequence makes the decoder panic or outgrow its caps.
//! Inputs are arbitrary bytes and half-valid packets, with every supported link type.

mod common;

use std::sync::{Arc, RwLock};

use common::*;
use dnsensor_capture::bailiwick::ZoneTable;
use dnsensor_capture::decode::Decoder;
use dnsensor_capture::link::LinkType;
use dnsensor_capture::tcp::{StreamKey, TcpLimits, TcpReassembler, TcpSegment};
use dnsensor_capture::TapConfig;
use proptest::prelude::*;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Loop,
];

fn decoder(accept_unpaired: bool) -> Decoder {
    let cfg = TapConfig {
        shards: 1,
        accept_unpaired,
        client_responses: true,
        ports: vec![],
        ..TapConfig::default()
    };
    Decoder::new(&cfg, Arc::new(RwLock::new(ZoneTable::new(100))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_frames_never_panic(link in 0usize..6, frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
        let mut d = decoder(true);
        let mut n = 0;
        for (i, f) in frames.iter().enumerate() {
            d.packet(LINKS[link], i as u64, f, &mut |_| n += 1);
        }
        let s = d.take_stats();
        prop_assert!(s.observations == n);
    }

    #[test]
    fn half_valid_udp_and_fragments_never_panic(
        payloads in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..120), 0usize..400, any::<bool>(), any::<bool>()), 1..30)
    ) {
        let mut d = decoder(true);
        for (i, (p, off, more, fragment)) in payloads.iter().enumerate() {
            let mut msg = a_response(7, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
            // Garble the tail of a real response with the arbitrary bytes.
            let keep = msg.len().min(*off % 64 + 12);
            msg.truncate(keep);
            msg.extend_from_slice(p);
            let pkt = if *fragment {
                ipv4([192, 0, 2, 53], [192, 0, 2, 7], 17, 9, (off / 8 * 8, *more), &udp(53, 4000, &msg))
            } else {
                ipv6_frag(v6(53), v6(7), 17, 9, off / 8 * 8, *more, &msg)
            };
            d.packet(LinkType::RawIp, i as u64 * 1000, &pkt, &mut |_| {});
        }
        d.take_stats();
    }

    #[test]
    fn arbitrary_tcp_segments_never_panic(segs in proptest::collection::vec((any::<u32>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..40)) {
        let mut t = TcpReassembler::new(TcpLimits { max_streams: 4, max_stream_bytes: 1000, max_total_bytes: 2000, idle_us: 10 });
        let key = StreamKey { src: "192.0.2.1:53".parse().unwrap(), dst: "192.0.2.2:4000".parse().unwrap() };
        for (i, (seq, flags, payload)) in segs.iter().enumerate() {
            let seg = TcpSegment { seq: *seq % 2048, syn: flags & 1 != 0, fin: flags & 2 != 0, rst: flags & 4 != 0, payload };
            t.segment(key, seg, i as u64, |m| assert!(m.len() >= 12));
            prop_assert!(t.bytes_held() <= 2000 + 128);
            prop_assert!(t.len() <= 4);
        }
    }
}
