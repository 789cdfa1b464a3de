//! Robustness of `dnsensor dnstap` against misbehaving senders: garbage, truncated and
//! oversized frames, data frames that are not protobuf, dnstap messages whose response is not
//! DNS — all while a well-behaved sender on another connection must lose nothing. Also the
//! client-segment switch and a TCP listener. Frames are crafted with `common::wire`; no DNS
//! servers needed.

mod common;

use std::io::{self, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::wire::{
    connect_unix, dnstap, fstrm_control, fstrm_data, fstrm_send_bidirectional,
    fstrm_send_unidirectional, read_control, DnsMessage, Rr, TapMessage, FSTRM_ACCEPT,
    FSTRM_FINISH, FSTRM_READY, FSTRM_START, TYPE_A,
};
use common::{key, merge, Cof, Dnsensor, DnsensorRun, TestDir, DNSTAP_CONTENT_TYPE};

/// A RESOLVER_RESPONSE for zone `zone` answering `name A ip`.
fn resolver_frame(id: u16, name: &str, zone: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut msg = DnsMessage::response(id, name, TYPE_A);
    msg.answer.push(Rr::a(name, 300, ip).owner_ptr(12));
    TapMessage::resolver_response(zone, msg.encode()).encode()
}

/// The good sender's names and addresses: `host<i>.d1.com. A 198.51.100.<i>`.
fn good_name(i: usize) -> String {
    format!("host{i}.d1.com.")
}

fn good_ip(i: usize) -> [u8; 4] {
    [198, 51, 100, i as u8]
}

/// Deterministic "random" bytes (xorshift32).
fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The messages of stderr log lines (`<unix secs> <LEVEL> <message>`) at `level`.
fn log_messages(stderr: &str, level: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(' ')?;
            let (lvl, msg) = rest.split_once(' ')?;
            (lvl == level).then(|| msg.trim_start().to_string())
        })
        .collect()
}

/// The summary line's text from `summary:` on.
fn summary_line(stderr: &str) -> Option<String> {
    let l = stderr.lines().rev().find(|l| l.contains("summary: "))?;
    Some(l[l.find("summary: ")?..].to_string())
}

/// Reads until the server closes the connection (EOF or reset). Panics if it stays open.
fn expect_closed_by_server(s: &mut impl io::Read, what: &str) {
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: connection not closed by dnsensor: {e}"),
    }
}

/// Bidirectional handshake: READY → ACCEPT (checked) → START.
fn handshake(s: &mut (impl io::Read + io::Write)) {
    s.write_all(&fstrm_control(FSTRM_READY, &[DNSTAP_CONTENT_TYPE]))
        .unwrap();
    let accept = read_control(s).expect("read ACCEPT");
    assert_eq!(accept.ctype, FSTRM_ACCEPT, "{accept:?}");
    s.write_all(&fstrm_control(FSTRM_START, &[DNSTAP_CONTENT_TYPE]))
        .unwrap();
}

