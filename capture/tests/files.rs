//! The tap end to end on capture files written by the tests: every link type, fragments, TCP,
//! pairing, segments, truncation and the caps, compared as exact COF lines and counters.

mod common;

use common::*;
use dnsensor_capture::{Capture, CaptureError, Limits, Source, TapConfig};

const T: u64 = 1_795_742_737;
const T_US: u64 = T * 1_000_000;
const CLIENT4: [u8; 4] = [198, 51, 100, 7];
const SERVER4: [u8; 4] = [192, 0, 2, 53];

fn www_line(ips: &[&str], bailiwick: Option<&str>, count: u64) -> String {
    let rdata: Vec<String> = ips.iter().map(|i| format!("\"{i}\"")).collect();
    let b = bailiwick
        .map(|b| format!(",\"bailiwick\":\"{b}\""))
        .unwrap_or_default();
    format!(
        r#"{{"rrname":"www.d1.com.","rrtype":"A","rdata":[{}]{b},"time_first":{T},"time_last":{T},"count":{count},"sensor_id":"t1"}}"#,
        rdata.join(",")
    )
}

/// A UDP query (RD=0) and its response between CLIENT4 and SERVER4, as IPv4 packets.
fn udp_pair_v4(id: u16, flags: (u16, u16)) -> Vec<Vec<u8>> {
    let q = query(id, "www.d1.com", flags.0);
    let r = a_response(id, "www.d1.com", flags.1, &[[192, 0, 2, 1]]);
    vec![
        ipv4(CLIENT4, SERVER4, 17, 1, (0, false), &udp(40000, 53, &q)),
        ipv4(SERVER4, CLIENT4, 17, 2, (0, false), &udp(53, 40000, &r)),
    ]
}

