#!/usr/bin/env bash
# Benchmark of the forwarding proxy (docs/benchmarks.md, "Forwarding proxy").
#
# Usage (as root, Debian 12, from anywhere in a clone):
#
#     [PEERS="direct dnsdist dnsensor dnsensor-busy hickory"] bench/proxy.sh [--rounds N] [--duration S]
#         [--warmup S] [--outstanding Q] [--clients C] [--latency-qps R] [--names N]
#         [--transport udp|tcp] [--no-pin] [--no-build] [--dnsdist-listeners N]
#         [--dnsdist-sockets N] [--dnsdist-lua LINE]... [--window SECS]
#
#   1. Upstream: NSD (one server process) on 127.53.10.1:53 serving a generated zone,
#      bench.example., with --names (default 3000) hosts h0..hN-1: an A for every one
#      (192.0.2.0/24, 198.51.100.0/24), an AAAA for two in three (2001:db8::/32), an MX for one in
#      four, a TXT for one in five, plus the NS/MX targets. The query file: every (name, type) that
#      exists, an AAAA for some that have none (NODATA) and 5 % non-existent names (NXDOMAIN),
#      shuffled with a fixed seed (7 000 lines for 3 000 names); dnsperf loops over it.
#   2. Peers, in the order of PEERS (default: all five; a peer whose binary is missing is skipped
#      with a note), each listening on its own address:
#        direct   no proxy: dnsperf to NSD itself (the ceiling of the load generator and NSD, and
#                 the latency floor), on 127.53.10.1:53;
#        dnsdist  dnsdist 1.7 (Debian), config rendered from bench/proxy-dnsdist.conf.tmpl:
#                 `dnsdist --supervised --disable-syslog -C CONF` on 127.53.10.2:53 (as root; it
#                 does not drop privileges without -u);
#        dnsensor `dnsensor proxy --listen 127.53.10.3:53 --upstream 127.53.10.1:53 --allow
#                 127.0.0.0/8 --output file:TMP/records-R.cof --sensor-id bench` (recording on,
#                 to a real file; defaults otherwise);
#        dnsensor-busy the same with `--busy-poll $BUSY_POLL` (default 200 µs) on 127.53.10.5:53:
#                 its forwarding threads poll instead of sleeping (README, "Busy polling");
#        hickory  target/release/examples/hickory_forwarder --listen 127.53.10.4:53 --upstream
#                 127.53.10.1:53 (a minimal hickory-server forwarder, proxy/examples/), if built.
#   3. --rounds rounds (default 3); in each, every peer in turn, the order rotated by one each
#      round. Per peer and round, a fresh proxy process under GNU time:
#        warm-up   dnsperf -c C -q Q -l WARMUP (default 2 s), not counted;
#        throughput dnsperf -c C -q Q -l DURATION -t 1 (closed loop: C client sockets, at most Q
#                  queries outstanding, default -c 4 -q 100, 10 s): queries/s, loss, average
#                  latency at saturation;
#        latency   dnsperf -c C -q Q -Q R -l DURATION -t 1 -v (fixed rate, default R = 10 000/s,
#                  well below every peer's capacity): Debian's dnsperf 2.10 prints only the
#                  average latency, no histogram or percentiles, so -v's per-query latencies
#                  (µs resolution) give average, p50, p99, p99.9 and max, per round and (as
#                  context) over every round's answers of a peer pooled.
#      CPU per query: utime+stime of the proxy process (all threads, /proc/PID/stat) across each
#      measured dnsperf run ÷ queries completed in it; and the whole life of the process (GNU time
#      %U+%S: start-up, warm-up, both runs and, for dnsensor, the final flush of its window on
#      SIGTERM) ÷ every query completed. Peak RSS: GNU time %M (the process's whole life,
#      including the flush at exit); VmHWM before SIGTERM is kept in the raw file.
#   4. CPU shares on this 2-core machine (default; --no-pin leaves scheduling to the kernel):
#      CPU 0: dnsperf and NSD; CPU 1: the proxy alone (taskset on the whole process, so every
#      thread; dnsensor's pipeline then sizes itself for one core, while its tokio runtime and
#      hickory's keep 2 workers and dnsdist its ~20 threads). Each proxy gets exactly one core; the
#      `direct` row shows what CPU 0 can feed. Other
#      processes on the machine are not kept off either core: the "proxy % of a core" and
#      "CPU busy" columns show whether the proxy or something else limited a closed-loop run.
#   Prints a markdown table per run, medians and ratios against dnsdist; everything also goes to
#   bench/out/results-proxy-<time>.md, the raw figures to bench/out/raw-proxy-<time>.tsv and each
#   proxy's stderr to bench/out/proxy-<time>-<peer>-<round>.log.
#
# Options: --rounds, --duration (s per measured dnsperf run), --warmup (s), --outstanding and
# --clients (dnsperf -q and -c for both runs), --latency-qps (the fixed rate), --names (zone size),
# --transport tcp (dnsperf -m tcp; lower --latency-qps, dnsdist 1.7 serves ~15k TCP q/s here),
# --no-pin, --no-build, --window SECS (passed to dnsensor; default: dnsensor's own, 60 s),
# --dnsdist-listeners N (N UDP listener threads with SO_REUSEPORT), --dnsdist-sockets N (newServer
# sockets=N, one responder thread each), --dnsdist-lua LINE (appended to dnsdist's config, e.g.
# "setUDPMultipleMessagesVectorSize(32)"). Environment: PEERS, DNSENSOR_BIN, HICKORY_BIN,
# BUSY_POLL (µs, for dnsensor-busy).
#
# It installs what it needs (apt-get: nsd dnsdist dnsperf procps bind9-dnsutils time) and builds
# the release binary when dnsensor is a peer (`cargo build --release --locked --bin dnsensor`,
# honouring CARGO_TARGET_DIR; --no-build uses the existing one, or DNSENSOR_BIN). Installed
# daemons are not started as services. Only 127.0.0.0/8 is used; ports 53 on 127.53.10.{1..5}
# must be free.
set -euo pipefail