/// Polls the child's stderr until `pred` holds (bounded).
fn wait_stderr(sensor: &Dnsensor, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred(&sensor.stderr_text()) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn ctx(run: &DnsensorRun) -> String {
    format!(
        "exit {}\n----- output ({} lines) -----\n{}----- stderr -----\n{}",
        run.status,
        run.lines.len(),
        run.raw,
        run.stderr
    )
}

const GOOD: usize = 200;

#[test]
fn bad_senders_do_not_disturb_a_good_one() {
    let dir = TestDir::new("robust");
    let sensor = Dnsensor::start_with(dir.path(), &["--max-frame-bytes", "4096"]);
    let sock = sensor.sock.clone();
    let who = format!("dnstap: unix:{}", sock.display());
    let t0 = common::unix_now();

    // Two data frames that are not protobuf: wire type 7 does not exist; a length-delimited
    // field 14 that announces 16 bytes and has 1.
    let not_protobuf: Vec<Vec<u8>> = vec![b"\x0f not protobuf".to_vec(), vec![0x72, 0x10, 0x01]];
    // Three dnstap messages whose response is not DNS: shorter than a header; a QR=0 "query"
    // of noise; noise with QR=1 whose counts run past the end.
    let mut query_noise = noise(0x5eed_0001, 48);
    query_noise[2] &= 0x7f;
    let mut response_noise = noise(0x5eed_0002, 48);
    response_noise[2] |= 0x80;
    let not_dns: Vec<Vec<u8>> = [noise(0x5eed_0003, 7), query_noise, response_noise]
        .into_iter()
        .map(|r| TapMessage::resolver_response("d1.com.", r).encode())
        .collect();
    let good: Vec<Vec<u8>> = (0..GOOD)
        .map(|i| resolver_frame(i as u16, &good_name(i), "d1.com.", good_ip(i)))
        .collect();

    let barrier = Barrier::new(7);
    thread::scope(|sc| {
        let (sock, barrier) = (&sock, &barrier);
        // (1a) Not Frame Streams at all: "GET " reads as a 1195725856-byte data frame.
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            s.write_all(b"GET / HTTP/1.1\r\nHost: dnsensor\r\n\r\n")
                .unwrap();
            expect_closed_by_server(&mut s, "garbage (HTTP)");
        });
        // (1b) Garbage behind a control escape: an unknown control type.
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            s.write_all(b"\0\0\0\0\0\0\0\x10GARBAGE!GARBAGE!").unwrap();
            expect_closed_by_server(&mut s, "garbage (control)");
        });
        // (2) Handshake, then a data frame cut short, then close.
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            handshake(&mut s);
            let mut partial = 200u32.to_be_bytes().to_vec();
            partial.extend_from_slice(&noise(0x5eed_0004, 50));
            s.write_all(&partial).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            expect_closed_by_server(&mut s, "truncated");
        });
        // (3) Handshake, then a data frame announcing 1 MiB against a 4096-byte cap.
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            handshake(&mut s);
            let mut big = (1u32 << 20).to_be_bytes().to_vec();
            big.extend_from_slice(&noise(0x5eed_0005, 100));
            s.write_all(&big).unwrap();
            expect_closed_by_server(&mut s, "oversized");
        });
        // (4) Data frames that are not protobuf: counted, the connection lives on to FINISH.
        let np = &not_protobuf;
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            let (_, finish) = fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, np)
                .expect("not-protobuf session");
            assert_eq!(finish.ctype, FSTRM_FINISH);
        });
        // (5) dnstap messages whose response is not DNS.
        let nd = &not_dns;
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            let (_, finish) =
                fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, nd).expect("not-DNS session");
            assert_eq!(finish.ctype, FSTRM_FINISH);
        });
        // (6) The good sender.
        let good = &good;
        sc.spawn(move || {
            let mut s = connect_unix(sock).unwrap();
            barrier.wait();
            let (accept, finish) =
                fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, good).expect("good session");
            assert_eq!(accept.ctype, FSTRM_ACCEPT);
            assert_eq!(finish.ctype, FSTRM_FINISH);
        });
    });

    // FINISH means every frame of (4)-(6) was handled; the four refused connections are
    // closed, and their warnings follow right after: wait for them before stopping.
    let closing = format!("{who}: closing connection: ");
    let logged = wait_stderr(&sensor, Duration::from_secs(10), |e| {
        log_messages(e, "WARN")
            .iter()
            .filter(|m| m.starts_with(&closing))
            .count()
            >= 4
    });
    assert!(
        logged,
        "the four refused connections were not all logged:\n{}",
        sensor.stderr_text()
    );

    let run = sensor.finish();
    let t1 = common::unix_now();
    let ctx = ctx(&run);
    assert_eq!(run.status.code(), Some(0), "{ctx}");

    let mut warns = log_messages(&run.stderr, "WARN");
    warns.sort();
    let mut want_warns = vec![
        format!("{closing}data frame of 1195725856 bytes exceeds the 4096 byte limit"),
        format!("{closing}unknown control type 0x47415242"),
        format!("{closing}stream ended inside a frame (54 bytes left over)"),
        format!("{closing}data frame of 1048576 bytes exceeds the 4096 byte limit"),
        format!("{who}: a data frame is not a dnstap message (further ones are only counted)"),
    ];
    want_warns.sort();
    assert_eq!(warns, want_warns, "warnings; {ctx}");
    assert_eq!(
        log_messages(&run.stderr, "ERROR"),
        Vec::<String>::new(),
        "{ctx}"
    );

    // messages: the decoded dnstap messages (good + not-DNS); malformed: the not-DNS responses
    // plus the frames that did not decode.
    let messages = GOOD + not_dns.len();
    let malformed = not_dns.len() + not_protobuf.len();
    assert_eq!(
        summary_line(&run.stderr).as_deref(),
        Some(
            format!(
                "summary: messages={messages} responses_used={messages} records={GOOD} \
                 rrsets_flushed={GOOD} shed=0 malformed={malformed} out_of_bailiwick=0 private_dropped=0"
            )
            .as_str()
        ),
        "{ctx}"
    );

    let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
    assert_eq!(cofs.len(), GOOD, "one line per good name; {ctx}");
    let m = merge(&cofs);
    for i in 0..GOOD {
        let ip = good_ip(i);
        let rdata = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
        let k = key(&good_name(i), "A", "d1.com.", &[&rdata]);
        let got = m.get(&k).unwrap_or_else(|| panic!("missing {k:?}; {ctx}"));
        assert_eq!((got.lines, got.count), (1, 1), "{k:?}; {ctx}");
    }
    for c in &cofs {
        assert_eq!(c.bailiwick.as_deref(), Some("d1.com."), "{c:?}");
        assert_eq!(c.sensor_id.as_deref(), Some("test"), "{c:?}");
        assert!(
            t0 <= c.time_first && c.time_first <= c.time_last && c.time_last <= t1,
            "times {c:?} outside [{t0}, {t1}]"
        );
    }
}

