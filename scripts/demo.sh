#!/usr/bin/env bash
# The kusu-ha demo: two heartbeat monitors in two network namespaces, watching
# each other over two links, each publishing on its own system bus; then the
# failover node's monitor is killed and the installer node reports it dead.
# Run as root on Debian 12; installs what it needs, builds, cleans up after itself.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
scripts/install-deps.sh
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
echo "== building kusu-hbd (release)"
swift build -c release --static-swift-stdlib --product kusu-hbd 2>&1 | grep -E 'error|warning|Compiling kusu|Build complete' || true
export KUSU_BIN_DIR="$repo/.build/release"
. scripts/lib/testbed.sh
tb_init; tb_users; tb_network
H=org.kusu.Heartbeat1; P=/org/kusu/Heartbeat1

show() {
    local node=$1
    echo "--- busctl on node $node ($(tb_prop "$node" NodeName)):"
    for prop in Role PeerName PeerState PeerRole PeerLastSeenUSec Links PacketsReceived PacketsRejected; do
        printf '    %-18s %s\n' "$prop" "$(tb_busctl "$node" get-property $H $P $H "$prop")"
    done
}

for n in a b; do tb_bus $n; tb_config $n; done
echo "== starting kusu-hbd as user kusu-ha in netns $(tb_ns a) (installer) and $(tb_ns b) (failover)"
tb_hbd_start a; tb_hbd_start b
tb_poll 5 tb_prop_is a PeerState alive && tb_poll 5 tb_prop_is b PeerState alive || tb_die "the monitors did not see each other"
show a; show b

echo "== watching node a's bus for PeerStateChanged"
dbus-monitor --address "$(tb_bus_address a)" --monitor "type='signal',interface='$H',member='PeerStateChanged'" \
    | sed -un 's/^signal time=\([0-9.]*\).*/    signal at \1: PeerStateChanged/p; s/^ *string "\(.*\)"/        \1/p' &
tb_track $!
sleep 0.3   # let the monitor subscribe before the kill (display only)

echo "== kill -9 of kusu-hbd on node b (failover)"
t_kill=$(date +%s%N); kill -KILL "$(tb_hbd_pid b)"
tb_poll 5 tb_prop_is a PeerState dead || tb_die "node a did not notice"
t_dead=$(date +%s%N)
show a
echo "== node a reported the peer dead $(( (t_dead - t_kill) / 1000000 )) ms after the kill (dead_ms 1000, interval_ms 200)"
echo "== tearing down"
