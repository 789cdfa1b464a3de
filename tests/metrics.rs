//! The metrics endpoint: `dnsensor dnstap --metrics` scraped before, during and after a run of
//! crafted frames, with every counter checked against what was sent and what was written; idle
//! connections to it are closed and capped.
//!
//! Frames are made with `common::wire` and sent over one Frame Streams session; no DNS servers
//! are needed. The scrapes are plain HTTP/1.1 GETs over loopback.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::expect::summary_value;
use common::wire::{
    connect_unix, dnstap, fstrm_control, fstrm_data, fstrm_send_bidirectional, DnsMessage, Rr,
    TapMessage, FSTRM_READY, FSTRM_START, FSTRM_STOP, TYPE_A,
};
use common::{free_port, Cof, Dnsensor, TestDir, DNSTAP_CONTENT_TYPE};

/// One HTTP response: status, Content-Type, body.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

fn http_get(port: u16, path: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to the metrics port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the HTTP response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Reply {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// One scrape: every sample, keyed by its name with labels (`name{a="b"}`).
#[derive(Debug, Clone)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    fn get(&self, key: &str) -> u64 {
        match self.samples.get(key) {
            Some(v) => *v as u64,
            None => panic!("no sample {key} in the scrape:\n{}", self.text),
        }
    }
}

fn scrape(port: u16) -> Scrape {
    let r = http_get(port, "/metrics");
    assert_eq!(r.status, 200, "GET /metrics:\n{}", r.body);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let mut samples = BTreeMap::new();
    for line in r.body.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(
            samples.insert(key.to_string(), value).is_none(),
            "{key} twice"
        );
    }
    Scrape {
        samples,
        text: r.body,
    }
}

/// Counters, histogram buckets, sums and counts never go down from one scrape to the next.
fn assert_monotonic(before: &Scrape, after: &Scrape) {
    for (key, &was) in &before.samples {
        let name = key.split('{').next().unwrap();
        let cumulative = name.ends_with("_total")
            || name.ends_with("_bucket")
            || name.ends_with("_sum")
            || name.ends_with("_count");
        if !cumulative {
            continue;
        }
        let now = after.samples.get(key).copied();
        assert!(
            now.is_some_and(|now| now >= was),
            "{key} went from {was} to {now:?}"
        );
    }
}

/// A RESOLVER_RESPONSE for zone `zone` answering `name A ip`.
fn resolver_frame(name: &str, zone: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut msg = DnsMessage::response(0x4d45, name, TYPE_A);
    msg.answer.push(Rr::a(name, 300, ip).owner_ptr(12));
    TapMessage::resolver_response(zone, msg.encode()).encode()
}

/// What the test sends, and what each kind of frame should do to the counters.
struct Traffic {
    frames: Vec<Vec<u8>>,
}

const DISTINCT: usize = 6;
const DUPLICATES: usize = 2;

impl Traffic {
    fn new() -> Traffic {
        let host = |i: usize| {
            resolver_frame(
                &format!("host{i}.m1.example."),
                "m1.example.",
                [198, 51, 100, 10 + i as u8],
            )
        };
        let mut frames: Vec<Vec<u8>> = (0..DISTINCT).map(host).collect();
        // The same RRsets again: counted as records and RRsets, merged by de-duplication.
        frames.extend((0..DUPLICATES).map(host));
        // An answer with a poisoning attempt in the additional section (out of bailiwick).
        let mut spoof = DnsMessage::response(0x1234, "www.d1.com.", TYPE_A);
        spoof
            .answer
            .push(Rr::a("www.d1.com.", 3600, [192, 0, 2, 1]).owner_ptr(12));
        spoof
            .additional
            .push(Rr::a("www.bank.com.", 3600, [203, 0, 113, 66]));
        frames.push(TapMessage::resolver_response("d1.com.", spoof.encode()).encode());
        // A private address: dropped by the privacy stage.
        frames.push(resolver_frame(
            "intranet.m1.example.",
            "m1.example.",
            [10, 1, 2, 3],
        ));
        // A client-segment response: decoded, not recorded (no --client-responses).
        let mut client = DnsMessage::response(7, "host0.m1.example.", TYPE_A);
        client
            .answer
            .push(Rr::a("host0.m1.example.", 300, [198, 51, 100, 10]).owner_ptr(12));
        let mut t = TapMessage::resolver_response("m1.example.", client.encode());
        t.mtype = dnstap::CLIENT_RESPONSE;
        frames.push(t.encode());
        // A data frame that is not a dnstap protobuf.
        frames.push(b"\x0f not protobuf".to_vec());
        Traffic { frames }
    }

