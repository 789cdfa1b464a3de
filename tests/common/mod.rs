//! End-to-end test harness: the test DNS world (NSD authoritative servers, an Unbound or
//! BIND resolver), the `dnsensor` child process, `dig`, and COF output parsing.
//!
//! Everything listens on loopback only. A world instance `W` uses the addresses
//! `127.53.W.1` … `127.53.W.6` (NSD, port 53) and `127.53.W.53` (the resolver's own
//! address: Unbound listens there, and both resolvers send their queries from it). Each
//! test picks its own `W`, so tests and test binaries can run in parallel. See
//! `tests/README.md` for the layout.
//!
//! Every daemon runs in its own process group and is stopped (SIGTERM, then SIGKILL)
//! when its handle is dropped, also while a test panics; on a panic its logs are printed.
#![allow(dead_code)]

pub mod expect;
pub mod proxy;
pub mod wire;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The content type of dnstap over Frame Streams.
pub const DNSTAP_CONTENT_TYPE: &str = "protobuf:dnstap.Dnstap";

/// `tests/world/`: zone file and configuration templates.
pub fn world_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("world")
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A fresh temporary directory. Set `DNSENSOR_KEEP_TMP=1` to keep it after the test
/// (its path is printed).
pub struct TestDir {
    inner: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        let inner = tempfile::Builder::new()
            .prefix(&format!("dnsensor-{prefix}-"))
            .tempdir()
            .expect("create temp dir");
        let path = inner.path().to_path_buf();
        if std::env::var_os("DNSENSOR_KEEP_TMP").is_some() {
            eprintln!("keeping test dir {}", path.display());
            let _ = inner.keep();
            return TestDir { inner: None, path };
        }
        TestDir {
            inner: Some(inner),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::create_dir_all(&p).expect("create subdir");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Keep the directory when the test failed, so that logs can be looked at.
        if thread::panicking() {
            if let Some(inner) = self.inner.take() {
                eprintln!("test failed; keeping {}", inner.keep().display());
            }
        }
    }
}

/// Finds a required program. A missing daemon is a test FAILURE with a clear message,
/// never a skip: CI installs them.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "required program `{name}` not found in PATH or /usr/sbin: install the Debian package \
         `{package}` (the end-to-end tests need it and do not skip)"
    );
}

/// Replaces every `{{KEY}}` in `template`. Panics if a placeholder is left over.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = out.find("{{") {
        let end = out[i..].find("}}").map(|e| i + e + 2).unwrap_or(out.len());
        panic!("unrendered placeholder {} in template", &out[i..end]);
    }
    out
}

/// Reads `tests/world/<name>` and renders it.
pub fn render_file(name: &str, vars: &[(&str, &str)]) -> String {
    let path = world_src().join(name);
    let t = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    render(&t, vars)
}

/// A free port on 127.0.0.1, for both UDP and TCP (best effort: it is released again).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1");
}

/// Sends `sig` (e.g. "TERM", "KILL") to a pid (positive) or a process group (negative).
fn send_signal(sig: &str, target: i64) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child up to `timeout`. `None` when it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon child process in its own process group, stopped on drop.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    /// Files worth printing when something fails (stdout/stderr capture, log files).
    pub logs: Vec<PathBuf>,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr going to `<dir>/<name>.stdout|.stderr`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path, extra_logs: &[PathBuf]) -> Daemon {
        let out_path = dir.join(format!("{name}.stdout"));
        let err_path = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("create stdout log"))
            .stderr(fs::File::create(&err_path).expect("create stderr log"))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let mut logs = vec![out_path, err_path];
        logs.extend_from_slice(extra_logs);
        Daemon {
            name: name.to_string(),
            child: Some(child),
            logs,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Panics (with the logs) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.exit = Some(st);
                self.child = None;
                panic!("{} exited early with {st}\n{}", self.name, self.log_text());
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM to the whole process group; SIGKILL after `grace`. Returns the exit status
    /// of the main process (None if it had to be killed).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return self.exit;
        };
        let pgid = child.id() as i64;
        if let Ok(Some(st)) = child.try_wait() {
            // Leader gone; children of the group might remain.
            send_signal("KILL", -pgid);
            self.exit = Some(st);
            return Some(st);
        }
        send_signal("TERM", -pgid);
        let st = wait_timeout(&mut child, grace);
        if st.is_none() {
            eprintln!("{} did not stop within {grace:?}; killing it", self.name);
            send_signal("KILL", -pgid);
            let _ = child.wait();
        } else {
            // Make sure no straggler of the group survives (nsd's xfrd and servers).
            thread::sleep(Duration::from_millis(50));
            send_signal("KILL", -pgid);
        }
        self.exit = st;
        st
    }

    /// The logs, concatenated, for failure messages.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        for p in &self.logs {
            let text = fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
            let text = text.unwrap_or_else(|e| format!("<{e}>"));
            s.push_str(&format!("----- {} {} -----\n", self.name, p.display()));
            // Keep the tail: BIND and Unbound are chatty.
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(200);
            for l in &lines[start..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        self.stop(Duration::from_secs(5));
        if panicking {
            eprintln!("{}", self.log_text());
        }
    }
}

