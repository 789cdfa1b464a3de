//! `dnsensor proxy` is byte-transparent: raw queries, dig and kdig get through the proxy exactly
//! what NSD answers directly (only the ID is the client's), over UDP and TCP, TC and DNSSEC too.

// World W=6: each test runs its own NSD on 127.53.6.<h> (serving `proxy.test.` and the signed
// `signed.test.`) and its own proxy on 127.53.6.<h+1>, both on port 53.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use common::expect::summary_value;
use common::proxy::{
    addr, answer_difference, ask, assert_same_answer, dig_text, kdig_text, normalise_dig, port53,
    response_rrsets, start_proxy, tcp_connect, tcp_frame, tcp_read_msg, udp_exchange, Header,
    Query, Transport, Upstream, NOERROR, NXDOMAIN,
};
use common::{Dnsensor, TestDir};

const W: u8 = 6;

/// One test's NSD and proxy. Fields drop in order: the proxy, then NSD, then the directory.
struct Setup {
    proxy: Dnsensor,
    up: Upstream,
    /// Where the proxy listens (port 53).
    proxy_ip: String,
    dir: TestDir,
}

impl Setup {
    /// NSD on 127.53.6.<host>, the proxy on 127.53.6.<host+1> forwarding to it.
    fn start(name: &str, host: u8) -> Setup {
        let dir = TestDir::new(name);
        let up = Upstream::start(&dir.sub("nsd"), &addr(W, host));
        let proxy_ip = addr(W, host + 1);
        let proxy = start_proxy(
            &dir.path().join("proxy"),
            &[&port53(&proxy_ip)],
            &[&up.server()],
            &[],
        );
        Setup {
            proxy,
            up,
            proxy_ip,
            dir,
        }
    }

    fn proxy_server(&self) -> String {
        port53(&self.proxy_ip)
    }

    /// SIGTERM; the proxy must exit successfully with a summary line and no SERVFAIL or
    /// REFUSED. With `queries`, the summary must count exactly that many client queries, all
    /// answered. Returns the stderr.
    fn finish(self, queries: Option<u64>) -> String {
        let Setup {
            proxy, up, dir: _d, ..
        } = self;
        let run = proxy.finish();
        drop(up);
        assert!(
            run.status.success(),
            "proxy exit {}:\n{}",
            run.status,
            run.stderr
        );
        let v = |k: &str| summary_value(&run.stderr, k);
        assert_eq!(v("servfail"), Some(0), "summary servfail:\n{}", run.stderr);
        assert_eq!(v("refused"), Some(0), "summary refused:\n{}", run.stderr);
        assert_eq!(v("shed"), Some(0), "summary shed:\n{}", run.stderr);
        if let Some(n) = queries {
            assert_eq!(v("queries"), Some(n), "summary queries:\n{}", run.stderr);
            assert_eq!(v("answered"), Some(n), "summary answered:\n{}", run.stderr);
        }
        run.stderr
    }
}

/// A query and what NSD answers it with.
struct Case {
    q: Query,
    rcode: u8,
    /// NSD sets TC over UDP (too big for the buffer).
    tc_udp: bool,
    /// The answer has no records in the answer section (NXDOMAIN, NODATA, truncated).
    empty_answer: bool,
    /// The answer carries RRSIGs (DO bit to the signed zone).
    rrsig: bool,
}

fn case(q: Query, rcode: u8) -> Case {
    Case {
        q,
        rcode,
        tc_udp: false,
        empty_answer: rcode != NOERROR,
        rrsig: false,
    }
}