/// CLIENT_RESPONSE from stub 127.0.0.9 (with a query_zone, as BIND sends) for two names, and
/// one RESOLVER_RESPONSE so the off case shows the stream itself was fine.
fn client_segment_frames() -> Vec<Vec<u8>> {
    let client = |id: u16, name: &str, ip: [u8; 4]| {
        let mut msg = DnsMessage::response(id, name, TYPE_A);
        msg.flags = 0x8180; // QR RD RA: a recursive answer to a stub
        msg.answer.push(Rr::a(name, 300, ip).owner_ptr(12));
        let mut t = TapMessage::resolver_response("d1.com.", msg.encode());
        t.mtype = dnstap::CLIENT_RESPONSE;
        t.query_address = [127, 0, 0, 9];
        t.query_port = 5353;
        t.response_address = [127, 0, 0, 53];
        t.encode()
    };
    vec![
        client(1, "www.d1.com.", [192, 0, 2, 1]),
        client(2, "mail.d2.com.", [192, 0, 2, 2]),
        resolver_frame(3, "ns1.d1.com.", "d1.com.", [192, 0, 2, 3]),
    ]
}

fn run_client_segment(dir: &Path, extra: &[&str]) -> DnsensorRun {
    let sensor = Dnsensor::start_with(dir, extra);
    let mut s = connect_unix(&sensor.sock).expect("connect");
    let (_, finish) =
        fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, &client_segment_frames())
            .unwrap_or_else(|e| panic!("session: {e}\n{}", sensor.stderr_text()));
    assert_eq!(finish.ctype, FSTRM_FINISH);
    drop(s);
    let run = sensor.finish();
    let ctx = ctx(&run);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    for leak in ["127.0.0.9", "127.0.0.53"] {
        assert!(!run.raw.contains(leak), "`{leak}` in the output; {ctx}");
        assert!(!run.stderr.contains(leak), "`{leak}` in the log; {ctx}");
    }
    for v in &run.lines {
        let obj = v.as_object().unwrap();
        for k in obj.keys() {
            assert!(
                ![
                    "client",
                    "addr",
                    "port",
                    "query_address",
                    "response_address"
                ]
                .iter()
                .any(|bad| k.contains(bad)),
                "key `{k}` in {v}; {ctx}"
            );
        }
    }
    run
}

#[test]
fn client_responses_are_ignored_by_default() {
    let dir = TestDir::new("robust-client-off");
    let run = run_client_segment(dir.path(), &[]);
    let ctx = ctx(&run);
    let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
    assert_eq!(cofs.len(), 1, "{ctx}");
    let m = merge(&cofs);
    let k = key("ns1.d1.com.", "A", "d1.com.", &["192.0.2.3"]);
    assert_eq!(m.get(&k).map(|e| e.count), Some(1), "{ctx}");
    assert_eq!(
        summary_line(&run.stderr).as_deref(),
        Some(
            "summary: messages=3 responses_used=1 records=1 rrsets_flushed=1 shed=0 \
             malformed=0 out_of_bailiwick=0 private_dropped=0"
        ),
        "{ctx}"
    );
}

