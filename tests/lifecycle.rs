//! Lifecycle of a running sensor: SIGHUP reloads the privacy filters without a restart or a lost
//! window, SIGTERM under load leaves every observed record sealed in the spool, and a SIGTERM
//! right after start-up is still a clean stop.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::expect::summary_value;
use common::wire::{
    connect_unix, fstrm_control, fstrm_data, fstrm_send_bidirectional, DnsMessage, Rr, TapMessage,
    FSTRM_START, TYPE_A,
};
use common::{parse_cof, Cof, Dnsensor, TestDir, DNSTAP_CONTENT_TYPE};

fn hangup(pid: u32) {
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -HUP {pid}");
}

fn dnsensor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dnsensor"))
        .args(args)
        .output()
        .expect("run dnsensor")
}

/// One dnstap frame: a resolver response for `name` A 192.0.2.`last`, from zone `zone`.
fn frame(zone: &str, name: &str, last: u8) -> Vec<u8> {
    let mut msg = DnsMessage::response(7, name, TYPE_A);
    msg.answer
        .push(Rr::a(name, 300, [192, 0, 2, last]).owner_ptr(12));
    TapMessage::resolver_response(zone, msg.encode()).encode()
}

/// Sends `frames` in one complete Frame Streams session: when it returns, the sensor has read
/// every frame and handed it to the pipeline.
fn session(sensor: &Dnsensor, frames: &[Vec<u8>]) {
    let mut s = connect_unix(&sensor.sock).expect("connect");
    fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, frames)
        .unwrap_or_else(|e| panic!("session: {e}\n{}", sensor.stderr_text()));
}

