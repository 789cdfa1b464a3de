//! What the world's zone data says, and the assertions shared by the resolver tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{
    key, merge, unix_now, Cof, Dnsensor, DnsensorRun, Key, Merged, Resolver, TestDir, World,
};

/// The fixed query list sent through the resolver, with the rcode each must get.
pub const QUERIES: &[(&str, &str, &str)] = &[
    ("www.d1.com.", "A", "NOERROR"),
    ("www.d1.com.", "AAAA", "NOERROR"),
    ("d1.com.", "MX", "NOERROR"),
    ("d1.com.", "TXT", "NOERROR"),
    ("txt.d1.com.", "TXT", "NOERROR"),
    // CNAME chain alias -> alias2 (d1.com.) -> www.d2.com. -> web.d3.net.
    ("alias.d1.com.", "A", "NOERROR"),
    ("_sip._udp.d1.com.", "SRV", "NOERROR"),
    // synthesised from *.w.d1.com.
    ("foo.w.d1.com.", "A", "NOERROR"),
    // NXDOMAIN: SOA of d1.com. in the authority section
    ("nx.d1.com.", "A", "NXDOMAIN"),
    // NODATA: SOA of d1.com. again
    ("www.d1.com.", "MX", "NOERROR"),
    // below the sub.d1.com. delegation (glue in d1.com.)
    ("host.sub.d1.com.", "A", "NOERROR"),
    // NXDOMAIN from the root: SOA of .
    ("foo.example.", "A", "NXDOMAIN"),
    ("web.d3.net.", "AAAA", "NOERROR"),
];

/// The zone data of a world: (zone, owner, type) → sorted presentation rdata.
#[derive(Debug, Default)]
pub struct ZoneData {
    pub sets: BTreeMap<(String, String, String), Vec<String>>,
}

/// Splits a zone file line into tokens; a quoted string stays one token, quotes included.
pub fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_q => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                cur.push(c);
                in_q = !in_q;
            }
            ';' if !in_q => break,
            c if c.is_whitespace() && !in_q => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl ZoneData {
    /// Parses the world's zone files. They are written in the same canonical presentation
    /// form dnsensor emits: absolute lowercase names, `owner ttl IN type rdata…` on one line.
    pub fn load(world: &World) -> ZoneData {
        let mut zd = ZoneData::default();
        for zone in super::world_zones() {
            let text = world.zone_text(zone);
            for line in text.lines() {
                let t = tokens(line);
                if t.is_empty() || t[0].starts_with('$') {
                    continue;
                }
                assert!(
                    t.len() >= 5 && t[2] == "IN",
                    "zone {zone}: unsupported line: {line}"
                );
                assert!(t[0].ends_with('.'), "zone {zone}: relative owner: {line}");
                let owner = t[0].to_ascii_lowercase();
                let rtype = t[3].clone();
                let rdata = t[4..].join(" ");
                let e = zd.sets.entry((zone.to_string(), owner, rtype)).or_default();
                e.push(rdata);
                e.sort();
            }
        }
        zd
    }

    /// The rdata set of (owner, type) in `zone`, following a wildcard one label up.
    pub fn lookup(&self, zone: &str, owner: &str, rtype: &str) -> Option<&Vec<String>> {
        if let Some(v) = self
            .sets
            .get(&(zone.to_string(), owner.to_string(), rtype.to_string()))
        {
            return Some(v);
        }
        let (_, parent) = owner.split_once('.')?;
        if self.sets.keys().any(|(z, o, _)| z == zone && o == owner) {
            return None; // the name exists: no wildcard synthesis
        }
        self.sets
            .get(&(zone.to_string(), format!("*.{parent}"), rtype.to_string()))
    }

    pub fn contains_key(&self, k: &Key) -> bool {
        self.lookup(&k.2, &k.0, &k.1) == Some(&k.3)
    }
}

/// Whether the default privacy filter (docs/privacy.md: A/AAAA rdata in loopback and other
/// special ranges is dropped) is expected to be in the binary. The world's name server glue is
/// loopback, so with the filter on, no output line may carry 127.0.0.0/8 rdata, and the summary
/// must count the dropped glue.
pub const EXPECT_PRIVACY_FILTER: bool = true;

/// How often a required RRset must have been seen (summed over all its lines).
#[derive(Debug, Clone, Copy)]
pub enum Count {
    Exactly(u64),
    AtLeast(u64),
}

