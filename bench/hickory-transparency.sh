#!/usr/bin/env bash
# Is hickory-server 0.26 fit to be the listener of a byte-transparent DNS proxy?
# (docs/proxy-hickory.md records the answer and the figures of this script.)
#
# Usage (as root, Debian 12, from anywhere in a clone):
#
#     bench/hickory-transparency.sh [--no-dnsdist] [--build]
#
#   1. NSD on 127.53.11.1:53 (world number 11; nsid "ascii_nsd-w11", RRL off) serving three
#      zones generated here: plain.test (unsigned: CNAME chain, 5 MX with compressible and
#      mixed-case exchange names and their A/AAAA, SRV, CAA, a ~1 kB and a ~4 kB TXT RRset,
#      a delegation with glue), signed.test (signed at run time with ldns-keygen + ldns-signzone,
#      RSASHA256 KSK 2048 + ZSK 1024, NSEC) and signed3.test (same keys' kind, NSEC3, a
#      delegation with a DS).
#   2. proxy/examples/hickory_forwarder (hickory-server's Server + a RequestHandler that forwards
#      the raw query and relays the upstream's answer through MessageResponseBuilder) on
#      127.53.11.2:53 → NSD; the same with --raw-udp-replies (UDP answers sent as the upstream's
#      bytes through a duplicate of the listening socket, around hickory-server's response path)
#      on 127.53.11.7:53 → NSD; for reference, unless --no-dnsdist, dnsdist (plain forwarding, no
#      cache, no rules) on 127.53.11.5:53 → NSD.
#   3. Transparency: for every case (50: 25 queries × UDP and TCP), the same raw query bytes
#      (fixed ID) are sent to NSD directly and through each proxy; per case: byte-identical or
#      not, both lengths, the first differing offset (and the part of the direct answer it falls
#      in) and, when they differ, how (flags, counts, OPT, records, compression pointers). Then
#      the same cases with dig (+nocookie +ignore, so a TC answer is shown as it is), direct vs
#      through the forwarder, diffed once the per-run lines (id, query time, server, when) are
#      masked.
#   4. UDP burst: 1000 queries sent back to back from one socket, answers counted (3 bursts),
#      with the kernel's count of receive-buffer drops (nstat UdpRcvbufErrors) around each.
#   5. TCP pipelining: 100 queries written back to back on one TCP connection (5 connections,
#      one after the other); are the answers strictly in order, the total time (median, min, max),
#      directly and through each proxy. Then the same against a small Python upstream on
#      127.53.11.3:53 that answers every 10th query ("slow*" names) after 100 ms and the others
#      at once, out of order over TCP: directly, through a second forwarder on 127.53.11.4:53 and
#      (reference) a second dnsdist on 127.53.11.6:53.
#   6. Odd queries (a second OPT record, an A record with a 5-byte RDATA in the additional
#      section, an unassigned opcode) over UDP to that upstream, directly and through the second
#      forwarder and dnsdist: does the query reach the upstream or does the proxy answer itself?
#   Everything printed also goes to bench/out/hickory-transparency-<time>.md.
#
# The forwarder binary: $HICKORY_BIN, else ${CARGO_TARGET_DIR:-<repo>/target}/release/examples/
# hickory_forwarder; --build runs `cargo build --release -p dnsensor-proxy --example
# hickory_forwarder` first. Needs nsd, ldnsutils, bind9-dnsutils, iproute2, python3 (standard
# library only) and, for the reference, dnsdist; nothing is installed. Only 127.0.0.0/8 is used;
# ports 53 on 127.53.11.{1..7} must be free. Every daemon started is stopped on exit.
set -euo pipefail

DNSDIST=1
BUILD=0
while [ $# -gt 0 ]; do
    case $1 in
        --no-dnsdist) DNSDIST=0 ;;
        --build) BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W=11
NET="127.53.$W"
NSD_ADDR="$NET.1"
FWD_ADDR="$NET.2"
SHIM_ADDR="$NET.3"
FWD2_ADDR="$NET.4"
DD_ADDR="$NET.5"
DD2_ADDR="$NET.6"
FWD_RAW_ADDR="$NET.7"
OUT="$REPO/bench/out"
mkdir -p "$OUT"
REPORT="$OUT/hickory-transparency-$(date -u +%Y%m%dT%H%M%SZ).md"

[ "$(id -u)" -eq 0 ] || { echo "run as root: NSD and the proxies bind port 53 on $NET.x" >&2; exit 1; }
log() { echo "[hickory-transparency $(date +%H:%M:%S)] $*" >&2; }
for tool in nsd nsd-checkconf ldns-keygen ldns-signzone dig python3 setsid nstat ss; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [ $DNSDIST -eq 1 ] && ! command -v dnsdist >/dev/null; then
    log "dnsdist not installed: no reference column"; DNSDIST=0
fi

if [ $BUILD -eq 1 ]; then
    log "building the forwarder"
    (cd "$REPO" && cargo build --release -p dnsensor-proxy --example hickory_forwarder)
