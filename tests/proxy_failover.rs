//! `dnsensor proxy` when things go wrong: a dead upstream (SERVFAIL in time), failover to the
//! second upstream, clients outside `--allow` (REFUSED) and garbage datagrams and streams.

// World W=7, hosts below 100 (tests/proxy_recording.rs uses 127.53.7.100 and up): every test
// has its own NSD and proxy addresses, all on port 53. Nothing listens on the "dead" addresses.

mod common;

use std::io::Write as _;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::expect::summary_value;
use common::proxy::{
    addr, answer_difference, ask, assert_same_answer, describe, dig_text, finish_proxy, noise,
    port53, start_proxy, tcp_connect, tcp_exchange, tcp_frame, tcp_read_msg, udp_exchange, Header,
    Query, Transport, Upstream, NOERROR, REFUSED, SERVFAIL,
};
use common::{parse_cof, Cof, DnsensorRun, TestDir};

const W: u8 = 7;

fn summary(run: &DnsensorRun, key: &str) -> Option<u64> {
    summary_value(&run.stderr, key)
}

/// Upstream down (nothing listens on its address): the client gets SERVFAIL (its own ID) within
/// `--query-timeout` + 1 s, over UDP and over TCP, and the proxy counts them.
#[test]
fn dead_upstream_gives_servfail_within_the_query_timeout() {
    let dir = TestDir::new("proxy-dead-upstream");
    let proxy_ip = addr(W, 11);
    let dead = port53(&addr(W, 12));
    let proxy = start_proxy(
        &dir.path().join("proxy"),
        &[&port53(&proxy_ip)],
        &[&dead],
        &["--query-timeout", "1000", "--upstream-timeout", "500"],
    );
    let bound = Duration::from_millis(1000 + 1000);
    let q = Query::new("www.proxy.test.", "A");
    let mut problems = Vec::new();
    for (i, t) in [Transport::Udp, Transport::Tcp, Transport::Udp]
        .into_iter()
        .enumerate()
    {
        let id = 0x5e00 + i as u16;
        let msg = q.encode(id);
        let start = Instant::now();
        let server = port53(&proxy_ip);
        let r = match t {
            Transport::Udp => udp_exchange("127.0.0.1", &server, &msg, Duration::from_secs(5)),
            Transport::Tcp => tcp_exchange(&server, &msg, Duration::from_secs(5)),
        };
        let elapsed = start.elapsed();
        match r {
            Err(e) => problems.push(format!("query {i} over {t:?}: no answer within 5 s: {e}")),
            Ok(r) => {
                let h = Header::parse(&r);
                if !(h.id == id && h.qr() && h.opcode() == 0 && h.rcode() == SERVFAIL && h.an == 0)
                {
                    problems.push(format!(
                        "query {i} over {t:?}: want SERVFAIL with ID {id:#06x}, got {}",
                        describe(&r)
                    ));
                }
                if elapsed > bound {
                    problems.push(format!(
                        "query {i} over {t:?}: SERVFAIL after {elapsed:?}, want at most {bound:?}"
                    ));
                }
            }
        }
    }
    let run = finish_proxy(proxy);
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        run.stderr
    );
    assert_eq!(summary(&run, "queries"), Some(3), "{}", run.stderr);
    assert_eq!(summary(&run, "servfail"), Some(3), "{}", run.stderr);
    assert_eq!(summary(&run, "answered"), Some(0), "{}", run.stderr);
    assert_eq!(summary(&run, "records"), Some(0), "{}", run.stderr);
    assert!(
        run.lines.is_empty(),
        "records without an upstream:\n{}",
        run.raw
    );
}

/// Two upstreams, the first one dead: every one of 60 UDP and 10 TCP queries is answered
/// NOERROR with exactly NSD's bytes; not one SERVFAIL.
#[test]
fn first_upstream_dead_the_second_answers_every_query() {
    let dir = TestDir::new("proxy-failover");
    let up = Upstream::start(&dir.sub("nsd"), &addr(W, 21));
    let dead = port53(&addr(W, 22));
    let proxy_ip = addr(W, 23);
    let proxy = start_proxy(
        &dir.path().join("proxy"),
        &[&port53(&proxy_ip)],
        &[&dead, &up.server()],
        &["--upstream-timeout", "500"],
    );
    let queries = [
        Query::new("www.proxy.test.", "A"),
        Query::new("www.proxy.test.", "AAAA"),
        Query::new("proxy.test.", "MX"),
        Query::new("txt.proxy.test.", "TXT"),
        Query::new("nx.proxy.test.", "A"),
        Query::new("www.signed.test.", "A").edns(1232, true),
    ];
    let wants: Vec<Vec<u8>> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| ask("direct", Transport::Udp, &up.server(), q, i as u16))
        .collect();
    let server = port53(&proxy_ip);
    let mut problems = Vec::new();
    let total = 70;
    for k in 0..total {
        let t = if k < 60 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let (q, want) = (&queries[k % queries.len()], &wants[k % queries.len()]);
        let id = 0x2000 + k as u16;
        let msg = q.encode(id);
        let r = match t {
            Transport::Udp => udp_exchange("127.0.0.1", &server, &msg, Duration::from_secs(3)),
            Transport::Tcp => tcp_exchange(&server, &msg, Duration::from_secs(3)),
        };
        match r {
            Err(e) => problems.push(format!("query {k} ({}) over {t:?}: {e}", q.label())),
            Ok(r) => {
                if let Some(d) = answer_difference(&r, id, want) {
                    problems.push(format!("query {k} ({}) over {t:?}: {d}", q.label()));
                }
            }
        }
    }
    let run = finish_proxy(proxy);
    assert!(
        problems.is_empty(),
        "{} of {total} queries failed with the first upstream dead:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        run.stderr
    );
    assert_eq!(summary(&run, "servfail"), Some(0), "{}", run.stderr);
    assert_eq!(
        summary(&run, "queries"),
        Some(total as u64),
        "{}",
        run.stderr
    );
    assert_eq!(
        summary(&run, "answered"),
        Some(total as u64),
        "{}",
        run.stderr
    );
}