/// RRsets that the query list MUST make the resolver receive from the authoritative
/// servers, with exact rdata sets and bailiwicks. Glue with loopback addresses is not
/// here: the default privacy filter drops loopback A records.
pub fn required() -> Vec<(Key, Count)> {
    use Count::*;
    vec![
        // priming and referrals (delegation NS in the parent's bailiwick)
        (key(".", "NS", ".", &["a.root-servers.net."]), AtLeast(1)),
        (key("com.", "NS", ".", &["ns1.nic.com."]), AtLeast(1)),
        (key("net.", "NS", ".", &["ns1.nic.net."]), AtLeast(1)),
        (
            key("d1.com.", "NS", "com.", &["ns1.d1.com.", "ns2.d1.com."]),
            AtLeast(1),
        ),
        (key("d2.com.", "NS", "com.", &["ns1.d2.com."]), AtLeast(1)),
        (key("d3.net.", "NS", "net.", &["ns1.d3.net."]), AtLeast(1)),
        (
            key("sub.d1.com.", "NS", "d1.com.", &["ns1.sub.d1.com."]),
            AtLeast(1),
        ),
        // the child's own NS sets (authority section of NSD's answers)
        (
            key("d1.com.", "NS", "d1.com.", &["ns1.d1.com.", "ns2.d1.com."]),
            AtLeast(2),
        ),
        (
            key("d3.net.", "NS", "d3.net.", &["ns1.d3.net."]),
            AtLeast(1),
        ),
        (
            key("sub.d1.com.", "NS", "sub.d1.com.", &["ns1.sub.d1.com."]),
            AtLeast(1),
        ),
        // answers: each asked once, nothing else carries them
        (
            key("www.d1.com.", "A", "d1.com.", &["192.0.2.1", "192.0.2.7"]),
            Exactly(1),
        ),
        (
            key(
                "www.d1.com.",
                "AAAA",
                "d1.com.",
                &["2001:db8::1", "2001:db8::7"],
            ),
            Exactly(1),
        ),
        (
            key(
                "d1.com.",
                "MX",
                "d1.com.",
                &["10 mail.d1.com.", "20 mx.d2.com."],
            ),
            Exactly(1),
        ),
        (
            key("mail.d1.com.", "A", "d1.com.", &["192.0.2.25"]),
            AtLeast(1),
        ),
        (
            key("d1.com.", "TXT", "d1.com.", &["\"v=spf1 -all\""]),
            Exactly(1),
        ),
        (
            key(
                "txt.d1.com.",
                "TXT",
                "d1.com.",
                &["\"hello world\" \"second string\"", "\"single\""],
            ),
            Exactly(1),
        ),
        (
            key("alias.d1.com.", "CNAME", "d1.com.", &["alias2.d1.com."]),
            Exactly(1),
        ),
        (
            key("alias2.d1.com.", "CNAME", "d1.com.", &["www.d2.com."]),
            AtLeast(1),
        ),
        (
            key("www.d2.com.", "CNAME", "d2.com.", &["web.d3.net."]),
            AtLeast(1),
        ),
        (
            key("web.d3.net.", "A", "d3.net.", &["198.51.100.10"]),
            Exactly(1),
        ),
        (
            key(
                "_sip._udp.d1.com.",
                "SRV",
                "d1.com.",
                &["0 5 5060 sip.d1.com.", "10 5 5061 sip2.d1.com."],
            ),
            Exactly(1),
        ),
        (
            key("foo.w.d1.com.", "A", "d1.com.", &["192.0.2.99"]),
            Exactly(1),
        ),
        // negative answers: NXDOMAIN and NODATA carry the zone's SOA
        (
            key(
                "d1.com.",
                "SOA",
                "d1.com.",
                &["ns1.d1.com. hostmaster.d1.com. 2024010101 7200 3600 1209600 300"],
            ),
            AtLeast(2),
        ),
        (
            key(
                ".",
                "SOA",
                ".",
                &["a.root-servers.net. nstld.root-servers.net. 2024010101 1800 900 604800 86400"],
            ),
            AtLeast(1),
        ),
        (
            key("host.sub.d1.com.", "A", "sub.d1.com.", &["192.0.2.130"]),
            Exactly(1),
        ),
        (
            key("web.d3.net.", "AAAA", "d3.net.", &["2001:db8:3::10"]),
            Exactly(1),
        ),
    ]
}