ROUNDS=3
DURATION=10
WARMUP=2
OUTSTANDING=100
CLIENTS=4
LAT_QPS=10000
NAMES=3000
TRANSPORT=udp
PIN=1
BUILD=1
DD_LISTENERS=1
DD_SOCKETS=1
DD_LUA=()
WINDOW=""
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --outstanding) OUTSTANDING=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --latency-qps) LAT_QPS=$2; shift ;;
        --names) NAMES=$2; shift ;;
        --transport) TRANSPORT=$2; shift ;;
        --no-pin) PIN=0 ;;
        --no-build) BUILD=0 ;;
        --dnsdist-listeners) DD_LISTENERS=$2; shift ;;
        --dnsdist-sockets) DD_SOCKETS=$2; shift ;;
        --dnsdist-lua) DD_LUA+=("$2"); shift ;;
        --window) WINDOW=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $TRANSPORT in udp|tcp) ;; *) echo "--transport: udp or tcp" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT="$REPO/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS="$OUT/results-proxy-$STAMP.md"
RAW="$OUT/raw-proxy-$STAMP.tsv"
W=10
NET="127.53.$W"
NSD_ADDR="$NET.1"
ZONE="bench.example."
PEERS=${PEERS:-direct dnsdist dnsensor dnsensor-busy hickory}
BUSY_POLL=${BUSY_POLL:-200}
mkdir -p "$OUT"

[ "$(id -u)" -eq 0 ] || { echo "run as root: NSD and the proxies bind port 53 on $NET.x" >&2; exit 1; }

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install, build, find the peers
# ---------------------------------------------------------------------------------------------
bash "$REPO/scripts/install-deps.sh" nsd dnsdist dnsperf procps bind9-dnsutils time

want() { [[ " $PEERS " == *" $1 "* ]]; }
NOTES=()
DNSENSOR_BIN=${DNSENSOR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/dnsensor}
if want dnsensor || want dnsensor-busy; then
    if [ $BUILD -eq 1 ]; then
        log "building the release binary"
        cargo build --release --locked --bin dnsensor
    fi
    if [ ! -x "$DNSENSOR_BIN" ] || ! "$DNSENSOR_BIN" proxy --help >/dev/null 2>&1; then
        NOTES+=("dnsensor skipped: $DNSENSOR_BIN has no \`proxy\` subcommand")
        PEERS=$(echo " $PEERS " | sed 's/ dnsensor / /; s/ dnsensor-busy / /')
    fi
