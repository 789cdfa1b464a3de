#!/usr/bin/env python3
"""Independent count of the RRsets in a dnstap capture, to check dnsensor's completeness.

Usage:
    bench/count_rrsets.py CAPTURE.fstrm [--cof OUT.json] [--json]

Reads the Frame Streams file itself (BE32 length; a length of 0 escapes a control frame),
decodes the dnstap protobuf with a small hand-written reader (Dnstap.message = 14,
Message.type = 1, query_zone = 11, response_message = 14), and for every RESOLVER_RESPONSE (4)
or FORWARDER_RESPONSE (8) with a response message parses that message with dnspython
(dns.message.from_wire) and counts its RRsets the way the architecture defines them:

  * distinct (owner lowercased, type, covered type for RRSIG) groups across the answer,
    authority and additional sections (a set in two sections is one RRset);
  * OPT, TSIG and TKEY, and classes other than IN, are ignored;
  * a record whose owner is not at or below query_zone is dropped and counted apart
    (out_of_zone_records; a group whose records are all out of zone is not an RRset).

With --cof, also reads dnsensor's COF output and compares: the sum of the `count` fields must
equal the number of RRset sightings, and the number of distinct COF keys (rrname, rrtype,
bailiwick, rdata set; lines of the same key from several flushes merged) must equal the number of
distinct keys (owner, type, query_zone, canonical rdata set) found here. The exit status is 0 when --cof is not given or everything matches, 1 otherwise.

Needs dnspython (pip install dnspython). Nothing of dnsensor is used.
"""

import argparse
import collections
import json
import multiprocessing
import os
import struct
import sys

try:
    import dns.flags
    import dns.message
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
except ImportError:  # pragma: no cover
    sys.exit("count_rrsets.py needs dnspython: pip install dnspython")

RESOLVER_RESPONSE = 4
FORWARDER_RESPONSE = 8
SKIP_TYPES = {dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY}


def frames(path):
    """Yields the data frames of a Frame Streams file; checks the control frames."""
    with open(path, "rb") as f:
        data = f.read()
    i, n = 0, len(data)
    started = False
    while i < n:
        if i + 4 > n:
            raise ValueError(f"truncated frame length at offset {i}")
        (length,) = struct.unpack_from(">I", data, i)
        i += 4
        if length == 0:
            (clen,) = struct.unpack_from(">I", data, i)
            i += 4
            (ctype,) = struct.unpack_from(">I", data, i)
            if ctype == 2:  # START
                started = True
            i += clen
            continue
        if not started:
            raise ValueError("data frame before START")
        if i + length > n:
            raise ValueError(f"truncated data frame at offset {i}")
        yield data[i:i + length]
        i += length


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf):
    """Yields (field number, wire type, value) of a protobuf message; value is int or bytes."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if i > n:
            raise ValueError("truncated protobuf")
        yield num, wt, v


def decode(frame):
    """(message type, query_zone bytes or None, response_message bytes or None) or None."""
    msg = None
    for num, wt, v in fields(frame):
        if num == 14 and wt == 2:
            msg = v
    if msg is None:
        return None
    mtype, zone, resp = None, None, None
    for num, wt, v in fields(msg):
        if num == 1 and wt == 0:
            mtype = v
        elif num == 11 and wt == 2:
            zone = v
        elif num == 14 and wt == 2:
            resp = v
    return mtype, zone, resp


def count(frame_list):
    """Counters and the set of distinct RRset keys of some data frames."""
    c = collections.Counter()
    keys = set()
    for frame in frame_list:
        c["frames"] += 1
        d = decode(frame)
        if d is None:
            c["not_message"] += 1
            continue
        mtype, zone, resp = d
        if mtype not in (RESOLVER_RESPONSE, FORWARDER_RESPONSE) or resp is None:
            c["not_recorded_type"] += 1
            continue
        c["responses"] += 1
        try:
            m = dns.message.from_wire(resp, ignore_trailing=True)
        except Exception:  # noqa: BLE001 - any parse failure is counted, not fatal
            c["parse_errors"] += 1
            continue
        if not m.flags & dns.flags.QR:
            c["parse_errors"] += 1
            continue
        bailiwick = None
        if zone is not None:
            try:
                bailiwick = dns.name.from_wire(zone, 0)[0]
            except Exception:  # noqa: BLE001
                bailiwick = None
                c["bad_zone"] += 1
        groups = {}
        for section in (m.answer, m.authority, m.additional):
            for rrset in section:
                if rrset.rdclass != dns.rdataclass.IN or rrset.rdtype in SKIP_TYPES:
                    c["skipped_records"] += len(rrset)
                    continue
                c["records"] += len(rrset)
                if bailiwick is not None and not rrset.name.is_subdomain(bailiwick):
                    c["out_of_zone_records"] += len(rrset)
                    continue
                owner = rrset.name.to_text().lower()
                g = groups.setdefault((owner, rrset.rdtype, rrset.covers), set())
                for rd in rrset:
                    g.add(rd.to_digestable(dns.name.root))
        c["rrsets"] += len(groups)
        zone_text = bailiwick.to_text().lower() if bailiwick is not None else None
        for (owner, rtype, covers), rdatas in groups.items():
            keys.add((owner, rtype, covers, zone_text, tuple(sorted(rdatas))))
    return c, keys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--cof", help="dnsensor COF output to compare with")
    ap.add_argument("--json", action="store_true", help="print the counters as one JSON object")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes to parse with (default: the number of CPUs)")
    args = ap.parse_args()

    all_frames = list(frames(args.capture))
    jobs = max(1, min(args.jobs, len(all_frames) // 10000 + 1))
    step = (len(all_frames) + jobs - 1) // jobs
    chunks = [all_frames[i:i + step] for i in range(0, len(all_frames), step)]
    if jobs == 1:
        results = [count(ch) for ch in chunks]
    else:
        with multiprocessing.Pool(jobs) as pool:
            results = pool.map(count, chunks)
    c = collections.Counter()
    keys = set()
    for rc, rk in results:
        c.update(rc)
        keys |= rk
    c["distinct_keys"] = len(keys)

    ok = True
    if args.cof:
        lines = total = 0
        cof_keys = set()
        with open(args.cof, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                lines += 1
                total += int(rec.get("count", 0))
                rdata = rec.get("rdata", [])
                if isinstance(rdata, str):
                    rdata = [rdata]
                cof_keys.add((rec.get("rrname"), rec.get("rrtype"), rec.get("bailiwick"),
                              tuple(sorted(rdata))))
        c["cof_lines"] = lines
        c["cof_count_sum"] = total
        # An early flush (entry cap reached) writes a key again in a later line: merge by key.
        c["cof_distinct_keys"] = len(cof_keys)
        ok = total == c["rrsets"] and len(cof_keys) == c["distinct_keys"]
    if args.json:
        print(json.dumps(dict(c), sort_keys=True))
    else:
        for k in sorted(c):
            print(f"{k}={c[k]}")
    if args.cof:
        print(("MATCH" if ok else "MISMATCH")
              + f": COF count sum {c['cof_count_sum']} vs RRset sightings {c['rrsets']}"
              + f"; distinct COF keys {c['cof_distinct_keys']} (in {c['cof_lines']} lines)"
              + f" vs distinct keys {c['distinct_keys']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
