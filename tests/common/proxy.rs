//! The `dnsensor proxy` test world: NSD serving `proxy.test.` and the DNSSEC-signed `signed.test.`
//! (`tests/world/proxy/`), a raw DNS client over UDP and TCP, dig/kdig runs, the proxy child.

// Every test of the proxy compares what a client gets through the proxy with what it gets from
// NSD directly: `Query` builds the bytes, `udp_exchange`/`tcp_exchange` send them, and
// `assert_same_answer` wants the two answers byte-equal except the 16-bit ID, which must be the
// client's own. Addresses are given by each test (`127.53.W.x`, port 53), one set per test, so
// that tests and test binaries run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::expect::tokens;
use super::wire::wire_name;
use super::{render_file, require_program, Daemon, Dnsensor, DnsensorRun};

/// The plain test zone.
pub const PROXY_ZONE: &str = "proxy.test.";
/// The zone signed at test time.
pub const SIGNED_ZONE: &str = "signed.test.";

pub const NOERROR: u8 = 0;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const REFUSED: u8 = 5;

pub const TYPE_OPT: u16 = 41;
pub const TYPE_RRSIG: u16 = 46;

const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("OPT", 41),
    ("DS", 43),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
];

/// The type number of a mnemonic (only the types these tests use).
pub fn rtype_code(name: &str) -> u16 {
    TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("harness: unknown type {name}"))
}

/// The mnemonic of a type number (`TYPE<n>` for others).
pub fn rtype_name(code: u16) -> String {
    TYPES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("TYPE{code}"))
}

/// `127.53.<w>.<host>`.
pub fn addr(w: u8, host: u8) -> String {
    format!("127.53.{w}.{host}")
}

/// `<ip>:53`.
pub fn port53(ip: &str) -> String {
    format!("{ip}:53")
}

// ---------------------------------------------------------------------------------------------
// The upstream: one NSD serving both test zones.

/// One NSD instance serving `proxy.test.` and `signed.test.` on `<addr>:53`. Stopped on drop.
pub struct Upstream {
    /// The address NSD listens on (port 53).
    pub addr: String,
    pub dir: PathBuf,
    nsd: Daemon,
}

