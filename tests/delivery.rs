//! Delivery end to end: the Unbound + NSD world's dnstap, recorded once with fstrm_capture and
//! replayed with fstrm_replay, goes through `dnsensor dnstap --output collector` into
//! `dnsensor collector`, and must come out exactly as a `--output file:` run records it, through
//! an outage, a SIGKILL and a restart. Also: privacy of the spool and the batches, and
//! `--client-counts` against a known set of clients.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::expect::QUERIES;
use common::{
    free_port, merge, parse_cof, require_program, Cof, Daemon, Dnsensor, Key, Merged, TestDir,
    World, DNSTAP_CONTENT_TYPE,
};

const TOKEN: &str = "test-token-7f3a9c";

/// Names the capture must never show in plain text outside the collector (they are in QUERIES).
const QNAMES: &[&str] = &["www.d1.com", "alias2.d1.com", "web.d3.net", "txt.d1.com"];

/// The dnstap capture of the world answering QUERIES, recorded once per test binary. Kept in
/// memory: a static is never dropped, so a directory held by one would outlive every run.
fn capture() -> &'static [u8] {
    static CAPTURE: OnceLock<Vec<u8>> = OnceLock::new();
    CAPTURE.get_or_init(record_capture)
}

fn record_capture() -> Vec<u8> {
    let dir = TestDir::new("delivery-capture");
    let world = World::start(3, &dir.sub("world"));
    let sock = dir.path().join("capture.sock");
    let file = dir.path().join("capture.fstrm");
    let mut cmd = Command::new(require_program("fstrm_capture", "fstrm-bin"));
    cmd.args(["-t", DNSTAP_CONTENT_TYPE, "-u"])
        .arg(&sock)
        .arg("-w")
        .arg(&file);
    let mut capture = Daemon::spawn("fstrm_capture", cmd, dir.path(), &[]);
    wait_for_path(&sock, &mut capture);
    let mut resolver = world.start_unbound(&sock);
    let queries: Vec<(&str, &str)> = QUERIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    resolver.query(&queries);
    // Unbound hands messages to its dnstap thread on a timer; give it time before stopping.
    thread::sleep(Duration::from_secs(3));
    resolver.stop();
    thread::sleep(Duration::from_millis(500));
    capture.stop(Duration::from_secs(10));
    let bytes = fs::read(&file).unwrap_or_default();
    assert!(
        bytes.len() > 1000,
        "the capture is only {} bytes",
        bytes.len()
    );
    bytes
}

fn wait_for_path(path: &Path, daemon: &mut Daemon) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !path.exists() {
        daemon.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} did not appear within 15 s",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Replays the capture into a listening `dnsensor dnstap` on `sock`, from a copy beside it.
fn replay(sock: &Path) {
    let file = sock.with_file_name("capture.fstrm");
    fs::write(&file, capture()).expect("write the capture");
    let status = Command::new(require_program("fstrm_replay", "fstrm-bin"))
        .args(["-t", DNSTAP_CONTENT_TYPE, "-u"])
        .arg(sock)
        .arg("-r")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .expect("run fstrm_replay");
    assert!(status.success(), "fstrm_replay failed: {status}");
}

fn dnsensor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dnsensor"))
        .args(args)
        .output()
        .expect("run dnsensor")
}

/// What a `--output file:` run records for one replay of the capture, merged by key.
fn file_run_records() -> &'static BTreeMap<Key, Merged> {
    static RECORDS: OnceLock<BTreeMap<Key, Merged>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let dir = TestDir::new("delivery-file-run");
        let sensor = Dnsensor::start(dir.path());
        replay(&sensor.sock);
        let run = sensor.finish();
        assert!(run.status.success(), "{}", run.stderr);
        let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
        let merged = merge(&cofs);
        assert!(
            merged.len() >= 20,
            "the file run recorded only {} RRsets:\n{}",
            merged.len(),
            run.stderr
        );
        merged
    })
}

/// A key pair and a token file in `dir`.
struct Keys {
    secret: PathBuf,
    public: PathBuf,
    token: PathBuf,
}