/// `--allow 127.0.0.2/32`: 127.0.0.1 gets REFUSED over UDP and TCP, 127.0.0.2 the answer; and the
/// other way round with `--allow 127.0.0.1/32`. A refused query is not forwarded: its name shows
/// up in no record.
#[test]
fn clients_outside_allow_are_refused() {
    let dir = TestDir::new("proxy-allow");
    let up = Upstream::start(&dir.sub("nsd"), &addr(W, 31));
    let answered = Query::new("www.proxy.test.", "A");
    let refused = Query::new("mx2.proxy.test.", "A");
    let want = ask("direct", Transport::Udp, &up.server(), &answered, 1);
    for (host, allowed, other) in [
        (32, "127.0.0.2", "127.0.0.1"),
        (33, "127.0.0.1", "127.0.0.2"),
    ] {
        let proxy_ip = addr(W, host);
        let server = port53(&proxy_ip);
        let proxy = start_proxy(
            &dir.path().join(format!("proxy-{allowed}")),
            &[&server],
            &[&up.server()],
            &["--allow", &format!("{allowed}/32")],
        );
        let what = format!("--allow {allowed}/32");
        let t = Duration::from_secs(5);

        // UDP from the other address: REFUSED, with the client's ID.
        let r = udp_exchange(other, &server, &refused.encode(0x0bad), t)
            .unwrap_or_else(|e| panic!("{what}: no UDP answer for {other}: {e}"));
        let h = Header::parse(&r);
        assert!(
            h.id == 0x0bad && h.qr() && h.rcode() == REFUSED && h.an == 0,
            "{what}: UDP from {other}: want REFUSED, got {}",
            describe(&r)
        );
        // TCP from the other address (dig -b sets the source): REFUSED.
        let dig = dig_text(&proxy_ip, &["-b", other, "+tcp", "mx2.proxy.test.", "A"]);
        assert!(
            dig.contains("status: REFUSED") && dig.contains("(TCP)"),
            "{what}: dig +tcp from {other}: want REFUSED:\n{dig}"
        );
        // UDP from the allowed address: the answer, byte for byte.
        let r = udp_exchange(allowed, &server, &answered.encode(0x600d), t)
            .unwrap_or_else(|e| panic!("{what}: no UDP answer for {allowed}: {e}"));
        assert_same_answer(&format!("{what}: UDP from {allowed}"), &r, 0x600d, &want);
        // TCP from the allowed address.
        let dig = dig_text(&proxy_ip, &["-b", allowed, "+tcp", "www.proxy.test.", "A"]);
        assert!(
            dig.contains("status: NOERROR")
                && dig.contains("ANSWER: 2,")
                && dig.contains("192.0.2.7")
                && dig.contains("(TCP)"),
            "{what}: dig +tcp from {allowed}: want the answer:\n{dig}"
        );

        let run = finish_proxy(proxy);
        // `queries` counts the queries accepted for forwarding; refused ones apart.
        for (key, want) in [
            ("refused", 2),
            ("queries", 2),
            ("answered", 2),
            ("servfail", 0),
        ] {
            assert_eq!(
                summary(&run, key),
                Some(want),
                "{what}: {key}:\n{}",
                run.stderr
            );
        }
        let cofs: Vec<Cof> = parse_cof(&run.raw).iter().map(Cof::from_value).collect();
        assert!(
            cofs.iter()
                .any(|c| c.rrname == "www.proxy.test." && c.rrtype == "A"),
            "{what}: the allowed client's answer was not recorded:\n{}\n{}",
            run.raw,
            run.stderr
        );
        assert!(
            !cofs.iter().any(|c| c.rrname == "mx2.proxy.test."),
            "{what}: a refused query was forwarded (its answer was recorded):\n{}",
            run.raw
        );
        for a in [allowed, other] {
            assert!(
                !run.raw.contains(a),
                "{what}: client address {a} in the output:\n{}",
                run.raw
            );
        }
    }
}