impl Upstream {
    /// Renders the zones into `dir`, signs `signed.test.`, starts NSD on `addr:53` and waits
    /// until it answers authoritatively for both zones.
    pub fn start(dir: &Path, addr: &str) -> Upstream {
        let nsd = require_program("nsd", "nsd");
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("proxy.test.zone"), proxy_zone_text()).unwrap();
        let signed = sign_zone(
            dir,
            SIGNED_ZONE,
            &render_file("proxy/signed.test.zone", &[]),
        );
        let mut zones = String::new();
        for (zone, file) in [
            (PROXY_ZONE, "proxy.test.zone".to_string()),
            (SIGNED_ZONE, signed),
        ] {
            let _ = writeln!(
                zones,
                "zone:\n    name: \"{zone}\"\n    zonefile: \"{file}\"\n"
            );
        }
        let conf = render_file(
            "nsd.conf.tmpl",
            &[
                ("DIR", dir.to_str().unwrap()),
                ("IP_ADDRESSES", &format!("    ip-address: {addr}")),
                ("ZONES", &zones),
            ],
        );
        let conf_path = dir.join("nsd.conf");
        fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(nsd);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        let nsd = Daemon::spawn(&format!("nsd-{addr}"), cmd, dir, &[dir.join("nsd.log")]);
        let mut up = Upstream {
            addr: addr.to_string(),
            dir: dir.to_path_buf(),
            nsd,
        };
        up.wait_ready();
        up
    }

    fn wait_ready(&mut self) {
        let server = self.server();
        for zone in [PROXY_ZONE, SIGNED_ZONE] {
            let q = Query::new(zone, "SOA").norec().encode(0x5150);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = udp_exchange("127.0.0.1", &server, &q, Duration::from_millis(300));
                if let Ok(r) = r {
                    let h = Header::parse(&r);
                    if h.rcode() == NOERROR && h.aa() && h.an == 1 {
                        break;
                    }
                }
                // An NSD that failed (address in use, bad zone) exits: fail fast.
                self.nsd.assert_running();
                if Instant::now() > deadline {
                    panic!(
                        "NSD on {server} does not serve {zone}\n{}",
                        self.nsd.log_text()
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `<addr>:53`.
    pub fn server(&self) -> String {
        port53(&self.addr)
    }

    pub fn log_text(&self) -> String {
        self.nsd.log_text()
    }
}

/// The rendered `proxy.test.` zone file.
pub fn proxy_zone_text() -> String {
    render_file("proxy/proxy.test.zone", &[])
}

/// Signs `zone` (given as zone file text) in `dir` with a fresh ECDSAP256SHA256 KSK and ZSK
/// (`ldns-keygen`) and `ldns-signzone` (NSEC, default validity of four weeks from now). Returns
/// the signed file's name inside `dir`.
pub fn sign_zone(dir: &Path, zone: &str, text: &str) -> String {
    let keygen = require_program("ldns-keygen", "ldnsutils");
    let signzone = require_program("ldns-signzone", "ldnsutils");
    let file = format!("{}.zone", zone.trim_end_matches('.'));
    fs::write(dir.join(&file), text).unwrap();
    let run = |cmd: &mut Command| -> String {
        let out = cmd
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let zone_arg = zone.trim_end_matches('.');
    let zsk = run(Command::new(&keygen).args(["-a", "ECDSAP256SHA256", zone_arg]));
    let ksk = run(Command::new(&keygen).args(["-a", "ECDSAP256SHA256", "-k", zone_arg]));
    run(Command::new(&signzone).args([&file, &zsk, &ksk]));
    let signed = format!("{file}.signed");
    assert!(
        dir.join(&signed).is_file(),
        "ldns-signzone wrote no {signed} in {}",
        dir.display()
    );
    signed
}

// ---------------------------------------------------------------------------------------------
// Zone files as the source of truth.

/// (owner, type) → sorted rdata in presentation form, from a zone file in the canonical form of
/// `tests/world/proxy/` (absolute lowercase names, `owner ttl IN type rdata…` on one line).
pub type RrSets = BTreeMap<(String, String), Vec<String>>;

pub fn zone_rrsets(text: &str) -> RrSets {
    let mut sets = RrSets::new();
    for line in text.lines() {
        let t = tokens(line);
        if t.is_empty() || t[0].starts_with('$') {
            continue;
        }
        assert!(
            t.len() >= 5 && t[2] == "IN" && t[0].ends_with('.'),
            "harness: unsupported zone line: {line}"
        );
        let e = sets
            .entry((t[0].to_ascii_lowercase(), t[3].clone()))
            .or_default();
        e.push(t[4..].join(" "));
        e.sort();
    }
    sets
}

// ---------------------------------------------------------------------------------------------
// DNS messages, by hand.

/// A query, encoded with [`Query::encode`].
#[derive(Debug, Clone)]
pub struct Query {
    pub qname: String,
    pub qtype: u16,
    /// RD flag (default on, as stub clients send).
    pub rd: bool,
    /// EDNS OPT record: (UDP payload size, DO bit).
    pub edns: Option<(u16, bool)>,
}

impl Query {
    /// `qname qtype`, RD=1, no EDNS.
    pub fn new(qname: &str, qtype: &str) -> Query {
        Query {
            qname: qname.to_string(),
            qtype: rtype_code(qtype),
            rd: true,
            edns: None,
        }
    }

    pub fn norec(mut self) -> Query {
        self.rd = false;
        self
    }

    /// With an OPT record: UDP payload size `bufsize`, DO bit `dnssec_ok`.
    pub fn edns(mut self, bufsize: u16, dnssec_ok: bool) -> Query {
        self.edns = Some((bufsize, dnssec_ok));
        self
    }

    pub fn encode(&self, id: u16) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(if self.rd { 0x0100u16 } else { 0 }).to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(self.edns.is_some() as u16).to_be_bytes());
        b.extend_from_slice(&wire_name(&self.qname));
        b.extend_from_slice(&self.qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        if let Some((bufsize, dnssec_ok)) = self.edns {
            b.push(0); // root owner
            b.extend_from_slice(&TYPE_OPT.to_be_bytes());
            b.extend_from_slice(&bufsize.to_be_bytes());
            // extended rcode 0, version 0, flags (DO = top bit)
            b.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
            b.extend_from_slice(&0u16.to_be_bytes());
        }
        b
    }

    /// A short label for messages: `www.proxy.test. A +edns(1232,do) norec`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.qname, rtype_name(self.qtype));
        if let Some((size, dnssec_ok)) = self.edns {
            let _ = write!(s, " +edns({size}{})", if dnssec_ok { ",do" } else { "" });
        }
        if !self.rd {
            s.push_str(" norec");
        }
        s
    }
}

/// The fixed header of a DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qd: u16,
    pub an: u16,
    pub ns: u16,
    pub ar: u16,
}

impl Header {
    /// Panics (with the bytes) on a message shorter than a header.
    pub fn parse(msg: &[u8]) -> Header {
        assert!(
            msg.len() >= 12,
            "DNS message shorter than a header: {}",
            hex(msg)
        );
        let w = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Header {
            id: w(0),
            flags: w(2),
            qd: w(4),
            an: w(6),
            ns: w(8),
            ar: w(10),
        }
    }

    pub fn qr(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    pub fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    pub fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    pub fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// One resource record of a parsed message (what the tests need of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrInfo {
    /// 1 answer, 2 authority, 3 additional.
    pub section: u8,
    /// Lowercase, absolute.
    pub owner: String,
    pub rtype: u16,
}

/// Reads a possibly compressed name at `pos`; returns it and the position after it in place.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or("name runs past the end")? as usize;
        if len & 0xc0 == 0xc0 {
            let lo = *msg.get(pos + 1).ok_or("pointer runs past the end")? as usize;
            end.get_or_insert(pos + 2);
            jumps += 1;
            if jumps > 64 {
                return Err("compression loop".into());
            }
            pos = ((len & 0x3f) << 8) | lo;
        } else if len == 0 {
            if name.is_empty() {
                name.push('.');
            }
            return Ok((name, end.unwrap_or(pos + 1)));
        } else if len < 64 {
            let label = msg
                .get(pos + 1..pos + 1 + len)
                .ok_or("label past the end")?;
            name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
            name.push('.');
            pos += 1 + len;
        } else {
            return Err(format!("bad label length byte {len:#x}"));
        }
    }
}

