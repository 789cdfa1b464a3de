//! What an upstream sees of `dnsensor proxy`: fresh random IDs, and source ports from a pool that
//! is renewed one port a second, so that the proxy never weakens a resolver's spoofing defences.

// World W=7, hosts 60–69 (tests/proxy_failover.rs uses hosts below 50, proxy_recording 100 and up).

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::expect::summary_value;
use common::proxy::{addr, finish_proxy, port53, start_proxy, Header, Query};
use common::TestDir;

const W: u8 = 7;

/// What the upstream got: source port, ID, and the bytes after the header.
type Seen = Arc<Mutex<Vec<(u16, u16, Vec<u8>)>>>;

/// An upstream that answers each query with its own bytes, QR set (so the question matches), and
/// notes every query it got. Stops when the test process ends.
fn echo_upstream(at: &str) -> Seen {
    let sock = UdpSocket::bind(at).unwrap_or_else(|e| panic!("bind the echo upstream {at}: {e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            noted
                .lock()
                .unwrap()
                .push((from.port(), id, buf[12..n].to_vec()));
            buf[2] |= 0x80;
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    seen
}

/// How many UDP sockets on this host are connected to `addr` (an IPv4 address and port), from
/// /proc/net/udp, where an address is the hex of its bytes as a little-endian word, then the port.
fn udp_sockets_connected_to(addr: &str) -> usize {
    let addr: std::net::SocketAddrV4 = addr.parse().unwrap();
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(addr.ip().octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(2) == Some(want.as_str()))
        .count()
}

/// 80 queries over four seconds, one every 50 ms: every client gets its answer with its own ID;
/// the upstream sees none of the client IDs' sequence and more source ports than the pool holds
/// at once (4 at the start, one new port each second).
#[test]
fn queries_reach_the_upstream_with_fresh_ids_from_rotating_ports() {
    let dir = TestDir::new("proxy-upstream-ports");
    let upstream = port53(&addr(W, 61));
    let seen = echo_upstream(&upstream);
    let proxy_ip = addr(W, 62);
    let proxy = start_proxy(
        &dir.path().join("proxy"),
        &[&port53(&proxy_ip)],
        &[&upstream],
        &[],
    );

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(port53(&proxy_ip)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let q = Query::new("www.proxy.test.", "A");
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut wrong = Vec::new();
    for i in 0..80u16 {
        let id = 0x4100 + i;
        client.send(&q.encode(id)).unwrap();
        match client.recv(&mut buf) {
            Ok(n) if Header::parse(&buf[..n]).id == id && Header::parse(&buf[..n]).qr() => {}
            Ok(n) => wrong.push(format!(
                "query {i}: answer with ID {:#06x}",
                Header::parse(&buf[..n]).id
            )),
            Err(e) => wrong.push(format!("query {i}: no answer: {e}")),
        }
        let next = start + Duration::from_millis(50 * (u64::from(i) + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Four rotations: the retired sockets are closed once their queries are settled, so only
    // the pool (and perhaps the socket retired last, for one sweep) remains.
    let open = udp_sockets_connected_to(&upstream);
    let run = finish_proxy(proxy);
    assert!(wrong.is_empty(), "{wrong:?}\n{}", run.stderr);
    assert!(
        (4..=5).contains(&open),
        "{open} UDP sockets connected to the upstream after four rotations"
    );
    assert_eq!(
        summary_value(&run.stderr, "answered"),
        Some(80),
        "{}",
        run.stderr
    );

    // The proxy's own health checks ask other questions.
    let question = &q.encode(0)[12..];
    let seen: Vec<(u16, u16)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, rest)| rest == question)
        .map(|&(port, id, _)| (port, id))
        .collect();
    assert_eq!(
        seen.len(),
        80,
        "the upstream got {} of the queries",
        seen.len()
    );
    let ports: BTreeSet<u16> = seen.iter().map(|&(port, _)| port).collect();
    // Four seconds: the starting four ports and a new one each second, give or take a tick.
    assert!(
        (6..=8).contains(&ports.len()),
        "source ports seen by the upstream: {ports:?}"
    );
    let client_ids = 0x4100..0x4100 + 80;
    let kept = seen
        .iter()
        .filter(|&&(_, id)| client_ids.contains(&id))
        .count();
    // A random 16-bit ID falls in the client's 80 by chance about once in 10 runs of 80 queries.
    assert!(
        kept <= 2,
        "{kept} of 80 upstream IDs are client IDs: {seen:?}"
    );
    let distinct: BTreeSet<u16> = seen.iter().map(|&(_, id)| id).collect();
    assert!(distinct.len() >= 78, "upstream IDs repeat: {seen:?}");
}
