#!/usr/bin/env bash
# Benchmark of the dnstap consumer (docs/benchmarks.md, "dnstap consumer").
#
# Usage (as root, Debian 12, from anywhere in a clone):
#
#     bench/dnstap.sh [--reuse-capture] [--rounds N] [--min-messages N] [--skip-completeness]
#
#   1. Records a dnstap capture of at least --min-messages (default 500000) messages: the test
#      world (bench/world.sh, W=9, 127.53.9.x) with Unbound sending dnstap to fstrm_capture while
#      dnsperf sends unique names (mostly <n>.w.d1.com A, every one a cache miss → one
#      RESOLVER_RESPONSE) to Unbound. The capture is bench/out/dnstap-capture.fstrm (gitignored);
#      --reuse-capture keeps an existing one that is large enough.
#   2. Replays it with fstrm_replay into, alternately, (a) fstrm_capture -w /dev/null,
#      (b) dnstap-ldns -q reading the file itself (and (b') dnstap-ldns -y, for context),
#      (c) dnsensor dnstap --output file:/dev/null --window 60 (defaults otherwise) and
#      (c') the same with a --queue-depth that holds the whole capture (a diagnostic: nothing is
#      ever shed, so its wall time is the time to process every message) and (c'') (c') fed by
#      socat instead of fstrm_replay (a diagnostic: the file is a unidirectional Frame Streams
#      stream, and socat writes it in 256 KiB writes at almost no CPU cost, where fstrm_replay
#      makes one system call per frame; so this is dnsensor's own pace, without a sender
#      competing for the two cores), --rounds rounds (default 3). A (c) round whose summary
#      shows shed > 0 did less work than the others: it is flagged and left out of the means.
#   3. Prints a markdown table (wall, CPU user+sys, messages/s, peak RSS, shed) and the ratios
#      against the goals; everything also goes to bench/out/results-<time>.md.
#   4. Completeness: one more dnsensor run with --output file:bench/out/completeness.json, a
#      one-hour window and otherwise the default settings, compared by bench/count_rrsets.py
#      (dnspython) with its own RRset count.
#
# What is measured: for (a) and (c) the wall time runs from just before fstrm_replay starts until
# the receiver has exited: SIGTERM is sent as soon as fstrm_replay returns, and dnsensor then
# processes what it has queued, flushes its window and exits. For (b) it is dnstap-ldns' whole
# run. CPU time and peak RSS are GNU time's %U+%S and %M of the receiver process alone; the
# sender's CPU time (user+sys of fstrm_replay or socat) is reported beside it.
#
# It installs what it needs (apt-get: nsd unbound fstrm-bin dnstap-ldns dnsperf bind9-dnsutils
# time python3-venv procps socat; pip, into bench/out/venv: dnspython) and builds the release
# binary (`cargo build --release --locked --bin dnsensor`, honouring CARGO_TARGET_DIR).
# Only 127.0.0.0/8 is used. Ports 53 on 127.53.9.{1..6,53} must be free.
set -euo pipefail

ROUNDS=3
MIN_MESSAGES=500000
REUSE=0
COMPLETENESS=1
while [ $# -gt 0 ]; do
    case $1 in
        --reuse-capture) REUSE=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --min-messages) MIN_MESSAGES=$2; shift ;;
        --skip-completeness) COMPLETENESS=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT="$REPO/bench/out"
CAPTURE="$OUT/dnstap-capture.fstrm"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS="$OUT/results-$STAMP.md"
CT=protobuf:dnstap.Dnstap
W=9
mkdir -p "$OUT"

[ "$(id -u)" -eq 0 ] || { echo "run as root: NSD and Unbound bind port 53 on 127.53.$W.x" >&2; exit 1; }

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install step
# ---------------------------------------------------------------------------------------------
install_deps() {
    bash "$REPO/scripts/install-deps.sh" nsd unbound fstrm-bin dnstap-ldns dnsperf bind9-dnsutils \
        time python3-venv procps socat
    if ! "$OUT/venv/bin/python" -c 'import dns.message' 2>/dev/null; then
        log "creating $OUT/venv with dnspython (pip)"
        python3 -m venv "$OUT/venv"
        "$OUT/venv/bin/pip" install -q dnspython
    fi
}
install_deps
PY="$OUT/venv/bin/python"

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
TMP=$(mktemp -d -t dnsensor-bench.XXXXXX)
world_init "$W" "$TMP"
PIDS=()
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