/// The records of a message, OPT included, in order.
pub fn parse_records(msg: &[u8]) -> Result<Vec<RrInfo>, String> {
    let h = Header::parse(msg);
    let mut pos = 12;
    for _ in 0..h.qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    let sections = [(1u8, h.an), (2, h.ns), (3, h.ar)];
    for (section, n) in sections {
        for _ in 0..n {
            let (owner, p) = read_name(msg, pos)?;
            let fixed = msg.get(p..p + 10).ok_or("record header past the end")?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
            pos = p + 10 + rdlen;
            if pos > msg.len() {
                return Err("rdata past the end".into());
            }
            out.push(RrInfo {
                section,
                owner,
                rtype,
            });
        }
    }
    if pos != msg.len() {
        return Err(format!("{} trailing bytes", msg.len() - pos));
    }
    Ok(out)
}

/// The distinct (owner, type) RRsets of a response, OPT left out: what a recorder of this
/// response sees.
pub fn response_rrsets(msg: &[u8]) -> BTreeSet<(String, String)> {
    parse_records(msg)
        .unwrap_or_else(|e| panic!("unparsable response ({e}): {}", hex(msg)))
        .into_iter()
        .filter(|r| r.rtype != TYPE_OPT)
        .map(|r| (r.owner, rtype_name(r.rtype)))
        .collect()
}

