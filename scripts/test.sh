#!/usr/bin/env bash
# Runs the whole test suite: installs the DNS daemons it needs, checks formatting and lints,
# then runs every test. End-to-end tests start NSD, Unbound and BIND on 127.53.0.0/16 port 53, so run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