fi
HICKORY_BIN=${HICKORY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/examples/hickory_forwarder}
[ -x "$HICKORY_BIN" ] || {
    echo "no $HICKORY_BIN: build it with \`cargo build --release -p dnsensor-proxy --example hickory_forwarder\` (or --build)" >&2
    exit 1
}

# Processes started here are tracked by pid (each in its own process group) and stopped on exit.
# shellcheck source=bench/world.sh
source "$REPO/bench/world.sh"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
TMP=$(mktemp -d -t dnsensor-hickory-transparency.XXXXXX)
world_init "$W" "$TMP"     # only for world_spawn/world_stop: the zones are this script's own
PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# The helper (queries, comparison, pipelining, slow upstream): Python 3, standard library only.
cat >"$TMP/ht.py" <<'PY'
"""Helper of bench/hickory-transparency.sh (written out by it at run time; standard library only).

    ht.py compare DIRECT PROXY [PROXY2 ...]   same raw query bytes to each, byte comparison
    ht.py pipeline ADDR N [K]                 5 times: N queries back to back on one TCP connection
    ht.py burst ADDR N                        3 times: N UDP queries back to back, answers counted
    ht.py odd UPSTREAM PROXY [PROXY2 ...]     odd queries: does each proxy pass them on?
    ht.py shim ADDR                           a UDP+TCP server answering "slow*" names after 100 ms
    ht.py dig-cases                           the cases, as dig arguments (one line each)
"""
import asyncio
import socket
import struct
import sys
import time

TIMEOUT = 3.0

# (label, qname, qtype, transport, edns) — edns: None (no OPT) or dict(size, do, version, opts)
E = lambda size=1232, do=False, version=0, opts=(): dict(size=size, do=do, version=version, opts=list(opts))
NSID = (3, b"")
CASES = []
for proto in ("udp", "tcp"):
    CASES += [
        ("A, no EDNS", "www.plain.test", "A", proto, None),
        ("A, EDNS 1232", "www.plain.test", "A", proto, E()),
        ("A, 0x20 mixed-case qname", "wWw.PlAiN.tEsT", "A", proto, E()),
        ("A, NSID requested", "www.plain.test", "A", proto, E(opts=[NSID])),
        ("A, EDNS version 1 (BADVERS)", "www.plain.test", "A", proto, E(version=1)),
        ("A, bufsize 512", "www.plain.test", "A", proto, E(size=512)),
        ("CNAME chain", "alias.plain.test", "A", proto, E()),
        ("MX x5 + additional A/AAAA", "plain.test", "MX", proto, E()),
        ("SRV x3", "_sip._tcp.plain.test", "SRV", proto, E()),
        ("CAA", "plain.test", "CAA", proto, E()),
        ("TXT ~1 kB", "mid.plain.test", "TXT", proto, E()),
        ("TXT, 506 B direct, no EDNS", "edge512.plain.test", "TXT", proto, None),
        ("TXT, 1225 B direct, EDNS 1232", "edge1232.plain.test", "TXT", proto, E()),
        ("TXT ~4 kB (TC over UDP)", "big.plain.test", "TXT", proto, E()),
        ("TXT ~4 kB, bufsize 4096", "big.plain.test", "TXT", proto, E(size=4096)),
        ("NODATA", "www.plain.test", "TXT", proto, E()),
        ("NXDOMAIN", "nx.plain.test", "A", proto, E()),
        ("referral (NS + glue)", "host.sub.plain.test", "A", proto, E()),
        ("signed A +DO", "www.signed.test", "A", proto, E(do=True)),
        ("signed MX +DO", "signed.test", "MX", proto, E(do=True)),
        ("signed DNSKEY +DO", "signed.test", "DNSKEY", proto, E(do=True)),
        ("signed NXDOMAIN +DO (NSEC)", "nx.signed.test", "A", proto, E(do=True)),
        ("signed TXT +DO +NSID", "txt.signed.test", "TXT", proto, E(do=True, opts=[NSID])),
        ("NSEC3 NXDOMAIN +DO", "nx.signed3.test", "A", proto, E(do=True)),
        ("NSEC3 DS referral +DO", "x.deleg.signed3.test", "A", proto, E(do=True)),
    ]



def odd_queries():
    """Queries an upstream accepts but a strict parser may not: (label, raw bytes)."""
    base = build_query(0x5001, "www.plain.test", "A", E())
    # the same, with a second OPT record (ARCOUNT 2): RFC 6891 says FORMERR
    two_opt = bytearray(base + base[-11:])
    two_opt[11] = 2
    # an A record with 5 bytes of RDATA in the additional section (before the OPT)
    q = build_query(0x5002, "www.plain.test", "A", None)
    bad_a = bytearray(q + b"\0" + struct.pack("!HHIH", 1, 1, 0, 5) + b"\1\2\3\4\5" + base[-11:])
    bad_a[11] = 2
    # an unassigned opcode (3)
    opcode3 = bytearray(build_query(0x5003, "www.plain.test", "A", E()))
    opcode3[2] = (opcode3[2] & 0x87) | (3 << 3)
    return [("second OPT record in the query", bytes(two_opt)),
            ("A with 5-byte RDATA in the query's additional section", bytes(bad_a)),
            ("unassigned opcode 3", bytes(opcode3))]


TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "DS": 43, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48, "NSEC3": 50,
         "NSEC3PARAM": 51, "CAA": 257, "OPT": 41}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
# types whose RDATA holds compressible names (RFC 1035 + MX), and the offsets of those names
NAME_RDATA = {2: "n", 5: "n", 12: "n", 6: "nn", 15: "2n", 33: "6N", 47: "N", 46: "18N"}


def build_query(qid, qname, qtype, edns, rd=True):
    flags = 0x0100 if rd else 0
    msg = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns is not None else 0)
    for label in qname.strip(".").split("."):
        msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack("!HH", TYPES[qtype], 1)
    if edns is not None:
        rdata = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in edns["opts"])
        ttl = (edns["version"] << 16) | (0x8000 if edns["do"] else 0)
        msg += b"\0" + struct.pack("!HHIH", 41, edns["size"], ttl, len(rdata)) + rdata
    return msg


def exchange(addr, proto, query):
    host, port = addr.rsplit(":", 1)
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(TIMEOUT)
            s.sendto(query, (host, int(port)))
            while True:
                data, _ = s.recvfrom(65535)
                if data[:2] == query[:2]:
                    return data
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(struct.pack("!H", len(query)) + query)
        (n,) = struct.unpack("!H", recv_exact(s, 2))
        return recv_exact(s, n)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_name(msg, off):
    """(name as text, offset after it in place, number of pointers followed)."""
    labels, ptrs, end = [], 0, None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            ptrs += 1
            continue
        if n == 0:
            if end is None:
                end = off + 1
            return ".".join(labels) + ".", end, ptrs
        labels.append(msg[off + 1:off + 1 + n].decode("latin-1"))
        off += 1 + n


def parse(msg):
    """Decoded view: header, question, records (names expanded), OPT, where each part starts."""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    out = dict(flags=flags, counts=(qd, an, ns, ar), parts=[(0, "header")], ptrs=0, opt=None, rrs=[])
    off = 12
    for i in range(qd):
        out["parts"].append((off, f"question #{i + 1}"))
        name, off, p = read_name(msg, off)
        out["ptrs"] += p
        qt, qc = struct.unpack("!HH", msg[off:off + 4])
        off += 4
        out.setdefault("question", []).append((name, qt, qc))
    for sec, count in (("answer", an), ("authority", ns), ("additional", ar)):
        for i in range(count):
            start = off
            name, off, p = read_name(msg, off)
            out["ptrs"] += p
            t, c, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            rdata = msg[off:off + rdlen]
            label = TYPE_NAMES.get(t, str(t))
            out["parts"].append((start, f"{sec} #{i + 1} ({label})"))
            if t == 41:
                opts, o = [], 0
                while o + 4 <= rdlen:
                    code, olen = struct.unpack("!HH", rdata[o:o + 4])
                    opts.append((code, rdata[o + 4:o + 4 + olen].hex()))
                    o += 4 + olen
                out["opt"] = dict(index=f"{sec} #{i + 1} of {count}", size=c, ext_rcode=ttl >> 24,
                                  version=(ttl >> 16) & 0xFF, flags=ttl & 0xFFFF, options=opts)
            else:
                out["rrs"].append((sec, name, t, c, ttl, expand_rdata(msg, off, t, rdata, out)))
            off += rdlen
    out["trailing"] = len(msg) - off
    return out


def expand_rdata(msg, off, t, rdata, out):
    spec = NAME_RDATA.get(t)
    if spec is None:
        return rdata.hex()
    parts, o = [], off
    fixed = "".join(ch for ch in spec if ch.isdigit())
    if fixed:
        parts.append(msg[o:o + int(fixed)].hex())
        o += int(fixed)
    for ch in spec:
        if ch in "nN":
            name, o, p = read_name(msg, o)
            out["ptrs"] += p
            parts.append(name)
    if t == 6:
        parts.append(msg[o:off + len(rdata)].hex())
    elif t in (47, 46):
        parts.append(msg[o:off + len(rdata)].hex())
    return " ".join(parts)


def part_at(parsed, offset):
    label = "beyond the end"
    for start, name in parsed["parts"]:
        if start <= offset:
            label = name
    return label


def flag_names(flags):
    names = [n for bit, n in ((15, "qr"), (10, "aa"), (9, "tc"), (8, "rd"), (7, "ra"), (6, "z"),
                              (5, "ad"), (4, "cd")) if flags >> bit & 1]
    return " ".join(names) + f" rcode={flags & 0xF}"