/// The number of records of a response, OPT left out.
pub fn response_record_count(msg: &[u8]) -> u64 {
    parse_records(msg)
        .unwrap_or_else(|e| panic!("unparsable response ({e}): {}", hex(msg)))
        .iter()
        .filter(|r| r.rtype != TYPE_OPT)
        .count() as u64
}

/// Hex, 32 bytes a line, for failure messages.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in b.chunks(32).enumerate() {
        let _ = write!(s, "\n  {:04x}:", i * 32);
        for x in chunk {
            let _ = write!(s, " {x:02x}");
        }
    }
    s
}

/// A one-line summary of a message for failure messages.
pub fn describe(msg: &[u8]) -> String {
    if msg.len() < 12 {
        return format!("<{} bytes, no header>", msg.len());
    }
    let h = Header::parse(msg);
    format!(
        "id={:#06x} qr={} opcode={} aa={} tc={} rd={} rcode={} qd={} an={} ns={} ar={} len={}",
        h.id,
        h.qr() as u8,
        h.opcode(),
        h.aa() as u8,
        h.tc() as u8,
        h.rd() as u8,
        h.rcode(),
        h.qd,
        h.an,
        h.ns,
        h.ar,
        msg.len()
    )
}

/// Panics unless `got` carries the client's `id` in bytes 0-1 and equals `want` in every other
/// byte (the forwarding is byte-transparent).
pub fn assert_same_answer(what: &str, got: &[u8], id: u16, want: &[u8]) {
    if let Some(msg) = answer_difference(got, id, want) {
        panic!("{what}: {msg}");
    }
}