/// True once every required RRset is in `lines` with at least its minimum count (used to
/// wait for the output before stopping the resolver).
pub fn all_required_present(lines: &[serde_json::Value]) -> bool {
    let cofs: Vec<Cof> = lines.iter().map(Cof::from_value).collect();
    let m = merge(&cofs);
    required().iter().all(|(k, want)| {
        let min = match want {
            Count::Exactly(n) | Count::AtLeast(n) => *n,
        };
        m.get(k).is_some_and(|got| got.count >= min)
    })
}

/// Checks the world before any output is looked at: the required list agrees with the
/// zone files, and the resolver got the expected rcodes and non-empty answers.
pub fn check_world(world: &World, zd: &ZoneData, results: &[super::DigResult]) {
    for (k, _) in required() {
        assert!(
            zd.contains_key(&k),
            "harness bug: required {k:?} is not in the zone data"
        );
    }
    let mut bad = String::new();
    for (r, (_, _, want)) in results.iter().zip(QUERIES) {
        let nodata = r.qname == "www.d1.com." && r.qtype == "MX";
        let ok = r.status == *want && (*want != "NOERROR" || nodata || !r.answers.is_empty());
        if !ok {
            let _ = writeln!(
                bad,
                "  {} {}: status {} (want {want}), answers {:?}",
                r.qname, r.qtype, r.status, r.answers
            );
        }
    }
    assert!(
        bad.is_empty(),
        "the resolver did not resolve the world as expected (a world/resolver problem, not dnsensor):\n{bad}\n{}",
        world.log_text()
    );
}

/// The assertions on dnsensor's output for a resolver run. `t0`/`t1` bound the test's
/// wall time; `forbidden` are strings that must not appear anywhere in the output
/// (client and resolver addresses).
pub fn check_output(zd: &ZoneData, run: &DnsensorRun, t0: u64, t1: u64, forbidden: &[&str]) {
    let mut problems: Vec<String> = Vec::new();

    if !run.status.success() {
        problems.push(format!(
            "dnsensor exit status {} (want success after SIGTERM)",
            run.status
        ));
    }
    if run.lines.is_empty() {
        problems.push("no output lines at all".into());
    }

    // (e) no client data: forbidden strings, no client-ish keys.
    for f in forbidden {
        if run.raw.contains(f) {
            problems.push(format!("output contains forbidden address `{f}`"));
        }
    }
    let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
    for v in &run.lines {
        for k in v.as_object().unwrap().keys() {
            let kl = k.to_ascii_lowercase();
            if kl.contains("client") || kl.contains("addr") || kl.contains("port") {
                problems.push(format!("line has a client/address key `{k}`: {v}"));
            }
        }
    }

    for (c, v) in cofs.iter().zip(&run.lines) {
        // (d) sensor id
        if c.sensor_id.as_deref() != Some("test") {
            problems.push(format!(
                "sensor_id is {:?}, want \"test\": {v}",
                c.sensor_id
            ));
        }
        // (c) times and count per line
        if c.time_first > c.time_last {
            problems.push(format!("time_first > time_last: {v}"));
        }
        if c.time_first < t0 || c.time_last > t1 {
            problems.push(format!(
                "times outside the test's wall time [{t0}, {t1}]: {v}"
            ));
        }
        if c.count < 1 {
            problems.push(format!("count < 1: {v}"));
        }
        // names: absolute, lowercase
        for n in std::iter::once(&c.rrname).chain(c.bailiwick.as_ref()) {
            if !n.ends_with('.') || n.chars().any(|ch| ch.is_ascii_uppercase()) {
                problems.push(format!("name `{n}` not absolute lowercase: {v}"));
            }
        }
        // privacy: loopback rdata (the world's glue) is dropped by default
        if (c.rrtype == "A" && c.rdata.iter().any(|r| r.starts_with("127.")))
            || (c.rrtype == "AAAA" && c.rdata.iter().any(|r| r == "::1"))
        {
            if EXPECT_PRIVACY_FILTER {
                problems.push(format!(
                    "loopback address in rdata (privacy filter should drop it): {v}"
                ));
            } else {
                eprintln!("note: loopback rdata emitted (no privacy stage yet): {v}");
            }
        }
        // (a) every record exists in the zone that served it (bailiwick = query_zone)
        match &c.bailiwick {
            None => problems.push(format!(
                "no bailiwick (dnstap query_zone is always set here): {v}"
            )),
            Some(b) => {
                let k: Key = (
                    c.rrname.clone(),
                    c.rrtype.clone(),
                    b.clone(),
                    c.rdata.clone(),
                );
                if !zd.contains_key(&k) {
                    let actual = zd.lookup(b, &c.rrname, &c.rrtype);
                    problems.push(format!(
                        "not in zone {b}'s data with this rdata set (zone has {actual:?}): {v}"
                    ));
                }
            }
        }
    }

    // the out-of-bailiwick case the world produces: NSD follows alias2.d1.com.'s CNAME
    // into d2.com. (same server), so www.d2.com. arrives in a response for zone d1.com.
    for c in &cofs {
        if c.rrname == "www.d2.com." && c.bailiwick.as_deref() == Some("d1.com.") {
            problems.push(format!("out-of-bailiwick record emitted: {c:?}"));
        }
    }

    // (b) required RRsets, with counts
    let merged: BTreeMap<Key, Merged> = merge(&cofs);
    for (k, want) in required() {
        match merged.get(&k) {
            None => {
                let similar: Vec<String> = cofs
                    .iter()
                    .filter(|c| c.rrname == k.0 && c.rrtype == k.1)
                    .map(|c| format!("{c:?}"))
                    .collect();
                problems.push(format!(
                    "missing required {k:?}; lines with that name/type: {similar:?}"
                ));
            }
            Some(m) => {
                let ok = match want {
                    Count::Exactly(n) => m.count == n,
                    Count::AtLeast(n) => m.count >= n,
                };
                if !ok {
                    problems.push(format!(
                        "{k:?}: total count {} over {} line(s), want {want:?}",
                        m.count, m.lines
                    ));
                }
            }
        }
    }

    // the exit summary reports the dropped out-of-bailiwick records
    match summary_value(&run.stderr, "out_of_bailiwick") {
        Some(n) if n >= 1 => {}
        other => problems.push(format!("summary out_of_bailiwick = {other:?}, want >= 1")),
    }
    // ... and the loopback glue that the privacy stage dropped
    if EXPECT_PRIVACY_FILTER {
        match summary_value(&run.stderr, "private_dropped") {
            Some(n) if n >= 1 => {}
            other => problems.push(format!("summary private_dropped = {other:?}, want >= 1")),
        }
    }

    if !problems.is_empty() {
        let mut msg = format!("{} problem(s) with dnsensor's output:\n", problems.len());
        for p in &problems {
            let _ = writeln!(msg, "  - {p}");
        }
        let _ = writeln!(
            msg,
            "----- output ({} lines) -----\n{}",
            run.lines.len(),
            run.raw
        );
        let _ = writeln!(msg, "----- dnsensor stderr -----\n{}", run.stderr);
        panic!("{msg}");
    }
}