fn keys(dir: &Path) -> Keys {
    let out = dnsensor(&["keygen", "--out", dir.join("keys").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = dir.join("token");
    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    Keys {
        secret: dir.join("keys/collector.key"),
        public: dir.join("keys/collector.pub"),
        token,
    }
}

/// `dnsensor collector` on 127.0.0.1:`port`, waited for until it accepts connections.
fn start_collector(dir: &Path, keys: &Keys, port: u16) -> Daemon {
    start_collector_with(dir, keys, port, &[])
}

/// [`start_collector`] with `--metrics` on a free port, which it returns.
fn start_collector_with_metrics(dir: &Path, keys: &Keys, port: u16) -> (Daemon, u16) {
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let collector = start_collector_with(dir, keys, port, &["--metrics", &metrics]);
    (collector, metrics_port)
}

/// [`start_collector`] with extra arguments.
fn start_collector_with(dir: &Path, keys: &Keys, port: u16, extra: &[&str]) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnsensor"));
    cmd.arg("collector")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--key")
        .arg(&keys.secret)
        .arg("--db")
        .arg(dir.join("collector.sqlite"))
        .arg("--token-file")
        .arg(&keys.token)
        .args(extra);
    let mut d = Daemon::spawn("collector", cmd, dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        d.assert_running();
        assert!(
            Instant::now() < deadline,
            "collector not listening on {port}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    d
}

/// `dnsensor dnstap --output collector` with its spool in `dir/spool`.
fn start_sensor(dir: &Path, keys: &Keys, port: u16, extra: &[&str]) -> Dnsensor {
    start_sensor_with_token(dir, keys, &keys.token, port, extra)
}

/// [`start_sensor`] with the upload token read from `token`.
fn start_sensor_with_token(
    dir: &Path,
    keys: &Keys,
    token: &Path,
    port: u16,
    extra: &[&str],
) -> Dnsensor {
    let sock = dir.join("dnstap.sock");
    let _ = fs::remove_file(&sock);
    let mut args: Vec<String> = vec![
        "dnstap".into(),
        "--listen".into(),
        format!("unix:{}", sock.display()),
        "--output".into(),
        "collector".into(),
        "--sensor-id".into(),
        "test".into(),
        "--window".into(),
        "1".into(),
        "--collector-url".into(),
        format!("http://127.0.0.1:{port}"),
        "--collector-pubkey".into(),
        keys.public.display().to_string(),
        "--collector-token-file".into(),
        token.display().to_string(),
        "--spool".into(),
        dir.join("spool").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Dnsensor::start_args(dir, sock, dir.join("unused.ndjson"), &args)
}

/// The sealed batches waiting in a spool, oldest first.
fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("spool"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "batch"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until `pred` holds, up to `timeout`.
fn wait_until(timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every RRset the collector holds for the file run's names, merged by key as the test compares.
fn collector_records(port: u16, names: &BTreeSet<String>) -> BTreeMap<Key, Merged> {
    let agent = ureq::Agent::new_with_defaults();
    let mut lines = Vec::new();
    for name in names {
        let url = format!("http://127.0.0.1:{port}/api/v1/rrset/{name}");
        let mut resp = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert!(status == 200 || status == 404, "GET {url}: {status} {body}");
        for v in parse_cof(&body) {
            lines.push(Cof::from_value(&v));
        }
    }
    merge(&lines)
}

/// The owner names to ask the collector for. The root is left out: an HTTP client folds the
/// path segment `.` away, so `/api/v1/rrset/.` cannot be asked for.
fn names(records: &BTreeMap<Key, Merged>) -> BTreeSet<String> {
    records
        .keys()
        .map(|k| k.0.clone())
        .filter(|n| n != ".")
        .collect()
}

/// (count, first, last) per key, root records aside (see [`names`]): what the collector must
/// agree on with the file run.
fn totals(records: &BTreeMap<Key, Merged>, times: u64) -> BTreeMap<Key, (u64, u64, u64)> {
    records
        .iter()
        .filter(|(k, _)| k.0 != ".")
        .map(|(k, m)| (k.clone(), (m.count * times, m.time_first, m.time_last)))
        .collect()
}

/// The collector's metrics, `name{labels}` to value, from `GET /metrics` on `port`.
fn collector_metrics(port: u16) -> BTreeMap<String, u64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with("dnsensor_collector_"))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_collector_stores_exactly_what_a_file_run_records() {
    let expected = file_run_records();
    let dir = TestDir::new("delivery-e2e");
    let keys = keys(dir.path());
    let port = free_port();
    let (mut collector, metrics_port) = start_collector_with_metrics(dir.path(), &keys, port);
    let sensor = start_sensor(dir.path(), &keys, port, &[]);
    replay(&sensor.sock);
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    // SIGTERM sealed the last window and let the uploads finish.
    wait_until(Duration::from_secs(30), "the spool to drain", || {
        spooled(dir.path()).is_empty()
    });
    let asked = names(expected);
    let got = collector_records(port, &asked);
    assert_eq!(totals(&got, 1), totals(expected, 1), "{}", run.stderr);
    // The collector counted what the sensor says it delivered, and one answer per query.
    let value = |name: &str| common::expect::summary_value(&run.stderr, name).unwrap();
    let m = collector_metrics(metrics_port);
    let refused = |status: &str| {
        m[&format!("dnsensor_collector_requests_refused_total{{status=\"{status}\"}}")]
    };
    assert_eq!(
        m["dnsensor_collector_batches_stored_total"],
        value("uploaded"),
        "{m:?}"
    );
    assert_eq!(
        m["dnsensor_collector_batches_stored_total"],
        value("batches_sealed"),
        "{m:?}"
    );
    assert_eq!(
        m["dnsensor_collector_records_stored_total"],
        value("rrsets_flushed"),
        "{m:?}"
    );
    assert_eq!(m["dnsensor_collector_batches_duplicate_total"], 0, "{m:?}");
    assert_eq!(
        m["dnsensor_collector_queries_answered_total"],
        asked.len() as u64,
        "{m:?}"
    );
    for status in ["400", "401", "413", "422", "500"] {
        assert_eq!(refused(status), 0, "{status}: {m:?}");
    }
    collector.stop(Duration::from_secs(10));
}

#[test]
fn a_renewed_token_is_taken_in_at_sighup_and_nothing_is_lost() {
    let expected = file_run_records();
    let dir = TestDir::new("delivery-token");
    let keys = keys(dir.path());
    let port = free_port();
    let (mut collector, metrics_port) = start_collector_with_metrics(dir.path(), &keys, port);
    let token = dir.path().join("sensor-token");
    fs::write(&token, "an-old-token\n").unwrap();
    // SIGHUP reloads from --config; the flags still say everything else.
    let config = dir.path().join("dnsensor.toml");
    fs::write(&config, "log-level = \"info\"\n").unwrap();
    let sensor = start_sensor_with_token(
        dir.path(),
        &keys,
        &token,
        port,
        &["--config", config.to_str().unwrap()],
    );
    replay(&sensor.sock);
    wait_until(
        Duration::from_secs(30),
        "the collector to refuse the token",
        || sensor.stderr_text().contains("UPLOADS STOPPED"),
    );
    // Window 1 s: after a pause every record is in a sealed batch waiting in the spool.
    thread::sleep(Duration::from_secs(3));
    assert!(!spooled(dir.path()).is_empty(), "{}", sensor.stderr_text());

    fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &sensor.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    wait_until(Duration::from_secs(30), "the spool to drain", || {
        spooled(dir.path()).is_empty()
    });
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("reload: applied upload settings (token)")
            && run.stderr.contains("uploads resume"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("an-old-token"),
        "a token is never logged"
    );
    let got = collector_records(port, &names(expected));
    assert_eq!(totals(&got, 1), totals(expected, 1), "{}", run.stderr);
    // Each upload worker had one batch refused before the stop (two workers by default).
    let m = collector_metrics(metrics_port);
    let refused = m["dnsensor_collector_requests_refused_total{status=\"401\"}"];
    assert!((1..=2).contains(&refused), "{m:?}");
    let uploaded = common::expect::summary_value(&run.stderr, "uploaded").unwrap();
    assert_eq!(
        m["dnsensor_collector_batches_stored_total"], uploaded,
        "{m:?}"
    );
    collector.stop(Duration::from_secs(10));
}

#[test]
fn outage_and_sigkill_lose_no_sealed_batch() {
    let expected = file_run_records();
    let dir = TestDir::new("delivery-outage");
    let keys = keys(dir.path());
    let port = free_port();
    let mut collector = start_collector(dir.path(), &keys, port);
    let sensor = start_sensor(dir.path(), &keys, port, &[]);

    // 1. Collector up: the first replay is delivered.
    replay(&sensor.sock);
    thread::sleep(Duration::from_secs(3));
    wait_until(Duration::from_secs(30), "the first replay's upload", || {
        spooled(dir.path()).is_empty()
    });

    // 2. Collector down while records flow: the spool grows.
    collector.stop(Duration::from_secs(10));
    replay(&sensor.sock);
    // Window 1 s: after a pause every replayed record is in a sealed batch, the open window empty.
    thread::sleep(Duration::from_secs(3));
    let batches = spooled(dir.path());
    assert!(
        !batches.is_empty(),
        "nothing spooled while the collector was down"
    );

    // Privacy: no queried name in plain text anywhere under the spool, and no client address
    // in any batch.
    for entry in walk(&dir.path().join("spool")) {
        let bytes = fs::read(&entry).unwrap();
        for name in QNAMES {
            assert!(
                !contains(&bytes, name.as_bytes()),
                "{name} in plain text in {}",
                entry.display()
            );
        }
    }
    let mut args = vec!["inspect".to_string(), "--key".into()];
    args.push(keys.secret.display().to_string());
    args.extend(batches.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let inspected = dnsensor(&args);
    assert!(
        inspected.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let text = String::from_utf8(inspected.stdout).unwrap();
    for forbidden in ["127.0.0.1", "127.53.3.53"] {
        assert!(!text.contains(forbidden), "{forbidden} in a batch");
    }
    let spooled_records = merge(
        &parse_cof(&text)
            .iter()
            .map(Cof::from_value)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        spooled_records
            .iter()
            .map(|(k, m)| (k.clone(), (m.count, m.time_first, m.time_last)))
            .collect::<BTreeMap<_, _>>(),
        expected
            .iter()
            .map(|(k, m)| (k.clone(), (m.count, m.time_first, m.time_last)))
            .collect::<BTreeMap<_, _>>(),
        "the spooled batches hold the whole second replay"
    );

    // 3. Crash: SIGKILL the sensor with the batches still spooled.
    let pid = sensor.pid();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = sensor.finish();
    assert!(!killed.status.success(), "the sensor was SIGKILLed");
    assert_eq!(spooled(dir.path()), batches, "SIGKILL lost a sealed batch");

    // 4. Collector back, sensor restarted on the same spool: everything drains.
    let mut collector = start_collector(dir.path(), &keys, port);
    let sensor = start_sensor(dir.path(), &keys, port, &[]);
    wait_until(Duration::from_secs(60), "the spool to drain", || {
        spooled(dir.path()).is_empty()
    });
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    let got = collector_records(port, &names(expected));
    assert_eq!(
        totals(&got, 1),
        totals(expected, 2),
        "two replays: every count doubled, times unchanged"
    );
    collector.stop(Duration::from_secs(10));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn client_counts_are_right_for_a_known_set_of_clients() {
    let dir = TestDir::new("delivery-clients");
    let world = World::start(4, &dir.sub("world"));
    let sock = dir.path().join("dnstap.sock");
    let out = dir.path().join("out.ndjson");
    // One window for the whole run, so each RRset is one line with one distinct count.
    let args: Vec<String> = [
        "dnstap",
        "--listen",
        &format!("unix:{}", sock.display()),
        "--output",
        &format!("file:{}", out.display()),
        "--window",
        "3600",
        "--client-responses",
        "--client-counts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sensor = Dnsensor::start_args(dir.path(), sock.clone(), out, &args);
    let mut resolver = world.start_unbound_with(&sock, true);
    // Four clients ask for www.d1.com. A (one of them twice); two ask for mail.d1.com. A.
    let ask = |source: &str, name: &str| {
        let out = common::dig(&resolver.addr, resolver.port, &["-b", source, name, "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
    };
    for source in [
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.13",
        "127.0.0.14",
        "127.0.0.11",
    ] {
        ask(source, "www.d1.com.");
    }
    for source in ["127.0.0.21", "127.0.0.22"] {
        ask(source, "mail.d1.com.");
    }
    // Unbound hands messages to its dnstap thread on a timer and drops what is queued at exit.
    thread::sleep(Duration::from_secs(3));
    resolver.stop();
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    let client_line = |name: &str| -> serde_json::Value {
        let found: Vec<&serde_json::Value> = run
            .lines
            .iter()
            .filter(|v| v["rrname"] == name && v["rrtype"] == "A" && v.get("bailiwick").is_none())
            .collect();
        assert_eq!(found.len(), 1, "client-segment lines for {name}: {found:?}");
        found[0].clone()
    };
    let www = client_line("www.d1.com.");
    assert_eq!(www["count"], 5, "{www}");
    assert_eq!(www["clients"], 4, "{www}");
    let mail = client_line("mail.d1.com.");
    assert_eq!(mail["count"], 2, "{mail}");
    assert_eq!(mail["clients"], 2, "{mail}");
    // Every line carries `clients`; resolver-segment lines were asked by the resolver alone.
    for v in &run.lines {
        let clients = v["clients"]
            .as_u64()
            .unwrap_or_else(|| panic!("no clients: {v}"));
        if v.get("bailiwick").is_some() {
            assert_eq!(clients, 1, "{v}");
        }
    }
    for forbidden in ["127.0.0.1", "127.0.0.2", "127.53.4.53"] {
        assert!(!run.raw.contains(forbidden), "{forbidden} in the output");
    }
}

/// A collector that hangs (SIGSTOP: it accepts nothing and answers nothing) makes uploads time
/// out and retry; once it runs again every batch arrives, and the requests it took in while
/// stopped and answered too late are not counted twice (the batch id is the idempotency key).
#[test]
fn a_hung_collector_leads_to_retries_not_loss_or_double_counts() {
    let expected = file_run_records();
    let dir = TestDir::new("delivery-hung");
    let keys = keys(dir.path());
    let port = free_port();
    let mut collector = start_collector(dir.path(), &keys, port);
    let signal = |sig: &str, pid: u32| {
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    };
    signal("-STOP", collector.pid());
    // zstd level 1 here, so one end-to-end run covers a level other than the default.
    let sensor = start_sensor(
        dir.path(),
        &keys,
        port,
        &["--upload-timeout", "1", "--zstd-level", "1"],
    );
    replay(&sensor.sock);
    // Several timeouts' worth of hanging.
    thread::sleep(Duration::from_secs(5));
    assert!(
        !spooled(dir.path()).is_empty(),
        "nothing waits in the spool while the collector hangs"
    );
    signal("-CONT", collector.pid());
    wait_until(Duration::from_secs(90), "the spool to drain", || {
        spooled(dir.path()).is_empty()
    });
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    let retries = common::expect::summary_value(&run.stderr, "upload_retries");
    assert!(
        retries.is_some_and(|n| n >= 1),
        "no upload was retried:\n{}",
        run.stderr
    );
    let got = collector_records(port, &names(expected));
    assert_eq!(totals(&got, 1), totals(expected, 1), "{}", run.stderr);
    collector.stop(Duration::from_secs(10));
}

/// A spool on a full file system: every failed write is counted and logged, and the sensor
/// keeps draining dnstap and exits cleanly. The tmpfs is mounted by the test itself.
#[test]
fn a_full_disk_is_counted_and_never_stops_the_sensor() {
    let expected = file_run_records();
    let dir = TestDir::new("delivery-full-disk");
    let keys = keys(dir.path());
    let spool_fs = dir.path().join("spool");
    fs::create_dir_all(&spool_fs).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "tmpfs"])
        .arg(&spool_fs)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "cannot mount an 8 KiB tmpfs on {} (the tests run as root)",
        spool_fs.display()
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(spool_fs.clone());
    // Nobody listens on this port: every batch stays in the spool until the disk is full.
    let port = free_port();
    let sensor = start_sensor(dir.path(), &keys, port, &[]);
    // Each replay lands in its own 1 s window, so each is one batch of one 4 KiB page or more.
    const REPLAYS: u64 = 5;
    for _ in 0..REPLAYS {
        replay(&sensor.sock);
        thread::sleep(Duration::from_millis(1500));
    }
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    let value = |name: &str| common::expect::summary_value(&run.stderr, name);
    assert!(
        value("spool_write_errors").is_some_and(|n| n >= 1),
        "no write failed on an 8 KiB spool:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("No space left on device"),
        "the error is not logged:\n{}",
        run.stderr
    );
    // Every replayed message was still consumed.
    let per_replay = value("messages").unwrap() / REPLAYS;
    assert!(per_replay > 0 && value("messages") == Some(per_replay * REPLAYS));
    assert_eq!(value("shed"), Some(0));
    assert!(!expected.is_empty());
}
