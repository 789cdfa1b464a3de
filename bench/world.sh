#!/usr/bin/env bash
# The test DNS world (tests/world/) for benchmarks: NSD instances for the root, com., net. and
# the SLD/leaf zones on 127.53.W.x port 53, and Unbound on 127.53.W.53 with dnstap to a unix socket.
#
# Usage as a library (what bench/dnstap.sh and bench/make-sample.sh do):
#
#     source bench/world.sh
#     world_init 9 "$tmpdir"          # W=9 → 127.53.9.x; all state under $tmpdir/world
#     trap world_stop EXIT            # (or call world_stop from your own trap)
#     world_start_nsd                 # every NSD instance, waits until each serves its zones
#     world_start_unbound "$sock"     # Unbound, dnstap to $sock (start the receiver first)
#     ...                             # queries to "$WORLD_RESOLVER" port 53
#     world_stop_unbound              # SIGTERM: Unbound flushes its dnstap queue and sends STOP
#     world_stop                      # stops every daemon still running (bounded: TERM, then KILL)
#
# Usage as a command, for poking at the world by hand (Ctrl-C stops everything):
#
#     bench/world.sh [W] [SOCK]       # default W=9, SOCK=<tmpdir>/dnstap.sock
#
# The templates are rendered with sed exactly like tests/common/mod.rs renders them ({{NET}},
# {{DIR}}, {{IP_ADDRESSES}}, {{ZONES}}, {{RESOLVER}}, {{SOCK}}); a placeholder left over is an
# error. The tests' templates are not modified. On top of them the bench adds, in extra
# `server:` clauses (both daemons accept a clause more than once):
#   - NSD: `rrl-ratelimit: 0` (Debian builds NSD with --enable-ratelimit, default 200 qps per
#     source: a load of wildcard names would otherwise be answered with TC/slip);
#   - Unbound: no rate limits, a larger request list, so a dnsperf load of unique names (every one
#     a cache miss → one upstream query → one RESOLVER_RESPONSE) is not dropped by Unbound.
# Everything is on 127.0.0.0/8; the resolver's only root hint is the world's root server.

# shellcheck disable=SC2034  # WORLD_* variables are used by the scripts that source this file
WORLD_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/world" && pwd)"
WORLD_PIDS=()      # process-group leaders of every daemon started (setsid)
WORLD_NAMES=()
WORLD_UNBOUND_PID=""
WORLD_LAST_PID=""

world_log() { echo "[world] $*" >&2; }

# world_init W DIR: sets WORLD_NET (127.53.W), WORLD_DIR, WORLD_RESOLVER.
world_init() {
    local w=$1 dir=$2
    if ! [[ $w =~ ^[0-9]+$ ]] || [ "$w" -gt 255 ]; then
        world_log "bad world number: $w"; return 1
    fi
    WORLD_NET="127.53.$w"
    WORLD_DIR="$dir/world"
    WORLD_RESOLVER="$WORLD_NET.53"
    mkdir -p "$WORLD_DIR"
}