/// Garbage datagrams, a response (QR=1) sent as a query, and broken TCP streams do not kill the
/// proxy: after each it still answers UDP and TCP queries with NSD's exact bytes, and it exits
/// cleanly on SIGTERM.
#[test]
fn garbage_and_responses_sent_to_the_proxy_do_not_kill_it() {
    let dir = TestDir::new("proxy-garbage");
    let up = Upstream::start(&dir.sub("nsd"), &addr(W, 41));
    let proxy_ip = addr(W, 42);
    let server = port53(&proxy_ip);
    let proxy = start_proxy(&dir.path().join("proxy"), &[&server], &[&up.server()], &[]);
    let good = Query::new("www.proxy.test.", "AAAA");
    let want = ask("direct", Transport::Udp, &up.server(), &good, 1);
    let want_tcp = ask("direct", Transport::Tcp, &up.server(), &good, 1);
    // A real response, sent back to the proxy as if it were a query.
    let response = ask(
        "direct",
        Transport::Udp,
        &up.server(),
        &Query::new("proxy.test.", "MX"),
        9,
    );

    let mut header_only = good.encode(0x1111);
    header_only.truncate(12);
    let mut pointer_loop = good.encode(0x2222)[..12].to_vec();
    pointer_loop.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let mut label_past_end = good.encode(0x3333)[..12].to_vec();
    label_past_end.extend_from_slice(&[63, b'a', b'b']);
    let mut notify = good.encode(0x4444);
    notify[2] = 0x20; // opcode NOTIFY
    let mut qd_zero = good.encode(0x5555);
    qd_zero[5] = 0;
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        ("empty datagram", vec![]),
        ("1 byte", vec![0x42]),
        ("11 bytes", noise(7, 11)),
        ("header only, QDCOUNT=1", header_only),
        ("question name with a pointer loop", pointer_loop),
        ("label running past the end", label_past_end),
        ("NOTIFY opcode", notify),
        ("QDCOUNT=0", qd_zero),
        ("a response (QR=1)", response.clone()),
        ("300 random bytes", noise(12345, 300)),
        ("65000 random bytes", noise(99, 65000)),
    ];
    let mut n = 0u16;
    let mut check_alive = |after: &str| {
        n += 1;
        let id = 0x9000 + n;
        let r = udp_exchange(
            "127.0.0.1",
            &server,
            &good.encode(id),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("no UDP answer after {after}: {e}"));
        assert_same_answer(&format!("UDP after {after}"), &r, id, &want);
        let r = tcp_exchange(&server, &good.encode(id), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("no TCP answer after {after}: {e}"));
        assert_same_answer(&format!("TCP after {after}"), &r, id, &want_tcp);
    };

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (what, d) in &datagrams {
        sock.send_to(d, &server)
            .unwrap_or_else(|e| panic!("send {what}: {e}"));
        check_alive(what);
    }
    // All of them at once, then a good query on the same socket: its answer comes back.
    for (_, d) in &datagrams {
        sock.send_to(d, &server).unwrap();
    }
    check_alive("all garbage datagrams at once");

    // TCP: a zero-length message, a length longer than what follows (then close), random
    // bytes, a response as a query, and a connection closed half-way through the length.
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("zero-length TCP message", vec![0, 0]),
        ("TCP length 300, 10 bytes, close", {
            let mut b = vec![1, 44];
            b.extend(noise(3, 10));
            b
        }),
        ("random TCP bytes", noise(777, 2000)),
        ("a response (QR=1) over TCP", tcp_frame(&response)),
        ("one byte of a TCP length", vec![0]),
    ];
    for (what, bytes) in &streams {
        let mut c = tcp_connect(&server, Duration::from_secs(5)).expect("connect");
        let _ = c.write_all(bytes);
        drop(c);
        check_alive(what);
    }
    // A connection that sends garbage and keeps quiet does not stop a good one beside it.
    let mut quiet = tcp_connect(&server, Duration::from_secs(5)).expect("connect");
    let _ = quiet.write_all(&[0, 200, 1, 2, 3]);
    check_alive("a half-sent TCP message left open");
    // A good query after garbage on the same connection: answered, or the connection closed;
    // never a wrong answer.
    let mut c = tcp_connect(&server, Duration::from_secs(5)).expect("connect");
    let _ = c.write_all(&tcp_frame(&noise(5, 40)));
    let _ = c.write_all(&tcp_frame(&good.encode(0x7e57)));
    if let Ok(r) = tcp_read_msg(&mut c) {
        let h = Header::parse(&r);
        if h.id == 0x7e57 {
            assert_same_answer(
                "TCP query after garbage on one connection",
                &r,
                0x7e57,
                &want_tcp,
            );
        }
    }
    drop(c);
    drop(quiet);
    check_alive("everything");
    let run = finish_proxy(proxy);
    assert_eq!(summary(&run, "servfail"), Some(0), "{}", run.stderr);
    assert_eq!(
        Header::parse(&want).rcode(),
        NOERROR,
        "harness: direct answer {}",
        describe(&want)
    );
}
