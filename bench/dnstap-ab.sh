#!/usr/bin/env bash
# Side-by-side comparison of two dnsensor binaries as dnstap consumers, with fstrm_capture as
# the reference (docs/benchmarks.md, "Scheduling: the io thread and the sender").
#
# Usage (as root, after bench/dnstap.sh has recorded bench/out/dnstap-capture.fstrm):
#
#     bench/dnstap-ab.sh BINARY_A BINARY_B [PAIRS] [-- DNSENSOR_ARGS...]
#
# Each of PAIRS rounds (default 6) replays the capture with fstrm_replay into BINARY_A, then
# BINARY_B, then fstrm_capture -w /dev/null, each alone on the machine, and prints one line per
# run: the wall time from the replay's start to the receiver's exit (as bench/dnstap.sh measures
# it), the whole machine's idle core-seconds in that time (/proc/stat), and the receiver's CPU
# time and peak RSS (GNU time), and for dnsensor the `shed=` count of its exit summary.
# DNSENSOR_ARGS default to --queue-depth 512000, so that nothing is shed and both binaries do
# the same work. The binaries run as `dnsensor dnstap --listen unix:SOCK --output
# file:/dev/null --window 60 --sensor-id bench DNSENSOR_ARGS`.
# Uses a unix socket in a temporary directory; no network.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
A=$(realpath "$1") B=$(realpath "$2"); shift 2
PAIRS=6
if [ $# -gt 0 ] && [ "$1" != "--" ]; then PAIRS=$1; shift; fi
[ "${1:-}" = "--" ] && shift
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--queue-depth 512000)

REPO=$(cd "$(dirname "$0")/.." && pwd)
CAPTURE=$REPO/bench/out/dnstap-capture.fstrm
[ -f "$CAPTURE" ] || { echo "no capture at $CAPTURE: run bench/dnstap.sh first" >&2; exit 1; }
for tool in fstrm_replay fstrm_capture /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install fstrm-bin time)" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
SOCK=$TMP/dnstap.sock

idle_jiffies() { awk '/^cpu /{print $5}' /proc/stat; }

# run LABEL COMMAND...: the receiver COMMAND (listening on $SOCK) under GNU time, one replay.
run() {
    local label=$1 i0 i1 t0 t1 rpid; shift
    rm -f "$SOCK"
    /usr/bin/time -o "$TMP/time" -f "%U %S %M" "$@" 2>"$TMP/stderr" &
    rpid=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
    [ -S "$SOCK" ] || { echo "$label did not listen:" >&2; cat "$TMP/stderr" >&2; exit 1; }
    i0=$(idle_jiffies); t0=$(date +%s.%N)
    fstrm_replay -t protobuf:dnstap.Dnstap -u "$SOCK" -r "$CAPTURE"
    # GNU time's child is the receiver; SIGTERM goes to it, not to time.
    pkill -TERM -P "$rpid"
    wait "$rpid" || true
    t1=$(date +%s.%N); i1=$(idle_jiffies)
    read -r user sys rss < "$TMP/time"
    # dnsensor's summary line at exit says how many messages it shed; fstrm_capture has none.
    shed=$(grep -oE '(^| )shed=[0-9]+' "$TMP/stderr" | tail -1 | tr -d ' ' || true)
    awk -v l="$label" -v w="$(echo "$t1 - $t0" | bc)" -v idle="$(( i1 - i0 ))" -v hz="$(getconf CLK_TCK)" \
        -v u="$user" -v s="$sys" -v m="$rss" -v shed="${shed:-}" \
        'BEGIN { printf "%-14s wall %.2f s  idle %.2f core-s  cpu %.2f s (user %.2f sys %.2f)  rss %.1f MiB  %s\n", l, w, idle / hz, u + s, u, s, m / 1024, shed }'
}

for round in $(seq "$PAIRS"); do
    echo "round $round (load $(cut -d' ' -f1 /proc/loadavg))"
    for label in A B; do
        bin=$A; [ $label = B ] && bin=$B
        run "$label" "$bin" dnstap --listen "unix:$SOCK" --output file:/dev/null --window 60 \
            --sensor-id bench "${ARGS[@]}"
    done
    run fstrm_capture fstrm_capture -t protobuf:dnstap.Dnstap -u "$SOCK" -w /dev/null
done
