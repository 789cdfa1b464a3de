#!/usr/bin/env bash
# Benchmark of the libpcap tap (docs/benchmarks.md, "libpcap tap (capture)").
#
# Usage (as root, Debian 12, from anywhere in a clone):
#
#     bench/capture.sh [--reuse-capture] [--capture FILE] [--rounds N] [--min-packets N]
#                      [--record-qps N] [--rates "10000 25000 ... topspeed"] [--skip-live]
#                      [--live-args "ARGS"] [--perf]
#
#   1. Records a pcap of at least --min-packets (default 500000) packets of resolver traffic: the
#      test world (bench/world.sh, W=8, 127.53.8.x) with dnsperf sending unique names (mostly
#      <n>.w.d1.com A, every one a cache miss: client query + answer and Unbound's query + answer
#      to NSD, about 4 packets a name) to Unbound at --record-qps (default 10000) queries/s, while
#      `tcpdump -i lo -n -U -B 65536 -w FILE "net 127.53.8.0/24 and (udp port 53 or tcp port 53)"`
#      records. tcpdump must report 0 packets dropped by kernel (else the recording fails: lower
#      --record-qps). The capture is bench/out/capture-world.pcap (gitignored), or --capture FILE;
#      --reuse-capture keeps an existing one that is large enough.
#   2. Offline, --rounds rounds (default 3), alternating: (a) bench/pcap_loop.c (pcap_open_offline +
#      pcap_next_ex counting packets and bytes: the floor) and (b) `dnsensor capture --read FILE
#      --output file:/dev/null --sensor-id bench` (defaults otherwise), each under GNU time
#      (%e wall, %U user, %S sys, %M peak RSS). The file is read once first so that every round
#      reads it from the page cache.
#   3. Live (unless --skip-live), with the world stopped (replayed queries then meet closed ports
#      instead of being answered afresh): for each rate in --rates (default 10000 25000 50000
#      100000 200000 400000 topspeed; numbers are tcpreplay --pps), `dnsensor capture --interface
#      lo --bpf "net 127.53.8.0/24 and (udp port 53 or tcp port 53)" --output file:/dev/null`, then
#      `tcpreplay -i lo --pps RATE FILE` (or --topspeed), 2 s, SIGTERM, and its summary: a rate
#      passes when pcap_drops, pcap_ifdrops, shed and observations_shed are all 0 and dnsensor saw
#      every packet of the file. --live-args adds dnsensor flags to the live runs (split on
#      spaces), e.g. "--snaplen 2048" (see docs/benchmarks.md: on lo, whose MTU is 65536, libpcap's
#      ring frames are about 64 KiB each at the default snap length).
#   4. With --perf: `perf record -F 999 -e cpu-clock -g` on one more offline dnsensor run; the top
#      symbols (perf report --no-children) go to bench/out/perf-capture-<time>.txt.
#   Prints markdown tables and the ratios against the goals (≥ 1M packets per second of user CPU;
#   peak RSS < 64 MiB); everything also goes to bench/out/results-capture-<time>.md.
#
# It installs what it needs (apt-get: nsd unbound dnsperf tcpdump tcpreplay libpcap-dev
# bind9-dnsutils time procps gcc libc6-dev), compiles bench/pcap_loop.c into bench/out/ and builds
# the release binary (`cargo build --release --locked --bin dnsensor`, honouring CARGO_TARGET_DIR).
# Only 127.0.0.0/8 is used. Ports 53 on 127.53.8.{1..6,53} must be free.
set -euo pipefail

ROUNDS=3
MIN_PACKETS=500000
RECORD_QPS=10000
REUSE=0
LIVE=1
PERF=0
RATES="10000 25000 50000 100000 200000 400000 topspeed"
CAPTURE_ARG=""
LIVE_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --reuse-capture) REUSE=1 ;;
        --capture) CAPTURE_ARG=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --min-packets) MIN_PACKETS=$2; shift ;;
        --record-qps) RECORD_QPS=$2; shift ;;
        --rates) RATES=$2; shift ;;
        --skip-live) LIVE=0 ;;
        --live-args) read -r -a LIVE_ARGS <<<"$2"; shift ;;
        --perf) PERF=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT="$REPO/bench/out"