fn wait_for_log(sensor: &Dnsensor, text: &str, nth: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while sensor.stderr_text().matches(text).count() < nth {
        assert!(
            Instant::now() < deadline,
            "no {text:?} (#{nth}) in the log:\n{}",
            sensor.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn config(sock: &Path, out: &Path, drop_suffix: &str) -> String {
    format!(
        "output = \"file:{}\"\nwindow = 3600\nsensor-id = \"reload\"\nlog-level = \"info\"\ndrop-suffix = [{drop_suffix}]\n\n[dnstap]\nlisten = [\"unix:{}\"]\n",
        out.display(),
        sock.display()
    )
}

#[test]
fn sighup_changes_the_suffix_filter_without_a_restart_or_a_lost_window() {
    let dir = TestDir::new("lifecycle-reload");
    let sock = dir.path().join("dnstap.sock");
    let out = dir.path().join("out.ndjson");
    let cfg = dir.path().join("dnsensor.toml");
    fs::write(&cfg, config(&sock, &out, "")).unwrap();
    let args: Vec<String> = ["dnstap", "--config", cfg.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let sensor = Dnsensor::start_args(dir.path(), sock.clone(), out.clone(), &args);
    let pid = sensor.pid();

    // Before the reload: both names are recorded, in the open window (it is an hour long).
    session(
        &sensor,
        &[
            frame("example.com.", "a.example.com.", 1),
            frame("other.net.", "b.other.net.", 2),
        ],
    );
    fs::write(&cfg, config(&sock, &out, "\"example.com.\"")).unwrap();
    hangup(pid);
    wait_for_log(&sensor, "reload: applied privacy filters", 1);

    // After it: names under example.com. are dropped, others still recorded.
    session(
        &sensor,
        &[
            frame("example.com.", "a2.example.com.", 3),
            frame("example.com.", "a.example.com.", 1),
            frame("other.net.", "c.other.net.", 4),
        ],
    );

    // A broken file changes nothing and stops nothing.
    fs::write(&cfg, "window = \"soon\"\n").unwrap();
    hangup(pid);
    wait_for_log(&sensor, "the running configuration stays", 1);
    session(&sensor, &[frame("example.com.", "a3.example.com.", 5)]);

    let run = sensor.finish();
    let ctx = format!("output:\n{}\nstderr:\n{}", run.raw, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    assert_eq!(
        run.stderr.matches("summary:").count(),
        1,
        "one run, no restart: {ctx}"
    );
    let got: BTreeSet<(String, u64)> = parse_cof(&run.raw)
        .iter()
        .map(Cof::from_value)
        .map(|c| (c.rrname.clone(), c.count))
        .collect();
    let want: BTreeSet<(String, u64)> = [
        ("a.example.com.".to_string(), 1),
        ("b.other.net.".to_string(), 1),
        ("c.other.net.".to_string(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{ctx}");
    assert_eq!(
        summary_value(&run.stderr, "private_dropped"),
        Some(3),
        "{ctx}"
    );
}

/// Sends numbered names on one connection until `stop` or until the connection fails, each in
/// its own frame, counting in `sent` the frames written completely.
fn send_until(sock: PathBuf, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    use std::io::Write;
    let Ok(mut s) = connect_unix(&sock) else {
        return;
    };
    // Unidirectional Frame Streams: START, then data frames, never STOP.
    if s.write_all(&fstrm_control(FSTRM_START, &[DNSTAP_CONTENT_TYPE]))
        .is_err()
    {
        return;
    }
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let f = frame(
            "load.test.",
            &format!("n{n}.load.test."),
            (n % 200) as u8 + 1,
        );
        if s.write_all(&fstrm_data(&f)).is_err() {
            break;
        }
        n += 1;
        sent.store(n, Ordering::Relaxed);
    }
}

#[test]
fn sigterm_under_load_leaves_every_observed_record_sealed_in_the_spool() {
    let dir = TestDir::new("lifecycle-sigterm");
    let keys = dnsensor(&["keygen", "--out", dir.sub("keys").to_str().unwrap()]);
    assert!(
        keys.status.success(),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let token = dir.path().join("token");
    fs::write(&token, "lifecycle-token\n").unwrap();
    let sock = dir.path().join("dnstap.sock");
    let spool = dir.path().join("spool");
    let args: Vec<String> = [
        "dnstap",
        "--listen",
        &format!("unix:{}", sock.display()),
        "--output",
        "collector",
        "--sensor-id",
        "lifecycle",
        "--window",
        "3600",
        // Nothing listens there: every batch must stay in the spool.
        "--collector-url",
        "http://127.0.0.1:9",
        "--collector-pubkey",
        dir.path().join("keys/collector.pub").to_str().unwrap(),
        "--collector-token-file",
        token.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
        "--keep-private-addresses",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sensor = Dnsensor::start_args(dir.path(), sock.clone(), dir.path().join("unused"), &args);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (sock, stop, sent) = (sock.clone(), stop.clone(), sent.clone());
        thread::spawn(move || send_until(sock, stop, sent))
    };
    // Under load: SIGTERM once thousands of frames have gone out, while more still are.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::Relaxed) < 5000 {
        assert!(
            Instant::now() < deadline,
            "the sender is stuck: {}",
            sensor.stderr_text()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let run = sensor.finish();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let ctx = format!("stderr:\n{}", run.stderr);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    let decoded = summary_value(&run.stderr, "messages").expect("messages in the summary");
    let shed = summary_value(&run.stderr, "shed").unwrap_or(0);
    assert!(decoded > 0, "no load reached the sensor: {ctx}");
    assert!(decoded <= sent, "decoded {decoded} of {sent} sent: {ctx}");

    // Every name the sensor decoded and did not shed is in exactly one sealed batch.
    let batches: Vec<String> = fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "batch"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(!batches.is_empty(), "no sealed batch in the spool: {ctx}");
    let key = dir.path().join("keys/collector.key");
    let mut inspect: Vec<&str> = vec!["inspect", "--key", key.to_str().unwrap()];
    inspect.extend(batches.iter().map(String::as_str));
    let opened = dnsensor(&inspect);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let names: BTreeSet<String> = parse_cof(&String::from_utf8_lossy(&opened.stdout))
        .iter()
        .map(Cof::from_value)
        .map(|c| c.rrname.clone())
        .collect();
    assert_eq!(
        shed, 0,
        "the pipeline shed load; the test needs it kept: {ctx}"
    );
    // Frames arrive in order on one connection, so the decoded ones are the first `decoded`.
    let want: BTreeSet<String> = (0..decoded).map(|i| format!("n{i}.load.test.")).collect();
    assert_eq!(names.len(), want.len(), "{ctx}");
    assert_eq!(names, want, "{ctx}");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY=1 once the socket is served, WATCHDOG=1
/// pings at half the watchdog interval, STOPPING=1 at SIGTERM. systemd's side is played by a
/// datagram socket named in NOTIFY_SOCKET, with WATCHDOG_USEC and WATCHDOG_PID set as systemd
/// sets them.
#[test]
fn tells_systemd_when_ready_alive_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = TestDir::new("lifecycle-notify");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sock = dir.path().join("dnstap.sock");
    // `exec` keeps the shell's pid, so WATCHDOG_PID=$$ names dnsensor.
    let script = format!(
        "WATCHDOG_PID=$$ exec {} dnstap --listen unix:{} --output file:/dev/null",
        env!("CARGO_BIN_EXE_dnsensor"),
        sock.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    /// Kills the child if the test fails half-way.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let stderr = || fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let mut buf = [0u8; 512];
    let mut next = || match notify.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no notification within 10 s ({e}); stderr:\n{}", stderr()),
    };
    let first = next();
    assert_eq!(first, "READY=1\nSTATUS=serving\n");
    assert!(sock.exists(), "READY=1 before the socket exists");
    assert_eq!(next(), "WATCHDOG=1\n");
    assert_eq!(next(), "WATCHDOG=1\n");
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut last = next();
    while last == "WATCHDOG=1\n" {
        last = next();
    }
    assert_eq!(last, "STOPPING=1\n");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A stop request that arrives the moment a mode says it has started is a clean stop, not the
/// default action of SIGTERM (killing the process and losing the open window): the handlers are
/// registered before that line. Each mode is started and stopped ten times, the signal sent as
/// soon as the line appears.
#[test]
fn sigterm_right_after_the_start_line_stops_cleanly() {
    let dir = TestDir::new("lifecycle-early-term");
    let sock = dir.path().join("tap.sock");
    let out = dir.path().join("records.ndjson");
    let output = format!("file:{}", out.display());
    let listen = format!("unix:{}", sock.display());
    let modes: [(&[&str], &str); 2] = [
        (&["dnstap", "--listen", &listen], "dnstap: listening on"),
        // The mode that lost this race once in CI: its signal watcher is a thread of its own.
        (
            &["capture", "--interface", "lo", "--bpf", "udp port 9"],
            "capture: started",
        ),
    ];
    for (args, started) in modes {
        for attempt in 0..10 {
            let stderr_path = dir.path().join("early-term.stderr");
            let mut child = Command::new(env!("CARGO_BIN_EXE_dnsensor"))
                .args(args)
                .args(["--output", &output])
                .stdin(std::process::Stdio::null())
                .stderr(fs::File::create(&stderr_path).unwrap())
                .spawn()
                .expect("spawn dnsensor");
            let deadline = Instant::now() + Duration::from_secs(15);
            while !fs::read_to_string(&stderr_path)
                .unwrap_or_default()
                .contains(started)
            {
                if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                    let _ = child.kill();
                    panic!(
                        "{args:?}: no {started:?}:\n{}",
                        fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
                thread::sleep(Duration::from_micros(200));
            }
            // SAFETY: kill(2) with the pid of our own child and a valid signal number.
            assert_eq!(
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
                0
            );
            let status = child.wait().expect("wait");
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            assert!(
                status.success() && stderr.contains("SIGTERM: stopping"),
                "{args:?}, attempt {attempt}: {status}:\n{stderr}"
            );
            assert!(stderr.contains("summary:"), "{args:?}:\n{stderr}");
        }
    }
}