fn udp_pair_v6(id: u16) -> Vec<Vec<u8>> {
    let q = query(id, "www.d1.com", QUERY);
    let r = a_response(id, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
    vec![
        ipv6(v6(7), v6(53), 17, &udp(40000, 53, &q)),
        ipv6(v6(53), v6(7), 17, &udp(53, 40000, &r)),
    ]
}

fn timed(packets: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    packets
        .into_iter()
        .enumerate()
        .map(|(i, p)| (T_US + i as u64 * 1000, p))
        .collect()
}

fn one_link(linktype: u32, packets: Vec<Vec<u8>>) {
    let file = pcap_file(linktype, &timed(packets));
    let (lines, s, _) = run_files(&[("link.pcap", file)], tap_config());
    assert_eq!(lines, vec![www_line(&["192.0.2.1"], None, 1)], "{s}");
    assert_eq!(
        (s.packets, s.dns_messages, s.queries, s.responses_paired),
        (2, 2, 1, 1),
        "{s}"
    );
    assert_eq!(s.link_errors + s.ip_errors + s.unsolicited, 0, "{s}");
}

fn wrap(packets: Vec<Vec<u8>>, f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Vec<u8>> {
    packets.iter().map(|p| f(p)).collect()
}

#[test]
fn ethernet() {
    one_link(
        1,
        wrap(udp_pair_v4(1, (QUERY, RESP_AA)), |p| {
            common::ethernet(&[], p)
        }),
    );
}

#[test]
fn ethernet_8021q() {
    one_link(
        1,
        wrap(udp_pair_v4(2, (QUERY, RESP_AA)), |p| {
            common::ethernet(&[(0x8100, 10)], p)
        }),
    );
}

#[test]
fn ethernet_qinq_ipv6() {
    one_link(
        1,
        wrap(udp_pair_v6(3), |p| {
            common::ethernet(&[(0x88a8, 100), (0x8100, 10)], p)
        }),
    );
}

#[test]
fn linux_sll() {
    one_link(113, wrap(udp_pair_v4(4, (QUERY, RESP_AA)), sll));
}

#[test]
fn linux_sll2_ipv6() {
    one_link(276, wrap(udp_pair_v6(5), sll2));
}

#[test]
fn raw_ipv4() {
    one_link(228, udp_pair_v4(6, (QUERY, RESP_AA)));
}

#[test]
fn raw_ipv6() {
    one_link(229, udp_pair_v6(7));
}

#[test]
fn linktype_raw() {
    one_link(101, udp_pair_v4(8, (QUERY, RESP_AA)));
}

#[test]
fn bsd_null_little_endian() {
    one_link(0, wrap(udp_pair_v6(9), null));
}

#[test]
fn openbsd_loop() {
    one_link(108, wrap(udp_pair_v4(10, (QUERY, RESP_AA)), looped));
}

#[test]
fn pcapng_file_reads() {
    let packets = wrap(udp_pair_v4(11, (QUERY, RESP_AA)), |p| {
        common::ethernet(&[], p)
    });
    let file = pcapng_file(1, &timed(packets));
    let (lines, s, _) = run_files(&[("x.pcapng", file)], tap_config());
    assert_eq!(lines, vec![www_line(&["192.0.2.1"], None, 1)], "{s}");
}

fn nine_addresses() -> Vec<[u8; 4]> {
    (1..=9u8).map(|i| [192, 0, 2, i]).collect()
}

const NINE: [&str; 9] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.4",
    "192.0.2.5",
    "192.0.2.6",
    "192.0.2.7",
    "192.0.2.8",
    "192.0.2.9",
];

#[test]
fn ipv4_fragments_out_of_order() {
    let q = query(21, "www.d1.com", QUERY);
    let r = a_response(21, "www.d1.com", RESP_AA, &nine_addresses());
    let dgram = udp(53, 40000, &r);
    assert!(dgram.len() > 160);
    let mut packets = vec![ipv4(
        CLIENT4,
        SERVER4,
        17,
        1,
        (0, false),
        &udp(40000, 53, &q),
    )];
    let pieces: Vec<&[u8]> = dgram.chunks(64).collect();
    let n = pieces.len();
    // Last fragment first, then the rest in order.
    for i in std::iter::once(n - 1).chain(0..n - 1) {
        packets.push(ipv4(
            SERVER4,
            CLIENT4,
            17,
            777,
            (i * 64, i + 1 < n),
            pieces[i],
        ));
    }
    let file = pcap_file(228, &timed(packets));
    let (lines, s, _) = run_files(&[("frag4.pcap", file)], tap_config());
    assert_eq!(lines, vec![www_line(&NINE, None, 1)], "{s}");
    assert_eq!(s.fragments, n as u64);
    assert_eq!(s.fragments_reassembled, 1);
    assert_eq!(s.fragment_drops, 0);
}

#[test]
fn ipv6_fragments() {
    let q = query(22, "www.d1.com", QUERY);
    let r = a_response(22, "www.d1.com", RESP_AA, &nine_addresses());
    let dgram = udp(53, 40000, &r);
    let mut packets = vec![ipv6(v6(7), v6(53), 17, &udp(40000, 53, &q))];
    let pieces: Vec<&[u8]> = dgram.chunks(48).collect();
    let n = pieces.len();
    for (i, p) in pieces.iter().enumerate().rev() {
        packets.push(ipv6_frag(
            v6(53),
            v6(7),
            17,
            0x0102_0304,
            i * 48,
            i + 1 < n,
            p,
        ));
    }
    let file = pcap_file(1, &timed(wrap(packets, |p| common::ethernet(&[], p))));
    let (lines, s, _) = run_files(&[("frag6.pcap", file)], tap_config());
    assert_eq!(lines, vec![www_line(&NINE, None, 1)], "{s}");
    assert_eq!(s.fragments, n as u64);
    assert_eq!(s.fragments_reassembled, 1);
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

#[test]
fn tcp_split_coalesced_and_out_of_order() {
    let q1 = query(31, "www.d1.com", QUERY);
    let q2 = query(32, "mail.d1.com", QUERY);
    let r1 = a_response(31, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
    let r2 = a_response(32, "mail.d1.com", RESP_AA, &[[198, 51, 100, 25]]);
    let mut up = framed(&q1);
    up.extend(framed(&q2));
    let mut down = framed(&r1);
    down.extend(framed(&r2));
    let (c, s) = (CLIENT4, SERVER4);
    let cs = |seq: u32, flags: u8, p: &[u8]| {
        ipv4(c, s, 6, 1, (0, false), &tcp(40001, 53, seq, flags, p))
    };
    let sc = |seq: u32, flags: u8, p: &[u8]| {
        ipv4(s, c, 6, 2, (0, false), &tcp(53, 40001, seq, flags, p))
    };
    // Both queries coalesced in one segment; the responses split in three pieces, the last
    // arriving before the middle one.
    let (d1, rest) = down.split_at(5);
    let (d2, d3) = rest.split_at(30);
    let packets = vec![
        cs(100, SYN, &[]),
        sc(5000, SYN | ACK, &[]),
        cs(101, PSH_ACK, &up),
        sc(5001, PSH_ACK, d1),
        sc(5001 + 35, PSH_ACK, d3),
        sc(5001 + 5, PSH_ACK, d2),
        sc(5001 + down.len() as u32, FIN_ACK, &[]),
    ];
    let (lines, st, _) = run_files(
        &[("tcp.pcap", pcap_file(228, &timed(packets)))],
        tap_config(),
    );
    assert_eq!(
        lines,
        vec![
            format!(
                r#"{{"rrname":"mail.d1.com.","rrtype":"A","rdata":["198.51.100.25"],"time_first":{T},"time_last":{T},"count":1,"sensor_id":"t1"}}"#
            ),
            www_line(&["192.0.2.1"], None, 1),
        ],
        "{st}"
    );
    assert_eq!(
        (st.tcp_streams, st.tcp_messages, st.tcp_bytes_skipped),
        (2, 4, 0),
        "{st}"
    );
    assert_eq!(st.responses_paired, 2);
}

#[test]
fn tcp_mid_stream_start_resynchronises() {
    let q0 = query(40, "old.d1.com", QUERY);
    let r0 = a_response(40, "old.d1.com", RESP_AA, &[[192, 0, 2, 40]]);
    let q1 = query(41, "www.d1.com", QUERY);
    let r1 = a_response(41, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
    let (c, s) = (CLIENT4, SERVER4);
    // The capture starts in the middle of r0 (and of q0): the tails are skipped and counted.
    let up_tail = framed(&q0)[7..].to_vec();
    let down_tail = framed(&r0)[9..].to_vec();
    let mut up = up_tail.clone();
    up.extend(framed(&q1));
    let mut down = down_tail.clone();
    down.extend(framed(&r1));
    let packets = vec![
        ipv4(c, s, 6, 1, (0, false), &tcp(40002, 53, 7000, PSH_ACK, &up)),
        ipv4(
            s,
            c,
            6,
            2,
            (0, false),
            &tcp(53, 40002, 9000, PSH_ACK, &down),
        ),
    ];
    let (lines, st, _) = run_files(
        &[("mid.pcap", pcap_file(228, &timed(packets)))],
        tap_config(),
    );
    assert_eq!(lines, vec![www_line(&["192.0.2.1"], None, 1)], "{st}");
    assert_eq!(
        st.tcp_bytes_skipped,
        (up_tail.len() + down_tail.len()) as u64,
        "{st}"
    );
    assert_eq!(st.tcp_messages, 2);
}

#[test]
fn unsolicited_responses_are_dropped_and_counted() {
    let q = query(50, "www.d1.com", QUERY);
    let wrong_id = a_response(51, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
    let wrong_q = a_response(50, "www.bank.com", RESP_AA, &[[192, 0, 2, 66]]);
    let never = a_response(52, "never.d1.com", RESP_AA, &[[192, 0, 2, 2]]);
    let packets = vec![
        ipv4(CLIENT4, SERVER4, 17, 1, (0, false), &udp(40000, 53, &q)),
        ipv4(
            SERVER4,
            CLIENT4,
            17,
            2,
            (0, false),
            &udp(53, 40000, &wrong_id),
        ),
        ipv4(
            SERVER4,
            CLIENT4,
            17,
            3,
            (0, false),
            &udp(53, 40000, &wrong_q),
        ),
        ipv4(
            SERVER4,
            [198, 51, 100, 8],
            17,
            4,
            (0, false),
            &udp(53, 40000, &never),
        ),
    ];
    let (lines, s, _) = run_files(
        &[("u.pcap", pcap_file(228, &timed(packets.clone())))],
        tap_config(),
    );
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        (s.unsolicited, s.responses_paired, s.observations),
        (3, 0, 0),
        "{s}"
    );
    // For a one-direction tap they are used, RD taken from the response.
    let cfg = TapConfig {
        accept_unpaired: true,
        ..tap_config()
    };
    let (lines, s, _) = run_files(&[("u.pcap", pcap_file(228, &timed(packets)))], cfg);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!((s.unpaired_accepted, s.unsolicited), (3, 0), "{s}");
}

#[test]
fn rd1_is_client_traffic() {
    let packets = udp_pair_v4(60, (QUERY_RD, RESP_AA_RD));
    let (lines, s, _) = run_files(
        &[("rd.pcap", pcap_file(228, &timed(packets.clone())))],
        tap_config(),
    );
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        (s.client_skipped, s.responses_paired, s.observations),
        (1, 0, 0),
        "{s}"
    );
    let cfg = TapConfig {
        client_responses: true,
        ..tap_config()
    };
    let (lines, s, _) = run_files(&[("rd.pcap", pcap_file(228, &timed(packets)))], cfg);
    assert_eq!(lines, vec![www_line(&["192.0.2.1"], None, 1)]);
    assert_eq!(
        (s.client_skipped, s.observations, s.with_bailiwick),
        (0, 1, 0),
        "{s}"
    );
}

#[test]
fn truncated_file_keeps_what_came_before() {
    let mut packets = udp_pair_v4(70, (QUERY, RESP_AA));
    packets.extend(udp_pair_v4(71, (QUERY, RESP_AA)));
    let mut file = pcap_file(228, &timed(packets));
    // Cut the last record in the middle of its data.
    file.truncate(file.len() - 10);
    let good = pcap_file(228, &timed(udp_pair_v6(72)));
    let (lines, s, _) = run_files(&[("cut.pcap", file), ("next.pcap", good)], tap_config());
    // id 70 paired from the first file, id 72 from the second: the same RRset twice.
    assert_eq!(lines, vec![www_line(&["192.0.2.1"], None, 2)], "{s}");
    assert_eq!((s.files, s.truncated_files, s.packets), (2, 1, 5), "{s}");
    assert_eq!(s.queries_expired + s.unsolicited, 0);
}

#[test]
fn bailiwick_learned_from_capture_and_spoofed_record_dropped() {
    let x = [192, 0, 2, 53];
    let soa = {
        let mut r = wire("ns1.d1.com");
        r.extend(wire("hostmaster.d1.com"));
        for v in [1u32, 7200, 3600, 1_209_600, 300] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r
    };
    // X answers NXDOMAIN with d1.com's SOA: X serves d1.com.
    let q1 = query(80, "nope.d1.com", QUERY);
    let r1 = message(80, RESP_AA | 3, "nope.d1.com", 1, &[(1, "d1.com", 6, soa)]);
    // Then X answers www.d1.com and slips in www.bank.com.
    let q2 = query(81, "www.d1.com", QUERY);
    let r2 = message(
        81,
        RESP_AA,
        "www.d1.com",
        1,
        &[
            (0, "www.d1.com", 1, vec![192, 0, 2, 1]),
            (2, "www.bank.com", 1, vec![192, 0, 2, 66]),
        ],
    );
    let packets = vec![
        ipv4(CLIENT4, x, 17, 1, (0, false), &udp(40000, 53, &q1)),
        ipv4(x, CLIENT4, 17, 2, (0, false), &udp(53, 40000, &r1)),
        ipv4(CLIENT4, x, 17, 3, (0, false), &udp(40001, 53, &q2)),
        ipv4(x, CLIENT4, 17, 4, (0, false), &udp(53, 40001, &r2)),
    ];
    let (lines, s, snap) = run_files(&[("b.pcap", pcap_file(228, &timed(packets)))], tap_config());
    assert_eq!(
        lines,
        vec![
            format!(
                r#"{{"rrname":"d1.com.","rrtype":"SOA","rdata":["ns1.d1.com. hostmaster.d1.com. 1 7200 3600 1209600 300"],"bailiwick":"d1.com.","time_first":{T},"time_last":{T},"count":1,"sensor_id":"t1"}}"#
            ),
            www_line(&["192.0.2.1"], Some("d1.com."), 1),
        ],
        "{s}"
    );
    assert_eq!(snap.extract.out_of_bailiwick, 1);
    assert_eq!((s.zones_learned, s.with_bailiwick), (1, 2), "{s}");
}

#[test]
fn endless_fragments_stay_within_the_cap() {
    let cap = 512 * 1024;
    let mut packets = Vec::new();
    for id in 0..3000u16 {
        // Each datagram's only fragment claims a high offset: the worst memory per packet.
        packets.push(ipv4(
            [203, 0, 113, (id % 250) as u8],
            SERVER4,
            17,
            id,
            (60_000, true),
            &[0u8; 8],
        ));
    }
    let cfg = TapConfig {
        shards: 1,
        limits: Limits {
            fragment_bytes: cap,
            ..Limits::default()
        },
        ..tap_config()
    };
    let (lines, s, _) = run_files(&[("flood.pcap", pcap_file(228, &timed(packets)))], cfg);
    assert!(lines.is_empty());
    assert_eq!(s.fragments, 3000);
    assert!(s.fragment_bytes_peak <= cap as u64, "{s}");
    // 60,008 bytes and an entry each: at most 8 fit under 512 KiB.
    assert!(s.fragment_drops >= 2990, "{s}");
}

#[test]
fn half_open_tcp_streams_stay_within_the_caps() {
    let mut packets = Vec::new();
    for i in 0..2000u16 {
        // SYN, then 1000 bytes beyond a gap that never fills.
        packets.push(ipv4(
            [203, 0, 113, 1],
            SERVER4,
            6,
            i,
            (0, false),
            &tcp(1024 + i, 53, 0, SYN, &[]),
        ));
        packets.push(ipv4(
            [203, 0, 113, 1],
            SERVER4,
            6,
            i,
            (0, false),
            &tcp(1024 + i, 53, 500, PSH_ACK, &[0xAB; 1000]),
        ));
    }
    let cfg = TapConfig {
        shards: 1,
        limits: Limits {
            tcp_streams: 50,
            tcp_total_bytes: 100_000,
            ..Limits::default()
        },
        ..tap_config()
    };
    let (lines, s, _) = run_files(&[("syn.pcap", pcap_file(228, &timed(packets)))], cfg);
    assert!(lines.is_empty());
    assert_eq!(s.tcp_streams, 2000, "{s}");
    assert!(s.tcp_streams_peak <= 50, "{s}");
    // The total cap is raised to one stream's cap (66 KiB) only if it were smaller.
    assert!(s.tcp_bytes_peak <= 100_000, "{s}");
    assert_eq!(s.tcp_evictions, 1950, "{s}");
}

#[test]
fn open_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pcap");
    let e = Capture::open(Source::Files(vec![missing.clone()]), tap_config())
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("{}: No such file or directory", missing.display())
    );
    let text = write(
        dir.path(),
        "notes.txt",
        b"this is not a capture file at all",
    );
    let e = Capture::open(Source::Files(vec![text.clone()]), tap_config())
        .err()
        .unwrap();
    assert!(matches!(e, CaptureError::File { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!("{}: ", text.display())),
        "{e}"
    );
    let wifi = write(dir.path(), "wifi.pcap", &pcap_file(105, &[]));
    let e = Capture::open(Source::Files(vec![wifi.clone()]), tap_config())
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("{}: unsupported link type IEEE802_11 (DLT 105); supported: Ethernet, Linux SLL/SLL2, raw IP, BSD null/loopback", wifi.display())
    );
    let ok = write(dir.path(), "ok.pcap", &pcap_file(1, &[]));
    let cfg = TapConfig {
        file_bpf: Some("udp port banana".into()),
        ..tap_config()
    };
    let e = Capture::open(Source::Files(vec![ok]), cfg).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("bad BPF filter \"udp port banana\": "),
        "{e}"
    );
    let e = Capture::open(Source::Files(vec![]), tap_config())
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "no capture files given");
}