fi
HICKORY_BIN=${HICKORY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/examples/hickory_forwarder}
if want hickory && [ ! -x "$HICKORY_BIN" ]; then
    NOTES+=("hickory skipped: no $HICKORY_BIN (build it with \`cargo build --release -p dnsensor-proxy --example hickory_forwarder\`)")
    PEERS=${PEERS/hickory/}
fi
read -r -a PEER_LIST <<<"$PEERS"
[ ${#PEER_LIST[@]} -gt 0 ] || { echo "no peers left to run" >&2; exit 1; }
for n in "${NOTES[@]}"; do log "$n"; done

peer_addr() {
    case $1 in
        direct) echo "$NSD_ADDR" ;; dnsdist) echo "$NET.2" ;; dnsensor) echo "$NET.3" ;;
        hickory) echo "$NET.4" ;; dnsensor-busy) echo "$NET.5" ;; *) echo "unknown peer $1" >&2; return 1 ;;
    esac
}

if [ $PIN -eq 1 ] && [ "$(nproc)" -ge 2 ]; then
    LOADGEN_CPU=0; PROXY_CPU=1
    PIN_LOAD=(taskset -c "$LOADGEN_CPU")
    PIN_PROXY=(taskset -c "$PROXY_CPU")
    SHARES="CPU $LOADGEN_CPU: dnsperf and NSD; CPU $PROXY_CPU: the proxy alone (taskset -c, every thread)"
else
    PIN=0; PIN_LOAD=(); PIN_PROXY=()
    SHARES="not pinned: dnsperf, NSD and the proxy share all $(nproc) cores as the kernel schedules them"
fi

# ---------------------------------------------------------------------------------------------
# Processes started here are tracked by pid and stopped on exit.
# ---------------------------------------------------------------------------------------------
# shellcheck source=bench/world.sh
source "$REPO/bench/world.sh"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
TMP=$(mktemp -d -t dnsensor-bench-proxy.XXXXXX)
world_init "$W" "$TMP"     # only for world_spawn/world_stop: NSD is this bench's own, not the world's
PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# render TEMPLATE OUT KEY=VALUE...: {{KEY}} → VALUE; a placeholder left over is an error.
render() {
    local tmpl=$1 out=$2 kv k v; shift 2
    local args=()
    for kv in "$@"; do
        k=${kv%%=*}; v=${kv#*=}
        v=${v//\\/\\\\}; v=${v//|/\\|}; v=${v//&/\\&}
        args+=(-e "s|{{$k}}|$v|g")
    done
    sed "${args[@]}" "$tmpl" >"$out"
    if grep -n '{{' "$out" >&2; then log "unrendered placeholder in $out"; return 1; fi
}

# wait_dns ADDR PID LOG: up to 20 s for ADDR:53 to answer h1's A with NOERROR.
wait_dns() {
    local addr=$1 pid=$2 logf=$3 deadline=$((SECONDS + 20)) out
    while :; do
        out=$(dig +time=1 +tries=1 @"$addr" "h1.$ZONE" A 2>&1 || true)
        grep -q 'status: NOERROR' <<<"$out" && grep -q 'ANSWER: 1' <<<"$out" && return 0
        if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
            log "nothing answers on $addr:53; last dig:"; echo "$out" >&2; cat "$logf" >&2
            return 1
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# 1. Zone, query file, NSD
# ---------------------------------------------------------------------------------------------
# shellcheck source=bench/proxy-zone.sh
source "$REPO/bench/proxy-zone.sh"

NSD_DIR="$TMP/nsd"
mkdir -p "$NSD_DIR"
make_zone "$NAMES" "$ZONE" >"$NSD_DIR/zone"
nsd-checkzone "$ZONE" "$NSD_DIR/zone" >/dev/null
QUERIES="$TMP/queries.txt"
make_queries "$NAMES" "$ZONE" >"$QUERIES"
render "$REPO/bench/proxy-nsd.conf.tmpl" "$NSD_DIR/nsd.conf" "ADDR=$NSD_ADDR" "PORT=53" \
    "DIR=$NSD_DIR" "ZONE=$ZONE" "ZONEFILE=zone"
nsd-checkconf "$NSD_DIR/nsd.conf"
world_spawn nsd "$NSD_DIR/stderr.log" "${PIN_LOAD[@]}" nsd -d -c "$NSD_DIR/nsd.conf"
wait_dns "$NSD_ADDR" "$WORLD_LAST_PID" "$NSD_DIR/stderr.log"
log "NSD up on $NSD_ADDR:53: $(grep -c . "$NSD_DIR/zone") zone lines, query file $(wc -l <"$QUERIES") lines"

DD_CONF="$TMP/dnsdist.conf"
dd_opts=""
[ "$DD_LISTENERS" -le 1 ] || dd_opts=", {reusePort=true}"
render "$REPO/bench/proxy-dnsdist.conf.tmpl" "$DD_CONF" "LISTEN=$(peer_addr dnsdist):53" \
    "LOCALOPTS=$dd_opts" "ACL=127.0.0.0/8" "UPSTREAM=$NSD_ADDR:53" "SOCKETS=$DD_SOCKETS"
for ((i = 1; i < DD_LISTENERS; i++)); do
    echo "addLocal(\"$(peer_addr dnsdist):53\", {reusePort=true})" >>"$DD_CONF"
done
for line in "${DD_LUA[@]}"; do echo "$line" >>"$DD_CONF"; done
if want dnsdist; then dnsdist --check-config -C "$DD_CONF" >/dev/null; fi

# peer_cmd PEER ROUND: the command line of the proxy (none for direct).
peer_cmd() {
    local peer=$1 round=$2 addr
    addr=$(peer_addr "$peer")
    case $peer in
        direct) ;;
        dnsdist) echo dnsdist --supervised --disable-syslog -C "$DD_CONF" ;;
        dnsensor|dnsensor-busy)
            echo "$DNSENSOR_BIN" proxy --listen "$addr:53" --upstream "$NSD_ADDR:53" \
                --allow 127.0.0.0/8 --output "file:$TMP/records-$round.cof" --sensor-id bench \
                ${WINDOW:+--window "$WINDOW"} \
                $([ "$peer" = dnsensor-busy ] && echo --busy-poll "$BUSY_POLL") ;;
        hickory) echo "$HICKORY_BIN" --listen "$addr:53" --upstream "$NSD_ADDR:53" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# 2./3. Rounds