/// Every kind of answer the proxy must pass through unchanged.
fn cases() -> Vec<Case> {
    let big = || Query::new("big.proxy.test.", "TXT");
    let truncated = |q: Query| Case {
        tc_udp: true,
        ..case(q, NOERROR)
    };
    let signed = |q: Query, rcode: u8| Case {
        rrsig: true,
        ..case(q, rcode)
    };
    vec![
        case(Query::new("www.proxy.test.", "A"), NOERROR),
        case(Query::new("www.proxy.test.", "A").norec(), NOERROR),
        case(Query::new("www.proxy.test.", "AAAA"), NOERROR),
        case(
            Query::new("v6.proxy.test.", "AAAA").edns(1232, false),
            NOERROR,
        ),
        case(Query::new("proxy.test.", "MX"), NOERROR),
        case(Query::new("proxy.test.", "TXT"), NOERROR),
        case(Query::new("txt.proxy.test.", "TXT"), NOERROR),
        case(Query::new("alias.proxy.test.", "A"), NOERROR),
        case(Query::new("proxy.test.", "SOA").edns(4096, false), NOERROR),
        // about 900 bytes: fits 1232, not 512 (with or without EDNS)
        case(big().edns(1232, false), NOERROR),
        truncated(big()),
        truncated(big().edns(512, false)),
        case(Query::new("nx.proxy.test.", "A"), NXDOMAIN),
        case(
            Query::new("nx.proxy.test.", "TXT").edns(1232, false),
            NXDOMAIN,
        ),
        // NODATA: NOERROR, SOA in the authority section
        Case {
            empty_answer: true,
            ..case(Query::new("www.proxy.test.", "MX"), NOERROR)
        },
        signed(
            Query::new("www.signed.test.", "A").edns(1232, true),
            NOERROR,
        ),
        signed(
            Query::new("signed.test.", "DNSKEY").edns(1232, true),
            NOERROR,
        ),
        signed(
            Query::new("signed.test.", "MX").edns(4096, true).norec(),
            NOERROR,
        ),
        signed(
            Query::new("nx.signed.test.", "A").edns(1232, true),
            NXDOMAIN,
        ),
        case(
            Query::new("www.signed.test.", "AAAA").edns(1232, false),
            NOERROR,
        ),
    ]
}

/// What is wrong with NSD's direct answer to `c` over `t` (the fixture, not the proxy).
fn fixture_problem(c: &Case, t: Transport, direct: &[u8], id: u16) -> Option<String> {
    let h = Header::parse(direct);
    let tc = c.tc_udp && t == Transport::Udp;
    let rrsig = response_rrsets(direct).iter().any(|(_, ty)| ty == "RRSIG");
    let mut bad = Vec::new();
    if h.id != id || !h.qr() || !h.aa() {
        bad.push("not an authoritative response to the query");
    }
    if h.rcode() != c.rcode {
        bad.push("unexpected rcode");
    }
    if h.tc() != tc {
        bad.push("unexpected TC");
    }
    if (h.an == 0) != (c.empty_answer || tc) {
        bad.push("unexpected answer count");
    }
    if rrsig != (c.rrsig && !tc) {
        bad.push("unexpected RRSIG presence");
    }
    if bad.is_empty() {
        None
    } else {
        Some(format!(
            "harness: NSD's direct answer to {} over {t:?}: {bad:?}: {}",
            c.q.label(),
            common::proxy::describe(direct)
        ))
    }
}