def describe(direct, proxied):
    """Why two answers differ, in a few words."""
    try:
        a, b = parse(direct), parse(proxied)
    except Exception as e:  # noqa: BLE001 - report, do not die
        return f"unparsable: {e}"
    notes = []
    if a["flags"] != b["flags"]:
        notes.append(f"flags [{flag_names(a['flags'])}] -> [{flag_names(b['flags'])}]")
    if a["counts"] != b["counts"]:
        notes.append(f"counts qd/an/ns/ar {'/'.join(map(str, a['counts']))} -> {'/'.join(map(str, b['counts']))}")
    if a.get("question") != b.get("question"):
        notes.append(f"question {a.get('question')} -> {b.get('question')}")
    if a["opt"] != b["opt"]:
        if a["opt"] is None or b["opt"] is None:
            notes.append(f"OPT {a['opt']} -> {b['opt']}")
        else:
            diffs = [f"{k} {a['opt'][k]} -> {b['opt'][k]}" for k in a["opt"] if a["opt"][k] != b["opt"][k]]
            notes.append("OPT " + "; ".join(diffs))
    if a["rrs"] != b["rrs"]:
        sa, sb = set(a["rrs"]), set(b["rrs"])
        low = lambda rrs: [(s, n.lower(), t, c, ttl, d.lower()) for s, n, t, c, ttl, d in rrs]
        if sa == sb:
            notes.append("same records, different order")
        elif low(a["rrs"]) == low(b["rrs"]):
            notes.append("records differ in letter case only")
        else:
            notes.append(f"records differ: {len(sa - sb)} missing, {len(sb - sa)} added")
    if b["trailing"] != a["trailing"]:
        notes.append(f"{b['trailing']} stray bytes after the last record (direct: {a['trailing']})")
    if not notes:
        notes.append("same content, different encoding")
    if a["ptrs"] != b["ptrs"]:
        notes.append(f"compression pointers {a['ptrs']} -> {b['ptrs']}")
    return "; ".join(notes)


def first_diff(x, y):
    for i, (p, q) in enumerate(zip(x, y)):
        if p != q:
            return i
    return min(len(x), len(y)) if len(x) != len(y) else None


