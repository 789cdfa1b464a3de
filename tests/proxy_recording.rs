//! What `dnsensor proxy` records: dnsperf sends every name and type of `proxy.test.` through the
//! proxy (UDP and TCP); the COF output must be exactly the zone's RRsets, counted per response.

// World W=7, hosts 100 and up (tests/proxy_failover.rs uses the hosts below 100): NSD on
// 127.53.7.101 and the proxy on .102 (.103/.104 for the priority test, .105/.106 with busy
// polling), dnsperf sending from 127.0.0.1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use common::expect::summary_value;
use common::proxy::{
    addr, ask, port53, proxy_zone_text, response_record_count, response_rrsets, start_proxy,
    zone_rrsets, Header, Query, Transport, Upstream, NOERROR, NXDOMAIN,
};
use common::{merge, parse_cof, require_program, unix_now, Cof, TestDir};

const W: u8 = 7;
/// Passes over the query file: over UDP, then over TCP.
const UDP_RUNS: u64 = 10;
const TCP_RUNS: u64 = 4;

/// The numbers dnsperf prints.
#[derive(Debug, Default)]
struct Perf {
    sent: u64,
    completed: u64,
    lost: u64,
    rcodes: BTreeMap<String, u64>,
}

/// Parses `Queries sent:`, `Queries completed:`, `Queries lost:` and `Response codes:`.
fn parse_dnsperf(out: &str) -> Perf {
    let num = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("dnsperf printed no `{key}`:\n{out}"))
    };
    let mut rcodes = BTreeMap::new();
    if let Some(l) = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Response codes:"))
    {
        for part in l.split(',') {
            let mut it = part.split_whitespace();
            if let (Some(code), Some(n)) = (it.next(), it.next()) {
                rcodes.insert(code.to_string(), n.parse().unwrap_or(0));
            }
        }
    }
    Perf {
        sent: num("Queries sent:"),
        completed: num("Queries completed:"),
        lost: num("Queries lost:"),
        rcodes,
    }
}

fn dnsperf(server_ip: &str, qfile: &std::path::Path, extra: &[&str]) -> Perf {
    let out = Command::new(require_program("dnsperf", "dnsperf"))
        .args([
            "-s",
            server_ip,
            "-p",
            "53",
            "-a",
            "127.0.0.1",
            "-e",
            "-t",
            "5",
        ])
        .arg("-d")
        .arg(qfile)
        .args(["-l", "60", "-Q", "2000"])
        .args(extra)
        .output()
        .expect("run dnsperf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dnsperf {extra:?} failed:\n{text}");
    parse_dnsperf(&text)
}

#[test]
fn dnsperf_through_the_proxy_records_exactly_the_zone() {
    records_exactly_the_zone("proxy-recording", 101, 102, &[]);
}

/// The same with busy polling: forwarding threads that poll instead of sleeping still leave the
/// pipeline its core, so that nothing is shed and every window (one a second here) is written.
#[test]
fn with_busy_polling_the_proxy_still_records_exactly_the_zone() {
    records_exactly_the_zone("proxy-recording-busy", 105, 106, &["--busy-poll", "200"]);
}

