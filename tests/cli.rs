//! The command line and the configuration file of the real `dnsensor` binary: every
//! configuration or usage error is exactly one line on stderr, `dnsensor: error: …`, with exit
//! code 2 (1 when the system refuses a socket); `check-config`; a flag wins over the file.
//! No DNS servers needed.

mod common;

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::expect::summary_value;
use common::wire::{connect_unix, fstrm_send_bidirectional, DnsMessage, Rr, TapMessage, TYPE_A};
use common::{key, merge, parse_cof, Cof, Dnsensor, TestDir, DNSTAP_CONTENT_TYPE};

/// What a short-lived run of the binary left behind.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `dnsensor <args>` in `dir` and waits (at most 15 s, then SIGKILL and panic) for it to
/// exit. A run that should fail but starts serving instead is therefore a failure, not a hang.
fn run(dir: &Path, args: &[&str]) -> Outcome {
    let bin = env!("CARGO_BIN_EXE_dnsensor");
    let out_path = dir.join("run.stdout");
    let err_path = dir.join("run.stderr");
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for dnsensor") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dnsensor {args:?} still running after 15 s; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    }
}

/// Asserts that `check-config --config cfg` fails with exit 2 and exactly `msg`.
fn assert_check_config_error(dir: &Path, cfg: &str, msg: &str) {
    assert_error(&run(dir, &["check-config", "--config", cfg]), 2, msg);
}

/// Asserts the run failed with exit `code`, nothing on stdout, and stderr exactly the one line
/// `dnsensor: error: <msg>`.
fn assert_error(o: &Outcome, code: i32, msg: &str) {
    let ctx = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.code, o.stdout, o.stderr
    );
    assert_eq!(
        o.stderr.lines().count(),
        1,
        "stderr must be exactly one line; {ctx}"
    );
    assert_eq!(
        o.stderr,
        format!("dnsensor: error: {msg}\n"),
        "stderr; {ctx}"
    );
    assert_eq!(o.code, Some(code), "exit code; {ctx}");
    assert_eq!(o.stdout, "", "stdout; {ctx}");
}

/// Writes `text` to `<dir>/<name>` and returns the path as a string.
fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// A socket path in `dir` for runs that must fail before binding it.
fn sock_arg(dir: &Path) -> String {
    format!("unix:{}", dir.join("never.sock").display())
}

const TOP_LEVEL_KEYS: &str = "`output`, `window`, `sensor-id`, `log-level`, `workers`, \
     `queue-depth`, `max-entries`, `keep-private-addresses`, `drop-range`, `drop-suffix`, \
     `client-counts`, `collector-url`, `collector-pubkey`, `collector-token-file`, \
     `collector-ca`, `spool`, `spool-max-bytes`, `spool-max-files`, `upload-concurrency`, \
     `upload-timeout`, `zstd-level`, `metrics`, `dnstap`, `collector`, `capture`, `proxy`";

#[test]
fn unknown_config_key_names_file_line_and_key() {
    let dir = TestDir::new("cli-unknown");
    let cfg = write_config(
        dir.path(),
        "unknown.toml",
        "window = 5\nsensor-id = \"a\"\nbogus = 1\n",
    );
    let want =
        format!("config {cfg}: line 3: unknown field `bogus`, expected one of {TOP_LEVEL_KEYS}");
    let o = run(
        dir.path(),
        &[
            "dnstap",
            "--config",
            &cfg,
            "--listen",
            &sock_arg(dir.path()),
        ],
    );
    assert_error(&o, 2, &want);
    // check-config reports the very same line.
    assert_check_config_error(dir.path(), &cfg, &want);
    assert!(!dir.path().join("never.sock").exists());
}