# ---------------------------------------------------------------------------------------------
cpu_ticks() { # utime+stime of every thread of PID, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
TICK=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }
# cpu_jiffies: "busy0 total0 busy1 total1" for CPUs 0 and 1 from /proc/stat (busy = all but idle
# and iowait), to see how busy each core was during a run, whoever used it.
cpu_jiffies() {
    awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", t - $5 - $6, t }
         END { print "" }' /proc/stat
}
busy_pct() { # busy_pct "BEFORE" "AFTER" IDX(0|1)
    awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN { split(a, x, " "); split(b, y, " ");
        i = 2 * k + 1; d = y[i + 1] - x[i + 1]; printf "%.0f", (d > 0 ? 100 * (y[i] - x[i]) / d : 0) }'
}

# dnsperf_run LOG ARGS...: dnsperf on the load generator's CPU against the peer's address.
dnsperf_run() {
    local logf=$1; shift
    "${PIN_LOAD[@]}" dnsperf -m "$TRANSPORT" -d "$QUERIES" -c "$CLIENTS" -q "$OUTSTANDING" -t 1 \
        "$@" >"$logf" 2>&1 || { log "dnsperf failed:"; tail -20 "$logf" >&2; return 1; }
}
# dnsperf_stats LOG: "completed lost_pct qps avg_s rcodes lost" (rcodes without spaces).
dnsperf_stats() {
    awk '
        /Queries completed:/ { c = $3 }
        /Queries lost:/      { n = $3; l = $4; gsub(/[()%]/, "", l) }
        /Queries per second:/ { q = $4 }
        /Average Latency/    { a = $4 }
        /Response codes:/    { sub(/.*Response codes: */, ""); gsub(/ \([0-9.]+%\)/, ""); gsub(/, /, ","); gsub(/ /, "="); r = $0 }
        END { printf "%s %s %s %s %s %s\n", c, l, q, a, (r == "" ? "-" : r), n }' "$1"
}
# latency_stats LOG...: "avg p50 p99 p999 max" in seconds over every answer in the logs (dnsperf
# -v lines "> RCODE name type s"), then how many answers that is.
latency_stats() {
    awk '/^> / && $2 != "T" && $2 != "I" && $NF ~ /^[0-9.]+$/ { print $NF }' "$@" | sort -g |
        awk '{ v[NR] = $1; s += $1 }
            function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] }
            END { if (NR == 0) { print "- - - - - 0"; exit }
                  printf "%.6f %s %s %s %s %d\n", s / NR, pct(0.5), pct(0.99), pct(0.999), v[NR], NR }'
}