#[test]
fn files_wait_for_busy_shards_instead_of_shedding() {
    let mut packets = Vec::new();
    for id in 0..3000u16 {
        packets.extend(udp_pair_v4(id, (QUERY, RESP_AA)));
    }
    let cfg = TapConfig {
        shards: 1,
        queue_batches: 1,
        ..tap_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "many.pcap", &pcap_file(228, &timed(packets)));
    let sink = dnsensor_core::output::MemorySink::default();
    let pipeline =
        dnsensor_core::pipeline::Pipeline::start(pipeline_config(), Box::new(sink)).unwrap();
    let capture = Capture::open(Source::Files(vec![p]), cfg).unwrap();
    let counters = capture.counters();
    // With a progress bar (hidden when stderr is not a terminal) to run that path too.
    let s = capture
        .run(
            pipeline.handoff(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            true,
        )
        .unwrap();
    let snap = pipeline.shutdown();
    assert_eq!(
        (s.packets, s.responses_paired, s.shed),
        (6000, 3000, 0),
        "{s}"
    );
    assert_eq!(counters.snapshot(), s);
    assert_eq!(snap.offered, 3000);
}

#[test]
fn bailiwick_learned_from_priming_and_referrals() {
    let r = [198, 51, 100, 7];
    let root = [203, 0, 113, 4];
    let gtld = [203, 0, 113, 30];
    let d1 = [203, 0, 113, 53];
    let exchange = |id: u16, server: [u8; 4], q: Vec<u8>, resp: Vec<u8>| {
        vec![
            ipv4(r, server, 17, id, (0, false), &udp(30000 + id, 53, &q)),
            ipv4(server, r, 17, id, (0, false), &udp(53, 30000 + id, &resp)),
        ]
    };
    let mut packets = Vec::new();
    // Priming: `. NS` answered authoritatively by a root server, with glue.
    packets.extend(exchange(
        1,
        root,
        message(1, QUERY, ".", 2, &[]),
        message(
            1,
            RESP_AA,
            ".",
            2,
            &[
                (0, ".", 2, wire("a.root-servers.net")),
                (2, "a.root-servers.net", 1, root.to_vec()),
            ],
        ),
    ));
    // The root refers www.d1.com to com, com refers it to d1.com, d1.com answers.
    packets.extend(exchange(
        2,
        root,
        query(2, "www.d1.com", QUERY),
        message(
            2,
            0x8000,
            "www.d1.com",
            1,
            &[
                (1, "com", 2, wire("a.gtld.net")),
                (2, "a.gtld.net", 1, gtld.to_vec()),
            ],
        ),
    ));
    packets.extend(exchange(
        3,
        gtld,
        query(3, "www.d1.com", QUERY),
        message(
            3,
            0x8000,
            "www.d1.com",
            1,
            &[
                (1, "d1.com", 2, wire("ns1.d1.com")),
                (2, "ns1.d1.com", 1, d1.to_vec()),
            ],
        ),
    ));
    packets.extend(exchange(
        4,
        d1,
        query(4, "www.d1.com", QUERY),
        a_response(4, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]),
    ));
    // A response from the com server about d1.com's host is only in com's bailiwick.
    packets.extend(exchange(
        5,
        gtld,
        query(5, "www.d1.com", QUERY),
        a_response(5, "www.d1.com", RESP_AA, &[[192, 0, 2, 9]]),
    ));
    // One shard: the four servers are four address pairs, and learning is only ordered within
    // a shard (see docs/capture.md).
    let cfg = TapConfig {
        shards: 1,
        ..tap_config()
    };
    let (lines, s, _) = run_files(&[("walk.pcap", pcap_file(228, &timed(packets)))], cfg);
    let line = |name: &str, t: &str, rdata: &str, b: &str| {
        format!(
            r#"{{"rrname":"{name}","rrtype":"{t}","rdata":["{rdata}"],"bailiwick":"{b}","time_first":{T},"time_last":{T},"count":1,"sensor_id":"t1"}}"#
        )
    };
    let mut want = vec![
        line(".", "NS", "a.root-servers.net.", "."),
        line("a.root-servers.net.", "A", "203.0.113.4", "."),
        line("com.", "NS", "a.gtld.net.", "."),
        line("a.gtld.net.", "A", "203.0.113.30", "."),
        line("d1.com.", "NS", "ns1.d1.com.", "com."),
        line("ns1.d1.com.", "A", "203.0.113.53", "com."),
        line("www.d1.com.", "A", "192.0.2.1", "d1.com."),
        line("www.d1.com.", "A", "192.0.2.9", "com."),
    ];
    want.sort();
    assert_eq!(lines, want, "{s}");
    // root (from priming, as responder and as glue: one pair), com, d1.com.
    assert_eq!(
        (s.zones_learned, s.with_bailiwick, s.observations),
        (3, 5, 5),
        "{s}"
    );
}

