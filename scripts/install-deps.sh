#!/usr/bin/env bash
# Installs the Debian packages kusu-ha's build, tests and demo need (never upgrades).
set -euo pipefail
# postgresql-15 runs in the test nodes; dnsmasq-base and nginx-light are the KUSU services
# of the test bed (DHCP/TFTP and HTTP); rsync keeps the file trees.
packages=(libsystemd-dev libdbus-1-dev libpq-dev pkg-config dbus dbus-bin polkitd pkexec postgresql-15
          iproute2 iputils-ping procps python3 rsync systemd systemd-container tcpdump
          curl dnsmasq-base nginx-light debhelper dpkg-dev lintian rpm)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Services installed here run only inside the test nodes: never start them on this host.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH (expected Swift 6.x, e.g. /opt/swift/usr/bin)" >&2; exit 1; }
