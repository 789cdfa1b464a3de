# Shared by the benchmark scripts: stopping what they started. Source it after bench/world.sh;
# it uses the caller's PIDS array and TMP directory.

# bench_cleanup: TERM to every pid in PIDS (and the child of /usr/bin/time, if any), the world
# stopped, then KILL to whatever is left after 5 s, and TMP removed. Meant for `trap bench_cleanup EXIT`.
bench_cleanup() {
    local p
    set +e
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            pkill -TERM -P "$p" 2>/dev/null || true
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    world_stop
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && { pkill -KILL -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; }
    done
    rm -rf "$TMP"
}