/// [`assert_same_answer`] as a check: `None` when the answers agree, else what differs.
pub fn answer_difference(got: &[u8], id: u16, want: &[u8]) -> Option<String> {
    let got_id = got.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let same_rest = got.len() == want.len() && got.get(2..) == want.get(2..);
    if got_id == Some(id) && same_rest {
        return None;
    }
    let mut msg = String::new();
    if got_id != Some(id) {
        let _ = write!(msg, "ID {got_id:x?}, want the client's {id:#06x}; ");
    }
    if !same_rest {
        let first = got
            .iter()
            .zip(want)
            .skip(2)
            .position(|(a, b)| a != b)
            .map(|p| p + 2)
            .unwrap_or(got.len().min(want.len()));
        let _ = write!(
            msg,
            "bytes differ from the direct answer (first at offset {first}, lengths {} vs {})",
            got.len(),
            want.len()
        );
    }
    let _ = write!(
        msg,
        "\n  through the proxy: {}{}\n  direct:            {}{}",
        describe(got),
        hex(got),
        describe(want),
        hex(want)
    );
    Some(msg)
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// Sends `msg` over UDP from `<src_ip>:<any port>` to `server` and returns the first datagram
/// that comes back from it within `timeout`.
pub fn udp_exchange(
    src_ip: &str,
    server: &str,
    msg: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let sock = UdpSocket::bind((src_ip, 0))?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send(msg)?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Connects over TCP (the kernel picks the source, 127.0.0.1 for 127.0.0.0/8 servers).
pub fn tcp_connect(server: &str, timeout: Duration) -> io::Result<TcpStream> {
    let sa: SocketAddr = server
        .parse()
        .unwrap_or_else(|e| panic!("bad address {server}: {e}"));
    let s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The 2-byte length prefix and the message.
pub fn tcp_frame(msg: &[u8]) -> Vec<u8> {
    let mut b = (msg.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(msg);
    b
}

/// Reads one length-prefixed message.
pub fn tcp_read_msg(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// One query over a fresh TCP connection.
pub fn tcp_exchange(server: &str, msg: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut s = tcp_connect(server, timeout)?;
    s.write_all(&tcp_frame(msg))?;
    tcp_read_msg(&mut s)
}

/// UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// `query` with `id` to `server` over `transport` from 127.0.0.1; panics with `what` on a
/// timeout or an error (5 s).
pub fn ask(what: &str, transport: Transport, server: &str, query: &Query, id: u16) -> Vec<u8> {
    let msg = query.encode(id);
    let t = Duration::from_secs(5);
    let r = match transport {
        Transport::Udp => udp_exchange("127.0.0.1", server, &msg, t),
        Transport::Tcp => tcp_exchange(server, &msg, t),
    };
    r.unwrap_or_else(|e| {
        panic!(
            "{what}: {} over {transport:?} to {server}: no answer: {e}",
            query.label()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// dig and kdig.

/// Runs `dig @server -p 53 +tries=1 +time=3 +nocookie <args>` from the default source and
/// returns stdout and stderr, concatenated.
pub fn dig_text(server_ip: &str, args: &[&str]) -> String {
    let dig = require_program("dig", "bind9-dnsutils");
    let out = Command::new(dig)
        .arg(format!("@{server_ip}"))
        .args(["-p", "53", "+tries=1", "+time=3", "+nocookie"])
        .args(args)
        .output()
        .expect("run dig");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `kdig @server -p 53 +retry=0 +timeout=3 +nocookie <args>`; stdout and stderr.
pub fn kdig_text(server_ip: &str, args: &[&str]) -> String {
    let kdig = require_program("kdig", "knot-dnsutils");
    let out = Command::new(kdig)
        .arg(format!("@{server_ip}"))
        .args(["-p", "53", "+retry=0", "+timeout=3", "+nocookie"])
        .args(args)
        .output()
        .expect("run kdig");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// dig or kdig output with everything that legitimately differs between two runs against two
/// servers taken out: the server's address (→ `SERVER`), the message ID (→ `ID`), dig's
/// `Query time` and `WHEN` lines, kdig's `Time` line and the duration in its `From` line.
pub fn normalise_dig(text: &str, server_ip: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with(";; Query time:")
            || line.starts_with(";; WHEN:")
            || line.starts_with(";; Time ")
        {
            continue;
        }
        let mut l = line.replace(server_ip, "SERVER");
        if l.starts_with(";; From ") {
            if let Some(i) = l.find(" in ") {
                l.truncate(i);
            }
        }
        out.push_str(&replace_id(&l));
        out.push('\n');
    }
    out
}

/// `id: 12345` → `id: ID`.
fn replace_id(line: &str) -> String {
    let Some(i) = line.find("id: ") else {
        return line.to_string();
    };
    let start = i + 4;
    let digits = line[start..]
        .bytes()
        .take_while(|b| b.is_ascii_digit())
        .count();
    format!("{}ID{}", &line[..start], &line[start + digits..])
}

// ---------------------------------------------------------------------------------------------
// The proxy.

/// Starts `dnsensor proxy --listen L… --upstream U… --output file:<dir>/out.ndjson --window 1
/// --sensor-id test <extra>` and waits for `proxy: ready` on its stderr. stderr and stdout go to
/// `<dir>/dnsensor.stderr|.stdout`; give every proxy its own `dir`.
pub fn start_proxy(dir: &Path, listen: &[&str], upstreams: &[&str], extra: &[&str]) -> Dnsensor {
    fs::create_dir_all(dir).unwrap();
    let out = dir.join("out.ndjson");
    let mut args: Vec<String> = vec!["proxy".into()];
    for l in listen {
        args.extend(["--listen".to_string(), l.to_string()]);
    }
    for u in upstreams {
        args.extend(["--upstream".to_string(), u.to_string()]);
    }
    args.extend([
        "--output".to_string(),
        format!("file:{}", out.display()),
        "--window".into(),
        "1".into(),
        "--sensor-id".into(),
        "test".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Dnsensor::start_logging(dir, out, &args, "proxy: ready")
}

/// Stops the proxy and checks it exits successfully after SIGTERM.
pub fn finish_proxy(proxy: Dnsensor) -> DnsensorRun {
    let run = proxy.finish();
    assert!(
        run.status.success(),
        "proxy exit {}:\n{}",
        run.status,
        run.stderr
    );
    run
}

/// Deterministic "random" bytes (xorshift32).
pub fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