wait_socket() { # wait_socket PATH PID: up to 10 s for a receiver to create its socket
    local i
    for i in $(seq 200); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || { log "receiver (pid $2) exited before creating $1"; return 1; }
        sleep 0.05
    done
    log "no socket at $1 after 10 s"; return 1
}

count_messages() { dnstap-ldns -r "$1" -q | wc -l; }

now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------------
# 1. Record the capture
# ---------------------------------------------------------------------------------------------
# queries FILE PREFIX N: N queries, about 98 % of them unique names (cache misses).
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

# record_capture TARGET: sends queries until about TARGET responses are expected, recording into
# $CAPTURE.partial; sets RECORDED to its message count and moves it to $CAPTURE when that is at
# least MIN_MESSAGES.
RECORDED=0
record_capture() {
    local target=$1 sock="$TMP/rec.sock" cap_pid batch=0 completed=0 c n
    local partial="$CAPTURE.partial"
    rm -f "$partial"
    fstrm_capture -t "$CT" -u "$sock" -w "$partial" 2>"$TMP/rec-capture.log" &
    cap_pid=$!; PIDS+=("$cap_pid")
    wait_socket "$sock" "$cap_pid"
    world_start_nsd
    world_start_unbound "$sock"
    # Unique names answer ~0.98 RESOLVER_RESPONSE each; send until comfortably above the target.
    while [ $((completed * 98 / 100)) -lt $((target + target / 50)) ]; do
        batch=$((batch + 1))
        if [ $batch -gt 20 ]; then log "20 batches and still short of $target"; exit 1; fi
        n=$(( (target + target / 50) * 100 / 98 - completed + 1000 ))
        [ $n -le 100000 ] || n=100000
        make_queries "$TMP/queries.txt" "b${batch}q" "$n"
        dnsperf -s "$WORLD_RESOLVER" -p 53 -d "$TMP/queries.txt" -n 1 -c 4 -q 200 -t 5 -l 600 \
            >"$TMP/dnsperf-$batch.log" 2>&1
        c=$(awk '/Queries completed:/ {print $3}' "$TMP/dnsperf-$batch.log")
        completed=$((completed + ${c:-0}))
        log "dnsperf batch $batch: $(grep -E 'Queries (completed|lost)|Queries per second' "$TMP/dnsperf-$batch.log" | tr -s ' ' | paste -sd';')"
    done
    cat "$TMP"/dnsperf-*.log >"$OUT/dnsperf.log"
    # Unbound's workers hand messages to its dnstap thread on a timer: wait before stopping it.
    sleep 3
    world_stop_unbound
    sleep 1
    kill -TERM "$cap_pid"; wait "$cap_pid" || true
    world_stop
    cat "$TMP/rec-capture.log" >&2
    n=$(count_messages "$partial")
    log "capture: $n dnstap messages, $(stat -c %s "$partial") bytes"
    RECORDED=$n
    if [ "$n" -ge "$MIN_MESSAGES" ]; then mv "$partial" "$CAPTURE"; fi
}

if [ $REUSE -eq 1 ] && [ -s "$CAPTURE" ] && [ "$(count_messages "$CAPTURE")" -ge "$MIN_MESSAGES" ]; then
    log "reusing $CAPTURE"
else
    log "recording a capture of >= $MIN_MESSAGES messages"
    rm -f "$CAPTURE"
    record_capture "$MIN_MESSAGES"
    if [ "$RECORDED" -lt "$MIN_MESSAGES" ]; then
        # Unbound answered fewer of the queries than expected: once more, with 10 % more queries.
        log "only $RECORDED messages (< $MIN_MESSAGES): recording again with more queries"
        record_capture $((MIN_MESSAGES * 11 / 10))
        [ -s "$CAPTURE" ] || { log "still only $RECORDED messages"; exit 1; }
    fi