/// (a): every case over UDP and over TCP, through the proxy and directly: byte-identical but
/// for the ID, which is the client's own (different IDs for the two).
#[test]
fn raw_answers_through_the_proxy_equal_direct_answers() {
    let s = Setup::start("proxy-raw", 1);
    let (proxy, direct) = (s.proxy_server(), s.up.server());
    let mut problems = Vec::new();
    let mut sent = 0;
    for (i, c) in cases().iter().enumerate() {
        for t in [Transport::Udp, Transport::Tcp] {
            let (id_direct, id_proxy) = (0x1000 + i as u16 * 7, 0xa000 + i as u16 * 13);
            let want = ask("direct", t, &direct, &c.q, id_direct);
            if let Some(p) = fixture_problem(c, t, &want, id_direct) {
                panic!("{p}{}", s.up.log_text());
            }
            let got = ask("through the proxy", t, &proxy, &c.q, id_proxy);
            sent += 1;
            if let Some(d) = answer_difference(&got, id_proxy, &want) {
                problems.push(format!("{} over {t:?}: {d}", c.q.label()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {sent} answers through the proxy differ:\n{}",
        problems.len(),
        problems.join("\n")
    );
    s.finish(Some(sent));
}

/// dig invocations: (arguments, expected status, expected `ANSWER: n`).
const DIG_CASES: &[(&[&str], &str, u32)] = &[
    (&["www.proxy.test.", "A"], "NOERROR", 2),
    (&["+norec", "www.proxy.test.", "AAAA"], "NOERROR", 2),
    (&["proxy.test.", "MX"], "NOERROR", 2),
    (&["txt.proxy.test.", "TXT"], "NOERROR", 2),
    (&["alias.proxy.test.", "A"], "NOERROR", 3),
    (&["big.proxy.test.", "TXT"], "NOERROR", 4),
    (&["+tcp", "www.proxy.test.", "A"], "NOERROR", 2),
    (&["+noedns", "proxy.test.", "SOA"], "NOERROR", 1),
    (&["nx.proxy.test.", "A"], "NXDOMAIN", 0),
    (&["www.proxy.test.", "MX"], "NOERROR", 0),
    (&["+dnssec", "www.signed.test.", "A"], "NOERROR", 2),
    (&["+dnssec", "signed.test.", "DNSKEY"], "NOERROR", 3),
    (&["+dnssec", "+tcp", "signed.test.", "MX"], "NOERROR", 2),
    (&["+dnssec", "nx.signed.test.", "A"], "NXDOMAIN", 0),
    // truncated over UDP, retried over TCP by the tool itself
    (&["+bufsize=512", "big.proxy.test.", "TXT"], "NOERROR", 4),
    (&["+noedns", "big.proxy.test.", "TXT"], "NOERROR", 4),
];

/// (b): one tool's output through the proxy equals its direct output once normalised.
fn tool_matches(
    tool: &str,
    run: fn(&str, &[&str]) -> String,
    status_of: fn(&str) -> Option<String>,
    answers_of: fn(&str) -> Option<u32>,
) {
    let s = Setup::start(
        &format!("proxy-{tool}"),
        if tool == "dig" { 11 } else { 21 },
    );
    let mut problems = Vec::new();
    for (args, status, answers) in DIG_CASES {
        let direct = run(&s.up.addr, args);
        let direct_n = normalise_dig(&direct, &s.up.addr);
        // The fixture first: the direct answer is what the zone says.
        assert!(
            status_of(&direct).as_deref() == Some(*status) && answers_of(&direct) == Some(*answers),
            "harness: direct `{tool} {args:?}` is not {status} with {answers} answers:\n{direct}"
        );
        let proxied = run(&s.proxy_ip, args);
        let proxied_n = normalise_dig(&proxied, &s.proxy_ip);
        if proxied_n != direct_n {
            problems.push(format!(
                "`{tool} {}`: output through the proxy differs from the direct output\n{}",
                args.join(" "),
                line_diff(&direct_n, &proxied_n)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} {tool} runs differ:\n{}",
        problems.len(),
        DIG_CASES.len(),
        problems.join("\n")
    );
    s.finish(None);
}

/// `status: NOERROR,` (dig) or `status: NOERROR;` (kdig).
fn status_of(text: &str) -> Option<String> {
    let rest = text.split("status: ").nth(1)?;
    Some(rest.split([',', ';']).next()?.trim().to_string())
}

/// dig's `ANSWER: 2,` (of the last header printed).
fn dig_answers(text: &str) -> Option<u32> {
    let rest = text.rsplit("ANSWER: ").next()?;
    rest.split(',').next()?.trim().parse().ok()
}

/// kdig's `ANSWER: 2;`.
fn kdig_answers(text: &str) -> Option<u32> {
    let rest = text.rsplit("ANSWER: ").next()?;
    rest.split(';').next()?.trim().parse().ok()
}

/// The lines only in one of the two texts, for failure messages.
fn line_diff(direct: &str, proxied: &str) -> String {
    let mut s = String::new();
    let d: Vec<&str> = direct.lines().collect();
    let p: Vec<&str> = proxied.lines().collect();
    for l in &d {
        if !p.contains(l) {
            s.push_str(&format!("  - {l}\n"));
        }
    }
    for l in &p {
        if !d.contains(l) {
            s.push_str(&format!("  + {l}\n"));
        }
    }
    if s.is_empty() {
        s = "  (same lines, different order or count)\n".into();
    }
    format!("{s}  ----- direct -----\n{direct}  ----- through the proxy -----\n{proxied}")
}

#[test]
fn dig_output_through_the_proxy_equals_direct_output() {
    tool_matches("dig", dig_text, status_of, dig_answers);
}

#[test]
fn kdig_output_through_the_proxy_equals_direct_output() {
    tool_matches("kdig", kdig_text, status_of, kdig_answers);
}

/// (c): the big TXT over UDP with a 512-byte buffer (and without EDNS) comes back with TC=1
/// through the proxy exactly as directly; dig and kdig then retry over TCP to the proxy and get
/// the whole RRset.
#[test]
fn truncated_udp_answer_passes_through_and_tools_retry_over_tcp() {
    let s = Setup::start("proxy-tc", 31);
    let (proxy, direct) = (s.proxy_server(), s.up.server());
    let mut queries = 0;
    for (i, q) in [
        Query::new("big.proxy.test.", "TXT").edns(512, false),
        Query::new("big.proxy.test.", "TXT"),
    ]
    .iter()
    .enumerate()
    {
        let want = ask("direct", Transport::Udp, &direct, q, 0x0200 + i as u16);
        assert!(
            Header::parse(&want).tc(),
            "harness: NSD did not truncate {}: {}",
            q.label(),
            common::proxy::describe(&want)
        );
        let id = 0xfe00 + i as u16;
        let got = ask("through the proxy", Transport::Udp, &proxy, q, id);
        queries += 1;
        assert_same_answer(&format!("{} over UDP", q.label()), &got, id, &want);
        // The client's retry over TCP gets the whole answer.
        let want = ask("direct", Transport::Tcp, &direct, q, 0x0300 + i as u16);
        let id = 0xfd00 + i as u16;
        let got = ask("through the proxy", Transport::Tcp, &proxy, q, id);
        queries += 1;
        assert_same_answer(&format!("{} over TCP", q.label()), &got, id, &want);
        let h = Header::parse(&got);
        assert!(!h.tc() && h.an == 4, "{}", common::proxy::describe(&got));
    }

    // dig +ignore shows the truncated answer itself; dig and kdig without it retry over TCP.
    let dig = dig_text(
        &s.proxy_ip,
        &["+bufsize=512", "+ignore", "big.proxy.test.", "TXT"],
    );
    queries += 1;
    assert!(
        dig.contains(";; flags: qr aa tc rd;") && dig.contains("ANSWER: 0,"),
        "dig +ignore through the proxy did not show TC=1 with an empty answer:\n{dig}"
    );
    let dig = dig_text(&s.proxy_ip, &["+bufsize=512", "big.proxy.test.", "TXT"]);
    queries += 2;
    assert!(
        dig.contains(";; Truncated, retrying in TCP mode.")
            && dig.contains("ANSWER: 4,")
            && dig.contains(&format!("{}#53({}) (TCP)", s.proxy_ip, s.proxy_ip))
            && dig.matches("\tTXT\t\"big").count() == 4,
        "dig did not get the whole big TXT over TCP from the proxy after TC:\n{dig}"
    );
    let kdig = kdig_text(&s.proxy_ip, &["+bufsize=512", "big.proxy.test.", "TXT"]);
    queries += 2;
    assert!(
        kdig.contains("truncated reply")
            && kdig.contains("ANSWER: 4;")
            && kdig.contains(&format!("From {}@53(TCP)", s.proxy_ip))
            && kdig.matches("\tTXT\t\"big").count() == 4,
        "kdig did not get the whole big TXT over TCP from the proxy after TC:\n{kdig}"
    );
    s.finish(Some(queries));
}

/// (d): 240 queries written back to back on one TCP connection before anything is read; every
/// answer matched by ID, each exactly once, byte-equal (ID aside) to NSD's direct TCP answer.
/// The connection stays usable afterwards.
#[test]
fn pipelined_tcp_queries_are_all_answered_and_matched_by_id() {
    const N: usize = 240;
    let s = Setup::start("proxy-pipeline", 41);
    let (proxy, direct) = (s.proxy_server(), s.up.server());
    let cases = cases();
    // One direct TCP answer per distinct case.
    let wants: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = 0x4000 + i as u16;
            let w = ask("direct", Transport::Tcp, &direct, &c.q, id);
            if let Some(p) = fixture_problem(c, Transport::Tcp, &w, id) {
                panic!("{p}");
            }
            w
        })
        .collect();
    // Query k asks case k % cases with a unique, scattered ID.
    let id_of = |k: usize| (0x1357u32.wrapping_add(k as u32 * 40_503) & 0xffff) as u16;
    let mut by_id: BTreeMap<u16, usize> = BTreeMap::new();
    let mut stream = Vec::new();
    for k in 0..N {
        assert!(by_id.insert(id_of(k), k).is_none(), "harness: ID collision");
        stream.extend(tcp_frame(&cases[k % cases.len()].q.encode(id_of(k))));
    }
    let mut conn = tcp_connect(&proxy, Duration::from_secs(10)).expect("connect to the proxy");
    conn.write_all(&stream).expect("write 240 queries");

    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for n in 0..N {
        let msg = match tcp_read_msg(&mut conn) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("only {n} of {N} answers arrived: {e}"));
                break;
            }
        };
        let id = Header::parse(&msg).id;
        *seen.entry(id).or_default() += 1;
        match by_id.get(&id) {
            None => problems.push(format!("answer with an ID no query had: {id:#06x}")),
            Some(&k) => {
                let c = &cases[k % cases.len()];
                if let Some(d) = answer_difference(&msg, id, &wants[k % cases.len()]) {
                    problems.push(format!("query {k} ({}): {d}", c.q.label()));
                }
            }
        }
    }
    for (id, n) in &seen {
        if *n > 1 {
            problems.push(format!("ID {id:#06x} answered {n} times"));
        }
    }
    let missing = by_id.keys().filter(|id| !seen.contains_key(id)).count();
    if missing > 0 {
        problems.push(format!("{missing} queries never answered"));
    }
    assert!(
        problems.is_empty(),
        "pipelining through the proxy: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Nothing more comes, and the same connection still answers.
    let c = &cases[0];
    conn.write_all(&tcp_frame(&c.q.encode(0xbeef)))
        .expect("write after the batch");
    let last = tcp_read_msg(&mut conn).expect("answer after the batch");
    assert_same_answer("query after the pipelined batch", &last, 0xbeef, &wants[0]);
    drop(conn);
    // A UDP query still works too.
    let id = 0x7777;
    let got = udp_exchange("127.0.0.1", &proxy, &c.q.encode(id), Duration::from_secs(5))
        .expect("UDP answer after the batch");
    let want = ask("direct", Transport::Udp, &direct, &c.q, 0x7778);
    assert_same_answer("UDP after the batch", &got, id, &want);
    s.finish(Some(N as u64 + 2));
}