#[test]
fn client_responses_flag_records_them_without_bailiwick() {
    let dir = TestDir::new("robust-client-on");
    let run = run_client_segment(dir.path(), &["--client-responses"]);
    let ctx = ctx(&run);
    assert_eq!(run.lines.len(), 3, "{ctx}");
    for v in &run.lines {
        let c = Cof::from_value(v);
        let want_bailiwick = (c.rrname == "ns1.d1.com.").then_some("d1.com.");
        assert_eq!(c.bailiwick.as_deref(), want_bailiwick, "{v}; {ctx}");
        assert_eq!(c.count, 1, "{v}; {ctx}");
    }
    let m = merge(&run.lines.iter().map(Cof::from_value).collect::<Vec<_>>());
    // merge() keys a missing bailiwick as "".
    for k in [
        key("www.d1.com.", "A", "", &["192.0.2.1"]),
        key("mail.d2.com.", "A", "", &["192.0.2.2"]),
        key("ns1.d1.com.", "A", "d1.com.", &["192.0.2.3"]),
    ] {
        assert!(m.contains_key(&k), "missing {k:?}; {ctx}");
    }
    assert_eq!(
        summary_line(&run.stderr).as_deref(),
        Some(
            "summary: messages=3 responses_used=3 records=3 rrsets_flushed=3 shed=0 \
             malformed=0 out_of_bailiwick=0 private_dropped=0"
        ),
        "{ctx}"
    );
}

/// A unidirectional sender (START, data, STOP; no handshake) over a TCP listener.
#[test]
fn tcp_listener_unidirectional() {
    let dir = TestDir::new("robust-tcp");
    let port = common::free_port();
    let listen = format!("tcp:127.0.0.1:{port}");
    let sensor = Dnsensor::start_with(dir.path(), &["--listen", &listen]);
    // The unix socket is bound first; poll until the TCP one accepts too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                panic!("connect {listen}: {e}\n{}", sensor.stderr_text())
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| resolver_frame(i as u16, &good_name(i), "d1.com.", good_ip(i)))
        .collect();
    fstrm_send_unidirectional(&mut s, DNSTAP_CONTENT_TYPE, &frames).expect("send");
    // After STOP dnsensor closes a unidirectional stream: every frame before it was handled.
    expect_closed_by_server(&mut s, "tcp sender after STOP");
    // And the records reach the output at the next window flush, before any SIGTERM.
    let mut sensor = sensor;
    let flushed = sensor.wait_for(Duration::from_secs(10), |l| l.len() >= frames.len());
    assert!(
        flushed,
        "not flushed within 10 s:\n{}",
        sensor.stderr_text()
    );

    let run = sensor.finish();
    let ctx = ctx(&run);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
    assert_eq!(cofs.len(), frames.len(), "{ctx}");
    let m = merge(&cofs);
    for i in 0..frames.len() {
        let ip = good_ip(i);
        let rdata = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
        let k = key(&good_name(i), "A", "d1.com.", &[&rdata]);
        assert_eq!(m.get(&k).map(|e| e.count), Some(1), "{k:?}; {ctx}");
    }
    let infos = log_messages(&run.stderr, "INFO");
    assert!(
        infos.contains(&format!("dnstap: listening on {listen}")),
        "{ctx}"
    );
    assert_eq!(
        summary_line(&run.stderr).as_deref(),
        Some(
            "summary: messages=20 responses_used=20 records=20 rrsets_flushed=20 shed=0 \
             malformed=0 out_of_bailiwick=0 private_dropped=0"
        ),
        "{ctx}"
    );
}

/// The good sender's frames, split into arbitrary small writes, still arrive whole: frames
/// straddling reads are reassembled. (A sender's writes need not align with frames.)
#[test]
fn frames_split_across_writes() {
    let dir = TestDir::new("robust-split");
    let sensor = Dnsensor::start(dir.path());
    let mut s = connect_unix(&sensor.sock).expect("connect");
    handshake(&mut s);
    let mut bytes = Vec::new();
    for i in 0..10 {
        bytes.extend_from_slice(&fstrm_data(&resolver_frame(
            i as u16,
            &good_name(i),
            "d1.com.",
            good_ip(i),
        )));
    }
    bytes.extend_from_slice(&fstrm_control(common::wire::FSTRM_STOP, &[]));
    for chunk in bytes.chunks(7) {
        s.write_all(chunk).unwrap();
        s.flush().unwrap();
    }
    let finish = read_control(&mut s).expect("FINISH");
    assert_eq!(finish.ctype, FSTRM_FINISH);
    drop(s);
    let run = sensor.finish();
    let ctx = ctx(&run);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    assert_eq!(run.lines.len(), 10, "{ctx}");
    assert_eq!(
        summary_line(&run.stderr).as_deref(),
        Some(
            "summary: messages=10 responses_used=10 records=10 rrsets_flushed=10 shed=0 \
             malformed=0 out_of_bailiwick=0 private_dropped=0"
        ),
        "{ctx}"
    );
}