# world_render TEMPLATE OUT KEY=VALUE... — replaces {{KEY}} by VALUE (one line). A KEY@=FILE
# argument replaces a line consisting only of {{KEY}} by the contents of FILE (multi-line values).
world_render() {
    local tmpl=$1 out=$2; shift 2
    local args=() kv k v
    for kv in "$@"; do
        if [[ $kv == *@=* ]]; then
            k=${kv%%@=*}; v=${kv#*@=}
            args+=(-e "/^[[:space:]]*{{$k}}[[:space:]]*\$/{" -e "r $v" -e 'd' -e '}')
        else
            k=${kv%%=*}; v=${kv#*=}
            v=${v//\\/\\\\}; v=${v//|/\\|}; v=${v//&/\\&}
            args+=(-e "s|{{$k}}|$v|g")
        fi
    done
    sed "${args[@]}" "$WORLD_SRC/$tmpl" >"$out"
    if grep -n '{{' "$out" >&2; then
        world_log "unrendered placeholder in $out (from $tmpl)"; return 1
    fi
}

# world_spawn NAME LOGFILE CMD...: starts CMD in its own session/process group; its pid (= the
# group id) is left in WORLD_LAST_PID. Not to be called in $(...): the pid list lives in this shell.
world_spawn() {
    local name=$1 log=$2; shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    WORLD_LAST_PID=$!
    WORLD_PIDS+=("$WORLD_LAST_PID")
    WORLD_NAMES+=("$name")
}

world_alive() { kill -0 "$1" 2>/dev/null; }

# world_kill_group PID NAME: SIGTERM to the group, SIGKILL after 5 s. Never waits longer.
world_kill_group() {
    local pid=$1 name=$2 i
    world_alive "$pid" || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do world_alive "$pid" || break; sleep 0.1; done
    if world_alive "$pid"; then
        world_log "$name (pid $pid) ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# (name, host numbers, zones) as in tests/common/mod.rs NSD_INSTANCES.
WORLD_NSD=(
    "root|1|."
    "com|2|com."
    "sld|3 5|d1.com. d2.com."
    "net|4|net."
    "leaf|6|d3.net. sub.d1.com."
)

world_zone_file() { if [ "$1" = "." ]; then echo root.zone; else echo "${1%.}.zone"; fi; }

# world_dig ARGS...: a bounded dig (1 s, 1 try).
world_dig() { dig +time=1 +tries=1 "$@" 2>&1 || true; }

world_start_nsd() {
    local entry name hosts zones d h z file pid deadline out
    for entry in "${WORLD_NSD[@]}"; do
        IFS='|' read -r name hosts zones <<<"$entry"
        d="$WORLD_DIR/nsd-$name"
        mkdir -p "$d"
        : >"$d/ips"
        for h in $hosts; do echo "    ip-address: $WORLD_NET.$h" >>"$d/ips"; done
        : >"$d/zones"
        for z in $zones; do
            file=$(world_zone_file "$z")
            world_render "zones/$file" "$d/$file" "NET=$WORLD_NET"
            printf 'zone:\n    name: "%s"\n    zonefile: "%s"\n\n' "$z" "$file" >>"$d/zones"
        done
        world_render nsd.conf.tmpl "$d/nsd.conf" "DIR=$d" "IP_ADDRESSES@=$d/ips" "ZONES@=$d/zones"
        cat >>"$d/nsd.conf" <<'EOF'

# bench additions (bench/world.sh)
server:
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
EOF
        nsd-checkconf "$d/nsd.conf"
        world_spawn "nsd-$name" "$d/stderr.log" nsd -d -c "$d/nsd.conf"
        pid=$WORLD_LAST_PID
        for h in $hosts; do
            for z in $zones; do
                deadline=$((SECONDS + 20))
                while :; do
                    out=$(world_dig @"$WORLD_NET.$h" +norec "$z" SOA)
                    if grep -q 'status: NOERROR' <<<"$out" && grep -q 'flags:.* aa' <<<"$out"; then
                        break
                    fi
                    if ! world_alive "$pid" || [ $SECONDS -gt $deadline ]; then
                        world_log "NSD $name on $WORLD_NET.$h does not serve $z; last dig:"
                        echo "$out" >&2; cat "$d/stderr.log" "$d/nsd.log" >&2 2>/dev/null || true
                        return 1
                    fi
                    sleep 0.1
                done
            done
        done
    done
    world_log "NSD up on $WORLD_NET.{1..6}"
}

# world_start_unbound SOCK: Unbound on $WORLD_RESOLVER:53, dnstap (bidirectional) to SOCK.
world_start_unbound() {
    local sock=$1 d="$WORLD_DIR/unbound" deadline out
    mkdir -p "$d"
    world_render root.hints.tmpl "$d/root.hints" "NET=$WORLD_NET"
    world_render unbound.conf.tmpl "$d/unbound.conf" \
        "DIR=$d" "RESOLVER=$WORLD_RESOLVER" "SOCK=$sock" "CLIENT_RESPONSES=no"
    cat >>"$d/unbound.conf" <<'EOF'

# bench additions (bench/world.sh): nothing may throttle a load of unique names.
server:
    ratelimit: 0
    ip-ratelimit: 0
    num-queries-per-thread: 4096
    outgoing-range: 8192
    jostle-timeout: 1000
    unwanted-reply-threshold: 0
    serve-expired: no
EOF
    unbound-checkconf "$d/unbound.conf" >/dev/null
    world_spawn unbound "$d/stderr.log" unbound -d -c "$d/unbound.conf"
    WORLD_UNBOUND_PID=$WORLD_LAST_PID
    deadline=$((SECONDS + 20))
    while :; do
        out=$(world_dig @"$WORLD_RESOLVER" CH TXT version.bind)
        grep -q 'status: NOERROR' <<<"$out" && break
        if ! world_alive "$WORLD_UNBOUND_PID" || [ $SECONDS -gt $deadline ]; then
            world_log "Unbound did not come up; last dig:"; echo "$out" >&2
            cat "$d/stderr.log" "$d/unbound.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    world_log "Unbound up on $WORLD_RESOLVER:53, dnstap to $sock"
}

# SIGTERM to Unbound: it flushes what its workers have handed to the dnstap thread and sends STOP.
world_stop_unbound() {
    [ -n "$WORLD_UNBOUND_PID" ] || return 0
    world_kill_group "$WORLD_UNBOUND_PID" unbound
    WORLD_UNBOUND_PID=""
}

world_stop() {
    local i
    for ((i = ${#WORLD_PIDS[@]} - 1; i >= 0; i--)); do
        world_kill_group "${WORLD_PIDS[$i]}" "${WORLD_NAMES[$i]}"
    done
    WORLD_PIDS=(); WORLD_NAMES=(); WORLD_UNBOUND_PID=""
}

# Run as a command: start everything and wait for Ctrl-C.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    [ "$(id -u)" -eq 0 ] || { echo "run as root (NSD binds port 53)" >&2; exit 1; }
    tmp=$(mktemp -d -t dnsensor-world.XXXXXX)
    trap 'world_stop; rm -rf "$tmp"' EXIT
    trap 'exit 130' INT TERM
    world_init "${1:-9}" "$tmp"
    world_start_nsd
    world_start_unbound "${2:-$tmp/dnstap.sock}"
    world_log "state in $tmp; resolver $WORLD_RESOLVER; Ctrl-C stops everything"
    while :; do sleep 3600; done
fi