/// Runs dig and returns its stdout.
pub fn dig(server: &str, port: u16, args: &[&str]) -> String {
    let dig = require_program("dig", "bind9-dnsutils");
    let out = Command::new(dig)
        .arg(format!("@{server}"))
        .arg("-p")
        .arg(port.to_string())
        .args(["+tries=1", "+time=2", "+nocookie"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls a server with dig until it answers `args` with a response whose header matches
/// `want` (e.g. "status: NOERROR"), up to `timeout`.
pub fn wait_until_answers(server: &str, port: u16, args: &[&str], want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = dig(server, port, args);
        if last.contains(want) {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{server}:{port} did not answer {args:?} with `{want}` within {timeout:?}; last dig output:\n{last}");
}

/// The outcome of one dig query through the resolver.
#[derive(Debug, Clone)]
pub struct DigResult {
    pub qname: String,
    pub qtype: String,
    /// NOERROR, NXDOMAIN, … ("TIMEOUT" when there was no answer).
    pub status: String,
    /// Answer section lines (`name ttl class type rdata`).
    pub answers: Vec<String>,
}

/// Runs each (qname, qtype) through the resolver, one after the other.
pub fn run_queries(server: &str, port: u16, queries: &[(&str, &str)]) -> Vec<DigResult> {
    queries
        .iter()
        .map(|(qname, qtype)| {
            let out = dig(
                server,
                port,
                &["+time=5", "+noall", "+comments", "+answer", qname, qtype],
            );
            let status = out
                .lines()
                .find_map(|l| l.split("status: ").nth(1))
                .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
                .unwrap_or_else(|| "TIMEOUT".to_string());
            let answers = out
                .lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            DigResult {
                qname: qname.to_string(),
                qtype: qtype.to_string(),
                status,
                answers,
            }
        })
        .collect()
}

/// NSD instances of a world: (instance name, host octets it listens on, zones it serves).
/// Parent and child zones are always on different instances, so that resolvers see real
/// referrals. d1.com. and d2.com. share an instance (as hosted zones often do).
pub const NSD_INSTANCES: &[(&str, &[u8], &[&str])] = &[
    ("root", &[1], &["."]),
    ("com", &[2], &["com."]),
    ("sld", &[3, 5], &["d1.com.", "d2.com."]),
    ("net", &[4], &["net."]),
    ("leaf", &[6], &["d3.net.", "sub.d1.com."]),
];

/// All zones of the world, in the order above.
pub fn world_zones() -> Vec<&'static str> {
    NSD_INSTANCES
        .iter()
        .flat_map(|(_, _, z)| z.iter().copied())
        .collect()
}

/// The file name of a zone's template in `tests/world/zones/`.
pub fn zone_file_name(zone: &str) -> String {
    if zone == "." {
        "root.zone".to_string()
    } else {
        format!("{}.zone", zone.trim_end_matches('.'))
    }
}

/// A running set of authoritative servers for world `W`.
pub struct World {
    pub w: u8,
    pub net: String,
    pub dir: PathBuf,
    nsds: Vec<Daemon>,
}

impl World {
    /// Starts all NSD instances of world `w` under `dir` and waits until each answers
    /// authoritatively for its zones.
    pub fn start(w: u8, dir: &Path) -> World {
        let nsd = require_program("nsd", "nsd");
        let net = format!("127.53.{w}");
        let mut nsds = Vec::new();
        for (name, hosts, zones) in NSD_INSTANCES {
            let d = dir.join(format!("nsd-{name}"));
            fs::create_dir_all(&d).unwrap();
            let dir_s = d.to_str().unwrap();
            let mut ips = String::new();
            for h in *hosts {
                ips.push_str(&format!("    ip-address: {net}.{h}\n"));
            }
            let mut zone_conf = String::new();
            for z in *zones {
                let file = zone_file_name(z);
                let text = render_file(&format!("zones/{file}"), &[("NET", &net)]);
                fs::write(d.join(&file), text).unwrap();
                zone_conf.push_str(&format!(
                    "zone:\n    name: \"{z}\"\n    zonefile: \"{file}\"\n\n"
                ));
            }
            let conf = render_file(
                "nsd.conf.tmpl",
                &[
                    ("DIR", dir_s),
                    ("IP_ADDRESSES", ips.trim_end()),
                    ("ZONES", &zone_conf),
                ],
            );
            let conf_path = d.join("nsd.conf");
            fs::write(&conf_path, conf).unwrap();
            let mut cmd = Command::new(&nsd);
            cmd.arg("-d").arg("-c").arg(&conf_path);
            nsds.push(Daemon::spawn(
                &format!("nsd-{name}"),
                cmd,
                &d,
                &[d.join("nsd.log")],
            ));
        }
        let mut world = World {
            w,
            net,
            dir: dir.to_path_buf(),
            nsds,
        };
        for (i, (_, hosts, zones)) in NSD_INSTANCES.iter().enumerate() {
            for h in *hosts {
                for z in *zones {
                    let addr = world.addr(*h);
                    let deadline = Instant::now() + Duration::from_secs(20);
                    loop {
                        let out = dig(&addr, 53, &["+norec", z, "SOA"]);
                        if out.contains("status: NOERROR") && out.contains(" aa") {
                            break;
                        }
                        if Instant::now() > deadline {
                            panic!(
                                "NSD on {addr} does not serve {z}; last dig:\n{out}\n{}",
                                world.nsds[i].log_text()
                            );
                        }
                        // An NSD that failed (e.g. address in use) exits: fail fast.
                        world.nsds[i].assert_running();
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        world
    }

    /// `127.53.W.<host>`.
    pub fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.net)
    }

    /// The resolver's own address (source of its queries; Unbound also listens on it).
    /// It never appears in zone data.
    pub fn resolver_addr(&self) -> String {
        self.addr(53)
    }

    /// Zone file text of `zone` as rendered for this world.
    pub fn zone_text(&self, zone: &str) -> String {
        render_file(
            &format!("zones/{}", zone_file_name(zone)),
            &[("NET", &self.net)],
        )
    }

    /// Logs of all NSD instances.
    pub fn log_text(&self) -> String {
        self.nsds.iter().map(|d| d.log_text()).collect()
    }

    fn root_hints(&self) -> String {
        render_file("root.hints.tmpl", &[("NET", &self.net)])
    }

    /// Starts Unbound listening on `127.53.W.53:53`, dnstap to `sock`.
    pub fn start_unbound(&self, sock: &Path) -> Resolver {
        self.start_unbound_with(sock, false)
    }

    /// Like [`World::start_unbound`]; with `client_responses` Unbound also sends
    /// CLIENT_RESPONSE messages (its answers to dig, with dig's address).
    pub fn start_unbound_with(&self, sock: &Path, client_responses: bool) -> Resolver {
        let unbound = require_program("unbound", "unbound");
        let d = self.dir.join("unbound");
        fs::create_dir_all(&d).unwrap();
        let dir_s = d.to_str().unwrap().to_string();
        fs::write(d.join("root.hints"), self.root_hints()).unwrap();
        let addr = self.resolver_addr();
        let conf = render_file(
            "unbound.conf.tmpl",
            &[
                ("DIR", &dir_s),
                ("RESOLVER", &addr),
                ("SOCK", sock.to_str().unwrap()),
                (
                    "CLIENT_RESPONSES",
                    if client_responses { "yes" } else { "no" },
                ),
            ],
        );
        let conf_path = d.join("unbound.conf");
        fs::write(&conf_path, conf).unwrap();
        check_conf("unbound-checkconf", &conf_path);
        let mut cmd = Command::new(unbound);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        let daemon = Daemon::spawn("unbound", cmd, &d, &[d.join("unbound.log")]);
        let mut r = Resolver {
            kind: ResolverKind::Unbound,
            daemon,
            addr,
            port: 53,
        };
        r.wait_ready();
        r
    }

    /// Starts BIND `named` listening on `127.0.0.1:<free port>` (BIND only listens on
    /// addresses configured on an interface, and only 127.0.0.1 is), sending its queries
    /// from `127.53.W.53`, dnstap to `sock` (which should already exist: BIND drops
    /// messages until its reconnect timer finds the socket).
    pub fn start_bind(&self, sock: &Path) -> Resolver {
        let named = require_program("named", "bind9");
        let d = self.dir.join("bind");
        fs::create_dir_all(&d).unwrap();
        let dir_s = d.to_str().unwrap().to_string();
        fs::write(d.join("root.hints"), self.root_hints()).unwrap();
        let port = free_port();
        let conf = render_file(
            "named.conf.tmpl",
            &[
                ("DIR", &dir_s),
                ("LISTEN", "127.0.0.1"),
                ("PORT", &port.to_string()),
                ("QUERY_SOURCE", &self.resolver_addr()),
                ("SOCK", sock.to_str().unwrap()),
            ],
        );
        let conf_path = d.join("named.conf");
        fs::write(&conf_path, conf).unwrap();
        check_conf("named-checkconf", &conf_path);
        let mut cmd = Command::new(named);
        // -4: IPv4 only; -g: foreground, log to stderr; runs as root without -u.
        cmd.arg("-4").arg("-g").arg("-c").arg(&conf_path);
        let daemon = Daemon::spawn("named", cmd, &d, &[]);
        let mut r = Resolver {
            kind: ResolverKind::Bind,
            daemon,
            addr: "127.0.0.1".into(),
            port,
        };
        r.wait_ready();
        r
    }
}

fn which_optional(name: &str) -> Result<PathBuf, ()> {
    std::panic::catch_unwind(|| require_program(name, "")).map_err(|_| ())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverKind {
    Unbound,
    Bind,
}

/// A running recursive resolver.
pub struct Resolver {
    pub kind: ResolverKind,
    pub daemon: Daemon,
    /// Where clients send queries.
    pub addr: String,
    pub port: u16,
}

impl Resolver {
    /// Waits until the resolver answers a query it answers itself (CHAOS version.bind),
    /// which causes no upstream traffic.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.daemon.assert_running();
            let out = dig(&self.addr, self.port, &["CH", "TXT", "version.bind"]);
            if out.contains("status:") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} on {}:{} not answering; last dig:\n{out}\n{}",
                    self.daemon.name,
                    self.addr,
                    self.port,
                    self.daemon.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn query(&self, queries: &[(&str, &str)]) -> Vec<DigResult> {
        run_queries(&self.addr, self.port, queries)
    }

    /// Stops the resolver with SIGTERM; both flush their dnstap output and send STOP.
    pub fn stop(&mut self) {
        let st = self.daemon.stop(Duration::from_secs(10));
        if st.is_none() {
            eprintln!("{} had to be killed", self.daemon.name);
        }
    }
}

/// The `dnsensor dnstap` child process, writing COF to a file.
pub struct Dnsensor {
    child: Option<Child>,
    pub sock: PathBuf,
    pub out: PathBuf,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
}

/// What a finished `dnsensor` left behind.
#[derive(Debug)]
pub struct DnsensorRun {
    pub status: ExitStatus,
    /// The output file's text.
    pub raw: String,
    /// Parsed COF lines.
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Dnsensor {
    /// Starts `dnsensor dnstap --listen unix:<dir>/dnstap.sock --output file:<dir>/out.ndjson
    /// --window 1 --sensor-id test` and waits for the socket to appear.
    pub fn start(dir: &Path) -> Dnsensor {
        Dnsensor::start_with(dir, &[])
    }

    /// Like [`Dnsensor::start`] with extra arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Dnsensor {
        let sock = dir.join("dnstap.sock");
        let out = dir.join("out.ndjson");
        let mut args: Vec<String> = vec![
            "dnstap".into(),
            "--listen".into(),
            format!("unix:{}", sock.display()),
            "--output".into(),
            format!("file:{}", out.display()),
        ];
        args.extend(["--window", "1", "--sensor-id", "test"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        Dnsensor::start_args(dir, sock, out, &args)
    }

    /// The process id, for tests that signal it themselves.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stderr_text(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The COF lines written so far (complete lines only).
    pub fn lines_so_far(&self) -> Vec<Value> {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut s);
        }
        // Ignore a trailing partial line.
        let complete = match s.rfind('\n') {
            Some(i) => &s[..=i],
            None => "",
        };
        parse_cof(complete)
    }

    /// Polls the output until `pred` holds for the lines so far, up to `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.lines_so_far()) {
                return true;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return pred(&self.lines_so_far());
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (up to `timeout`) for a run that ends by itself, such as `capture --read`, then
    /// finishes it as [`Dnsensor::finish`] does.
    pub fn finish_when_done(mut self, timeout: Duration) -> DnsensorRun {
        if let Some(c) = self.child.as_mut() {
            if wait_timeout(c, timeout).is_none() {
                panic!(
                    "dnsensor did not finish by itself within {timeout:?}:\n{}",
                    self.stderr_text()
                );
            }
        }
        self.finish()
    }

    /// Sends SIGTERM, waits for exit (it flushes the open window first) and reads the
    /// output. Panics if it does not exit within 15 s.
    pub fn finish(mut self) -> DnsensorRun {
        let mut child = self.child.take().expect("dnsensor already finished");
        let pid = child.id() as i64;
        let status = match child.try_wait() {
            Ok(Some(st)) => st,
            _ => {
                send_signal("TERM", pid);
                match wait_timeout(&mut child, Duration::from_secs(15)) {
                    Some(st) => st,
                    None => {
                        send_signal("KILL", -pid);
                        let _ = child.wait();
                        panic!(
                            "dnsensor did not exit within 15 s of SIGTERM:\n{}",
                            self.stderr_text()
                        );
                    }
                }
            }
        };
        let raw = fs::read_to_string(&self.out).unwrap_or_default();
        let stderr = self.stderr_text();
        let lines = parse_cof(&raw);
        DnsensorRun {
            status,
            raw,
            lines,
            stderr,
        }
    }
}

impl Drop for Dnsensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal("KILL", -(c.id() as i64));
            let _ = c.wait();
            if thread::panicking() {
                eprintln!("----- dnsensor stderr -----\n{}", self.stderr_text());
            }
        }
    }
}

impl Dnsensor {
    /// Starts `dnsensor <args>` exactly as given (no implied flags), for tests of the command
    /// line and configuration file. `sock` is the unix socket to wait for (it must come from
    /// `args` or the configuration file) and `out` the output file [`Dnsensor::finish`] reads.
    /// stdout/stderr go to `<dir>/dnsensor.stdout|.stderr`.
    pub fn start_args(dir: &Path, sock: PathBuf, out: PathBuf, args: &[String]) -> Dnsensor {
        let what = format!("create {}", sock.display());
        Dnsensor::start_until(dir, sock, out, args, &what, |d| d.sock.exists())
    }

    /// Starts `dnsensor <args>` and waits until its stderr contains `text` (a mode without a
    /// socket, such as `capture`, says when it is ready). `out` is the output file.
    pub fn start_logging(dir: &Path, out: PathBuf, args: &[String], text: &str) -> Dnsensor {
        let what = format!("log {text:?}");
        Dnsensor::start_until(dir, PathBuf::new(), out, args, &what, |d| {
            d.stderr_text().contains(text)
        })
    }

    fn start_until(
        dir: &Path,
        sock: PathBuf,
        out: PathBuf,
        args: &[String],
        what: &str,
        ready: impl Fn(&Dnsensor) -> bool,
    ) -> Dnsensor {
        let bin = env!("CARGO_BIN_EXE_dnsensor");
        let stderr_path = dir.join("dnsensor.stderr");
        let stdout_path = dir.join("dnsensor.stdout");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let mut d = Dnsensor {
            child: Some(child),
            sock,
            out,
            stderr_path,
            stdout_path,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ready(&d) {
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    d.child = None;
                    panic!(
                        "dnsensor {args:?} exited with {st} before it did {what}:\n{}",
                        d.stderr_text()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "dnsensor {args:?} did not {what} within 15 s:\n{}",
                    d.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        d
    }
}

/// Parses COF NDJSON. Panics on a line that is not a JSON object.
pub fn parse_cof(raw: &str) -> Vec<Value> {
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "output line is not a JSON object: {l}");
            v
        })
        .collect()
}

/// One COF line, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cof {
    pub rrname: String,
    pub rrtype: String,
    /// Sorted (as strings): never rely on the order on the wire.
    pub rdata: Vec<String>,
    pub bailiwick: Option<String>,
    pub time_first: u64,
    pub time_last: u64,
    pub count: u64,
    pub sensor_id: Option<String>,
}

impl Cof {
    /// Converts a parsed line; panics with the line on a missing or mistyped field.
    pub fn from_value(v: &Value) -> Cof {
        let s = |k: &str| -> String {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("`{k}` missing or not a string: {v}"))
                .to_string()
        };
        let n = |k: &str| -> u64 {
            v.get(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("`{k}` missing or not an unsigned integer: {v}"))
        };
        let mut rdata: Vec<String> = match v.get("rdata") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .unwrap_or_else(|| panic!("rdata item not a string: {v}"))
                        .to_string()
                })
                .collect(),
            // COF: a reader also accepts a single string.
            Some(Value::String(s)) => vec![s.clone()],
            _ => panic!("`rdata` missing or not an array of strings: {v}"),
        };
        rdata.sort();
        Cof {
            rrname: s("rrname"),
            rrtype: s("rrtype"),
            rdata,
            bailiwick: v.get("bailiwick").map(|b| {
                b.as_str()
                    .unwrap_or_else(|| panic!("`bailiwick` not a string: {v}"))
                    .to_string()
            }),
            time_first: n("time_first"),
            time_last: n("time_last"),
            count: v.get("count").map(|_| n("count")).unwrap_or(0),
            sensor_id: v
                .get("sensor_id")
                .map(|x| x.as_str().unwrap_or("<not a string>").to_string()),
        }
    }
}