/// Runs dnsperf through a proxy started with `extra` (NSD on host `nsd_host` of world W, the
/// proxy on `proxy_host`) and checks the answers, the summary and the records.
fn records_exactly_the_zone(name: &str, nsd_host: u8, proxy_host: u8, extra: &[&str]) {
    let dir = TestDir::new(name);
    let up = Upstream::start(&dir.sub("nsd"), &addr(W, nsd_host));
    let proxy_ip = addr(W, proxy_host);
    let zone = zone_rrsets(&proxy_zone_text());

    // Every (name, type) of the zone, two NXDOMAIN names and a NODATA.
    let mut queries: Vec<(String, String)> = zone.keys().cloned().collect();
    for (n, t) in [
        ("nx1.proxy.test.", "A"),
        ("nx2.proxy.test.", "TXT"),
        ("www.proxy.test.", "MX"),
    ] {
        queries.push((n.to_string(), t.to_string()));
    }
    let qfile = dir.path().join("queries.txt");
    let qtext: String = queries.iter().map(|(n, t)| format!("{n} {t}\n")).collect();
    fs::write(&qfile, qtext).unwrap();

    // What one pass over the file yields, from NSD directly (EDNS, as dnsperf -e asks; nothing
    // may be truncated): RRsets per response, records, rcodes.
    let mut per_pass: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut records_per_pass = 0;
    let mut rcodes_per_pass: BTreeMap<String, u64> = BTreeMap::new();
    for (i, (n, t)) in queries.iter().enumerate() {
        let q = Query::new(n, t).edns(4096, false);
        for tr in [Transport::Udp, Transport::Tcp] {
            let r = ask("direct", tr, &up.server(), &q, i as u16);
            let h = Header::parse(&r);
            assert!(
                !h.tc() && h.aa(),
                "harness: {} over {tr:?}: {}",
                q.label(),
                common::proxy::describe(&r)
            );
            if tr == Transport::Tcp {
                continue;
            }
            for set in response_rrsets(&r) {
                *per_pass.entry(set).or_default() += 1;
            }
            records_per_pass += response_record_count(&r);
            let code = match h.rcode() {
                NOERROR => "NOERROR",
                NXDOMAIN => "NXDOMAIN",
                other => panic!("harness: {} rcode {other}", q.label()),
            };
            *rcodes_per_pass.entry(code.to_string()).or_default() += 1;
        }
    }
    // The queries reach every RRset of the zone, and nothing else.
    assert_eq!(
        per_pass.keys().collect::<BTreeSet<_>>(),
        zone.keys().collect::<BTreeSet<_>>(),
        "harness: the query list does not cover exactly the zone"
    );

    let t0 = unix_now();
    let proxy = start_proxy(
        &dir.path().join("proxy"),
        &[&port53(&proxy_ip)],
        &[&up.server()],
        extra,
    );
    let udp = dnsperf(&proxy_ip, &qfile, &["-n", &UDP_RUNS.to_string(), "-c", "4"]);
    let tcp = dnsperf(
        &proxy_ip,
        &qfile,
        &["-m", "tcp", "-n", &TCP_RUNS.to_string(), "-c", "2"],
    );
    let run = proxy.finish();
    let t1 = unix_now();
    drop(up);

    let runs = UDP_RUNS + TCP_RUNS;
    let mut problems: Vec<String> = Vec::new();
    let q = queries.len() as u64;
    for (what, p, n) in [("UDP", &udp, UDP_RUNS), ("TCP", &tcp, TCP_RUNS)] {
        let want: BTreeMap<String, u64> = rcodes_per_pass
            .iter()
            .map(|(k, v)| (k.clone(), v * n))
            .collect();
        if p.sent != q * n || p.completed != p.sent || p.lost != 0 || p.rcodes != want {
            problems.push(format!(
                "dnsperf over {what}: {p:?}, want {} sent and completed, rcodes {want:?}",
                q * n
            ));
        }
    }

    if !run.status.success() {
        problems.push(format!("exit status {} after SIGTERM", run.status));
    }
    if let [.., "--busy-poll", us] = extra {
        let want = format!("UDP busy polling for {us} µs");
        if !run.stderr.contains(&want) {
            problems.push(format!("no `{want}` in the proxy's log"));
        }
    }
    // The summary agrees with what dnsperf saw and with the records in the answers.
    let sent = udp.sent + tcp.sent;
    let completed = udp.completed + tcp.completed;
    for (key, want) in [
        ("queries", sent),
        ("answered", completed),
        ("refused", 0),
        ("servfail", 0),
        ("shed", 0),
        ("records", records_per_pass * runs),
    ] {
        let got = summary_value(&run.stderr, key);
        if got != Some(want) {
            problems.push(format!("summary {key}={got:?}, want {want}"));
        }
    }

    // No client data: dnsperf's address, and no key that could hold one.
    if run.raw.contains("127.0.0.1") {
        problems.push("the output contains the client address 127.0.0.1".into());
    }
    let lines = parse_cof(&run.raw);
    if lines.is_empty() {
        problems.push("no output lines".into());
    }
    for v in &lines {
        let obj = v.as_object().unwrap();
        for k in obj.keys() {
            let kl = k.to_ascii_lowercase();
            if kl.contains("client") || kl.contains("addr") || kl.contains("port") {
                problems.push(format!("key `{k}` in {v}"));
            }
        }
        // The proxy does not know the zone of an answer: no bailiwick at all.
        if obj.contains_key("bailiwick") {
            problems.push(format!("a bailiwick key: {v}"));
        }
        let c = Cof::from_value(v);
        if c.sensor_id.as_deref() != Some("test") {
            problems.push(format!("sensor_id {:?}: {v}", c.sensor_id));
        }
        if c.count < 1 || c.time_first > c.time_last || c.time_first < t0 || c.time_last > t1 {
            problems.push(format!("count or times wrong (test ran {t0}..{t1}): {v}"));
        }
        if !c.rrname.ends_with('.') || c.rrname.chars().any(|ch| ch.is_ascii_uppercase()) {
            problems.push(format!("rrname not absolute lowercase: {v}"));
        }
    }

    // Exactly the zone's RRsets, each counted once per response that carried it.
    let cofs: Vec<Cof> = lines.iter().map(Cof::from_value).collect();
    let merged = merge(&cofs);
    let got: BTreeMap<(String, String, Vec<String>), u64> = merged
        .iter()
        .map(|((name, ty, _, rdata), m)| ((name.clone(), ty.clone(), rdata.clone()), m.count))
        .collect();
    let want: BTreeMap<(String, String, Vec<String>), u64> = zone
        .iter()
        .map(|((name, ty), rdata)| {
            let n = per_pass[&(name.clone(), ty.clone())] * runs;
            ((name.clone(), ty.clone(), rdata.clone()), n)
        })
        .collect();
    for (k, n) in &want {
        match got.get(k) {
            None => problems.push(format!("missing RRset {k:?} (want count {n})")),
            Some(g) if g != n => problems.push(format!("{k:?}: count {g}, want {n}")),
            _ => {}
        }
    }
    for (k, n) in &got {
        if !want.contains_key(k) {
            let zone_has = zone.get(&(k.0.clone(), k.1.clone()));
            problems.push(format!(
                "RRset not in the zone (count {n}; the zone has {zone_has:?}): {k:?}"
            ));
        }
    }

    if !problems.is_empty() {
        let mut msg = format!("{} problem(s):\n", problems.len());
        for p in &problems {
            let _ = writeln!(msg, "  - {p}");
        }
        let _ = writeln!(
            msg,
            "----- output ({} lines) -----\n{}",
            lines.len(),
            run.raw
        );
        let _ = writeln!(msg, "----- proxy stderr -----\n{}", run.stderr);
        panic!("{msg}");
    }
}