#[test]
fn unknown_key_in_dnstap_table_names_its_line() {
    let dir = TestDir::new("cli-unknown-dnstap");
    let cfg = write_config(
        dir.path(),
        "typo.toml",
        &format!(
            "window = 5\n\n[dnstap]\nlisten = [\"{}\"]\nclient-response = true\n",
            sock_arg(dir.path())
        ),
    );
    let want = format!(
        "config {cfg}: line 5: unknown field `client-response`, expected one of `listen`, \
         `client-responses`, `max-frame-bytes`, `max-connections`"
    );
    assert_error(&run(dir.path(), &["dnstap", "--config", &cfg]), 2, &want);
    assert_check_config_error(dir.path(), &cfg, &want);
}

#[test]
fn bad_value_type_in_file() {
    let dir = TestDir::new("cli-badtype");
    let cfg = write_config(
        dir.path(),
        "badtype.toml",
        "sensor-id = \"a\"\nwindow = \"soon\"\n",
    );
    let want = format!("config {cfg}: line 2: window: invalid type: string \"soon\", expected u64");
    let o = run(
        dir.path(),
        &[
            "dnstap",
            "--config",
            &cfg,
            "--listen",
            &sock_arg(dir.path()),
        ],
    );
    assert_error(&o, 2, &want);
    assert_check_config_error(dir.path(), &cfg, &want);

    // The same in the [dnstap] table.
    let cfg = write_config(
        dir.path(),
        "badtype2.toml",
        &format!(
            "[dnstap]\nlisten = [\"{}\"]\nmax-frame-bytes = \"big\"\n",
            sock_arg(dir.path())
        ),
    );
    let want = format!(
        "config {cfg}: line 3: max-frame-bytes: invalid type: string \"big\", expected usize"
    );
    assert_error(&run(dir.path(), &["dnstap", "--config", &cfg]), 2, &want);
}

#[test]
fn window_zero_is_refused_from_file_and_flag() {
    let dir = TestDir::new("cli-window0");
    let want = "window: 0 is out of range 1..=86400 seconds";
    let cfg = write_config(
        dir.path(),
        "w0.toml",
        &format!(
            "window = 0\n[dnstap]\nlisten = [\"{}\"]\n",
            sock_arg(dir.path())
        ),
    );
    assert_error(&run(dir.path(), &["dnstap", "--config", &cfg]), 2, want);
    assert_check_config_error(dir.path(), &cfg, &format!("config {cfg}: line 1: {want}"));
    let o = run(
        dir.path(),
        &["dnstap", "--listen", &sock_arg(dir.path()), "--window", "0"],
    );
    assert_error(&o, 2, want);
    assert!(!dir.path().join("never.sock").exists());
}

#[test]
fn bad_output() {
    let dir = TestDir::new("cli-output");
    let listen = sock_arg(dir.path());
    for (output, want) in [
        (
            "udp:192.0.2.1:9",
            "output: `udp:192.0.2.1:9` is not one of stdout, file:PATH, collector",
        ),
        (
            "file:",
            "output: `file:` needs a path, as in file:/var/lib/dnsensor/records.json",
        ),
        (
            "collector",
            "sensor-id: `--output collector` needs it (see dnsensor dnstap --help)",
        ),
    ] {
        let o = run(
            dir.path(),
            &["dnstap", "--listen", &listen, "--output", output],
        );
        assert_error(&o, 2, want);
    }
    assert!(!dir.path().join("never.sock").exists());
}

