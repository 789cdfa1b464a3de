#!/usr/bin/env bash
# Side-by-side latency of two dnsensor proxy binaries and dnsdist at a fixed rate
# (docs/benchmarks.md, "Recording under SCHED_IDLE").
#
# Usage (as root, Debian 12, after bench/proxy.sh has installed its packages):
#
#     bench/proxy-ab.sh BINARY_A BINARY_B [TRIPLES]
#
# NSD serves bench/proxy.sh's zone on 127.53.13.1:53 (CPU 0). Each of TRIPLES rounds (default
# 8) runs dnsdist (127.53.13.2), BINARY_A, then BINARY_B (127.53.13.3), each a fresh process
# pinned to CPU 1, as `dnsensor proxy --listen 127.53.13.3:53 --upstream 127.53.13.1:53 --allow
# 127.0.0.0/8 --output file:TMP/records.cof`. Per run: 2 s of closed-loop warm-up, then
# `dnsperf -c 4 -q 100 -Q 10000 -l 8 -v` on CPU 0 (80 000 answers). Prints one line per run:
# average, p50 and p99 latency over every answer (µs), answers, and the proxy's CPU µs a query;
# then the medians over the rounds. Only 127.0.0.0/8 is used.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
TRIPLES=${3:-8}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/proxy-zone.sh
source "$REPO/bench/proxy-zone.sh"
for tool in nsd dnsdist dnsperf dig taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run bench/proxy.sh once" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 1; }
TMP=$(mktemp -d -t dnsensor-proxy-ab.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
NET=127.53.13

make_zone 3000 bench.example. >"$TMP/zone"
make_queries 3000 bench.example. >"$TMP/queries.txt"
sed -e "s|{{ADDR}}|$NET.1|; s|{{PORT}}|53|; s|{{DIR}}|$TMP|g; s|{{ZONE}}|bench.example.|; s|{{ZONEFILE}}|zone|" \
    "$REPO/bench/proxy-nsd.conf.tmpl" >"$TMP/nsd.conf"
sed -e "s|{{LISTEN}}|$NET.2:53|; s|{{LOCALOPTS}}||; s|{{ACL}}|127.0.0.0/8|; s|{{UPSTREAM}}|$NET.1:53|; s|{{SOCKETS}}|1|" \
    "$REPO/bench/proxy-dnsdist.conf.tmpl" >"$TMP/dnsdist.conf"
taskset -c 0 nsd -d -c "$TMP/nsd.conf" 2>"$TMP/nsd.err" &
PIDS+=($!)

# answers ADDR: waits up to 10 s for ADDR to answer.
answers() {
    for _ in $(seq 100); do
        dig +time=1 +tries=1 @"$1" h1.bench.example A 2>/dev/null | grep -q 'status: NOERROR' && return 0
        sleep 0.1
    done
    echo "nothing answers on $1" >&2; return 1
}
answers $NET.1
# latency LOG: "avg_us p50_us p99_us answers" over dnsperf -v's per-query lines.
latency() {
    awk '/^> / && $2 != "T" && $2 != "I" && $NF ~ /^[0-9.]+$/ { print $NF }' "$1" | sort -g |
        awk '{ v[NR] = $1; s += $1 }
            function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] }
            END { printf "%.1f %.1f %.1f %d\n", 1e6 * s / NR, 1e6 * pct(0.5), 1e6 * pct(0.99), NR }'
}
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

printf 'round\tpeer\tavg_us\tp50_us\tp99_us\tanswers\tcpu_us_per_q\n' | tee "$TMP/runs.tsv"
for round in $(seq "$TRIPLES"); do
    for peer in dnsdist A B; do
        case $peer in
            dnsdist) addr=$NET.2; cmd=(dnsdist --supervised --disable-syslog -C "$TMP/dnsdist.conf") ;;
            A | B) addr=$NET.3; bin=$A; [ $peer = B ] && bin=$B
                cmd=("$bin" proxy --listen $NET.3:53 --upstream $NET.1:53 --allow 127.0.0.0/8
                    --output "file:$TMP/records.cof" --sensor-id ab) ;;
        esac
        taskset -c 1 "${cmd[@]}" >/dev/null 2>"$TMP/proxy.err" &
        pid=$!
        PIDS+=("$pid")
        answers "$addr" || { cat "$TMP/proxy.err" >&2; exit 1; }
        taskset -c 0 dnsperf -s "$addr" -d "$TMP/queries.txt" -c 4 -q 100 -l 2 >/dev/null 2>&1
        t0=$(ticks "$pid")
        taskset -c 0 dnsperf -s "$addr" -d "$TMP/queries.txt" -c 4 -q 100 -Q 10000 -l 8 -v >"$TMP/run.log" 2>&1
        t1=$(ticks "$pid")
        read -r avg p50 p99 n < <(latency "$TMP/run.log")
        cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz / n * 1e6 }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$peer" "$avg" "$p50" "$p99" "$n" "$cpu" | tee -a "$TMP/runs.tsv"
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
done
echo
echo "medians over $TRIPLES rounds (A = $A, B = $B):"
for peer in dnsdist A B; do
    awk -v p="$peer" -F'\t' '$2 == p { for (c = 3; c <= 7; c++) v[c, ++n[c]] = $c }
        function med(c,   i, j, t, k) { k = n[c]
            for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[c, j] < v[c, i]) { t = v[c, i]; v[c, i] = v[c, j]; v[c, j] = t }
            return k % 2 ? v[c, (k + 1) / 2] : (v[c, k / 2] + v[c, k / 2 + 1]) / 2 }
        END { printf "%-8s avg %.1f µs  p50 %.1f µs  p99 %.1f µs  CPU %.1f µs/q\n", p, med(3), med(4), med(5), med(7) }' "$TMP/runs.tsv"
done