/// `NAME=<n>` from the exit summary line on stderr (`summary: messages=… out_of_bailiwick=…`).
pub fn summary_value(stderr: &str, name: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.contains("summary:"))?;
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim_end_matches(',').parse().ok())
}

/// The whole resolver test: world `w`, dnsensor first (so the socket exists when the resolver
/// connects: BIND drops dnstap messages while it is missing), the resolver that `start` launches,
/// the query list, then every check on the output. Used by the Unbound and the BIND test.
pub fn resolver_end_to_end(
    w: u8,
    name: &str,
    start: impl FnOnce(&World, &std::path::Path) -> Resolver,
) {
    let dir = TestDir::new(name);
    let world = World::start(w, &dir.sub("world"));
    let zd = ZoneData::load(&world);

    let mut sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();
    let mut resolver = start(&world, &sensor.sock);

    let queries: Vec<(&str, &str)> = QUERIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    let results = resolver.query(&queries);
    check_world(&world, &zd, &results);

    // Unbound hands messages to its dnstap thread on a timer and drops what is still queued
    // when it exits, so wait for the output before stopping the resolver.
    let complete = sensor.wait_for(std::time::Duration::from_secs(20), all_required_present);
    if !complete {
        eprintln!("not all required records showed up within 20 s; stopping anyway");
    }
    resolver.stop();
    let run = sensor.finish();
    let t1 = unix_now();

    // The client (dig) is 127.0.0.1; the resolver's own query source is 127.53.W.53.
    let forbidden = ["127.0.0.1", &world.resolver_addr()];
    check_output(&zd, &run, t0, t1, &forbidden);
}