/// `--output collector`: each missing or unusable piece is named in one line, before any socket
/// is bound.
#[test]
fn collector_output_errors_name_the_setting() {
    let dir = TestDir::new("cli-collector");
    let listen = sock_arg(dir.path());
    let d = dir.path().display().to_string();
    let base = |url: &str| -> Vec<String> {
        [
            "dnstap",
            "--listen",
            &listen,
            "--output",
            "collector",
            "--sensor-id",
            "s1",
            "--collector-url",
            url,
            "--collector-pubkey",
            &format!("{d}/missing.pub"),
            "--collector-token-file",
            &format!("{d}/token"),
            "--spool",
            &format!("{d}/spool"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = base("http://192.0.2.1:8053");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(dir.path(), &args);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.starts_with("dnsensor: error: collector-url: ") && o.stderr.contains("loopback"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);

    let args = base("http://127.0.0.1:8053");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(dir.path(), &args);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.starts_with("dnsensor: error: collector-pubkey: ")
            && o.stderr.contains("missing.pub"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(!dir.path().join("never.sock").exists());
}

#[test]
fn bad_listen_scheme() {
    let dir = TestDir::new("cli-listen");
    let o = run(dir.path(), &["dnstap", "--listen", "udp:127.0.0.1:6000"]);
    assert_error(
        &o,
        2,
        "listen: invalid listen address \"udp:127.0.0.1:6000\": unknown scheme; expected \
         unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)",
    );
    let o = run(dir.path(), &["dnstap", "--listen", "tcp:localhost:6000"]);
    assert_error(
        &o,
        2,
        "listen: invalid listen address \"tcp:localhost:6000\": ADDR:PORT must be an IP \
         address and a port; expected unix:PATH or tcp:ADDR:PORT (IPv6 as tcp:[::1]:6000)",
    );
}

#[test]
fn unusable_unix_socket_path_exits_1() {
    let dir = TestDir::new("cli-nodir");
    let o = run(
        dir.path(),
        &["dnstap", "--listen", "unix:/nonexistent/dir/x.sock"],
    );
    assert_error(
        &o,
        1,
        "cannot listen on unix:/nonexistent/dir/x.sock: No such file or directory",
    );
    // A path taken by a regular file is never removed.
    let file = dir.path().join("taken");
    fs::write(&file, "keep me").unwrap();
    let listen = format!("unix:{}", file.display());
    let o = run(dir.path(), &["dnstap", "--listen", &listen]);
    assert_error(
        &o,
        1,
        &format!(
            "cannot listen on {listen}: the path exists and is not a socket; refusing to remove it"
        ),
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn missing_listen() {
    let dir = TestDir::new("cli-nolisten");
    assert_error(
        &run(dir.path(), &["dnstap", "--output", "stdout"]),
        2,
        "listen: give at least one socket, as in --listen unix:/run/dnsensor/dnstap.sock",
    );
    // A file without [dnstap] listen is no better.
    let cfg = write_config(dir.path(), "nolisten.toml", "window = 5\n");
    assert_error(
        &run(dir.path(), &["dnstap", "--config", &cfg]),
        2,
        "listen: give at least one socket, as in --listen unix:/run/dnsensor/dnstap.sock",
    );
}

#[test]
fn non_numeric_window_flag() {
    let dir = TestDir::new("cli-window-nan");
    let o = run(
        dir.path(),
        &[
            "dnstap",
            "--listen",
            &sock_arg(dir.path()),
            "--window",
            "soon",
        ],
    );
    assert_error(
        &o,
        2,
        "invalid value 'soon' for '--window <SECS>': invalid digit found in string \
         (see dnsensor --help)",
    );
}

#[test]
fn bad_log_level_from_flag_and_file() {
    let dir = TestDir::new("cli-loglevel");
    let want = "log-level: `loud` is not one of error, warn, info, debug, trace";
    let o = run(
        dir.path(),
        &[
            "dnstap",
            "--listen",
            &sock_arg(dir.path()),
            "--log-level",
            "loud",
        ],
    );
    assert_error(&o, 2, want);
    // check-config also names the line.
    let cfg = write_config(dir.path(), "ll.toml", "log-level = \"loud\"\n");
    assert_check_config_error(dir.path(), &cfg, &format!("config {cfg}: line 1: {want}"));
}

#[test]
fn unknown_flag() {
    let dir = TestDir::new("cli-unknown-flag");
    let o = run(
        dir.path(),
        &["dnstap", "--listen", &sock_arg(dir.path()), "--bogus"],
    );
    assert_error(
        &o,
        2,
        "unexpected argument '--bogus' found (see dnsensor --help)",
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = TestDir::new("cli-check-ok");
    let cfg = write_config(
        dir.path(),
        "good.toml",
        &format!(
            "output = \"file:{}\"\nwindow = 60\nsensor-id = \"isp-a-fra1\"\nlog-level = \"warn\"\n\
             workers = 2\nqueue-depth = 1024\nmax-entries = 5000\n\n[dnstap]\n\
             listen = [\"{}\", \"tcp:127.0.0.1:6000\"]\nclient-responses = true\n\
             max-frame-bytes = 65536\n",
            dir.path().join("records.json").display(),
            sock_arg(dir.path()),
        ),
    );
    let o = run(dir.path(), &["check-config", "--config", &cfg]);
    assert_eq!(o.stdout, format!("{cfg}: ok\n"), "stderr:\n{}", o.stderr);
    assert_eq!(o.stderr, "");
    assert_eq!(o.code, Some(0));
    // Checking binds nothing and writes nothing.
    assert!(!dir.path().join("never.sock").exists());
    assert!(!dir.path().join("records.json").exists());
}

#[test]
fn check_config_on_a_missing_file() {
    let dir = TestDir::new("cli-check-missing");
    let missing = dir.path().join("missing.toml");
    let o = run(
        dir.path(),
        &["check-config", "--config", missing.to_str().unwrap()],
    );
    assert_error(
        &o,
        2,
        &format!(
            "cannot read config {}: No such file or directory",
            missing.display()
        ),
    );
}

#[test]
fn version_and_help_exit_0() {
    let dir = TestDir::new("cli-version");
    let o = run(dir.path(), &["--version"]);
    assert_eq!(o.code, Some(0), "stderr:\n{}", o.stderr);
    assert_eq!(
        o.stdout,
        format!("dnsensor {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(o.stderr, "");

    let o = run(dir.path(), &["--help"]);
    assert_eq!(o.code, Some(0), "stderr:\n{}", o.stderr);
    assert_eq!(o.stderr, "");
    assert!(
        o.stdout.starts_with("Passive DNS sensor: ")
            && o.stdout.contains("\nUsage: dnsensor <COMMAND>\n")
            && o.stdout.contains("\n  dnstap ")
            && o.stdout.contains("\n  check-config "),
        "{}",
        o.stdout
    );

    let o = run(dir.path(), &["dnstap", "--help"]);
    assert_eq!(o.code, Some(0), "stderr:\n{}", o.stderr);
    assert_eq!(o.stderr, "");
    for flag in [
        "--config <FILE>",
        "--output <stdout|file:PATH|collector>",
        "--window <SECS>",
        "--sensor-id <ID>",
        "--log-level <LEVEL>",
        "--workers <N>",
        "--queue-depth <N>",
        "--max-entries <N>",
        "--listen <unix:PATH|tcp:ADDR:PORT>",
        "--client-responses",
        "--max-frame-bytes <BYTES>",
        "--keep-private-addresses",
        "--drop-range <ADDR/LEN>",
        "--drop-suffix <NAME>",
        "--client-counts",
        "--collector-url <URL>",
        "--collector-pubkey <FILE>",
        "--collector-token-file <FILE>",
        "--collector-ca <FILE>",
        "--spool <DIR>",
    ] {
        assert!(o.stdout.contains(flag), "`{flag}` missing:\n{}", o.stdout);
    }
}

/// The file says where records go and which sensor id to write; the flags say otherwise and
/// win. The socket comes only from the file, so the file was read.
#[test]
fn flags_override_file_keys() {
    let dir = TestDir::new("cli-override");
    let a = dir.path().join("a.ndjson");
    let b = dir.path().join("b.ndjson");
    let sock = dir.path().join("dnstap.sock");
    let cfg = write_config(
        dir.path(),
        "override.toml",
        &format!(
            "output = \"file:{}\"\nwindow = 1\nsensor-id = \"from-file\"\n\n[dnstap]\n\
             listen = [\"unix:{}\"]\n",
            a.display(),
            sock.display()
        ),
    );
    let args: Vec<String> = [
        "dnstap",
        "--config",
        &cfg,
        "--output",
        &format!("file:{}", b.display()),
        "--sensor-id",
        "from-flag",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sensor = Dnsensor::start_args(dir.path(), sock.clone(), b.clone(), &args);

    let mut msg = DnsMessage::response(7, "www.d1.com.", TYPE_A);
    msg.answer
        .push(Rr::a("www.d1.com.", 300, [192, 0, 2, 1]).owner_ptr(12));
    let frame = TapMessage::resolver_response("d1.com.", msg.encode()).encode();
    let mut s = connect_unix(&sock).expect("connect");
    fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, &[frame])
        .unwrap_or_else(|e| panic!("session: {e}\n{}", sensor.stderr_text()));
    drop(s);

    let run = sensor.finish();
    let ctx = format!("output B:\n{}\nstderr:\n{}", run.raw, run.stderr);
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    assert!(
        !a.exists(),
        "the file's output {} was opened although --output overrides it; {ctx}",
        a.display()
    );
    let cofs: Vec<Cof> = parse_cof(&run.raw).iter().map(Cof::from_value).collect();
    assert_eq!(cofs.len(), 1, "{ctx}");
    assert_eq!(cofs[0].sensor_id.as_deref(), Some("from-flag"), "{ctx}");
    let m = merge(&cofs);
    let k = key("www.d1.com.", "A", "d1.com.", &["192.0.2.1"]);
    assert_eq!(m.get(&k).map(|e| e.count), Some(1), "{ctx}");
    assert_eq!(summary_value(&run.stderr, "records"), Some(1), "{ctx}");
    // The socket file is removed on exit.
    assert!(!sock.exists(), "socket left behind; {ctx}");
}

/// A socket another dnsensor is serving is not taken over (exit 1, its file stays); a stale
/// socket file nobody answers on is replaced.
#[test]
fn socket_in_use_is_refused_and_stale_socket_replaced() {
    let dir = TestDir::new("cli-inuse");
    let first = Dnsensor::start(dir.path());
    let listen = format!("unix:{}", first.sock.display());
    let o = run(dir.path(), &["dnstap", "--listen", &listen]);
    assert_error(
        &o,
        1,
        &format!("cannot listen on {listen}: another process is already listening on it"),
    );
    assert!(
        first.sock.exists(),
        "the first instance's socket was removed"
    );
    let mut s = connect_unix(&first.sock).expect("the first instance still accepts");
    fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, &[])
        .unwrap_or_else(|e| panic!("session with the first instance: {e}"));
    drop(s);
    let run1 = first.finish();
    assert_eq!(run1.status.code(), Some(0), "{}", run1.stderr);

    // A stale socket file, as a killed instance leaves behind.
    let stale_dir = TestDir::new("cli-stale");
    let stale = stale_dir.path().join("dnstap.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    // Dnsensor::start returns at once here (the path exists already): poll until the new
    // socket answers.
    let second = Dnsensor::start(stale_dir.path());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut s = loop {
        match connect_unix(&second.sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!(
                "the stale socket was not replaced within 15 s: {e}\n{}",
                second.stderr_text()
            ),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    };
    fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, &[])
        .unwrap_or_else(|e| panic!("session with the second instance: {e}"));
    drop(s);
    let run2 = second.finish();
    assert_eq!(run2.status.code(), Some(0), "{}", run2.stderr);
    assert!(!stale.exists(), "socket file left behind after exit");
}

#[test]
fn usage_errors_exit_2() {
    let dir = TestDir::new("cli-usage");
    let none = run(dir.path(), &[]);
    assert_eq!(none.code, Some(2), "no subcommand is a usage error");
    assert!(none.stderr.contains("Usage:"), "{}", none.stderr);
    assert!(none.stdout.is_empty());
    let missing = run(dir.path(), &["check-config"]);
    assert_error(
        &missing,
        2,
        "the following required arguments were not provided: --config <FILE> (see dnsensor --help)",
    );
}

#[test]
fn check_config_refuses_a_socket_in_a_missing_directory() {
    let dir = TestDir::new("cli-check-sockdir");
    let cfg = write_config(
        dir.path(),
        "c.toml",
        "[dnstap]\nlisten = [\"unix:/nonexistent/dir/x.sock\"]\n",
    );
    assert_check_config_error(
        dir.path(),
        &cfg,
        &format!("config {cfg}: line 2: [dnstap] listen: cannot listen on unix:/nonexistent/dir/x.sock: directory /nonexistent/dir does not exist"),
    );
}

/// One run of check-config shows every problem of the file, each with its line and key, in the
/// order of the file: what the format rejects (an unknown key, a wrong type) and bad values alike,
/// several in one table, and the tables named. A key that is missing has no line.
#[test]
fn check_config_reports_every_problem_with_its_line() {
    let dir = TestDir::new("cli-check-several");
    let cfg = write_config(
        dir.path(),
        "several.toml",
        "log-level = \"loud\"\nwindow = 0\nbogus = 1\nworkers = 999\n\n\
         [proxy]\nlisten = [\"nowhere\"]\nthreads = 0\nupstream = [\"127.0.0.1:53\"]\nbusy-poll = 20000\n\n\
         [dnstap]\nlisten = [\"unix:/nonexistent/dir/x.sock\"]\nmax-frame-bytes = \"big\"\n\n\
         [collector]\nlisten = \"127.0.0.1:8443\"\n",
    );
    let o = run(dir.path(), &["check-config", "--config", &cfg]);
    assert_eq!(o.code, Some(2), "stderr:\n{}", o.stderr);
    assert_eq!(o.stdout, "");
    let want: Vec<String> = [
        "line 1: log-level: `loud` is not one of error, warn, info, debug, trace",
        "line 2: window: 0 is out of range 1..=86400 seconds",
        &format!("line 3: unknown field `bogus`, expected one of {TOP_LEVEL_KEYS}"),
        "line 4: workers: 999 is out of range 1..=64",
        "line 7: [proxy] listen: `nowhere` is not ADDR:PORT or an address",
        "line 8: [proxy] threads: 0 is out of range 1..=64",
        "line 10: [proxy] busy-poll: 20000 µs is out of range 0..=10000",
        "line 13: [dnstap] listen: cannot listen on unix:/nonexistent/dir/x.sock: directory \
         /nonexistent/dir does not exist",
        "line 14: max-frame-bytes: invalid type: string \"big\", expected usize",
        "[collector] key: required (see dnsensor collector --help)",
    ]
    .iter()
    .map(|p| format!("dnsensor: error: config {cfg}: {p}\n"))
    .collect();
    assert_eq!(o.stderr, want.concat());
}

/// `dnsensor capture`: a missing source, an unreadable or non-capture file, a missing interface,
/// a bad filter and an unknown user are each one line with the right exit code.
#[test]
fn capture_errors_are_one_line() {
    let dir = TestDir::new("cli-capture");
    let d = dir.path();
    let garbage = d.join("garbage.pcap");
    fs::write(&garbage, "not a capture\n").unwrap();
    let g = garbage.to_str().unwrap();
    let missing = d.join("missing.pcap");
    let m = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["capture"],
            2,
            "interface: give --interface NAME to capture live or --read FILE to read captures"
                .into(),
        ),
        (
            vec!["capture", "--read", m],
            1,
            format!("{m}: No such file or directory"),
        ),
        (
            vec!["capture", "--read", g],
            1,
            format!("{g}: unknown file format"),
        ),
        (
            vec!["capture", "--interface", "nosuch0"],
            1,
            "cannot capture on interface nosuch0: No such device exists".into(),
        ),
        (
            vec!["capture", "--interface", "lo", "--bpf", "port fifty"],
            1,
            "bad BPF filter \"port fifty\": unknown port 'fifty'".into(),
        ),
        (
            vec!["capture", "--interface", "lo", "--user", "nosuchuser"],
            1,
            "user: no such user `nosuchuser`".into(),
        ),
    ];
    for (args, code, msg) in cases {
        assert_error(&run(d, &args), code, &msg);
    }
}

/// `--log-level debug` adds the pipeline's settings; `warn` leaves out every INFO line, the
/// summary included. A stale `JOURNAL_STREAM` (not our stderr) must not swallow the log: the
/// logger falls back to stderr. Where journald runs, see `logs_natively_to_a_running_journald`.
#[test]
fn log_level_selects_what_is_logged_on_stderr() {
    let dir = TestDir::new("cli-log-level");
    std::env::set_var("JOURNAL_STREAM", "1:2");
    let debug_dir = dir.sub("debug");
    let debug = Dnsensor::start_with(&debug_dir, &["--log-level", "debug"]).finish();
    let warn_dir = dir.sub("warn");
    let warn = Dnsensor::start_with(&warn_dir, &["--log-level", "warn"]).finish();
    std::env::remove_var("JOURNAL_STREAM");
    assert!(debug.status.success(), "{}", debug.stderr);
    assert!(
        debug
            .stderr
            .lines()
            .any(|l| l.contains(" DEBUG pipeline: ") && l.contains("window 1 s")),
        "no DEBUG pipeline line:\n{}",
        debug.stderr
    );
    assert!(
        debug.stderr.lines().any(|l| l.contains(" INFO  summary: ")),
        "{}",
        debug.stderr
    );
    assert!(warn.status.success(), "{}", warn.stderr);
    assert!(
        !warn.stderr.contains(" INFO ") && !warn.stderr.contains(" DEBUG "),
        "INFO or DEBUG at --log-level warn:\n{}",
        warn.stderr
    );
}

/// Under a real journald (when this machine has one): stderr connected to the journal with
/// `systemd-cat`, `JOURNAL_STREAM` naming that stream, so dnsensor logs natively and its entries
/// carry `SYSLOG_IDENTIFIER=dnsensor` and `DNSENSOR_MODE=dnstap`. Without journald (containers,
/// most CI machines) the stderr fallback is what `log_level_selects_what_is_logged_on_stderr`
/// checks, and this test says so and checks nothing more.
#[test]
fn logs_natively_to_a_running_journald() {
    if !Path::new("/run/systemd/journal/socket").exists() {
        eprintln!(
            "no journald on this machine (/run/systemd/journal/socket): stderr fallback only"
        );
        return;
    }
    let dir = TestDir::new("cli-journald");
    let since = format!(
        "@{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1
    );
    // systemd-cat of systemd 252 does not set JOURNAL_STREAM itself: the shell names the stream
    // on its stderr, then hands over to dnsensor, which must then log natively.
    let run = format!(
        "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/2); exec timeout -s TERM 2 {} dnstap --listen unix:{} --output file:/dev/null --log-level debug",
        env!("CARGO_BIN_EXE_dnsensor"),
        dir.path().join("j.sock").display()
    );
    let status = Command::new("systemd-cat")
        .args(["--identifier", "dnsensor-test", "sh", "-c", &run])
        .status()
        .expect("systemd-cat (package systemd)");
    assert!(status.code().is_some(), "systemd-cat: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("journalctl")
            .args([
                "--no-pager",
                "--since",
                &since,
                "-o",
                "cat",
                "SYSLOG_IDENTIFIER=dnsensor",
                "DNSENSOR_MODE=dnstap",
            ])
            .output()
            .expect("journalctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("pipeline: ") && text.contains("summary: ") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no native entries (SYSLOG_IDENTIFIER=dnsensor, DNSENSOR_MODE=dnstap) with the debug pipeline line and the summary since {since}:\n{text}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}
