#!/usr/bin/env bash
# The kusu-ha demo: a pair on this one machine, and a failover.
#
#   installer node  a kusu-hbd in its own network namespace (its private bus)
#   failover node   systemd as PID 1 in a container on a throw-away overlay of /,
#                   in its own network namespace, running kusu-hbd (socket-
#                   activated, user kusu-ha), kusu-effectord (bus-activated,
#                   polkit), a PostgreSQL standby streaming from a primary, and
#                   the KUSU stand-ins: an HTTP repository on the floating
#                   address 198.18.0.100 and a placeholder unit
#
# Heartbeats cross two links (two bridges). The installer node's monitor is
# killed with kill -9; the failover node sees it dead on both links, raises the
# epoch and takes over: promotes the database, adds and announces the address,
# starts the units. A client on the service network measures how long until
# the repository answers through the floating address. Then the installer
# comes back and stays standby (no failback). Everything is torn down at the end.
# Run as root on Debian 12; it installs what it needs and builds first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
scripts/install-deps.sh
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
echo "== building kusu-hbd, kusu-effectord and kusu-ha (release, as packaged)"
for product in kusu-hbd kusu-effectord kusu-ha; do
    swift build -c release --static-swift-stdlib --product "$product" 2>&1 | grep -E 'error|warning:' || true
done
export KUSU_BIN_DIR="$repo/.build/release"
. scripts/lib/testbed.sh
. scripts/lib/effector-node.sh
effnode_init
NODE=kha-$TB_ID-failover
H=org.kusu.Heartbeat1; HP=/org/kusu/Heartbeat1
A=$(tb_ns a)
ms() { echo $(( ($1 - $2) / 1000000 )); }

echo "== booting the failover node (systemd, dbus, polkit, PostgreSQL primary + standby)"
tb_bus a; tb_config a
fonode_boot "$NODE" "$(tb_ns b)" "$TB_DIR/failover" "$KUSU_BIN_DIR"
echo "   booted in ${NODE_BOOT_MS} ms"
echo "== starting the monitors: installer (netns $A) and failover (kusu-hbd.socket + .service in the node)"
tb_hbd_start a
node_exec "$NODE" systemctl start kusu-hbd.socket kusu-hbd.service
tb_poll 10 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $H $HP $H PeerState 2>/dev/null)\" = 's \"alive\"' ]"
tb_poll 10 tb_prop_is a PeerState alive
tb_poll 10 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 DatabaseRole 2>/dev/null)\" = 's \"standby\"' ]"

echo; echo "== kusu-ha status on the failover node"
node_exec "$NODE" kusu-ha status | sed 's/^/   /'
echo; echo "== busctl on the installer node's bus"
for prop in NodeName Role PeerState Links; do
    printf '   %-10s %s\n' "$prop" "$(tb_busctl a get-property $H $HP $H "$prop")"
done

echo; echo "== kusu-ha watch on the failover node (live events below)"
# (Heartbeat bookkeeping — Links/PeerLastSeenUSec five times a second — is left out here.)
node_exec "$NODE" sh -c 'echo $$ >/run/kusu-demo-watch.pid; exec kusu-ha watch' 2>/dev/null |
    grep --line-buffered -v -E 'kusu-hbd: Links=\S+ (PeerEpoch=[0-9]+ )?PeerLastSeenUSec=[0-9]+$' | sed -u 's/^/   watch | /' &
tb_track $!
sleep 0.5   # display only: let watch subscribe before the failure

echo "== kill -9 of the installer node's kusu-hbd"
t_kill=$(date +%s%N)
kill -KILL "$(tb_hbd_pid a)"
# The client on the service network asks for a repository file until it answers (bounded: 30 s).
ip netns exec "$A" python3 - <<'PY'
import time, urllib.request
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen("http://198.18.0.100/index.txt", timeout=0.2).read()
        break
    except Exception:
        time.sleep(0.01)
PY
t_http=$(date +%s%N)
write=""
for _ in $(seq 1 200); do
    write=$(pgnode_sql "$NODE" 5434 "INSERT INTO rows (note) VALUES ('written after the failover') RETURNING id" 2>/dev/null) && break
    sleep 0.02
done
t_db=$(date +%s%N)
sleep 0.5   # let the watch lines print
echo
echo "== the failover node took over:"
echo "   HTTP repository answering through 198.18.0.100: $(ms "$t_http" "$t_kill") ms after the kill"
echo "   database writable (row $write):                $(ms "$t_db" "$t_kill") ms after the kill"
echo "   (dead_ms 1000, interval_ms 200: the peer is declared dead after 1 s of silence on both links)"
echo; echo "== kusu-ha status on the failover node"
node_exec "$NODE" kusu-ha status | sed 's/^/   /'

echo; echo "== the installer node comes back: it sees an active peer with a higher epoch and stays standby"
tb_hbd_start a
tb_poll 10 tb_prop_is a PeerState alive
for prop in Role PeerRole PeerEpoch; do
    printf '   %-10s %s\n' "$prop" "$(tb_busctl a get-property $H $HP $H "$prop")"
done
sleep 0.3   # display only: the last watch lines
node_exec "$NODE" sh -c 'kill "$(cat /run/kusu-demo-watch.pid)"'
echo; echo "== tearing down"
