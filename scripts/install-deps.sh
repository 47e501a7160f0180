#!/usr/bin/env bash
# Installs the Debian packages kusu-ha's build, tests and demo need (never upgrades).
set -euo pipefail
packages=(libsystemd-dev libdbus-1-dev libpq-dev pkg-config dbus dbus-bin polkitd pkexec
          iproute2 iputils-ping procps python3 rsync systemd systemd-container tcpdump)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH (expected Swift 6.x, e.g. /opt/swift/usr/bin)" >&2; exit 1; }