    /// The bytes `fstrm_send_bidirectional` writes for these frames.
    fn bytes_on_the_wire(&self) -> u64 {
        let mut n = fstrm_control(FSTRM_READY, &[DNSTAP_CONTENT_TYPE]).len()
            + fstrm_control(FSTRM_START, &[DNSTAP_CONTENT_TYPE]).len()
            + fstrm_control(FSTRM_STOP, &[]).len();
        for f in &self.frames {
            n += fstrm_data(f).len();
        }
        n as u64
    }
}

/// Scrapes until `done` holds (or 30 s pass), checking that counters only go up on the way.
fn scrape_until(
    port: u16,
    scrapes: &mut Vec<Scrape>,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(port);
        if let Some(last) = scrapes.last() {
            assert_monotonic(last, &s);
        }
        scrapes.push(s.clone());
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not within 30 s: {what}; last scrape:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn counters_follow_a_dnstap_run() {
    let dir = TestDir::new("metrics");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sensor = Dnsensor::start_with(dir.path(), &["--metrics", &addr]);
    let mut scrapes = Vec::new();

    // Before any traffic: the whole pipeline at zero, the mode named.
    let s0 = scrape(port);
    assert_eq!(
        s0.get(&format!(
            "dnsensor_build_info{{version=\"{}\",mode=\"dnstap\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1
    );
    for key in [
        "dnsensor_pipeline_observations_offered_total",
        "dnsensor_pipeline_messages_total",
        "dnsensor_pipeline_rrsets_flushed_total",
        "dnsensor_dnstap_frames_total",
        "dnsensor_dnstap_connections_accepted_total",
        "dnsensor_dnstap_connections_active",
    ] {
        assert_eq!(s0.get(key), 0, "{key} before any traffic");
    }
    // No spool or proxy in this run: their families are left out.
    assert!(!s0.text.contains("dnsensor_spool_"), "{}", s0.text);
    assert!(!s0.text.contains("dnsensor_proxy_"), "{}", s0.text);
    scrapes.push(s0);

    // Other paths are not found.
    assert_eq!(http_get(port, "/").status, 404);
    assert_eq!(http_get(port, "/metrics/x").status, 404);

    // One session with every kind of frame; FINISH means the server has read them all.
    let traffic = Traffic::new();
    let mut conn = connect_unix(&sensor.sock).expect("connect to dnsensor's socket");
    fstrm_send_bidirectional(&mut conn, DNSTAP_CONTENT_TYPE, &traffic.frames).unwrap_or_else(|e| {
        panic!(
            "Frame Streams session failed: {e}\nstderr:\n{}",
            sensor.stderr_text()
        )
    });
    drop(conn);

    let used = (DISTINCT + DUPLICATES + 2) as u64; // the spoof and the private answer too
    scrape_until(port, &mut scrapes, "every response parsed", |s| {
        s.get("dnsensor_pipeline_messages_total") == used
    });

    // The window (1 s) is flushed: wait for the seven distinct RRsets, then for the flusher's
    // counter to match the lines in the file.
    assert!(
        sensor.wait_for(Duration::from_secs(30), |lines| {
            let cofs: Vec<Cof> = lines.iter().map(Cof::from_value).collect();
            common::merge(&cofs).len() == DISTINCT + 1
        }),
        "the records were not written within 30 s; stderr:\n{}",
        sensor.stderr_text()
    );
    let lines = sensor.lines_so_far();
    let last = scrape_until(port, &mut scrapes, "rrsets_flushed = COF lines", |s| {
        s.get("dnsensor_pipeline_rrsets_flushed_total") == lines.len() as u64
    });
    // And nothing more is written afterwards.
    assert_eq!(sensor.lines_so_far().len(), lines.len());

    let frames = traffic.frames.len() as u64;
    let want: &[(&str, u64)] = &[
        // dnstap: one connection, finished with STOP; every frame counted by kind.
        ("dnsensor_dnstap_connections_accepted_total", 1),
        ("dnsensor_dnstap_connections_finished_total", 1),
        ("dnsensor_dnstap_connections_closed_total", 1),
        ("dnsensor_dnstap_connections_closed_error_total", 0),
        ("dnsensor_dnstap_connections_refused_total", 0),
        ("dnsensor_dnstap_connections_active", 0),
        (
            "dnsensor_dnstap_bytes_read_total",
            traffic.bytes_on_the_wire(),
        ),
        ("dnsensor_dnstap_frames_total", frames),
        ("dnsensor_dnstap_messages_decoded_total", frames - 1),
        ("dnsensor_dnstap_decode_errors_total", 1),
        ("dnsensor_dnstap_messages_used_total", used),
        ("dnsensor_dnstap_messages_ignored_total", 1),
        ("dnsensor_dnstap_responses_missing_total", 0),
        ("dnsensor_dnstap_protocol_errors_total", 0),
        ("dnsensor_dnstap_observations_shed_total", 0),
        // The pipeline: every used response offered and parsed, none shed.
        ("dnsensor_pipeline_observations_offered_total", used),
        ("dnsensor_pipeline_observations_shed_total", 0),
        ("dnsensor_pipeline_messages_total", used),
        ("dnsensor_pipeline_malformed_messages_total", 0),
        // One A record per answer, plus the spoofed additional record.
        ("dnsensor_pipeline_records_total", used + 1),
        (
            "dnsensor_pipeline_records_dropped_total{reason=\"out_of_bailiwick\"}",
            1,
        ),
        (
            "dnsensor_pipeline_records_dropped_total{reason=\"private_address\"}",
            1,
        ),
        (
            "dnsensor_pipeline_records_dropped_total{reason=\"private_name\"}",
            0,
        ),
        (
            "dnsensor_pipeline_records_dropped_total{reason=\"bad_record\"}",
            0,
        ),
        (
            "dnsensor_pipeline_records_dropped_total{reason=\"skipped\"}",
            0,
        ),
        // RRsets kept: the hosts (duplicates included) and www.d1.com.
        (
            "dnsensor_pipeline_rrsets_total",
            (DISTINCT + DUPLICATES + 1) as u64,
        ),
        ("dnsensor_pipeline_early_flushes_total", 0),
        ("dnsensor_pipeline_write_errors_total", 0),
    ];
    let wrong: Vec<String> = want
        .iter()
        .filter(|(key, v)| last.get(key) != *v)
        .map(|(key, v)| format!("{key} = {}, want {v}", last.get(key)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\nscrape:\n{}",
        wrong.join("\n"),
        last.text
    );
    // Every RRset kept is in the output: the counts of the COF lines add up to it.
    let cofs: Vec<Cof> = lines.iter().map(Cof::from_value).collect();
    let seen: u64 = cofs.iter().map(|c| c.count).sum();
    assert_eq!(seen, last.get("dnsensor_pipeline_rrsets_total"));
    assert!(last.get("dnsensor_pipeline_flushes_total") >= 1);

    // Two more scrapes: nothing moves backwards, and with no traffic nothing moves at all
    // but the flush count.
    let again = scrape(port);
    assert_monotonic(&last, &again);
    let third = scrape(port);
    assert_monotonic(&again, &third);
    for (key, v) in &last.samples {
        if !key.starts_with("dnsensor_pipeline_flushes_total") {
            assert_eq!(third.samples.get(key), Some(v), "{key} moved while idle");
        }
    }

    // The exit summary agrees with the last scrape.
    let run = sensor.finish();
    assert!(run.status.success(), "exit {}:\n{}", run.status, run.stderr);
    for (summary, key) in [
        ("messages", "dnsensor_dnstap_messages_decoded_total"),
        (
            "responses_used",
            "dnsensor_pipeline_observations_offered_total",
        ),
        ("rrsets_flushed", "dnsensor_pipeline_rrsets_flushed_total"),
        ("shed", "dnsensor_pipeline_observations_shed_total"),
    ] {
        assert_eq!(
            summary_value(&run.stderr, summary),
            Some(third.get(key)),
            "summary {summary} vs {key}; stderr:\n{}",
            run.stderr
        );
    }
}

/// A client that connects to the metrics port and sends nothing is disconnected when the
/// connection's lifetime (10 s) is over, and a connection beyond the cap of 16 is closed at once:
/// the port cannot hold the process's file descriptors. Scrapes work again afterwards.
#[test]
fn idle_metrics_connections_are_closed_and_capped() {
    let dir = TestDir::new("metrics-idle");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let sensor = Dnsensor::start_with(dir.path(), &["--metrics", &addr]);
    scrape(port);
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
        // Far beyond the lifetime: a read that waits this long means the server never closed.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    };
    let idle: Vec<TcpStream> = (0..16).map(|_| connect()).collect();
    let closed = |s: &mut TcpStream, which: &str| match s.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{which}: expected the server to close it, got {other:?}"),
    };
    // The 17th: refused by closing, without a byte.
    closed(&mut connect(), "the connection beyond the cap");
    for (i, mut s) in idle.into_iter().enumerate() {
        closed(&mut s, &format!("idle connection {i}"));
    }
    assert_eq!(http_get(port, "/metrics").status, 200);
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
}

#[test]
fn metrics_port_in_use_is_a_one_line_start_up_error() {
    let dir = TestDir::new("metrics-busy");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sock = dir.path().join("dnstap.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsensor"))
        .args([
            "dnstap",
            "--listen",
            &format!("unix:{}", sock.display()),
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("run dnsensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "dnsensor: error: metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
    );
    assert!(!sock.exists(), "the dnstap socket was created anyway");
    drop(taken);
}

#[test]
fn a_bad_metrics_address_is_a_configuration_error() {
    let dir = TestDir::new("metrics-bad");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dnsensor"))
        .args([
            "dnstap",
            "--listen",
            &format!("unix:{}", dir.path().join("dnstap.sock").display()),
            "--metrics",
            "9153",
        ])
        .output()
        .expect("run dnsensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "dnsensor: error: metrics: `9153` is not ADDR:PORT, as in 127.0.0.1:9153 or [::1]:9153"
    );
}

/// A stand-in resolver on 127.0.0.1 (UDP and TCP on one port) that answers every query with
/// its own bytes, QR and RA set: enough for the proxy to forward and time an answer.
fn echo_upstream() -> String {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let udp = std::net::UdpSocket::bind(&addr).expect("bind the stand-in resolver (UDP)");
    let tcp = TcpListener::bind(&addr).expect("bind the stand-in resolver (TCP)");
    let answer = |msg: &mut Vec<u8>| {
        if msg.len() >= 12 {
            msg[2] |= 0x80;
            msg[3] |= 0x80;
        }
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let mut msg = buf[..n].to_vec();
            answer(&mut msg);
            let _ = udp.send_to(&msg, from);
        }
    });
    std::thread::spawn(move || {
        for mut conn in tcp.incoming().flatten() {
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).is_err() {
                continue;
            }
            let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
            if conn.read_exact(&mut msg).is_err() {
                continue;
            }
            answer(&mut msg);
            let _ = conn.write_all(&common::proxy::tcp_frame(&msg));
        }
    });
    addr
}

#[test]
fn proxy_latency_histogram_counts_every_answer() {
    use common::proxy::{ask, start_proxy, Query, Transport};

    let dir = TestDir::new("metrics-proxy");
    let upstream = echo_upstream();
    let listen = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let sensor = start_proxy(
        dir.path(),
        &[&listen],
        &[&upstream],
        &["--metrics", &metrics],
    );
    let (udp, tcp) = (3u64, 2u64);
    for id in 0..udp {
        ask(
            "udp",
            Transport::Udp,
            &listen,
            &Query::new("a.example.", "A"),
            id as u16,
        );
    }
    for id in 0..tcp {
        ask(
            "tcp",
            Transport::Tcp,
            &listen,
            &Query::new("b.example.", "A"),
            id as u16,
        );
    }
    // A UDP answer is counted just after it is sent, so the client may be a moment ahead.
    let mut scrapes = Vec::new();
    let s = scrape_until(port, &mut scrapes, "every answer counted", |s| {
        s.get("dnsensor_proxy_answered_total") == udp + tcp
            && s.get("dnsensor_proxy_answer_latency_seconds_count{transport=\"udp\"}") == udp
            && s.get("dnsensor_pipeline_observations_offered_total") == udp + tcp
    });
    let ctx = &s.text;
    assert_eq!(
        s.get(&format!(
            "dnsensor_build_info{{version=\"{}\",mode=\"proxy\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1
    );
    assert_eq!(s.get("dnsensor_proxy_queries_total"), udp + tcp, "{ctx}");
    assert_eq!(s.get("dnsensor_proxy_refused_total"), 0, "{ctx}");
    assert_eq!(s.get("dnsensor_proxy_servfail_total"), 0, "{ctx}");
    assert_eq!(s.get("dnsensor_proxy_tcp_accepted_total"), tcp, "{ctx}");
    for (transport, n) in [("udp", udp), ("tcp", tcp)] {
        let l = format!("transport=\"{transport}\"");
        assert_eq!(
            s.get(&format!(
                "dnsensor_proxy_answer_latency_seconds_count{{{l}}}"
            )),
            n,
            "{ctx}"
        );
        assert_eq!(
            s.get(&format!(
                "dnsensor_proxy_answer_latency_seconds_bucket{{{l},le=\"+Inf\"}}"
            )),
            n,
            "{ctx}"
        );
        // Buckets are cumulative: in the order of their bounds, counts never go down.
        let mut buckets: Vec<(f64, u64)> = s
            .samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("dnsensor_proxy_answer_latency_seconds_bucket{") && k.contains(&l)
            })
            .map(|(k, v)| {
                let le = k.split("le=\"").nth(1).unwrap().trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *v as u64)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{ctx}");
        assert_eq!(buckets.len(), 17, "{ctx}");
        assert!(
            s.samples[&format!("dnsensor_proxy_answer_latency_seconds_sum{{{l}}}")] > 0.0,
            "{ctx}"
        );
    }
    // No delivery here.
    assert!(!ctx.contains("dnsensor_uploads"), "{ctx}");
    let run = sensor.finish();
    assert!(run.status.success(), "exit {}:\n{}", run.status, run.stderr);
}