printf 'round\tpeer\tqps\tlost_pct\tavg_s\tlat_qps\tlat_lost_pct\tlat_avg_s\tlat_p50_s\tlat_p99_s\tlat_p999_s\tlat_max_s\tcpu_tput_s\tcpu_lat_s\ttput_completed\tlat_completed\tall_completed\tlife_cpu_s\tmaxrss_kib\tvmhwm_kib\tthreads\trecords\tload1\trcodes\tsummary\tcpu0_busy_pct\tcpu1_busy_pct\tlost\tlat_lost\n' >"$RAW"

remove_pid() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

run_peer() {
    local round=$1 peer=$2
    local addr tpid="" child="" logf="$TMP/$2-$1.log" tfile="$TMP/time-$2-$1"
    local c0 c1 c2 warm tput lat l hwm="" thr="" records="-" summary="-" e u s m i life="" rss=""
    local tc tl tq ta trc tn lc ll lq lrc ln la l50 l99 l999 lmax j0 j1
    local -a cmd
    addr=$(peer_addr "$peer")
    l=$(load1)
    if [ "$peer" != direct ]; then
        read -r -a cmd <<<"$(peer_cmd "$peer" "$round")"
        rm -f "$TMP/records-$round.cof"
        setsid /usr/bin/time -f "%e %U %S %M" -o "$tfile" "${PIN_PROXY[@]}" "${cmd[@]}" \
            >"$logf" 2>&1 </dev/null &
        tpid=$!; PIDS+=("$tpid")
        for i in $(seq 100); do child=$(pgrep -P "$tpid" || true); [ -n "$child" ] && break; sleep 0.05; done
        [ -n "$child" ] || { log "$peer did not start"; cat "$logf" >&2; exit 1; }
        wait_dns "$addr" "$child" "$logf"
        if [[ $peer == dnsensor* ]]; then
            for i in $(seq 100); do grep -q 'proxy: ready' "$logf" && break; sleep 0.1; done
            grep -q 'proxy: ready' "$logf" || log "dnsensor answers but logged no 'proxy: ready'"
        fi
    fi
    dnsperf_run "$TMP/warm.log" -s "$addr" -l "$WARMUP"
    warm=$(dnsperf_stats "$TMP/warm.log"); warm=${warm%% *}
    [ "$peer" = direct ] || c0=$(cpu_ticks "$child")
    j0=$(cpu_jiffies)
    dnsperf_run "$TMP/tput-$peer-$round.log" -s "$addr" -l "$DURATION"
    j1=$(cpu_jiffies)
    [ "$peer" = direct ] || c1=$(cpu_ticks "$child")
    dnsperf_run "$TMP/lat-$peer-$round.log" -s "$addr" -l "$DURATION" -Q "$LAT_QPS" -v
    [ "$peer" = direct ] || c2=$(cpu_ticks "$child")
    tput=$(dnsperf_stats "$TMP/tput-$peer-$round.log")
    lat=$(dnsperf_stats "$TMP/lat-$peer-$round.log")
    read -r tc tl tq ta trc tn <<<"$tput"
    read -r lc ll lq _ lrc ln <<<"$lat"
    read -r la l50 l99 l999 lmax _ <<<"$(latency_stats "$TMP/lat-$peer-$round.log")"
    if [ "$peer" != direct ]; then
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$child/status")
        thr=$(awk '/^Threads:/ {print $2}' "/proc/$child/status")
        kill -TERM "$child"
        for i in $(seq 150); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$tpid" 2>/dev/null; then
            log "$peer (pid $child) still running 15 s after SIGTERM: SIGKILL"
            kill -KILL "$child" 2>/dev/null || true
        fi
        wait "$tpid" || true
        remove_pid "$tpid"
        read -r e u s m < <(tail -1 "$tfile")
        life=$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')
        rss=$m
        if [[ $peer == dnsensor* ]]; then
            summary=$(grep -o 'summary:.*' "$logf" | tail -1 || true)
            [ -n "$summary" ] || { log "dnsensor printed no summary:"; tail -20 "$logf" >&2; summary="(none)"; }
            records=$(wc -l <"$TMP/records-$round.cof" 2>/dev/null || echo 0)
        fi
        cp "$logf" "$OUT/proxy-$STAMP-$peer-$round.log" 2>/dev/null || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$round" "$peer" "$tq" "$tl" "$ta" "$lq" "$ll" "$la" "$l50" "$l99" "$l999" "$lmax" \
        "$( [ "$peer" = direct ] && echo - || awk -v a="$c0" -v b="$c1" -v t="$TICK" 'BEGIN{printf "%.2f", (b-a)/t}')" \
        "$( [ "$peer" = direct ] && echo - || awk -v a="$c1" -v b="$c2" -v t="$TICK" 'BEGIN{printf "%.2f", (b-a)/t}')" \
        "$tc" "$lc" "$((warm + tc + lc))" "${life:--}" "${rss:--}" "${hwm:--}" "${thr:--}" "$records" "$l" \
        "$trc|$lrc" "$summary" "$(busy_pct "$j0" "$j1" 0)" "$(busy_pct "$j0" "$j1" 1)" "$tn" "$ln" >>"$RAW"
    log "round $round $peer: $(printf '%.0f' "$tq") q/s lost $tl %; @$LAT_QPS/s avg $la p99 $l99 s; load $l"
}

