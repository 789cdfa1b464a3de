#!/usr/bin/env bash
# Regenerates samples/unbound.fstrm, the small dnstap sample that scripts/demo.sh replays.
#
# Usage (as root, Debian 12):  bench/make-sample.sh [OUTPUT]     (default samples/unbound.fstrm)
#
# Starts the test world (bench/world.sh, W=9: NSD on 127.53.9.x, Unbound on 127.53.9.53) with
# fstrm_capture as Unbound's dnstap receiver, resolves a varied set of the world's names with
# dig (A, AAAA, MX, TXT, multi-string TXT, the CNAME chain across zones and TLDs, SRV, wildcard
# A/TXT, NXDOMAIN, NODATA, a name below a delegation, an NXDOMAIN from the root) plus a few
# hundred unique wildcard and NXDOMAIN names (each one an upstream query), waits for Unbound's
# dnstap timer, stops Unbound (SIGTERM: it flushes its queue and sends STOP), and keeps the file.
# Needs nsd, unbound, fstrm-bin, dnstap-ldns and bind9-dnsutils (dig). Only 127.0.0.0/8 is used.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUTPUT=${1:-$REPO/samples/unbound.fstrm}
CT=protobuf:dnstap.Dnstap
UNIQUE=${UNIQUE:-300}   # unique names per kind

[ "$(id -u)" -eq 0 ] || { echo "run as root: NSD and Unbound bind port 53 on 127.53.9.x" >&2; exit 1; }
for p in nsd unbound fstrm_capture dnstap-ldns dig; do
    command -v "$p" >/dev/null || { echo "missing $p: run scripts/install-deps.sh" >&2; exit 1; }
done

# shellcheck source=bench/world.sh
source "$REPO/bench/world.sh"
TMP=$(mktemp -d -t dnsensor-sample.XXXXXX)
CAP_PID=""
cleanup() {
    set +e
    world_stop
    if [ -n "$CAP_PID" ] && kill -0 "$CAP_PID" 2>/dev/null; then
        kill -TERM "$CAP_PID"
        for _ in $(seq 50); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CAP_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

world_init 9 "$TMP"
fstrm_capture -t "$CT" -u "$TMP/dnstap.sock" -w "$TMP/sample.fstrm" 2>"$TMP/capture.log" &
CAP_PID=$!
for _ in $(seq 200); do [ -S "$TMP/dnstap.sock" ] && break; sleep 0.05; done
[ -S "$TMP/dnstap.sock" ] || { echo "fstrm_capture did not create its socket" >&2; exit 1; }
world_start_nsd
world_start_unbound "$TMP/dnstap.sock"

{
    cat <<'EOF'
www.d1.com A
www.d1.com AAAA
d1.com MX
d1.com TXT
d1.com NS
d1.com SOA
txt.d1.com TXT
alias.d1.com A
alias.d1.com AAAA
_sip._udp.d1.com SRV
sip.d1.com A
sip2.d1.com A
mail.d1.com A
foo.w.d1.com A
foo.w.d1.com TXT
nx.d1.com A
www.d1.com MX
host.sub.d1.com A
host.sub.d1.com AAAA
foo.example A
web.d3.net A
web.d3.net AAAA
www.d2.com A
mx.d2.com A
d2.com NS
d3.net MX
nx.d3.net A
EOF
    for i in $(seq -w 1 "$UNIQUE"); do
        echo "host-$i.w.d1.com A"
        [ $((10#$i % 3)) -eq 0 ] && echo "host-$i.w.d1.com TXT"
        [ $((10#$i % 4)) -eq 0 ] && echo "nx-$i.d1.com A"
        [ $((10#$i % 6)) -eq 0 ] && echo "nx-$i.sub.d1.com A"
        [ $((10#$i % 6)) -eq 0 ] && echo "nx-$i.d3.net AAAA"
        [ $((10#$i % 12)) -eq 0 ] && echo "nx-$i.d2.com MX"
    done
} | awk '{ print $1, $2 }' >"$TMP/queries.txt"
dig +time=2 +tries=1 @"$WORLD_RESOLVER" -f "$TMP/queries.txt" +noall +comments >"$TMP/dig.out" 2>&1 || true
echo "queries: $(wc -l <"$TMP/queries.txt"), answered: $(grep -c 'status:' "$TMP/dig.out")" >&2

# Unbound's workers hand dnstap messages to its output thread on a timer (about 1 s): wait for
# it, then SIGTERM flushes the rest and sends STOP.
sleep 3
world_stop_unbound
sleep 0.5
kill -TERM "$CAP_PID"
wait "$CAP_PID" || true
CAP_PID=""
cat "$TMP/capture.log" >&2

n=$(dnstap-ldns -r "$TMP/sample.fstrm" -q | wc -l)
[ "$n" -ge 200 ] || { echo "only $n dnstap messages in the sample" >&2; exit 1; }
mkdir -p "$(dirname "$OUTPUT")"
cp "$TMP/sample.fstrm" "$OUTPUT"
echo "wrote $OUTPUT: $n dnstap messages, $(stat -c %s "$OUTPUT") bytes" >&2
