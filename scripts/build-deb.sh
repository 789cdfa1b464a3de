#!/usr/bin/env bash
# Builds the Debian package: the release binary, then the man page and shell completions made
# from it (dnsensor generate-docs) into $CARGO_TARGET_DIR/release/generated/, then `cargo deb`.
# Installs what it needs (cargo-deb, dpkg-dev) when missing. Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in
/*) ;;
*) target_dir="$PWD/$target_dir" ;;
esac
export CARGO_TARGET_DIR="$target_dir"

# dpkg-shlibdeps (dpkg-dev) computes the package's library dependencies ($auto).
bash scripts/install-deps.sh dpkg-dev >&2
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    # Without CARGO_TARGET_DIR, cargo install builds in a temporary directory of its own.
    env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi

cargo build --release --locked --bin dnsensor >&2
generated="$target_dir/release/generated"
rm -rf "$generated"
"$target_dir/release/dnsensor" generate-docs --out "$generated" >&2
# Debian compresses man pages; -n keeps the name and time out, so the package is reproducible.
gzip -9n "$generated/dnsensor.8"

out="$target_dir/debian"
mkdir -p "$out"
# --no-build: the binary above is the one packaged; cargo-deb maps target/release/ in the
# assets of Cargo.toml to $CARGO_TARGET_DIR/release/. --strip: the release profile keeps line
# tables, which would make the packaged binary five times larger.
deb=$(cargo deb --no-build --locked --strip --output "$out" | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a package (got: $deb)" >&2
    exit 1
fi
echo "$deb"
