//! The libpcap tap against the real world: NSD + Unbound on loopback, `dnsensor capture
//! --interface lo` watching the world's addresses while dig and dnsperf send load. The records
//! must equal the zone data as in the dnstap test, with bailiwicks learned from referrals, and
//! client-segment answers (RD=1) must produce none. A tcpreplay of the recorded traffic must then
//! give the same record set as `--read` of the same file. Needs root (live capture).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::expect::{check_output, check_world, summary_value, ZoneData, QUERIES};
use common::{require_program, unix_now, Cof, Daemon, Dnsensor, DnsensorRun, TestDir, World};

const W: u8 = 5;

/// Only the world's traffic on `lo`: other tests run their own worlds on 127.53.<w>.0/24 at
/// the same time.
fn world_bpf() -> String {
    format!("net 127.53.{W}.0/24 and (udp port 53 or tcp port 53)")
}

fn start_capture(dir: &Path, extra: &[&str]) -> Dnsensor {
    let out = dir.join("out.ndjson");
    let mut args: Vec<String> = [
        "capture",
        "--interface",
        "lo",
        "--bpf",
        &world_bpf(),
        "--output",
        &format!("file:{}", out.display()),
        "--window",
        "1",
        "--sensor-id",
        "test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Dnsensor::start_logging(dir, out, &args, "capture: started")
}

/// `(rrname, rrtype, bailiwick, rdata) → count`, times aside: live and replayed runs see the
/// same packets at different times.
fn record_set(run: &DnsensorRun) -> BTreeMap<(String, String, String, Vec<String>), u64> {
    let mut m = BTreeMap::new();
    for v in &run.lines {
        let c = Cof::from_value(v);
        *m.entry((c.rrname, c.rrtype, c.bailiwick.unwrap_or_default(), c.rdata))
            .or_insert(0) += c.count;
    }
    m
}

#[test]
fn live_capture_on_lo_records_the_zone_data_and_replays_identically() {
    let dir = TestDir::new("capture-world");
    let world = World::start(W, &dir.sub("world"));
    let zd = ZoneData::load(&world);

    // tcpdump records the same traffic for the replay half of the test.
    let pcap_file = dir.path().join("world.pcap");
    let mut cmd = Command::new(require_program("tcpdump", "tcpdump"));
    cmd.args(["-i", "lo", "-n", "-U", "-w"])
        .arg(&pcap_file)
        .arg(world_bpf());
    let mut tcpdump = Daemon::spawn("tcpdump", cmd, dir.path(), &[]);

    let live_dir = dir.sub("live");
    let sensor = start_capture(&live_dir, &[]);
    let t0 = unix_now();
    thread::sleep(Duration::from_millis(500));
    // Unbound's dnstap goes nowhere here: the tap is the only observer.
    let mut resolver = world.start_unbound(&dir.path().join("no-dnstap.sock"));
    let queries: Vec<(&str, &str)> = QUERIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    let results = resolver.query(&queries);
    check_world(&world, &zd, &results);

    // dnsperf: client-segment load (RD=1) that must not produce records by default.
    let qfile = dir.path().join("queries.txt");
    let qtext: String = QUERIES
        .iter()
        .map(|(n, t, _)| format!("{n} {t}\n"))
        .collect();
    fs::write(&qfile, qtext).unwrap();
    let perf = Command::new(require_program("dnsperf", "dnsperf"))
        .args(["-s", &resolver.addr, "-p", &resolver.port.to_string(), "-d"])
        .arg(&qfile)
        .args(["-l", "2", "-Q", "500", "-c", "2"])
        .output()
        .expect("run dnsperf");
    let perf_out = String::from_utf8_lossy(&perf.stdout);
    assert!(perf.status.success(), "dnsperf: {perf_out}");
    assert!(
        perf_out.contains("Queries completed:"),
        "dnsperf printed no summary: {perf_out}"
    );

    thread::sleep(Duration::from_secs(2));
    resolver.stop();
    thread::sleep(Duration::from_millis(500));
    let run = sensor.finish();
    let t1 = unix_now();
    tcpdump.stop(Duration::from_secs(5));

    // Every line's bailiwick was learned, every RRset is the zone's, nothing of the clients',
    // the loopback glue filtered. A client-segment answer would have no bailiwick and fail here.
    let forbidden = ["127.0.0.1", &world.resolver_addr()];
    check_output(&zd, &run, t0, t1, &forbidden);
    let paired = summary_value(&run.stderr, "responses_paired").unwrap_or(0);
    assert!(paired >= 10, "responses_paired={paired}:\n{}", run.stderr);

    // Stop the world first, so that no server answers the replayed queries afresh.
    drop(world);

    // The replay half: --read of the tcpdump file, and the same file through tcpreplay on lo
    // into a live capture, give the same record set.
    let read_dir = dir.sub("read");
    let read_out = read_dir.join("out.ndjson");
    let args: Vec<String> = [
        "capture",
        "--read",
        pcap_file.to_str().unwrap(),
        "--output",
        &format!("file:{}", read_out.display()),
        "--sensor-id",
        "test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let read = Dnsensor::start_logging(&read_dir, read_out, &args, "capture: started")
        .finish_when_done(Duration::from_secs(60));
    assert!(read.status.success(), "{}", read.stderr);
    let from_file = record_set(&read);
    assert!(
        from_file.len() >= 20,
        "--read gave only {} RRsets:\n{}",
        from_file.len(),
        read.stderr
    );

    let replay_dir = dir.sub("replay");
    let sensor = start_capture(&replay_dir, &[]);
    thread::sleep(Duration::from_millis(500));
    let replayed = Command::new(require_program("tcpreplay", "tcpreplay"))
        .args(["-i", "lo", "--pps", "2000"])
        .arg(&pcap_file)
        .output()
        .expect("run tcpreplay");
    assert!(
        replayed.status.success(),
        "tcpreplay: {}{}",
        String::from_utf8_lossy(&replayed.stdout),
        String::from_utf8_lossy(&replayed.stderr)
    );
    thread::sleep(Duration::from_secs(2));
    let live = sensor.finish();
    assert!(live.status.success(), "{}", live.stderr);
    assert_eq!(
        summary_value(&live.stderr, "pcap_drops"),
        Some(0),
        "{}",
        live.stderr
    );
    assert_eq!(record_set(&live), from_file, "{}", live.stderr);
}

/// `--user`: the capture is opened as root, then every uid and gid of the process is the
/// user's, and outputs are created as that user.
#[test]
fn user_drops_root_after_opening_the_capture() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TestDir::new("capture-user");
    let out_dir = dir.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let out = out_dir.join("records.ndjson");
    let args: Vec<String> = [
        "capture",
        "--interface",
        "lo",
        "--bpf",
        "udp port 9",
        "--user",
        "nobody",
        "--output",
        &format!("file:{}", out.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sensor = Dnsensor::start_logging(dir.path(), out.clone(), &args, "capture: started");
    let status = fs::read_to_string(format!("/proc/{}/status", sensor.pid())).unwrap();
    let ids = |field: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let nobody = 65534;
    assert_eq!(ids("Uid:"), vec![nobody; 4], "{status}");
    assert_eq!(ids("Gid:"), vec![nogroup(); 4], "{status}");
    assert_eq!(ids("Groups:"), vec![nogroup()], "{status}");
    assert_eq!(fs::metadata(&out).unwrap().uid(), nobody);
    let run = sensor.finish();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("running as user nobody"),
        "{}",
        run.stderr
    );
}

/// nobody's primary group, from /etc/passwd.
fn nogroup() -> u32 {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(3))
        .and_then(|g| g.parse().ok())
        .expect("nobody in /etc/passwd")
}
