#!/usr/bin/env bash
# Sealing benchmark: COF formatting → zstd → HPKE seal on one thread, for zstd levels 1 and 3.
# Usage: bench/seal.sh [--records N] [--batch N] [--rounds N]   (defaults 1000000, 10000, 3)
# Prints a Markdown table (records/s, bytes per record) plus the machine's load, for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p dnsensor-delivery --example seal_bench
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# The benchmark is single-threaded: one core's worth of work. It is not pinned, so that on a
# shared machine the scheduler can give it whichever core is less busy.
"$CARGO_TARGET_DIR/release/examples/seal_bench" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
