//! Builders for the tap's tests: DNS messages, IP/UDP/TCP packets, link headers and capture files.
//! Everything is written by hand so that the tests do not trust the code they test.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use dnsensor_capture::{Capture, CaptureSummary, Source, TapConfig};
use dnsensor_core::output::MemorySink;
use dnsensor_core::pipeline::{Pipeline, PipelineConfig, PipelineSnapshot, ThreadPriority};
use dnsensor_core::privacy::PrivacyFilter;

pub fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

/// A DNS message: id, flags, one question, then records (section 0/1/2, owner, type, rdata).
pub fn message(
    id: u16,
    flags: u16,
    qname: &str,
    qtype: u16,
    recs: &[(u8, &str, u16, Vec<u8>)],
) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    for s in 0..3u8 {
        let n = recs.iter().filter(|r| r.0 == s).count() as u16;
        m.extend_from_slice(&n.to_be_bytes());
    }
    m.extend_from_slice(&wire(qname));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for s in 0..3u8 {
        for (_, owner, t, rdata) in recs.iter().filter(|r| r.0 == s) {
            m.extend_from_slice(&wire(owner));
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
    }
    m
}

/// Flags of a query without and with RD.
pub const QUERY: u16 = 0x0000;
pub const QUERY_RD: u16 = 0x0100;
/// Flags of a response (AA set), without and with RD echoed.
pub const RESP_AA: u16 = 0x8400;
pub const RESP_AA_RD: u16 = 0x8500;

pub fn query(id: u16, qname: &str, flags: u16) -> Vec<u8> {
    message(id, flags, qname, 1, &[])
}

/// An A response with the given addresses in the answer section.
pub fn a_response(id: u16, qname: &str, flags: u16, addrs: &[[u8; 4]]) -> Vec<u8> {
    let recs: Vec<_> = addrs
        .iter()
        .map(|a| (0u8, qname, 1u16, a.to_vec()))
        .collect();
    message(id, flags, qname, 1, &recs)
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH_ACK: u8 = 0x18;
pub const FIN_ACK: u8 = 0x11;

pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// An IPv4 packet; `frag` is (offset in bytes, more fragments).
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    frag: (usize, bool),
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    let ff = ((frag.0 / 8) as u16) | if frag.1 { 0x2000 } else { 0 };
    h.extend_from_slice(&ff.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn checksum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet carrying one fragment of a datagram whose transport is `next`.
pub fn ipv6_frag(
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    id: u32,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![next, 0];
    let off = ((offset / 8) as u16) << 3 | u16::from(more);
    f.extend_from_slice(&off.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    ipv6(src, dst, 44, &f)
}

pub fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    a
}

pub fn ethertype_of(ip: &[u8]) -> [u8; 2] {
    if ip.first().map(|v| v >> 4) == Some(6) {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    }
}

/// Ethernet II with the given VLAN tags ((TPID, VID) outermost first).
pub fn ethernet(tags: &[(u16, u16)], ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype_of(ip));
    f.extend_from_slice(ip);
    f
}

pub fn sll(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    f.extend_from_slice(&ethertype_of(ip));
    f.extend_from_slice(ip);
    f
}

pub fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut f = ethertype_of(ip).to_vec();
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    f.extend_from_slice(ip);
    f
}

/// BSD null: the family in the writer's (here little-endian) byte order.
pub fn null(ip: &[u8]) -> Vec<u8> {
    let af: u32 = if ip[0] >> 4 == 6 { 30 } else { 2 };
    let mut f = af.to_le_bytes().to_vec();
    f.extend_from_slice(ip);
    f
}

/// OpenBSD loop: the family in network byte order.
pub fn looped(ip: &[u8]) -> Vec<u8> {
    let af: u32 = if ip[0] >> 4 == 6 { 24 } else { 2 };
    let mut f = af.to_be_bytes().to_vec();
    f.extend_from_slice(ip);
    f
}

/// A classic pcap file (microsecond timestamps).
pub fn pcap_file(linktype: u32, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&262_144u32.to_le_bytes());
    f.extend_from_slice(&linktype.to_le_bytes());
    for (ts_us, data) in packets {
        f.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(data);
    }
    f
}

fn pcapng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    while padded.len() & 3 != 0 {
        padded.push(0);
    }
    let len = (12 + padded.len()) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&padded);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A pcapng file with one interface (microsecond resolution by default).
pub fn pcapng_file(linktype: u16, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut f = pcapng_block(0x0a0d_0d0a, &shb);
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    f.extend(pcapng_block(1, &idb));
    for (ts_us, data) in packets {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*ts_us as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        f.extend(pcapng_block(6, &epb));
    }
    f
}

pub fn pipeline_config() -> PipelineConfig {
    PipelineConfig {
        workers: 2,
        queue_depth: 4096,
        window: Duration::from_secs(3600),
        max_entries: 10_000,
        sensor_id: Some("t1".into()),
        privacy: PrivacyFilter::none(),
        client_counts: false,
        priority: ThreadPriority::Inherit,
    }
}

pub fn tap_config() -> TapConfig {
    TapConfig {
        shards: 2,
        ..TapConfig::default()
    }
}

/// Reads `files` (name, bytes) through the tap into a pipeline; sorted COF lines and counters.
pub fn run_files(
    files: &[(&str, Vec<u8>)],
    config: TapConfig,
) -> (Vec<String>, CaptureSummary, PipelineSnapshot) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    run_paths(paths, config)
}

pub fn run_paths(
    paths: Vec<std::path::PathBuf>,
    config: TapConfig,
) -> (Vec<String>, CaptureSummary, PipelineSnapshot) {
    run_paths_with(paths, config, pipeline_config())
}

/// [`run_paths`] into a pipeline configured as given.
pub fn run_paths_with(
    paths: Vec<std::path::PathBuf>,
    config: TapConfig,
    pipeline: PipelineConfig,
) -> (Vec<String>, CaptureSummary, PipelineSnapshot) {
    let sink = MemorySink::default();
    let lines = sink.lines.clone();
    let pipeline = Pipeline::start(pipeline, Box::new(sink)).unwrap();
    let capture = Capture::open(Source::Files(paths), config).unwrap();
    let summary = capture
        .run(pipeline.handoff(), Arc::new(AtomicBool::new(false)), false)
        .unwrap();
    let snap = pipeline.shutdown();
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    (lines, summary, snap)
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn ip4(s: &str) -> [u8; 4] {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("not v4"),
    }
}
