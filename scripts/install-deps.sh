#!/usr/bin/env bash
# Installs the Debian packages that the tests and the demo talk to, or, given package names as
# arguments, those (the benchmarks pass their own lists).
# Daemons are installed without being started, so they never take port 53 from the tests.
set -euo pipefail

packages=(nsd unbound bind9 bind9-dnsutils knot-dnsutils fstrm-bin dnstap-ldns dnsperf ldnsutils procps libpcap-dev tcpreplay tshark tcpdump)
[ $# -eq 0 ] || packages=("$@")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
# policy-rc.d exit 101 tells invoke-rc.d and deb-systemd-invoke not to start the services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $sudo rm -f "$policy"' EXIT
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