LOAD_BEFORE=$(cat /proc/loadavg)
n=${#PEER_LIST[@]}
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS (load $(load1))"
    for ((k = 0; k < n; k++)); do
        run_peer "$round" "${PEER_LIST[$(( (k + round - 1) % n ))]}"
    done
done
LOAD_AFTER=$(cat /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
DNSENSOR_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
{
    echo "## Forwarding proxy benchmark, $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- load average (1/5/15 min) before the rounds: ${LOAD_BEFORE% * *}; after: ${LOAD_AFTER% * *}"
    echo "- CPU shares: $SHARES"
    echo "- NSD $(nsd -v 2>&1 | awk '/version/ {print $3; exit}') on $NSD_ADDR:53 (server-count 1, rrl off), zone $ZONE: $NAMES hosts, $(grep -c . "$NSD_DIR/zone") lines; query file $(wc -l <"$QUERIES") lines"
    echo "- dnsperf $(dpkg-query -W -f='${Version}' dnsperf): throughput \`dnsperf -m $TRANSPORT -c $CLIENTS -q $OUTSTANDING -t 1 -l $DURATION\` (closed loop) after a ${WARMUP}-s warm-up; latency \`dnsperf -m $TRANSPORT -c $CLIENTS -q $OUTSTANDING -t 1 -l $DURATION -Q $LAT_QPS -v\`"
    want dnsdist && echo "- dnsdist $(dpkg-query -W -f='${Version}' dnsdist): \`dnsdist --supervised --disable-syslog -C CONF\` as root, $DD_LISTENERS UDP listener(s), $DD_SOCKETS backend socket(s), no cache; CONF: $(grep -v '^--' "$DD_CONF" | grep . | paste -sd';' | sed 's/;/; /g')"
    want dnsensor && echo "- dnsensor (tree at $DNSENSOR_REV; binary $DNSENSOR_BIN of $(date -u -r "$DNSENSOR_BIN" +%Y-%m-%dT%H:%MZ)): \`$(peer_cmd dnsensor R | sed "s|$TMP|TMP|g; s|$REPO/||")\`"
    want dnsensor-busy && echo "- dnsensor-busy (the same binary): \`$(peer_cmd dnsensor-busy R | sed "s|$TMP|TMP|g; s|$REPO/||")\`"
    want hickory && echo "- hickory (binary $HICKORY_BIN of $(date -u -r "$HICKORY_BIN" +%Y-%m-%dT%H:%MZ)): \`$(peer_cmd hickory R | sed "s|$REPO/||")\`"
    for note in "${NOTES[@]}"; do echo "- $note"; done
    echo
    echo "| round | peer | q/s (closed loop) | lost | avg ms | q/s @$LAT_QPS | lost | avg ms | p50 ms | p99 ms | p99.9 ms | CPU µs/q (closed loop) | CPU µs/q (@$LAT_QPS) | CPU µs/q (lifetime) | proxy % of a core (closed loop) | CPU0 / CPU1 busy % (closed loop) | peak RSS MiB | threads | records | load1 |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'function ms(x) { return x == "-" ? "–" : sprintf("%.3f", x * 1000) }
        function us(cpu, q) { return cpu == "-" || q == 0 ? "–" : sprintf("%.1f", cpu * 1e6 / q) }
        function lost(n, x) { return n " (" (x + 0 > 0.1 ? "**" x " %**" : x " %") ")" }
        NR > 1 {
            printf "| %s | %s | %.0f | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s |\n",
                $1, $2, $3, lost($28, $4), ms($5), $6, lost($29, $7), ms($8), ms($9), ms($10), ms($11),
                us($13, $15), us($14, $16), us($18, $17), ($13 == "-" ? "–" : sprintf("%.0f", $13 * 100 / dur)), $26, $27,
                ($19 == "-" ? "–" : sprintf("%.1f", $19 / 1024)), ($21 == "-" ? "–" : $21),
                ($22 == "-" ? "–" : $22), $23
        }' dur="$DURATION" "$RAW"
    echo
    echo "Lost: queries dnsperf counted as lost (no answer within 1 s, or none by the end of the run), above 0.1 % in bold. Closed loop: $CLIENTS client sockets, at most $OUTSTANDING queries outstanding, ${DURATION} s; its average latency is mostly queueing (Little's law: outstanding ÷ rate). Fixed rate: $LAT_QPS queries/s for ${DURATION} s; average and percentiles from dnsperf -v's per-query latencies (answered queries only). CPU µs/q: user+sys of the whole proxy process (every thread) during that run ÷ queries completed in it; lifetime: GNU time's user+sys from start to exit (start-up, warm-up, both runs, the flush on SIGTERM) ÷ every query completed. Proxy % of a core: its CPU time in the closed-loop run ÷ the run's length; well under 100 % means the proxy was not what limited the rate (the load generator and NSD on the other core, or other processes on its own core: see the CPU busy columns, from /proc/stat, which count every process). Peak RSS: GNU time's maximum resident set size."
    echo
    echo "Medians over the rounds:"
    echo
    echo "| peer | q/s (closed loop) | max lost % | avg ms @$LAT_QPS | p99 ms @$LAT_QPS | CPU µs/q (closed loop) | CPU µs/q (@$LAT_QPS) | CPU µs/q (lifetime) | peak RSS MiB (max) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v order="$PEERS" '
        function med(k, f,   n, i, j, t, a) {
            n = split(vals[k, f], a, " ")
            for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            if (n == 0) return "-"
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function add(k, f, v) { if (v != "-" && v != "") vals[k, f] = vals[k, f] " " v }
        NR > 1 {
            k = $2
            add(k, "qps", $3); add(k, "avg", $8); add(k, "p99", $10)
            if ($13 != "-") { add(k, "cput", $13 * 1e6 / $15); add(k, "cpul", $14 * 1e6 / $16); add(k, "cpuw", $18 * 1e6 / $17) }
            if ($4 + 0 > lmax[k] + 0) lmax[k] = $4; if ($7 + 0 > lmax[k] + 0) lmax[k] = $7
            if ($19 != "-" && $19 + 0 > rss[k]) rss[k] = $19 + 0
            seen[k] = 1
        }
        END {
            n = split(order, o, " ")
            for (i = 1; i <= n; i++) {
                k = o[i]; if (!(k in seen)) continue
                q[k] = med(k, "qps"); a[k] = med(k, "avg"); p[k] = med(k, "p99"); ct[k] = med(k, "cput"); cl[k] = med(k, "cpul"); cw[k] = med(k, "cpuw")
                printf "| %s | %.0f | %s | %.3f | %.3f | %s | %s | %s | %s |\n", k, q[k], lmax[k] + 0, a[k] * 1000, p[k] * 1000,
                    (ct[k] == "-" ? "–" : sprintf("%.1f", ct[k])), (cl[k] == "-" ? "–" : sprintf("%.1f", cl[k])),
                    (cw[k] == "-" ? "–" : sprintf("%.1f", cw[k])), (k in rss ? sprintf("%.1f", rss[k] / 1024) : "–")
            }
            if (!("dnsdist" in seen)) exit
            print ""
            print "Ratios of medians against dnsdist (goals apply to dnsensor and dnsensor-busy: throughput ≥ 1.0× with recording on, latency no worse, RSS < 64 MiB):"
            print ""
            print "| ratio | value | goal | met |"
            print "|---|---:|---|---|"
            for (i = 1; i <= n; i++) {
                k = o[i]; if (!(k in seen) || k == "dnsdist" || k == "direct") continue
                g = (k ~ /^dnsensor/)
                r = q[k] / q["dnsdist"]
                printf "| %s q/s / dnsdist q/s (closed loop) | %.2f | %s | %s |\n", k, r, (g ? "≥ 1.0" : "–"), (g ? (r >= 1.0 ? "yes" : "**no**") : "–")
                printf "| %s queries per CPU-second / dnsdist (closed loop; the throughput ratio if each proxy were CPU-bound on its own core) | %.2f | – | – |\n", k, ct["dnsdist"] / ct[k]
                r = a[k] / a["dnsdist"]
                printf "| %s avg latency / dnsdist @%d/s | %.2f | %s | %s |\n", k, lq, r, (g ? "≤ 1.0" : "–"), (g ? (r <= 1.0 ? "yes" : "**no**") : "–")
                r = p[k] / p["dnsdist"]
                printf "| %s p99 latency / dnsdist @%d/s | %.2f | %s | %s |\n", k, lq, r, (g ? "≤ 1.0" : "–"), (g ? (r <= 1.0 ? "yes" : "**no**") : "–")
                printf "| %s CPU per query / dnsdist (closed loop) | %.2f | – | – |\n", k, ct[k] / ct["dnsdist"]
                printf "| %s CPU per query / dnsdist (@%d/s) | %.2f | – | – |\n", k, lq, cl[k] / cl["dnsdist"]
                if (g) printf "| %s peak RSS, max over rounds | %.1f MiB | < 64 MiB | %s |\n", k, rss[k] / 1024, (rss[k] / 1024 < 64 ? "yes" : "**no**")
            }
            if ("direct" in seen) printf "| (context) dnsdist q/s / direct (dnsperf → NSD, no proxy) q/s | %.2f | – | – |\n", q["dnsdist"] / q["direct"]
        }' lq="$LAT_QPS" "$RAW"
    echo
    echo "Latency @$LAT_QPS/s over every round's answers pooled (context: the goal rows above use the medians of the rounds):"
    echo
    echo "| peer | answers | avg ms | p50 ms | p99 ms | p99.9 ms | p99 / dnsdist's |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    pooled_dnsdist=""
    # dnsdist first, as the others' p99 is divided by its own.
    for peer in dnsdist ${PEERS//dnsdist/}; do
        logs=("$TMP"/lat-"$peer"-*.log)
        [ -e "${logs[0]}" ] || continue
        read -r avg p50 p99 p999 _ n <<<"$(latency_stats "${logs[@]}")"
        [ "$peer" = dnsdist ] && pooled_dnsdist=$p99
        awk -v peer="$peer" -v n="$n" -v a="$avg" -v m="$p50" -v p="$p99" -v t="$p999" -v d="$pooled_dnsdist" 'BEGIN {
            printf "| %s | %d | %.3f | %.3f | %.3f | %.3f | %s |\n", peer, n, a * 1000, m * 1000, p * 1000, t * 1000,
                (d != "" && peer != "dnsdist" ? sprintf("%.2f", p / d) : "–") }'
    done
    if want dnsensor || want dnsensor-busy; then
        echo
        echo "dnsensor summaries and record counts (lines in the --output file) per round:"
        echo
        echo '```'
        awk -F'\t' 'NR > 1 && $2 ~ /^dnsensor/ { print "round " $1 " " $2 ": records=" $22 " " $25 }' "$RAW"
        echo '```'
    fi
    echo
    echo "Response codes (closed loop | fixed rate) per run:"
    echo
    echo '```'
    awk -F'\t' 'NR > 1 { print "round " $1 " " $2 ": " $24 }' "$RAW"
    echo '```'
} | tee "$RESULTS"
log "results: $RESULTS (raw: $RAW; proxy logs: $OUT/proxy-$STAMP-*.log)"