CAPTURE=${CAPTURE_ARG:-$OUT/capture-world.pcap}
[[ $CAPTURE == /* ]] || CAPTURE="$OLDPWD/$CAPTURE"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS="$OUT/results-capture-$STAMP.md"
W=8
BPF="net 127.53.$W.0/24 and (udp port 53 or tcp port 53)"
mkdir -p "$OUT"

[ "$(id -u)" -eq 0 ] || { echo "run as root: NSD and Unbound bind port 53 on 127.53.$W.x, tcpdump and the live runs capture on lo" >&2; exit 1; }

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install step
# ---------------------------------------------------------------------------------------------
install_deps() {
    local packages=(nsd unbound dnsperf tcpdump tcpreplay libpcap-dev bind9-dnsutils time procps gcc libc6-dev)
    [ $PERF -eq 0 ] || command -v perf >/dev/null || packages+=(linux-perf)
    bash "$REPO/scripts/install-deps.sh" "${packages[@]}"
}
install_deps

LOOP="$OUT/pcap_loop"
cc -O2 -Wall -o "$LOOP" "$REPO/bench/pcap_loop.c" -lpcap

log "building the release binary"
cargo build --release --locked --bin dnsensor
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/dnsensor"
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes started here are tracked by pid and stopped on exit.
# ---------------------------------------------------------------------------------------------
# shellcheck source=bench/world.sh
source "$REPO/bench/world.sh"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
TMP=$(mktemp -d -t dnsensor-capbench.XXXXXX)
world_init "$W" "$TMP"
PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# count_packets FILE: the packet count, by the C loop.
count_packets() { "$LOOP" "$1" | sed -n 's/^packets=\([0-9]*\) .*/\1/p'; }

load1() { cut -d' ' -f1 /proc/loadavg; }

# field NAME LINE: the value of the first NAME=<n> in LINE ('' when absent).
field() { if [[ " $2" =~ \ $1=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }
# The summary has two shed= fields: the tap's (before records=) and the pipeline's (after it).
pipeline_shed() { if [[ $1 =~ rrsets_flushed=[0-9]+\ shed=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }

# ---------------------------------------------------------------------------------------------
# 1. Record the capture
# ---------------------------------------------------------------------------------------------
# make_queries FILE PREFIX N: N queries, about 98 % of them unique names (cache misses).
make_queries() {
    awk -v p="$2" -v n="$3" 'BEGIN {
        split("www.d1.com A|www.d1.com AAAA|d1.com MX|d1.com TXT|txt.d1.com TXT|alias.d1.com A|" \
              "_sip._udp.d1.com SRV|web.d3.net AAAA|host.sub.d1.com A|www.d1.com MX|mx.d2.com A|" \
              "foo.example A", fixed, "|")
        nf = length(fixed)
        for (i = 1; i <= n; i++) {
            r = i % 100
            if (r < 80)      printf "%s%d.w.d1.com A\n", p, i
            else if (r < 87) printf "%s%d.w.d1.com TXT\n", p, i
            else if (r < 92) printf "%s%d.d1.com A\n", p, i
            else if (r < 95) printf "%s%d.sub.d1.com A\n", p, i
            else if (r < 97) printf "%s%d.d3.net AAAA\n", p, i
            else if (r < 98) printf "%s%d.d2.com MX\n", p, i
            else             print fixed[(i % nf) + 1]
        }
    }' >"$1"
}

# record_capture QUERIES: tcpdump on lo while dnsperf sends QUERIES queries to Unbound, into
# $CAPTURE.partial; sets RECORDED (packets) and KDROPS (tcpdump's "dropped by kernel").
RECORDED=0
KDROPS=0
record_capture() {
    local nq=$1 partial="$CAPTURE.partial" td_pid
    rm -f "$partial"
    world_start_nsd
    # Unbound's dnstap goes to a socket nobody listens on: it just retries.
    world_start_unbound "$TMP/no-dnstap.sock"
    rm -f "$TMP/tcpdump.log"
    tcpdump -i lo -n -U -B 65536 -w "$partial" "$BPF" 2>"$TMP/tcpdump.log" &
    td_pid=$!; PIDS+=("$td_pid")
    for _ in $(seq 100); do grep -qs "listening on" "$TMP/tcpdump.log" && break; sleep 0.1; done
    make_queries "$TMP/queries.txt" "r$(date +%s)q" "$nq"
    dnsperf -s "$WORLD_RESOLVER" -p 53 -d "$TMP/queries.txt" -n 1 -c 4 -q 200 -Q "$RECORD_QPS" \
        -t 5 -l 600 >"$OUT/dnsperf-capture.log" 2>&1
    log "dnsperf: $(grep -E 'Queries (completed|lost)|Queries per second' "$OUT/dnsperf-capture.log" | tr -s ' ' | paste -sd';')"
    sleep 2
    kill -TERM "$td_pid"; wait "$td_pid" || true
    world_stop
    cat "$TMP/tcpdump.log" >&2
    KDROPS=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$TMP/tcpdump.log")
    KDROPS=${KDROPS:-unknown}
    RECORDED=$(count_packets "$partial")
    log "capture: $RECORDED packets, $(stat -c %s "$partial") bytes, tcpdump dropped by kernel: $KDROPS"
}

if [ $REUSE -eq 1 ] && [ -s "$CAPTURE" ] && [ "$(count_packets "$CAPTURE")" -ge "$MIN_PACKETS" ]; then
    log "reusing $CAPTURE"
else
    rm -f "$CAPTURE"
    # About 3.9 packets per query (2 % are cache hits: 2 packets); 10 % more than needed.
    nq=$((MIN_PACKETS * 11 / 10 / 39 * 10))
    log "recording a capture of >= $MIN_PACKETS packets ($nq queries at $RECORD_QPS/s)"
    record_capture "$nq"
    if [ "$KDROPS" != 0 ]; then
        log "tcpdump: $KDROPS packets dropped by kernel; try a lower --record-qps"; exit 1
    fi
    if [ "$RECORDED" -lt "$MIN_PACKETS" ]; then
        log "only $RECORDED packets (< $MIN_PACKETS): recording again with 30 % more queries"
        record_capture $((nq * 13 / 10))
        [ "$KDROPS" = 0 ] || { log "tcpdump: $KDROPS packets dropped by kernel"; exit 1; }
        [ "$RECORDED" -ge "$MIN_PACKETS" ] || { log "still only $RECORDED packets"; exit 1; }
    fi
    mv "$CAPTURE.partial" "$CAPTURE"
fi
read -r PACKETS PBYTES < <("$LOOP" "$CAPTURE" | sed 's/packets=\([0-9]*\) bytes=\([0-9]*\)/\1 \2/')
CAPTURE_BYTES=$(stat -c %s "$CAPTURE")
log "capture $CAPTURE: $PACKETS packets, $PBYTES captured bytes, $CAPTURE_BYTES bytes on disk"

# ---------------------------------------------------------------------------------------------
# 2. Offline, alternating, ROUNDS rounds
# ---------------------------------------------------------------------------------------------
RAW="$OUT/raw-capture-$STAMP.tsv"   # round reader wall user sys maxrss_kib load1 summary
printf 'round\treader\twall_s\tuser_s\tsys_s\tmaxrss_kib\tload1\tsummary\n' >"$RAW"
TIMEFMT="%e %U %S %M"

# run_reader ROUND NAME CMD...: under /usr/bin/time; stdout to /dev/null.
run_reader() {
    local round=$1 name=$2; shift 2
    local l e u s m summary=""
    l=$(load1)
    /usr/bin/time -f "$TIMEFMT" -o "$TMP/time" "$@" >"$TMP/reader.out" 2>"$TMP/reader.err"
    read -r e u s m < <(tail -1 "$TMP/time")
    if [ "$name" = dnsensor ]; then
        summary=$(grep -o 'summary:.*' "$TMP/reader.err" | tail -1)
        [ -n "$summary" ] || { log "dnsensor printed no summary:"; cat "$TMP/reader.err" >&2; exit 1; }
        [ "$(field packets "$summary")" = "$PACKETS" ] || log "WARNING: dnsensor saw $(field packets "$summary") packets of $PACKETS"
    else
        summary=$(cat "$TMP/reader.out")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$e" "$u" "$s" "$m" "$l" "$summary" >>"$RAW"
}

"$LOOP" "$CAPTURE" >/dev/null   # into the page cache
LOAD_BEFORE=$(cat /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    log "offline round $round/$ROUNDS (load $(load1))"
    run_reader "$round" pcap_loop "$LOOP" "$CAPTURE"
    run_reader "$round" dnsensor "$BIN" capture --read "$CAPTURE" --output file:/dev/null --sensor-id bench
done
LOAD_AFTER_OFFLINE=$(cat /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 3. Live on lo (the world is stopped: nothing answers the replayed queries)
# ---------------------------------------------------------------------------------------------
world_stop
LIVE_RAW="$OUT/raw-capture-live-$STAMP.tsv"
printf 'rate\tsent\treplay_s\tactual_pps\tuser_s\tsys_s\tmaxrss_kib\tload1\tsummary\n' >"$LIVE_RAW"

# live_run RATE: one dnsensor live capture around one tcpreplay of the file at RATE pps.
live_run() {
    local rate=$1 tpid child l t0 t1 sent summary u s m i
    local rarg=(--pps "$rate")
    [ "$rate" != topspeed ] || rarg=(--topspeed)
    l=$(load1)
    rm -f "$TMP/live.err" "$TMP/time"
    /usr/bin/time -f "$TIMEFMT" -o "$TMP/time" "$BIN" capture --interface lo --bpf "$BPF" \
        --output file:/dev/null --sensor-id bench ${LIVE_ARGS[@]+"${LIVE_ARGS[@]}"} 2>"$TMP/live.err" &
    tpid=$!; PIDS+=("$tpid")
    for i in $(seq 200); do
        grep -qs "capture: started" "$TMP/live.err" && break
        kill -0 "$tpid" 2>/dev/null || { log "dnsensor exited:"; cat "$TMP/live.err" >&2; exit 1; }
        sleep 0.05
    done
    [ "$i" -lt 200 ] || { log "dnsensor did not start"; cat "$TMP/live.err" >&2; exit 1; }
    child=$(pgrep -P "$tpid") || { log "no dnsensor process under pid $tpid"; exit 1; }
    sleep 0.5
    t0=$(date +%s.%N)
    tcpreplay -i lo "${rarg[@]}" "$CAPTURE" >"$TMP/tcpreplay.log" 2>&1 || { cat "$TMP/tcpreplay.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    sleep 2
    kill -TERM "$child"
    wait "$tpid" || true
    summary=$(grep -o 'summary:.*' "$TMP/live.err" | tail -1)
    [ -n "$summary" ] || { log "dnsensor printed no summary:"; cat "$TMP/live.err" >&2; exit 1; }
    sent=$(sed -n 's/^Actual: \([0-9]*\) packets.*/\1/p' "$TMP/tcpreplay.log")
    read -r _ u s m < <(tail -1 "$TMP/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$sent" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" \
        "$(sed -n 's/^Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9.]*\) pps.*/\1/p' "$TMP/tcpreplay.log")" \
        "$u" "$s" "$m" "$l" "$summary" >>"$LIVE_RAW"
    log "live $rate: $(grep -E '^(Actual|Rated|Failed)' "$TMP/tcpreplay.log" | tr -s ' ' | paste -sd';')"
    log "live $rate: $summary"
}
if [ $LIVE -eq 1 ]; then
    for rate in $RATES; do live_run "$rate"; done
fi
LOAD_AFTER=$(cat /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 4. perf
# ---------------------------------------------------------------------------------------------
PERF_TXT=""
if [ $PERF -eq 1 ]; then
    PERF_TXT="$OUT/perf-capture-$STAMP.txt"
    log "perf record on one offline run"
    perf record -F 999 -e cpu-clock -g -o "$TMP/perf.data" -- \
        "$BIN" capture --read "$CAPTURE" --output file:/dev/null --sensor-id bench 2>/dev/null
    {
        echo "# per thread (comm)"
        perf report -i "$TMP/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null >"$TMP/perf-comm.txt" || true
        grep -E '^ +[0-9]' "$TMP/perf-comm.txt" || true
        echo "# top symbols (self)"
        perf report -i "$TMP/perf.data" --no-children --sort comm,dso,symbol --stdio -g none 2>/dev/null >"$TMP/perf-sym.txt" || true
        grep -E '^ +[0-9]' "$TMP/perf-sym.txt" | sed -n '1,40p' || true
    } >"$PERF_TXT"
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
{
    echo "## libpcap tap (capture) benchmark, $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- load average (1/5/15 min) before the offline rounds: ${LOAD_BEFORE% * *}; after them: ${LOAD_AFTER_OFFLINE% * *}; after the live runs: ${LOAD_AFTER% * *}"
    echo "- dnsensor $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + uncommitted changes'), $(pcap-config --version 2>/dev/null | sed 's/^/libpcap /' || dpkg-query -W -f='libpcap ${Version}' libpcap0.8), tcpreplay $(dpkg-query -W -f='${Version}' tcpreplay)"
    echo "- capture: $PACKETS packets, $((PBYTES / 1024)) KiB captured ($((PBYTES / PACKETS)) bytes/packet), $((CAPTURE_BYTES / 1024)) KiB on disk"
    echo
    echo "### Offline (--read)"
    echo
    echo "| round | reader | wall s | user s | sys s | packets/s (wall) | packets/s of user CPU | peak RSS MiB | load1 at start |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v n="$PACKETS" 'NR > 1 {
        printf "| %s | %s | %.2f | %.2f | %.2f | %.0f | %s | %.1f | %s |\n", $1, $2, $3, $4, $5,
            n / $3, ($4 > 0 ? sprintf("%.0f", n / $4) : "∞"), $6 / 1024, $7
    }' "$RAW"
    # Medians per reader (sort each column separately).
    for r in pcap_loop dnsensor; do
        for c in 3 4 5 6; do
            awk -F'\t' -v r="$r" -v c="$c" 'NR > 1 && $2 == r { print $c }' "$RAW" | sort -g \
                | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
        done | paste -sd' ' | sed "s/^/$r /"
    done >"$TMP/medians"
    awk -v n="$PACKETS" '{
        printf "| median | %s | %.2f | %.2f | %.2f | %.0f | %s | %.1f | |\n", $1, $2, $3, $4, n / $2,
            ($3 > 0 ? sprintf("%.0f", n / $3) : "∞"), $5 / 1024
    }' "$TMP/medians"
    echo
    maxrss=$(awk -F'\t' 'NR > 1 && $2 == "dnsensor" && $6 > m { m = $6 } END { print m + 0 }' "$RAW")
    # A file waits for the pipeline, so offline rounds must shed nothing.
    oshed=$(awk -F'\t' 'NR > 1 && $2 == "dnsensor" && match($8, / observations_shed=[0-9]+/) {
        s += substr($8, RSTART + 19, RLENGTH - 19) } END { print s + 0 }' "$RAW")
    awk -v n="$PACKETS" -v maxrss="$maxrss" -v oshed="$oshed" '{ w[$1] = $2; u[$1] = $3; s[$1] = $4; m[$1] = $5 } END {
        upps = (u["dnsensor"] > 0 ? n / u["dnsensor"] : 0)
        print "| ratio (medians) | value | goal | met |"
        print "|---|---:|---|---|"
        printf "| dnsensor packets per user-CPU second | %.0f | ≥ 1,000,000 | %s |\n", upps, (upps >= 1e6 ? "yes" : sprintf("**no** (%.0f %% of the goal)", upps / 1e4))
        printf "| dnsensor peak RSS, max over the rounds | %.1f MiB | < 64 MiB | %s |\n", maxrss / 1024, (maxrss / 1024 < 64 ? "yes" : "**no**")
        printf "| observations shed, all offline rounds (a file waits for the pipeline) | %d | 0 | %s |\n", oshed, (oshed == 0 ? "yes" : "**no**")
        printf "| dnsensor wall / pcap_loop wall | %.1f | – (the floor) | – |\n", w["dnsensor"] / w["pcap_loop"]
        printf "| dnsensor user+sys CPU / pcap_loop user+sys CPU | %.1f | – | – |\n", (u["dnsensor"] + s["dnsensor"]) / (u["pcap_loop"] + s["pcap_loop"])
        printf "| pcap_loop packets/s (wall), the floor | %.0f | – | – |\n", n / w["pcap_loop"]
    }' "$TMP/medians"
    echo
    echo "dnsensor summaries (one per round):"
    echo
    echo '```'
    awk -F'\t' 'NR > 1 && $2 == "dnsensor" { print $1 ": " $8 }' "$RAW"
    echo '```'
    if [ $LIVE -eq 1 ]; then
        echo
        echo "### Live on lo (tcpreplay, world stopped)${LIVE_ARGS[*]+, dnsensor flags added: ${LIVE_ARGS[*]}}"
        echo
        echo "| tcpreplay rate | sent | replay s | achieved pps | dnsensor packets | pcap_drops | pcap_ifdrops | shed (tap) | observations_shed | shed (pipeline) | user s | sys s | peak RSS MiB | zero drops |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        best=""
        while IFS=$'\t' read -r rate sent rs apps u s m _ summary; do
            [ "$rate" != rate ] || continue
            p=$(field packets "$summary"); d=$(field pcap_drops "$summary"); i=$(field pcap_ifdrops "$summary")
            sh=$(field shed "$summary"); os=$(field observations_shed "$summary"); ps=$(pipeline_shed "$summary")
            ok=no
            if [ "$p" = "$PACKETS" ] && [ "$d" = 0 ] && [ "$i" = 0 ] && [ "$sh" = 0 ] && [ "$os" = 0 ] && [ "${ps:-0}" = 0 ]; then
                ok=yes; best="$rate (achieved $apps pps)"
            fi
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s |\n' \
                "$rate" "$sent" "$rs" "$apps" "$p" "$d" "$i" "$sh" "$os" "${ps:-–}" "$u" "$s" \
                "$(awk -v m="$m" 'BEGIN { print m / 1024 }')" "$([ $ok = yes ] && echo yes || echo '**no**')"
        done <"$LIVE_RAW"
        echo
        echo "Highest rate with zero drops (every packet seen, nothing dropped or shed): ${best:-none}"
        echo
        echo "Live summaries:"
        echo
        echo '```'
        awk -F'\t' 'NR > 1 { print $1 ": " $9 }' "$LIVE_RAW"
        echo '```'
    fi
    if [ -n "$PERF_TXT" ]; then
        echo
        echo "perf (one offline run, -F 999 -e cpu-clock -g), $PERF_TXT:"
        echo
        echo '```'
        head -30 "$PERF_TXT"
        echo '```'
    fi
} | tee -a "$RESULTS"
log "results: $RESULTS (raw: $RAW, $LIVE_RAW)"
