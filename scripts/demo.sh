#!/usr/bin/env bash
# The kusu-ha demo: a two-node KUSU management pair on this one machine, and a failover.
#
#   installer node (a)  systemd as PID 1 in a container on a throw-away overlay of /,
#   failover node (b)   each in its own network namespace, each running kusu-hbd
#                       (socket-activated, user kusu-ha), kusu-effectord (bus-activated,
#                       polkit), PostgreSQL 15 (a the primary, b a synchronous standby)
#                       and, on the active node only, the KUSU services from Debian
#                       packages on the floating address 198.18.0.100: dnsmasq (DHCP and
#                       TFTP) and nginx (the HTTP repositories)
#   client              a namespace on the service network, writing rows and fetching
#                       repository files through the floating address
#
# Heartbeats cross two dedicated links; the service network carries the floating
# address, the database replication and the tie-breaker 198.18.0.1. The installer
# container is killed (kill -9 of its PID 1, its links dark). The failover node sees it
# dead, checks the tie-breaker and that nobody answers for the address, raises the epoch
# and takes over: promotes the database, adds and announces the address, starts the
# services. The client measures how long the service was unreachable. Then the installer
# comes back with an empty disk: kusu-hbd rebuilds its database from the new primary and
# it stays standby, in sync. Then the failover node's service network is cut while its
# heartbeat links work: it no longer reaches the tie-breaker, the installer does, so it
# hands the service back over by itself. Last, nginx fails on the installer (a broken
# configuration): kusu-hbd starts it again, gives it up at the third failure and hands the
# service over to the failover node. Everything is torn down at the end.
# Run as root on Debian 12; it installs what it needs and builds first.
set -uo pipefail   # no -e: the test-bed helpers return non-zero as answers; failures are checked
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
scripts/install-deps.sh || exit 1
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
echo "== building kusu-hbd, kusu-effectord and kusu-ha (release, as packaged)"
for product in kusu-hbd kusu-effectord kusu-ha; do
    swift build -c release --static-swift-stdlib --product "$product" >"$TMPDIR/demo-build.log" 2>&1 ||
        { grep -E 'error' "$TMPDIR/demo-build.log" >&2; echo "demo: the build failed" >&2; exit 1; }
done
export KUSU_BIN_DIR="$repo/.build/release"
. scripts/lib/testbed.sh
. scripts/lib/effector-node.sh
. scripts/lib/pair.sh
pair_init
W="$TB_DIR/demo"; mkdir -p "$W"
ms() { echo $(( ($1 - $2) / 1000000 )); }
indent() { sed 's/^/   /'; }

echo "== booting the pair (two systemd containers, PostgreSQL, the monitors; the installer is elected active)"
pair_boot "$W" "$KUSU_BIN_DIR" || { echo "demo: the pair did not come up" >&2; exit 1; }
echo "   booted in ${PAIR_BOOT_MS} ms"
tb_poll 15 pair_prop_is b Synchronous sync || echo "   (the standby is not in sync yet)"

for n in a b; do
    echo; echo "== kusu-ha status on ${PAIR_NAME[$n]}"
    pair_exec "$n" kusu-ha status | indent
done
echo; echo "== the client, through 198.18.0.100"
echo "   HTTP  $(pair_client_http)"
echo "   TFTP  $(pair_client_tftp)"
echo "   DHCP  $(pair_client_dhcp)"
echo "   SQL   row $(pair_client_write demo-before) written"

echo; echo "== kusu-ha watch on the failover node (live events below)"
# (Heartbeat bookkeeping — Links/PeerLastSeenUSec five times a second — is left out here.)
pair_exec b sh -c 'echo $$ >/run/kusu-demo-watch.pid; exec kusu-ha watch' 2>/dev/null |
    grep --line-buffered -v -E 'kusu-hbd: Links=\[[^]]*\]( PeerEpoch=[0-9]+)? PeerLastSeenUSec=[0-9]+$' | sed -u 's/^/   watch | /' &
tb_track $!
watching() { pair_exec b test -s /run/kusu-demo-watch.pid; }
tb_poll 5 watching || true

# Clients keep writing through the floating address across the failure.
pair_writer_start 40 100000 2
writer_acked() { [ "$(grep -c ' ok ' "$TB_DIR/writer.log" 2>/dev/null)" -ge "$1" ]; }
tb_poll 10 writer_acked 10 || true

echo "== the installer node dies: kill -9 of its container, its links dark"
t_kill=$(date +%s%N)
pair_crash a
# Probes from the client, each until it first succeeds (bounded by tb_poll's deadline).
http_ok() { ip netns exec "$(tb_ns c)" curl -s --max-time 0.3 -o /dev/null "http://$PAIR_VIP/index.txt"; }
write_ok() { PAIR_WRITE_TIMEOUT=0.3 pair_client_write demo-probe >/dev/null; }
tftp_ok() { PAIR_TFTP_TIMEOUT=0.3 pair_client_tftp_ok; }
# The three probes run side by side, each noting when it first succeeded.
for probe in http_ok write_ok tftp_ok; do
    ( tb_poll 30 "$probe"; date +%s%N >"$W/$probe.t" ) &
    tb_track $!
