#!/usr/bin/env bash
# Replays the bundled dnstap sample (recorded from Unbound resolving the test world) into
# `dnsensor dnstap` and prints the COF records it writes. Needs fstrm_replay from fstrm-bin.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fstrm_replay >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fstrm-bin
fi
cargo build --release --locked --bin dnsensor

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"${CARGO_TARGET_DIR:-target}/release/dnsensor" dnstap --listen "unix:$dir/dnstap.sock" --output stdout \
    --window 60 --sensor-id demo &
pid=$!
for _ in $(seq 100); do [ -S "$dir/dnstap.sock" ] && break; sleep 0.05; done
fstrm_replay -t protobuf:dnstap.Dnstap -u "$dir/dnstap.sock" -r samples/unbound.fstrm
# SIGTERM flushes the open window, so every record of the sample is printed, then the summary.
kill -TERM "$pid"
wait "$pid"
