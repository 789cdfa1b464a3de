//! Packaging tests: the annotated default configuration, the systemd units' hardening, and the
//! Debian package built, installed with dpkg, checked and purged (as root, on the test machine).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dnsensor");
const UNITS: [&str; 4] = [
    "dnsensor-dnstap.service",
    "dnsensor-capture@.service",
    "dnsensor-proxy.service",
    "dnsensor-collector.service",
];
/// The highest overall exposure `systemd-analyze security` may give a unit.
const MAX_EXPOSURE: f64 = 2.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a program; a missing one fails the test with the Debian package that has it.
fn run(program: &str, args: &[&str], package: &str) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (Debian package {package}; scripts/install-deps.sh): {e}")
        })
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a program that must succeed; returns its stdout.
fn ok(program: &str, args: &[&str], package: &str) -> String {
    let out = run(program, args, package);
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn default_config_passes_check_config() {
    let path = repo().join("packaging/dnsensor.toml");
    let out = run(
        BIN,
        &["check-config", "--config", path.to_str().unwrap()],
        "-",
    );
    assert!(
        out.status.success(),
        "check-config rejects packaging/dnsensor.toml:\n{}",
        text(&out)
    );
}

/// The lines "# key = value" of the annotated file with the "# " removed: every documented
/// key set at once.
fn uncommented(config: &str) -> String {
    config
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key_line(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_key_line(s: &str) -> bool {
    let Some((key, _)) = s.split_once(" = ") else {
        return false;
    };
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The keys `src/config.rs` accepts, by table ("" for the top level): the `pub` fields of
/// `FileConfig`, and of the struct behind each of its table fields (`dnstap: DnstapSection`).
fn accepted_keys() -> BTreeMap<String, BTreeSet<String>> {
    let source = std::fs::read_to_string(repo().join("src/config.rs")).unwrap();
    let fields = |name: &str| -> Vec<(String, String)> {
        let start = source
            .find(&format!("pub struct {name} {{"))
            .unwrap_or_else(|| panic!("src/config.rs has no `pub struct {name}`"));
        source[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split_once(':'))
            .map(|(n, t)| {
                (
                    n.trim().replace('_', "-"),
                    t.trim().trim_end_matches(',').into(),
                )
            })
            .collect()
    };
    let mut keys = BTreeMap::new();
    let mut top = BTreeSet::new();
    for (name, ty) in fields("FileConfig") {
        if source.contains(&format!("pub struct {ty} {{")) {
            keys.insert(name, fields(&ty).into_iter().map(|(n, _)| n).collect());
        } else {
            top.insert(name);
        }
    }
    keys.insert(String::new(), top);
    keys
}

fn table_name(section: &str) -> String {
    if section.is_empty() {
        "the top level".into()
    } else {
        format!("[{section}]")
    }
}

#[test]
fn default_config_documents_every_key() {
    let config = std::fs::read_to_string(repo().join("packaging/dnsensor.toml")).unwrap();
    let all = uncommented(&config);
    let table: toml::Table = all.parse().unwrap_or_else(|e| {
        panic!("packaging/dnsensor.toml with every \"# key = value\" line uncommented is not TOML: {e}")
    });
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, value) in &table {
        match value.as_table() {
            Some(t) => {
                documented.insert(key.clone(), t.keys().cloned().collect());
            }
            None => {
                documented
                    .entry(String::new())
                    .or_default()
                    .insert(key.clone());
            }
        }
    }
    let accepted = accepted_keys();
    let mut problems = Vec::new();
    for (section, keys) in &accepted {
        let have = documented.get(section).cloned().unwrap_or_default();
        for key in keys.difference(&have) {
            problems.push(format!(
                "key `{key}` of {} is not documented in packaging/dnsensor.toml \
                 (add it as a \"# {key} = default\" line with a comment)",
                table_name(section)
            ));
        }
    }
    for (section, keys) in &documented {
        let known = accepted.get(section).cloned().unwrap_or_default();
        for key in keys.difference(&known) {
            problems.push(format!(
                "packaging/dnsensor.toml documents `{key}` in {}, which src/config.rs does not accept",
                table_name(section)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // dnsensor itself must parse every documented key and value. The values may still fail the
    // checks after parsing, in exactly these ways: an interface and files together, and (unless
    // the package is installed) the dnstap socket's directory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &all).unwrap();
    let out = run(
        BIN,
        &["check-config", "--config", path.to_str().unwrap()],
        "-",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = [
        "[capture] interface: give either an interface or files to read, not both",
        "[dnstap] listen: cannot listen on unix:/run/dnsensor/dnstap.sock: directory /run/dnsensor does not exist",
    ];
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| !expected.iter().any(|e| l.ends_with(e)))
        .collect();
    assert!(
        unexpected.is_empty() && stderr.contains(expected[0]),
        "dnsensor cannot parse the documented keys of packaging/dnsensor.toml:\n{}",
        text(&out)
    );
}

/// `systemd-analyze security --offline=true` on one unit file: its overall exposure.
fn exposure(unit: &Path) -> f64 {
    let out = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            "--no-pager",
            unit.to_str().unwrap(),
        ],
        "systemd",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level for {}:\n{}", unit.display(), text(&out)))
}

fn unit_lines(unit: &str) -> Vec<String> {
    let body = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn units_are_hardened() {
    let mut problems = Vec::new();
    for unit in UNITS {
        let score = exposure(&repo().join("systemd").join(unit));
        if score > MAX_EXPOSURE {
            problems.push(format!("{unit}: exposure {score} is above {MAX_EXPOSURE}"));
        }
        let lines = unit_lines(unit);
        let capability = match unit {
            "dnsensor-proxy.service" => "CAP_NET_BIND_SERVICE",
            "dnsensor-capture@.service" => "CAP_NET_RAW",
            _ => "",
        };
        let required = [
            "Type=notify".to_string(),
            "NotifyAccess=main".into(),
            "User=dnsensor".into(),
            "Group=dnsensor".into(),
            "StateDirectory=dnsensor".into(),
            format!("CapabilityBoundingSet={capability}"),
            format!("AmbientCapabilities={capability}"),
            "NoNewPrivileges=yes".into(),
            "ProtectSystem=strict".into(),
            "ProtectHome=yes".into(),
            "PrivateTmp=yes".into(),
            "MemoryDenyWriteExecute=yes".into(),
            "SystemCallFilter=@system-service".into(),
        ];
        for line in &required {
            if !lines.contains(line) {
                problems.push(format!("{unit}: no `{line}`"));
            }
        }
        if !lines
            .iter()
            .any(|l| l.starts_with("RestrictAddressFamilies="))
        {
            problems.push(format!("{unit}: no RestrictAddressFamilies="));
        }
        let exec = lines
            .iter()
            .find(|l| l.starts_with("ExecStart="))
            .cloned()
            .unwrap_or_default();
        let mode = unit
            .trim_start_matches("dnsensor-")
            .trim_end_matches(".service")
            .trim_end_matches('@');
        let prefix =
            format!("ExecStart=/usr/bin/dnsensor {mode} --config /etc/dnsensor/dnsensor.toml");
        if !exec.starts_with(&prefix) {
            problems.push(format!("{unit}: ExecStart= does not start with `{prefix}`"));
        }
    }
    // The proxy's recording threads move themselves to SCHED_IDLE: sched_setscheduler, which
    // the `~@resources` line denies, must be allowed again after it.
    let proxy = unit_lines("dnsensor-proxy.service");
    let deny = proxy
        .iter()
        .position(|l| l == "SystemCallFilter=~@privileged @resources");
    let allow = proxy
        .iter()
        .position(|l| l == "SystemCallFilter=sched_setscheduler");
    if !matches!((deny, allow), (Some(d), Some(a)) if a > d) {
        problems.push(
            "dnsensor-proxy.service: no `SystemCallFilter=sched_setscheduler` after the line that denies @resources".into(),
        );
    }
    let dnstap = unit_lines("dnsensor-dnstap.service");
    for line in ["RuntimeDirectory=dnsensor", "RuntimeDirectoryMode=0750"] {
        if !dnstap.iter().any(|l| l == line) {
            problems.push(format!("dnsensor-dnstap.service: no `{line}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Purges the package when dropped, so a failed run leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "dnsensor"], "dpkg");
    }
}

fn dpkg_status() -> String {
    let out = run(
        "dpkg-query",
        &["--show", "--showformat=${db:Status-Abbrev}", "dnsensor"],
        "dpkg",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn md5(path: &Path) -> String {
    ok("md5sum", &[path.to_str().unwrap()], "coreutils")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Mode (permission bits), owner and group of a path, as `stat` prints them.
fn stat(path: &str) -> String {
    ok("stat", &["--format=%a %U %G", path], "coreutils")
        .trim()
        .to_string()
}

#[test]
fn deb_installs_checks_and_purges() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the packaging test installs a .deb with dpkg: run it as root (scripts/test.sh does in CI)"
    );
    // The package is built into the target directory this test binary lives in.
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let build = Command::new("bash")
        .arg(repo().join("scripts/build-deb.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cannot run bash scripts/build-deb.sh");
    assert!(
        build.status.success(),
        "scripts/build-deb.sh failed:\n{}",
        text(&build)
    );
    let stdout = String::from_utf8_lossy(&build.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "scripts/build-deb.sh did not print a .deb:\n{}",
        text(&build)
    );

    // A leftover from an interrupted run would hide what this install does.
    if !dpkg_status().is_empty() && !dpkg_status().starts_with("un") {
        ok("dpkg", &["--purge", "dnsensor"], "dpkg");
    }
    let guard = Installed;
    ok("dpkg", &["--install", deb.to_str().unwrap()], "dpkg");
    assert_eq!(
        dpkg_status(),
        "ii",
        "dnsensor is not installed after dpkg -i"
    );

    let mut problems = Vec::new();
    let listed = ok("dpkg", &["--listfiles", "dnsensor"], "dpkg");
    let files = [
        "/usr/bin/dnsensor",
        "/etc/dnsensor/dnsensor.toml",
        "/lib/systemd/system/dnsensor-dnstap.service",
        "/lib/systemd/system/dnsensor-capture@.service",
        "/lib/systemd/system/dnsensor-proxy.service",
        "/lib/systemd/system/dnsensor-collector.service",
        "/usr/share/man/man8/dnsensor.8.gz",
        "/usr/share/bash-completion/completions/dnsensor",
        "/usr/share/zsh/vendor-completions/_dnsensor",
        "/usr/share/fish/vendor_completions.d/dnsensor.fish",
        "/usr/share/doc/dnsensor/README.md",
    ];
    for file in files {
        if !Path::new(file).is_file() {
            problems.push(format!("{file} is not installed"));
        }
        if !listed.lines().any(|l| l == file) {
            problems.push(format!("{file} is not in dpkg -L dnsensor"));
        }
    }
    let expect_mode = |path: &str, want: &str, problems: &mut Vec<String>| {
        let got = stat(path);
        if got != want {
            problems.push(format!(
                "{path}: mode, owner, group are `{got}`, not `{want}`"
            ));
        }
    };
    expect_mode("/usr/bin/dnsensor", "755 root root", &mut problems);
    expect_mode(
        "/etc/dnsensor/dnsensor.toml",
        "644 root root",
        &mut problems,
    );
    for unit in UNITS {
        let installed = format!("/lib/systemd/system/{unit}");
        if md5(Path::new(&installed)) != md5(&repo().join("systemd").join(unit)) {
            problems.push(format!("{installed} differs from systemd/{unit}"));
        }
    }
    let page = ok("zcat", &["/usr/share/man/man8/dnsensor.8.gz"], "gzip");
    if !page.lines().any(|l| l.starts_with(".TH DNSENSOR 8")) || !page.contains("DNSENSOR DNSTAP") {
        problems.push(format!(
            "dnsensor.8.gz is not the dnsensor(8) page:\n{}",
            page.lines().take(5).collect::<Vec<_>>().join("\n")
        ));
    }
    let completion = std::fs::read_to_string("/usr/share/bash-completion/completions/dnsensor")
        .unwrap_or_default();
    if !completion.contains("check-config") {
        problems.push("the bash completion does not know check-config".into());
    }

    // The user and group, and the state directory.
    let passwd = ok("getent", &["passwd", "dnsensor"], "libc-bin");
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields
        .get(2)
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX);
    if !(1..1000).contains(&uid) {
        problems.push(format!("user dnsensor is not a system user: {passwd}"));
    }
    if fields.get(5) != Some(&"/var/lib/dnsensor") || fields.get(6) != Some(&"/usr/sbin/nologin") {
        problems.push(format!(
            "user dnsensor: home or shell is not /var/lib/dnsensor, /usr/sbin/nologin: {passwd}"
        ));
    }
    ok("getent", &["group", "dnsensor"], "libc-bin");
    expect_mode("/var/lib/dnsensor", "750 dnsensor dnsensor", &mut problems);

    // The binary runs, and the installed configuration is valid.
    let version = ok("/usr/bin/dnsensor", &["--version"], "dnsensor");
    if version.trim() != format!("dnsensor {}", env!("CARGO_PKG_VERSION")) {
        problems.push(format!("dnsensor --version says `{}`", version.trim()));
    }
    ok(
        "/usr/bin/dnsensor",
        &["check-config", "--config", "/etc/dnsensor/dnsensor.toml"],
        "dnsensor",
    );

    // The installed units: systemd-analyze verify is clean (it also checks that the binary
    // and the man page of Documentation= exist), and each one's exposure is low.
    let mut verify: Vec<String> = UNITS
        .iter()
        .filter(|u| !u.contains('@'))
        .map(|u| format!("/lib/systemd/system/{u}"))
        .collect();
    verify.push("dnsensor-capture@eth0.service".into());
    let mut args = vec!["verify", "--no-pager"];
    args.extend(verify.iter().map(String::as_str));
    let out = run("systemd-analyze", &args, "systemd");
    if !out.status.success() || !out.stderr.is_empty() || !out.stdout.is_empty() {
        problems.push(format!(
            "systemd-analyze verify is not clean:\n{}",
            text(&out)
        ));
    }
    for unit in UNITS {
        let score = exposure(Path::new(&format!("/lib/systemd/system/{unit}")));
        if score > MAX_EXPOSURE {
            problems.push(format!("{unit}: exposure {score} is above {MAX_EXPOSURE}"));
        }
    }

    // The configuration is a conffile: listed with the shipped file's md5, and a local change
    // survives reinstalling and removing the package; only a purge deletes it.
    let conf = "/etc/dnsensor/dnsensor.toml";
    let conffiles = ok(
        "dpkg-query",
        &["--show", "--showformat=${Conffiles}", "dnsensor"],
        "dpkg",
    );
    let shipped = md5(&repo().join("packaging/dnsensor.toml"));
    if !conffiles
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == [conf, shipped.as_str()])
    {
        problems.push(format!(
            "{conf} is not a conffile with md5 {shipped}: {conffiles:?}"
        ));
    }
    let local = format!(
        "{}\n# a local change\n",
        std::fs::read_to_string(conf).unwrap()
    );
    std::fs::write(conf, &local).unwrap();
    ok(
        "dpkg",
        &["--install", "--force-confold", deb.to_str().unwrap()],
        "dpkg",
    );
    if std::fs::read_to_string(conf).unwrap_or_default() != local {
        problems.push(format!(
            "reinstalling the package replaced the changed {conf}"
        ));
    }
    std::fs::write("/var/lib/dnsensor/records.json", "{}\n").unwrap();
    ok("dpkg", &["--remove", "dnsensor"], "dpkg");
    if dpkg_status() != "rc" {
        problems.push(format!(
            "after dpkg -r the status is `{}`, not rc",
            dpkg_status()
        ));
    }
    if Path::new("/usr/bin/dnsensor").exists() {
        problems.push("dpkg -r left /usr/bin/dnsensor".into());
    }
    if std::fs::read_to_string(conf).unwrap_or_default() != local {
        problems.push(format!("dpkg -r did not keep the changed {conf}"));
    }

    // Purge: nothing of the package is left but the user and group (Debian custom).
    let out = run("dpkg", &["--purge", "dnsensor"], "dpkg");
    if !out.status.success() || String::from_utf8_lossy(&out.stderr).contains("warning") {
        problems.push(format!("dpkg --purge is not clean:\n{}", text(&out)));
    }
    std::mem::forget(guard);
    let status = dpkg_status();
    if !(status.is_empty() || status.starts_with("un")) {
        problems.push(format!(
            "after the purge dpkg still knows dnsensor: `{status}`"
        ));
    }
    for path in files
        .iter()
        .copied()
        .chain(["/etc/dnsensor", "/var/lib/dnsensor"])
    {
        if Path::new(path).exists() {
            problems.push(format!("the purge left {path}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