done
first_success() { [ -s "$W/$1.t" ]; }
for probe in http_ok write_ok tftp_ok; do tb_poll 35 first_success "$probe"; done
t_http=$(cat "$W/http_ok.t"); t_db=$(cat "$W/write_ok.t"); t_tftp=$(cat "$W/tftp_ok.t")
tb_poll 10 pair_prop_is b Role active || true
pair_writer_stop
echo
echo "== the failover node took over; unreachable through 198.18.0.100 after the crash:"
echo "   HTTP repository answering   $(ms "$t_http" "$t_kill") ms"
echo "   database writable           $(ms "$t_db" "$t_kill") ms"
echo "   TFTP answering              $(ms "$t_tftp" "$t_kill") ms"
echo "   acknowledged rows lost      $(pair_acked_lost b) of $(sort -u "$TB_DIR/acked" | wc -l)"
echo "   (dead_ms 1000, interval_ms 200: the peer is declared dead after 1 s of silence on both links)"
echo; echo "== kusu-ha status on the failover node"
pair_exec b kusu-ha status | indent

echo; echo "== the installer node comes back with an empty disk"
t_back=$(date +%s%N)
pair_return a "$W" "$KUSU_BIN_DIR"
tb_poll 90 pair_prop_is b Synchronous sync || true
tb_poll 5 pair_prop_is a Synchronous sync || true   # the installer hears it in b's next heartbeat
echo "   rebuilt as a synchronous standby of the failover node in $(ms "$(date +%s%N)" "$t_back") ms (boot, pg_basebackup, catch-up)"
echo "   rows on the installer now: $(pair_sql a 'SELECT count(*) FROM rows'), missing: $(pair_acked_lost a)"
echo; echo "== kusu-ha status on the installer"
pair_exec a kusu-ha status | indent

echo; echo "== the failover node loses its service network (cable pulled); the heartbeat links still work"
echo "   (nobody can reach it, but its peer still hears it: it is not dead, so it hands over itself)"
tb_poll 10 pair_prop_is b ServiceLossReadiness 'true ""' || echo "   (not ready: $(pair_prop b ServiceLossReadiness))"
pair_writer_start 40 100000 2
tb_poll 10 writer_acked 10 || true
rm -f "$W"/*.t
t_cut=$(date +%s%N)
tb_link b 0 down
for probe in http_ok write_ok; do
    ( tb_poll 30 "$probe"; date +%s%N >"$W/$probe.t" ) &
    tb_track $!
done
for probe in http_ok write_ok; do tb_poll 35 first_success "$probe"; done
t_http=$(cat "$W/http_ok.t"); t_db=$(cat "$W/write_ok.t")
tb_poll 10 pair_prop_is a Role active || true
pair_writer_stop
echo "   the installer took over; unreachable through 198.18.0.100 after the cut:"
echo "   HTTP repository answering   $(ms "$t_http" "$t_cut") ms"
echo "   database writable           $(ms "$t_db" "$t_cut") ms"
echo "   (three tie-breaker pings missed, 250 ms apart here; then a handover like a switchover)"
tb_link b 0 up
t_back=$(date +%s%N)
tb_poll 60 pair_prop_is a Synchronous sync || true
echo "   cable back: the failover node rejoined as a synchronous standby in $(ms "$(date +%s%N)" "$t_back") ms (pg_rewind or pg_basebackup, whichever costs less)"
echo "   acknowledged rows lost      $(pair_acked_lost a) of $(sort -u "$TB_DIR/acked" | wc -l)"

echo; echo "== a service fails on the active installer: nginx's configuration is broken, and nginx restarted"
echo "   (the node is alive and reachable; what it serves is not: kusu-hbd sees the unit fail through systemd)"
tb_poll 10 pair_prop_is a ServiceFaultReadiness 'true ""' || echo "   (not ready: $(pair_prop a ServiceFaultReadiness))"
pair_writer_start 40 100000 2
tb_poll 10 writer_acked 10 || true
rm -f "$W"/*.t
pair_exec a sh -c 'cp /etc/nginx/sites-enabled/default /root/site.good; echo "not nginx syntax" >>/etc/nginx/sites-enabled/default'
t_fault=$(date +%s%N)
pair_exec a systemctl restart nginx.service >/dev/null 2>&1
( tb_poll 30 pair_vip_holder_is b && tb_poll 30 http_ok; date +%s%N >"$W/http_ok.t" ) &
tb_track $!
tb_poll 35 first_success http_ok
t_http=$(cat "$W/http_ok.t")
tb_poll 10 pair_prop_is b Role active || true
tb_poll 30 pair_prop_is a Synchronous sync || true
pair_writer_stop
echo "   kusu-hbd started nginx again twice, gave it up at the third failure and handed over:"
echo "   HTTP repository answering   $(ms "$t_http" "$t_fault") ms after the restart that failed"
echo "   acknowledged rows lost      $(pair_acked_lost b) of $(sort -u "$TB_DIR/acked" | wc -l)"
echo; echo "== kusu-ha status on the installer (it gave nginx up: the failover node will not hand the service back for it)"
pair_exec a kusu-ha status | indent
pair_exec a sh -c 'cp /root/site.good /etc/nginx/sites-enabled/default'
echo; echo "== nginx's configuration fixed; kusu-ha resource cleanup nginx.service (on the installer; the peer is told)"
pair_exec a kusu-ha resource cleanup nginx.service | indent
pair_exec b sh -c 'kill "$(cat /run/kusu-demo-watch.pid)"' 2>/dev/null || true
cleaned() { [[ $(pair_prop b Resources) != *'"nginx.service" "unit" "failed"'* ]] && [[ $(pair_prop a Resources) != *'"failed"'* ]]; }
tb_poll 15 cleaned || true
echo; echo "== kusu-ha status on the failover node"
pair_exec b kusu-ha status | indent
echo; echo "== tearing down"