fi
MESSAGES=$(count_messages "$CAPTURE")
CAPTURE_BYTES=$(stat -c %s "$CAPTURE")
log "capture $CAPTURE: $MESSAGES messages, $CAPTURE_BYTES bytes"

# ---------------------------------------------------------------------------------------------
# 2./3. Replays, alternating, ROUNDS rounds
# ---------------------------------------------------------------------------------------------
RAW="$OUT/raw-$STAMP.tsv"   # round consumer wall replay_wall user sys maxrss_kib load1 extra sender_cpu
printf 'round\tconsumer\twall_s\treplay_s\tuser_s\tsys_s\tmaxrss_kib\tload1\textra\tsender_cpu_s\n' >"$RAW"
TIMEFMT="%e %U %S %M"

load1() { cut -d' ' -f1 /proc/loadavg; }

# run_receiver ROUND NAME CMD...: a socket receiver under /usr/bin/time; replay (with
# fstrm_replay, or socat when SEND_WITH=socat); SIGTERM; wait.
SEND_WITH=fstrm_replay
run_receiver() {
    local round=$1 name=$2; shift 2
    local sock="$TMP/replay.sock" tpid child t0 t1 t2 l su ss extra=""
    rm -f "$sock"
    l=$(load1)
    /usr/bin/time -f "$TIMEFMT" -o "$TMP/time" "$@" 2>"$TMP/recv.err" &
    tpid=$!; PIDS+=("$tpid")
    wait_socket "$sock" "$tpid"
    child=$(pgrep -P "$tpid")
    t0=$(now)
    if [ "$SEND_WITH" = socat ]; then
        /usr/bin/time -f "%U %S" -o "$TMP/sender-time" \
            socat -u -b 262144 "OPEN:$CAPTURE" "UNIX-CONNECT:$sock"
    else
        /usr/bin/time -f "%U %S" -o "$TMP/sender-time" fstrm_replay -t "$CT" -u "$sock" -r "$CAPTURE"
    fi
    t1=$(now)
    read -r su ss < <(tail -1 "$TMP/sender-time")
    kill -TERM "$child"
    wait "$tpid" || true
    t2=$(now)
    if [[ $name == dnsensor* ]]; then
        extra=$(grep -o 'summary:.*' "$TMP/recv.err" | tail -1)
        [ -n "$extra" ] || { log "dnsensor printed no summary:"; cat "$TMP/recv.err" >&2; exit 1; }
    fi
    # The last line (GNU time puts "Command terminated by signal N" before it when applicable).
    read -r _ u s m < <(tail -1 "$TMP/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" \
        "$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", b-a}')" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" "$u" "$s" "$m" "$l" "$extra" \
        "$(awk -v a="$su" -v b="$ss" 'BEGIN{printf "%.2f", a+b}')" >>"$RAW"
}

# run_reader ROUND NAME CMD...: a file reader under /usr/bin/time, output to /dev/null.
run_reader() {
    local round=$1 name=$2; shift 2
    local l e u s m
    l=$(load1)
    /usr/bin/time -f "$TIMEFMT" -o "$TMP/time" "$@" >/dev/null 2>"$TMP/recv.err"
    read -r e u s m < <(tail -1 "$TMP/time")
    printf '%s\t%s\t%s\t\t%s\t%s\t%s\t%s\t\n' "$round" "$name" "$e" "$u" "$s" "$m" "$l" >>"$RAW"
}