def cmd_compare(direct, proxies):
    total = {p: [0, 0] for p in proxies}
    print(f"direct = {direct}; " + "; ".join(f"proxy{i + 1} = {p}" for i, p in enumerate(proxies)))
    print()
    print("| # | case | proto | peer | result | bytes direct | bytes via | first diff at | how |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, (label, qname, qtype, proto, edns) in enumerate(CASES, 1):
        query = build_query(0x4000 + n, qname, qtype, edns)
        try:
            ref = exchange(direct, proto, query)
        except Exception as e:  # noqa: BLE001
            print(f"| {n} | {label} | {proto} | direct | ERROR {e} | | | | |")
            continue
        for i, peer in enumerate(proxies):
            try:
                got = exchange(peer, proto, query)
            except Exception as e:  # noqa: BLE001
                print(f"| {n} | {label} | {proto} | proxy{i + 1} | ERROR {type(e).__name__} {e} | {len(ref)} | | | |")
                total[peer][1] += 1
                continue
            d = first_diff(ref, got)
            total[peer][1] += 1
            if d is None:
                total[peer][0] += 1
                print(f"| {n} | {label} | {proto} | proxy{i + 1} | identical | {len(ref)} | {len(got)} | - | - |")
            else:
                where = f"{d} ({part_at(parse(ref), d)})"
                print(f"| {n} | {label} | {proto} | proxy{i + 1} | DIFFERENT | {len(ref)} | {len(got)} | {where} | {describe(ref, got)} |")
    print()
    for i, p in enumerate(proxies):
        print(f"proxy{i + 1} ({p}): {total[p][0]} of {total[p][1]} answers byte-identical to the direct answer")


def cmd_odd(upstream, proxies):
    """Odd queries to the shim (it answers anything with a question with one A record) and to
    proxies in front of it: did the query reach the upstream, or did the proxy answer itself?"""
    print("| case | peer | answer: flags rcode, counts qd/an/ns/ar, bytes | reached the upstream |")
    print("|---|---|---|---|")
    for label, query in odd_queries():
        for i, peer in enumerate([upstream] + proxies):
            name = "upstream (direct)" if i == 0 else f"{peer}"
            try:
                got = exchange(peer, "udp", query)
            except (socket.timeout, TimeoutError):
                print(f"| {label} | {name} | no answer within {TIMEOUT:.0f} s | ? |")
                continue
            p = parse(got)
            reached = "yes" if p["counts"][1] == 1 and p["flags"] & 0xF == 0 else "**no** (answered by the proxy)"
            counts = "/".join(map(str, p["counts"]))
            print(f"| {label} | {name} | {flag_names(p['flags'])}, {counts}, {len(got)} B | {reached} |")


def cmd_dig_cases():
    for label, qname, qtype, proto, edns in CASES:
        args = [qname, qtype, "+nocookie"]
        args.append("+tcp" if proto == "tcp" else "+notcp")
        args.append("+ignore")  # show a TC answer as it is, no retry over TCP
        if edns is None:
            args.append("+noedns")
        else:
            args += [f"+bufsize={edns['size']}", f"+edns={edns['version']}", "+noednsneg"]
            if edns["do"]:
                args.append("+dnssec")
            if any(c == 3 for c, _ in edns["opts"]):
                args.append("+nsid")
        print(f"{label} [{proto}]\t{' '.join(args)}")


def pipeline_once(addr, n, slow_every):
    host, port = addr.rsplit(":", 1)
    queries = []
    for i in range(n):
        if slow_every and i % slow_every == 0:
            name = f"slow{i}.shim.test"
        elif slow_every:
            name = f"fast{i}.shim.test"
        else:
            name = ["www.plain.test", "mail.plain.test", "alias.plain.test", "nx.plain.test"][i % 4]
        q = build_query(i + 1, name, "A", E())
        queries.append(struct.pack("!H", len(q)) + q)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        s.sendall(b"".join(queries))
        order, times = [], []
        for _ in range(n):
            (ln,) = struct.unpack("!H", recv_exact(s, 2))
            msg = recv_exact(s, ln)
            order.append(struct.unpack("!H", msg[:2])[0])
            times.append(time.perf_counter() - t0)
    return order, times


def cmd_pipeline(addr, n, slow_every, rounds=5):
    """`rounds` connections one after the other, N queries written at once on each."""
    results = [pipeline_once(addr, n, slow_every) for _ in range(rounds)]
    totals = sorted(t[-1] * 1000 for _, t in results)
    firsts = sorted(t[0] * 1000 for _, t in results)
    in_order = sum(o == sorted(o) for o, _ in results)
    complete = all(len(o) == n for o, _ in results)
    order = results[-1][0]
    print(f"{addr}: {rounds} runs of {n}: {'all answers' if complete else 'ANSWERS MISSING'}; "
          f"strictly in order in {in_order}/{rounds} runs; total median {totals[rounds // 2]:.1f} ms "
          f"(min {totals[0]:.1f}, max {totals[-1]:.1f}); first answer median {firsts[rounds // 2]:.1f} ms; "
          f"last run's first ids {order[:12]}")


def cmd_burst(addr, n, rounds=3):
    """`rounds` times: N UDP queries sent back to back from one socket, then answers counted
    until 1 s of silence."""
    host, port = addr.rsplit(":", 1)
    names = ["www.plain.test", "plain.test", "alias.plain.test", "nx.plain.test"]
    types = ["A", "MX", "A", "A"]
    got_counts, times = [], []
    for r in range(rounds):
        queries = [build_query((r * n + i) % 65536, names[i % 4], types[i % 4], E()) for i in range(n)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.connect((host, int(port)))
            t0 = time.perf_counter()
            for q in queries:
                s.send(q)
            ids, last = set(), t0
            s.settimeout(1.0)
            try:
                while len(ids) < n:
                    ids.add(struct.unpack("!H", s.recv(65535)[:2])[0])
                    last = time.perf_counter()
            except (socket.timeout, TimeoutError):
                pass
        got_counts.append(len(ids))
        times.append((last - t0) * 1000)
    print(f"{addr}: {rounds} bursts of {n}: answers {got_counts} "
          f"(lost {[n - g for g in got_counts]}), last answer after {[round(t, 1) for t in times]} ms")


async def shim_main(addr):
    host, port = addr.rsplit(":", 1)

    def answer(q):
        qd_end = 12
        while q[qd_end] != 0:
            qd_end += 1 + q[qd_end]
        qd_end += 5
        first = q[13:13 + q[12]].decode("latin-1").lower()
        flags = 0x8400 | (struct.unpack("!H", q[2:4])[0] & 0x0100)
        head = q[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0)
        rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 1])
        return head + q[12:qd_end] + rr, first.startswith("slow")

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.t = transport

        def datagram_received(self, data, src):
            asyncio.ensure_future(self.reply(data, src))

        async def reply(self, data, src):
            msg, slow = answer(data)
            if slow:
                await asyncio.sleep(0.1)
            self.t.sendto(msg, src)

    async def tcp(reader, writer):
        async def one(q):
            msg, slow = answer(q)
            if slow:
                await asyncio.sleep(0.1)
            writer.write(struct.pack("!H", len(msg)) + msg)

        tasks = []
        try:
            while True:
                (ln,) = struct.unpack("!H", await reader.readexactly(2))
                tasks.append(asyncio.ensure_future(one(await reader.readexactly(ln))))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()

    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Udp, local_addr=(host, int(port)))
    server = await asyncio.start_server(tcp, host, int(port))
    print(f"shim listening on {addr}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "compare":
        cmd_compare(args[0], args[1:])
    elif cmd == "pipeline":
        cmd_pipeline(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 0)
    elif cmd == "burst":
        cmd_burst(args[0], int(args[1]))
    elif cmd == "odd":
        cmd_odd(args[0], args[1:])
    elif cmd == "shim":
        asyncio.run(shim_main(args[0]))
    elif cmd == "dig-cases":
        cmd_dig_cases()
    else:
        sys.exit(__doc__)
PY

# ---------------------------------------------------------------------------------------------
# Zones
# ---------------------------------------------------------------------------------------------
Z="$TMP/zones"
mkdir -p "$Z"
# txt_rrset OWNER COUNT LEN: COUNT TXT records of one LEN-character string each.
txt_rrset() {
    local owner=$1 count=$2 len=$3 i s
    for ((i = 1; i <= count; i++)); do
        s=$(printf 'rec%02d-%s' "$i" "$(printf 'abcdefghijklmnopqrstuvwxyz0123456789%.0s' $(seq 10))")
        echo "$owner TXT \"${s:0:$len}\""
    done
}
{
    cat <<ZONE
\$ORIGIN plain.test.
\$TTL 3600
@            SOA   ns1.plain.test. hostmaster.plain.test. 2026112701 7200 3600 1209600 300
@            NS    ns1.plain.test.
@            NS    ns2.plain.test.
ns1          A     192.0.2.1
ns2          A     192.0.2.2
www          A     192.0.2.10
www          AAAA  2001:db8::10
alias        CNAME alias2.plain.test.
alias2       CNAME www.plain.test.
@            MX    10 mx1.mail.plain.test.
@            MX    20 mx2.mail.plain.test.
@            MX    30 mx3.mail.plain.test.
@            MX    40 mx4.mail.plain.test.
@            MX    50 Backup-MX.Mail.Plain.Test.
mx1.mail     A     192.0.2.21
mx1.mail     AAAA  2001:db8::21
mx2.mail     A     192.0.2.22
mx3.mail     A     192.0.2.23
mx4.mail     A     192.0.2.24
backup-mx.mail A   192.0.2.25
_sip._tcp    SRV   10 60 5060 sip1.plain.test.
_sip._tcp    SRV   10 40 5060 sip2.plain.test.
_sip._tcp    SRV   20 0 5060 sip3.plain.test.
sip1         A     192.0.2.31
sip2         A     192.0.2.32
sip3         A     192.0.2.33
@            CAA   0 issue "ca.example.net; account=230123"
@            CAA   0 iodef "mailto:security@plain.test"
@            CAA   128 tbs "Unknown"
sub          NS    ns.sub.plain.test.
ns.sub       A     192.0.2.53
ZONE
    txt_rrset mid 4 240
    # Sized so that NSD's answer just fits the client's limit (512 without EDNS, 1232 with):
    # an encoder that spends more bytes than NSD on the same records must truncate.
    echo "edge512 TXT \"$(txt_rrset x 1 200 | cut -d'"' -f2)\" \"$(txt_rrset x 1 188 | cut -d'"' -f2)\""
    txt_rrset edge1232 4 240
    txt_rrset edge1232 1 84 | sed 's/rec01/rec05/'
    txt_rrset big 16 240
} >"$Z/plain.test.zone"

cat >"$Z/signed.test.unsigned" <<'ZONE'
$ORIGIN signed.test.
$TTL 3600
@            SOA   ns1.signed.test. hostmaster.signed.test. 2026112701 7200 3600 1209600 300
@            NS    ns1.signed.test.
ns1          A     192.0.2.1
www          A     192.0.2.80
www          AAAA  2001:db8::80
@            MX    10 mx1.signed.test.
@            MX    20 mx2.signed.test.
mx1          A     192.0.2.81
mx2          A     192.0.2.82
txt          TXT   "first string of a signed TXT" "second string"
txt          TXT   "another signed TXT record"
ZONE
cat >"$Z/signed3.test.unsigned" <<'ZONE'
$ORIGIN signed3.test.
$TTL 3600
@            SOA   ns1.signed3.test. hostmaster.signed3.test. 2026112701 7200 3600 1209600 300
@            NS    ns1.signed3.test.
ns1          A     192.0.2.1
www          A     192.0.2.90
deleg        NS    ns.deleg.signed3.test.
deleg        DS    12345 13 2 6a6f686e646f6521a6f686e646f6521a6f686e646f6521a6f686e646f65210
ns.deleg     A     192.0.2.91
ZONE
log "signing signed.test (NSEC) and signed3.test (NSEC3) with ldns-signzone"
(
    cd "$Z"
    for zone in signed.test signed3.test; do
        ksk=$(ldns-keygen -a RSASHA256 -b 2048 -k "$zone")
        zsk=$(ldns-keygen -a RSASHA256 -b 1024 "$zone")
        if [ "$zone" = signed3.test ]; then
            ldns-signzone -n -t 0 -f "$zone.zone" -o "$zone" "$zone.unsigned" "$zsk" "$ksk"
        else
            ldns-signzone -f "$zone.zone" -o "$zone" "$zone.unsigned" "$zsk" "$ksk"
        fi
    done
)

# ---------------------------------------------------------------------------------------------
# NSD
# ---------------------------------------------------------------------------------------------
D="$TMP/nsd"
mkdir -p "$D"
cp "$Z"/plain.test.zone "$Z"/signed.test.zone "$Z"/signed3.test.zone "$D/"
cat >"$D/nsd.conf" <<CONF
server:
    ip-address: $NSD_ADDR
    port: 53
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$D"
    pidfile: "$D/nsd.pid"
    xfrdfile: "$D/xfrd.state"
    zonelistfile: "$D/zone.list"
    database: ""
    logfile: "$D/nsd.log"
    verbosity: 1
    server-count: 1
    hide-version: yes
    hide-identity: yes
    nsid: "ascii_nsd-w11"
    refuse-any: yes
    minimal-responses: no
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0

remote-control:
    control-enable: no

zone:
    name: "plain.test"
    zonefile: "plain.test.zone"
zone:
    name: "signed.test"
    zonefile: "signed.test.zone"
zone:
    name: "signed3.test"
    zonefile: "signed3.test.zone"
CONF
nsd-checkconf "$D/nsd.conf"
world_spawn nsd "$D/stderr.log" nsd -d -c "$D/nsd.conf"
PIDS+=("$WORLD_LAST_PID")

# wait_dns ADDR NAME TYPE PID WHAT: until ADDR answers NOERROR for NAME/TYPE (20 s at most).
wait_dns() {
    local addr=$1 name=$2 type=$3 pid=$4 what=$5 deadline=$((SECONDS + 20)) out
    while :; do
        out=$(dig +time=1 +tries=1 @"$addr" "$name" "$type" 2>&1 || true)
        grep -q 'status: NOERROR' <<<"$out" && return 0
        if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
            log "$what on $addr does not answer; last dig:"; echo "$out" >&2
            return 1
        fi
        sleep 0.1
    done
}
for zone in plain.test signed.test signed3.test; do
    wait_dns "$NSD_ADDR" "$zone" SOA "$WORLD_LAST_PID" "NSD" || { cat "$D/stderr.log" "$D/nsd.log" >&2; exit 1; }
done
log "NSD up on $NSD_ADDR:53"

# ---------------------------------------------------------------------------------------------
# The proxies
# ---------------------------------------------------------------------------------------------
start_forwarder() {  # ADDR UPSTREAM NAME [OPTION...]
    local addr=$1 upstream=$2 name=$3; shift 3
    world_spawn "$name" "$TMP/$name.log" "$HICKORY_BIN" --listen "$addr:53" --upstream "$upstream:53" "$@"
    PIDS+=("$WORLD_LAST_PID")
}
start_dnsdist() {  # ADDR UPSTREAM NAME
    cat >"$TMP/$3.conf" <<CONF
-- Plain forwarding: no cache, no rules, no console; out-of-order TCP allowed both sides;
-- 4 MiB socket buffers asked for, like hickory_forwarder's listener.
setSecurityPollSuffix("")
setUDPSocketBufferSizes(4194304, 4194304)
setLocal("$1:53", {maxInFlight=100})
setACL({"127.0.0.0/8"})
srv = newServer({address="$2:53", maxInFlight=100})
srv:setUp()
CONF
    dnsdist --check-config -C "$TMP/$3.conf" >/dev/null
    world_spawn "$3" "$TMP/$3.log" dnsdist --supervised --disable-syslog -C "$TMP/$3.conf"
    PIDS+=("$WORLD_LAST_PID")
}
start_forwarder "$FWD_ADDR" "$NSD_ADDR" hickory
wait_dns "$FWD_ADDR" www.plain.test A "$WORLD_LAST_PID" "hickory_forwarder" || { cat "$TMP/hickory.log" >&2; exit 1; }
PROXIES=("$FWD_ADDR:53")
start_forwarder "$FWD_RAW_ADDR" "$NSD_ADDR" hickory-raw --raw-udp-replies
wait_dns "$FWD_RAW_ADDR" www.plain.test A "$WORLD_LAST_PID" "hickory_forwarder --raw-udp-replies" || { cat "$TMP/hickory-raw.log" >&2; exit 1; }
PROXIES+=("$FWD_RAW_ADDR:53")
if [ $DNSDIST -eq 1 ]; then
    start_dnsdist "$DD_ADDR" "$NSD_ADDR" dnsdist
    wait_dns "$DD_ADDR" www.plain.test A "$WORLD_LAST_PID" "dnsdist" || { cat "$TMP/dnsdist.log" >&2; exit 1; }
    PROXIES+=("$DD_ADDR:53")
fi
log "proxies up: ${PROXIES[*]}"

# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
{
echo "# hickory-server transparency, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "- upstream: NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}') on $NSD_ADDR:53"
echo "- proxy1: $HICKORY_BIN (hickory-server 0.26) on $FWD_ADDR:53"
echo "- proxy2: the same with --raw-udp-replies (UDP answers sent around hickory-server's response path) on $FWD_RAW_ADDR:53"
[ $DNSDIST -eq 1 ] && echo "- proxy3: dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}') on $DD_ADDR:53 (reference)"
echo
echo "## Raw bytes: direct vs through the proxy"
echo
python3 "$TMP/ht.py" compare "$NSD_ADDR:53" "${PROXIES[@]}"
echo
echo "## dig: direct vs through hickory_forwarder"
echo
echo "Each case with the dig options below, @$NSD_ADDR and @$FWD_ADDR; the lines that change from"
echo "run to run (id, query time, server, when, the DiG banner) are masked, then diffed."
echo
same=0; total=0
while IFS=$'\t' read -r label args; do
    total=$((total + 1))
    # shellcheck disable=SC2086  # args is a list of dig options
    a=$(dig +time=2 +tries=1 @"$NSD_ADDR" $args 2>&1 | sed -E -e 's/id: [0-9]+/id: X/' \
        -e '/^;; (Query time|SERVER|WHEN):/d' -e '/^; <<>> DiG/d')
    # shellcheck disable=SC2086
    b=$(dig +time=2 +tries=1 @"$FWD_ADDR" $args 2>&1 | sed -E -e 's/id: [0-9]+/id: X/' \
        -e '/^;; (Query time|SERVER|WHEN):/d' -e '/^; <<>> DiG/d')
    if [ "$a" = "$b" ]; then
        same=$((same + 1))
    else
        d=$(diff <(echo "$a") <(echo "$b") | grep '^[<>]' || true)
        nonsize=$(grep -v 'MSG SIZE' <<<"$d" || true)
        if [ -z "$nonsize" ]; then
            echo "- $label (\`dig $args\`): only the message size differs: $(grep 'MSG SIZE' <<<"$d" | sed -E 's/.*rcvd: ([0-9]+)/\1/' | paste -sd' ' | sed 's/ / → /')"
        else
            echo "- $label (\`dig $args\`): differs:"
            echo '  ```'
            sed 's/^/  /' <<<"$d"
            echo '  ```'
        fi
    fi
done < <(python3 "$TMP/ht.py" dig-cases)
echo
echo "dig output identical (after masking) in $same of $total cases."
echo
echo "## UDP burst: 1000 queries sent back to back from one socket (3 bursts each)"
echo
echo "UdpRcvbufErrors (nstat) is the kernel's system-wide count of datagrams dropped because a"
echo "socket's receive buffer was full: a listener's, a proxy's upstream-facing socket's, or any other"
echo "process's on the machine. rb: the listening socket's receive buffer (ss -m)."
echo
echo '```'
for p in "$NSD_ADDR:53" "${PROXIES[@]}"; do
    before=$(nstat -az UdpRcvbufErrors 2>/dev/null | awk '/UdpRcvbufErrors/ {print $2}')
    python3 "$TMP/ht.py" burst "$p" 1000
    after=$(nstat -az UdpRcvbufErrors 2>/dev/null | awk '/UdpRcvbufErrors/ {print $2}')
    rb=$(ss -ulmnH "src ${p%:*}:53" 2>/dev/null | grep -o 'rb[0-9]*' | head -1)
    echo "    receive buffer ${rb:-?}; UdpRcvbufErrors +$(( ${after:-0} - ${before:-0} ))"
done
echo '```'
echo
echo "## TCP pipelining: 100 queries back to back on one connection (5 connections each)"
echo
echo "Against NSD (it answers in order and at once):"
echo
echo '```'
python3 "$TMP/ht.py" pipeline "$NSD_ADDR:53" 100
for p in "${PROXIES[@]}"; do python3 "$TMP/ht.py" pipeline "$p" 100; done
echo '```'
} 2>&1 | tee "$REPORT"