/// (thread name, scheduling policy) of every thread of process `pid`; the policy is field 41
/// of each thread's `stat`, the 39th after the ") " that ends the command name.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let policy = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(38))
            .and_then(|n| n.parse().ok());
        if let Some(policy) = policy {
            out.push((comm.trim_end().to_owned(), policy));
        }
    }
    out.sort();
    out
}

/// Recording yields to answers: the pipeline's worker and flusher threads run under SCHED_IDLE
/// and the forwarding threads under the policy they inherit, every time (set from outside by thread
/// name, as the proxy once did, it missed threads that started late).
#[test]
fn recording_threads_run_at_idle_priority_and_forwarding_threads_do_not() {
    const SCHED_IDLE: u32 = 5;
    // The proxy's other threads keep the policy they inherit from this test.
    let inherited = thread_policies(std::process::id())
        .first()
        .map(|(_, p)| *p)
        .expect("this test's own threads");
    assert_ne!(
        inherited, SCHED_IDLE,
        "the tests themselves run under SCHED_IDLE"
    );
    let dir = TestDir::new("proxy-priority");
    let up = Upstream::start(&dir.sub("nsd"), &addr(W, 103));
    let server = port53(&addr(W, 104));
    for start in 0..3 {
        let proxy = start_proxy(
            &dir.path().join(format!("proxy-{start}")),
            &[&server],
            &[&up.server()],
            &[],
        );
        // An answer: the forwarding threads are up.
        let q = Query::new("www.proxy.test.", "A");
        let r = ask("proxy", Transport::Udp, &server, &q, 7);
        assert_eq!(Header::parse(&r).rcode(), NOERROR);
        let is_recording =
            |name: &str| name.starts_with("dnsensor-worker") || name == "dnsensor-flushe";
        // Each thread sets its policy as it starts: allow it a moment to show.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let threads = loop {
            let threads = thread_policies(proxy.pid());
            let settled = threads.iter().filter(|(n, _)| is_recording(n)).count() >= 2
                && threads
                    .iter()
                    .all(|(n, p)| !is_recording(n) || *p == SCHED_IDLE);
            if settled || std::time::Instant::now() > deadline {
                break threads;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let run = proxy.finish();
        assert!(
            threads.iter().any(|(n, _)| n == "dnsensor-flushe")
                && threads
                    .iter()
                    .any(|(n, _)| n.starts_with("dnsensor-worker")),
            "start {start}: no worker or flusher thread: {threads:?}\n{}",
            run.stderr
        );
        for (name, policy) in &threads {
            let want = if is_recording(name) {
                SCHED_IDLE
            } else {
                inherited
            };
            assert_eq!(*policy, want, "start {start}: thread {name}: {threads:?}");
        }
    }
}