/// An RRset key as the tests compare it: (rrname, rrtype, bailiwick, sorted rdata).
pub type Key = (String, String, String, Vec<String>);

/// All lines of one key, merged: a key can appear in several windows.
#[derive(Debug, Clone)]
pub struct Merged {
    pub lines: usize,
    pub count: u64,
    pub time_first: u64,
    pub time_last: u64,
}

/// Merges COF lines by key.
pub fn merge(lines: &[Cof]) -> BTreeMap<Key, Merged> {
    let mut m: BTreeMap<Key, Merged> = BTreeMap::new();
    for c in lines {
        let key = (
            c.rrname.clone(),
            c.rrtype.clone(),
            c.bailiwick.clone().unwrap_or_default(),
            c.rdata.clone(),
        );
        let e = m.entry(key).or_insert(Merged {
            lines: 0,
            count: 0,
            time_first: u64::MAX,
            time_last: 0,
        });
        e.lines += 1;
        e.count += c.count;
        e.time_first = e.time_first.min(c.time_first);
        e.time_last = e.time_last.max(c.time_last);
    }
    m
}

/// Builds a key from literals.
pub fn key(rrname: &str, rrtype: &str, bailiwick: &str, rdata: &[&str]) -> Key {
    let mut r: Vec<String> = rdata.iter().map(|s| s.to_string()).collect();
    r.sort();
    (
        rrname.to_string(),
        rrtype.to_string(),
        bailiwick.to_string(),
        r,
    )
}

/// Runs a daemon's own configuration checker on `conf`, when it is installed, so that a broken
/// template fails with the checker's message instead of a daemon that never answers.
fn check_conf(checker: &str, conf: &Path) {
    if let Ok(check) = which_optional(checker) {
        let out = Command::new(check)
            .arg(conf)
            .output()
            .unwrap_or_else(|e| panic!("{checker}: {e}"));
        assert!(
            out.status.success(),
            "{checker} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