log "slow upstream: Python shim on $SHIM_ADDR:53, a second forwarder (and dnsdist) in front"
world_spawn shim "$TMP/shim.log" python3 "$TMP/ht.py" shim "$SHIM_ADDR:53"
PIDS+=("$WORLD_LAST_PID")
wait_dns "$SHIM_ADDR" fast.shim.test A "$WORLD_LAST_PID" "shim" || { cat "$TMP/shim.log" >&2; exit 1; }
start_forwarder "$FWD2_ADDR" "$SHIM_ADDR" hickory2
wait_dns "$FWD2_ADDR" fast.shim.test A "$WORLD_LAST_PID" "hickory_forwarder (2)" || { cat "$TMP/hickory2.log" >&2; exit 1; }
SLOW=("$FWD2_ADDR:53")
if [ $DNSDIST -eq 1 ]; then
    start_dnsdist "$DD2_ADDR" "$SHIM_ADDR" dnsdist2
    wait_dns "$DD2_ADDR" fast.shim.test A "$WORLD_LAST_PID" "dnsdist (2)" || { cat "$TMP/dnsdist2.log" >&2; exit 1; }
    SLOW+=("$DD2_ADDR:53")
fi
{
echo
echo "Against the slow upstream ($SHIM_ADDR:53: every 10th query, ids 1, 11, 21, …, answered after"
echo "100 ms, the rest at once; over TCP it answers each query as soon as it is ready):"
echo
echo '```'
python3 "$TMP/ht.py" pipeline "$SHIM_ADDR:53" 100 10
for p in "${SLOW[@]}"; do python3 "$TMP/ht.py" pipeline "$p" 100 10; done
echo '```'
echo
echo "## Odd queries: passed on, or answered by the proxy?"
echo
echo "UDP, to the Python upstream ($SHIM_ADDR:53, which answers any query that has a question with"
echo "one A record and rcode NOERROR) directly and through the proxies in front of it."
echo
python3 "$TMP/ht.py" odd "$SHIM_ADDR:53" "${SLOW[@]}"
echo
echo "proxy addresses: $FWD_ADDR/$FWD2_ADDR = hickory_forwarder, $FWD_RAW_ADDR = hickory_forwarder --raw-udp-replies$([ $DNSDIST -eq 1 ] && echo ", $DD_ADDR/$DD2_ADDR = dnsdist")"
} 2>&1 | tee -a "$REPORT"
log "report: $REPORT"