#[test]
fn a_file_waits_for_a_full_pipeline_and_loses_nothing() {
    // 5 000 answers for distinct names into a pipeline whose queue holds 16 observations: a
    // file is read at the pipeline's pace, so nothing may be shed and every answer is recorded.
    const N: u32 = 5000;
    let mut packets = Vec::new();
    for i in 0..N {
        let (id, port) = (i as u16, 40000 + (i % 1000) as u16);
        let name = format!("h{i}.d1.com");
        let q = query(id, &name, QUERY);
        let r = a_response(id, &name, RESP_AA, &[[192, 0, 2, 1]]);
        packets.push(ipv4(
            CLIENT4,
            SERVER4,
            17,
            1,
            (0, false),
            &udp(port, 53, &q),
        ));
        packets.push(ipv4(
            SERVER4,
            CLIENT4,
            17,
            2,
            (0, false),
            &udp(53, port, &r),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "many.pcap", &pcap_file(101, &timed(packets)));
    let pipeline = dnsensor_core::pipeline::PipelineConfig {
        workers: 1,
        queue_depth: 16,
        ..pipeline_config()
    };
    let (lines, s, snap) = run_paths_with(vec![path], tap_config(), pipeline);
    assert_eq!(s.responses_paired, u64::from(N), "{s}");
    assert_eq!((s.observations_shed, snap.shed), (0, 0), "{s}");
    assert_eq!(snap.extract.messages, u64::from(N));
    assert_eq!(lines.len(), N as usize);
    assert!(lines[0].starts_with(r#"{"rrname":"h0.d1.com.","rrtype":"A","rdata":["192.0.2.1"]"#));
}