BIGQ=$(( (MESSAGES / 1024 + 1) * 1024 ))
LOAD_BEFORE=$(cat /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS (load $(load1))"
    run_receiver "$round" fstrm_capture fstrm_capture -t "$CT" -u "$TMP/replay.sock" -w /dev/null
    run_reader "$round" "dnstap-ldns -q" dnstap-ldns -r "$CAPTURE" -q
    run_receiver "$round" dnsensor "$BIN" dnstap --listen "unix:$TMP/replay.sock" \
        --output file:/dev/null --window 60 --sensor-id bench
    # Diagnostic, not a goal: a queue that holds the whole capture, so nothing is ever shed and
    # the wall time is the time to process every message.
    run_receiver "$round" "dnsensor --queue-depth $BIGQ" "$BIN" dnstap \
        --listen "unix:$TMP/replay.sock" --output file:/dev/null --window 60 --sensor-id bench \
        --queue-depth "$BIGQ"
    SEND_WITH=socat run_receiver "$round" "dnsensor --queue-depth $BIGQ, fed by socat" "$BIN" \
        dnstap --listen "unix:$TMP/replay.sock" --output file:/dev/null --window 60 \
        --sensor-id bench --queue-depth "$BIGQ"
    run_reader "$round" "dnstap-ldns -y" dnstap-ldns -r "$CAPTURE" -y
done
LOAD_AFTER=$(cat /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 4. Completeness
# ---------------------------------------------------------------------------------------------
COMPLETE_TXT=""
if [ $COMPLETENESS -eq 1 ]; then
    log "completeness run"
    cof="$OUT/completeness.json"
    rm -f "$cof"
    # Default settings but the window: this run checks that every RRset is counted (a shed
    # message would show as a mismatch). The independent count knows nothing of the privacy
    # stage, and the world's name servers are on 127.53.9.x, so this run keeps private addresses
    # to compare like with like.
    run_receiver completeness dnsensor "$BIN" dnstap --listen "unix:$TMP/replay.sock" \
        --output "file:$cof" --window 3600 --sensor-id bench --keep-private-addresses
    summary=$(tail -1 "$RAW" | cut -f9)
    log "counting RRsets in the capture with dnspython (takes a while)"
    set +e
    COMPLETE_TXT=$("$PY" "$REPO/bench/count_rrsets.py" "$CAPTURE" --cof "$cof")
    complete_rc=$?
    set -e
    COMPLETE_TXT="$COMPLETE_TXT
dnsensor $summary"
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
{
    echo "## dnstap consumer benchmark, $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- load average (1/5/15 min) before the rounds: ${LOAD_BEFORE% * *}; after: ${LOAD_AFTER% * *}"
    echo "- dnsensor $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + uncommitted changes'), $(unbound -V 2>/dev/null | head -1), fstrm $(dpkg-query -W -f='${Version}' fstrm-bin), dnstap-ldns $(dpkg-query -W -f='${Version}' dnstap-ldns)"
    echo "- capture: $MESSAGES dnstap messages, $((CAPTURE_BYTES / 1024)) KiB"
    echo
    echo "| round | consumer | wall s | replay s | CPU s (user+sys) | sender CPU s | msg/s (wall) | CPU µs/msg | peak RSS MiB | shed | load1 at start |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v n="$MESSAGES" 'NR > 1 && $1 != "completeness" {
        cpu = $5 + $6
        shed = "–"
        if (match($9, / shed=[0-9]+/)) shed = substr($9, RSTART + 6, RLENGTH - 6)
        printf "| %s | %s | %.2f | %s | %.2f | %s | %.0f | %.2f | %.1f | %s | %s |\n", $1, $2, $3,
            ($4 == "" ? "–" : sprintf("%.2f", $4)), cpu, ($10 == "" ? "–" : $10), n / $3,
            cpu * 1e6 / n, $7 / 1024, (shed + 0 > 0 ? "**" shed "**" : shed), $8
    }' "$RAW"
    echo
    awk -F'\t' -v n="$MESSAGES" -v bigq="$BIGQ" 'NR > 1 && $1 != "completeness" {
        k = $2; if ($7 > r[k]) r[k] = $7
        # A dnsensor round that shed load did less work: it is left out of the means.
        if (k == "dnsensor" && match($9, / shed=[0-9]+/) && substr($9, RSTART + 6, RLENGTH - 6) + 0 > 0) {
            shedrounds++; next
        }
        c[k]++; w[k] += $3; cpu[k] += $5 + $6; snd[k] += $10
    } END {
        for (k in c) { w[k] /= c[k]; cpu[k] /= c[k]; snd[k] /= c[k] }
        big = "dnsensor --queue-depth " bigq
        fed = big ", fed by socat"
        rss = r["dnsensor"] / 1024
        total = shedrounds + c["dnsensor"]
        print "Means over the rounds. dnsensor (default settings) shed load in " shedrounds + 0 " of " total " rounds; those rounds did less work and are left out."
        print ""
        print "| ratio | value | goal | met |"
        print "|---|---:|---|---|"
        if (c["dnsensor"] > 0) {
            rw = w["fstrm_capture"] / w["dnsensor"]; rc = cpu["dnsensor"] / cpu["dnstap-ldns -q"]
            printf "| fstrm_capture wall / dnsensor wall | %.2f | ≥ 0.9 | %s |\n", rw, (rw >= 0.9 && shedrounds == 0 ? "yes" : "**no**" (shedrounds > 0 ? " (load shed in " shedrounds " rounds)" : ""))
            printf "| dnsensor CPU per message / dnstap-ldns -q CPU per message | %.2f | ≤ 0.5 | %s |\n", rc, (rc <= 0.5 ? "yes" : "**no**")
            printf "| (context) dnsensor CPU per message / dnstap-ldns -y CPU per message | %.2f | – | – |\n", cpu["dnsensor"] / cpu["dnstap-ldns -y"]
        } else {
            print "| fstrm_capture wall / dnsensor wall | – (every round shed load) | ≥ 0.9 | **no** |"
        }
        if (c[big] > 0) {
            rw = w["fstrm_capture"] / w[big]; rc = cpu[big] / cpu["dnstap-ldns -q"]
            printf "| fstrm_capture wall / dnsensor --queue-depth %d wall (nothing shed) | %.2f | ≥ 0.9 | %s |\n", bigq, rw, (rw >= 0.9 ? "yes" : "**no**")
            printf "| dnsensor --queue-depth %d CPU per message / dnstap-ldns -q CPU per message | %.2f | ≤ 0.5 | %s |\n", bigq, rc, (rc <= 0.5 ? "yes" : "**no**")
            printf "| (context) the same against dnstap-ldns -y | %.2f | – | – |\n", cpu[big] / cpu["dnstap-ldns -y"]
        }
        printf "| dnsensor (default settings) peak RSS, max over rounds | %.1f MiB | < 64 MiB | %s |\n", rss, (rss < 64 ? "yes" : "**no**")
        if (c[fed] > 0)
            printf "| (diagnostic) fstrm_capture wall / dnsensor fed by socat wall | %.2f | – | – |\n", w["fstrm_capture"] / w[fed]
        print ""
        print "Both cores during a replay (sender CPU + receiver CPU) / wall, in cores, means:"
        print ""
        for (k in c) if (snd[k] > 0)
            printf "- %s: (%.2f + %.2f) / %.2f = %.2f\n", k, snd[k], cpu[k], w[k], (snd[k] + cpu[k]) / w[k]
    }' "$RAW"
    echo
    echo "dnsensor summaries (one per round):"
    echo
    echo '```'
    awk -F'\t' 'NR > 1 && $2 ~ /^dnsensor/ { print $1 " (" $2 "): " $9 }' "$RAW"
    echo '```'
    if [ -n "$COMPLETE_TXT" ]; then
        echo
        echo "Completeness (bench/count_rrsets.py vs dnsensor --window 3600, $OUT/completeness.json):"
        echo
        echo '```'
        echo "$COMPLETE_TXT"
        echo '```'
    fi
} | tee "$RESULTS"
log "results: $RESULTS (raw: $RAW)"
if [ $COMPLETENESS -eq 1 ] && [ "${complete_rc:-1}" -ne 0 ]; then
    log "completeness MISMATCH"; exit 1
fi
