#!/usr/bin/env bash
# System test: automatic failover end to end. The failover node is a test-bed
# node (systemd 252 as PID 1) running kusu-hbd from its own units (socket
# activation on port 694, user kusu-ha, the hardened unit), kusu-effectord
# (bus-activated by kusu-hbd's calls, authorised by polkit for kusu-ha), a
# PostgreSQL standby and a test unit; the installer node's monitor is a plain
# kusu-hbd in another namespace. Heartbeats cross two links.
# Shows: maintenance stops automatic action; a manual takeover is refused while
# the peer is alive; kill -9 of the peer's monitor → the standby takes over
# (address, database promoted and writable, units) with RoleChanged and a raised,
# persisted epoch; the returning installer node stays standby (no failback).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/harness.sh"

effnode_init
NODE=kha-$TB_ID-fo
H=org.kusu.Heartbeat1; HP=/org/kusu/Heartbeat1
W="$TB_DIR/failover"; mkdir -p "$W/units"

# The installer node's monitor (plain, on its private bus) and the shared key.
tb_bus a; tb_config a; tb_config b   # tb_config b writes nothing we use but the key's owner check
fonode_boot "$NODE" "$(tb_ns b)" "$W" "$TB_BIN" || tb_die "the node did not come up"
t_pass "failover node booted with PostgreSQL standby (boot ${NODE_BOOT_MS} ms)"

nprop() { busctl --address="$(node_bus "$NODE")" get-property $H $HP $H "$1" 2>/dev/null | sed -E 's/^[a-z()]+ //; s/^"(.*)"$/\1/'; }
nprop_is() { [ "$(nprop "$1")" = "$2" ]; }
vip_held() { node_exec "$NODE" ip -4 addr show dev eth0 | grep -q 'inet 198.18.0.100/24'; }
in_recovery() { pgnode_sql "$NODE" 5434 "SELECT pg_is_in_recovery()"; }

tb_hbd_start a
node_exec "$NODE" systemctl start kusu-hbd.socket kusu-hbd.service
t_eq "kusu-hbd.service is active in the node" "$(node_exec "$NODE" systemctl is-active kusu-hbd.service)" active
if tb_poll 5 nprop_is PeerState alive && tb_poll 5 tb_prop_is a PeerState alive; then
    t_pass "both monitors see each other (the node's through socket activation on port 694)"
else
    t_fail "both monitors see each other" "node: $(nprop PeerState) a: $(tb_prop a PeerState); $(node_exec "$NODE" journalctl -u kusu-hbd --no-pager | tail -5)"
fi
hbd_pid=$(node_exec "$NODE" systemctl show -P MainPID kusu-hbd.service)
t_eq "kusu-hbd runs as kusu-ha in the node" "$(node_exec "$NODE" ps -o user= -p "$hbd_pid")" kusu-ha
t_eq "Role is standby" "$(nprop Role)" standby
t_eq "Epoch starts at 0" "$(nprop Epoch)" 0
tb_poll 5 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 DatabaseRole)\" = 's \"standby\"' ]"

dbus-monitor --address "$(node_bus "$NODE")" --monitor "type='signal',interface='$H',member='RoleChanged'" >"$W/roles.log" 2>&1 &
tb_track $!
tb_poll 5 grep -q 'member=NameAcquired\|member=NameLost' "$W/roles.log"

# --- pre-flight and a manual takeover refused while the peer is alive ----------------------
t_eq "Preflight(takeover) says no, and why" "$(node_exec "$NODE" setpriv --reuid=nobody --regid=nogroup --clear-groups busctl call $H $HP $H Preflight s takeover 2>&1)" 'bs false "the peer is alive; use force to take over anyway"'
t_eq "Preflight(automatic) says no while the peer is alive" "$(node_exec "$NODE" busctl call $H $HP $H Preflight s automatic 2>&1)" 'bs false "the peer is alive, not dead on every link"'
t_match "Preflight of an unknown operation is InvalidArgs" "$(node_exec "$NODE" busctl call $H $HP $H Preflight s dance 2>&1)" "unknown operation 'dance'"
out=$(node_exec "$NODE" busctl call $H $HP $H Takeover b false 2>&1)
t_match "Takeover(false) is refused while the peer is alive" "$out" 'refused: the peer is alive'
vip_held && t_fail "nothing taken by the refused takeover" || t_pass "nothing taken by the refused takeover"

# --- maintenance: the peer dies, nothing happens -------------------------------------------
t_eq "root may set maintenance (polkit)" "$(node_exec "$NODE" busctl call $H $HP $H SetMaintenance b true 2>&1)" ""
t_eq "Maintenance is on" "$(nprop Maintenance)" true
kill -KILL "$(tb_hbd_pid a)"
tb_poll 5 nprop_is PeerState dead || t_fail "the peer is seen dead"
# A bounded wait for something that must NOT happen: a takeover would start at once.
if tb_poll 2 vip_held; then t_fail "no takeover in maintenance"; else t_pass "no takeover in maintenance (peer dead for 2 s)"; fi
t_eq "still standby in maintenance" "$(nprop Role)" standby
t_check "the refusal is logged with its reason" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd -o verbose --no-pager) | grep -q 'REASON=the pair is in maintenance'"
tb_hbd_start a
tb_poll 5 nprop_is PeerState alive || t_fail "the peer is back"
t_eq "maintenance off" "$(node_exec "$NODE" busctl call $H $HP $H SetMaintenance b false 2>&1)" ""

# --- the tie-breaker is silent: the peer dies, nothing happens --------------------------------
t_eq "TieBreakerReachable (198.18.0.1 answers)" "$(nprop TieBreakerReachable)" true
tb_tiebreaker down
if tb_poll 6 nprop_is TieBreakerReachable false; then t_pass "TieBreakerReachable goes false when 198.18.0.1 stops answering"
else t_fail "TieBreakerReachable goes false"; fi
kill -KILL "$(tb_hbd_pid a)"
tb_poll 5 nprop_is PeerState dead || t_fail "the peer is seen dead"
if tb_poll 2 vip_held; then t_fail "no takeover without the tie-breaker"; else t_pass "no takeover without the tie-breaker (peer dead for 2 s)"; fi
t_check "the refusal names the tie-breaker" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd -o verbose --no-pager) | grep -q 'REASON=the tie-breaker does not answer'"
tb_hbd_start a
tb_poll 5 nprop_is PeerState alive || t_fail "the peer is back"
tb_tiebreaker up
tb_poll 6 nprop_is TieBreakerReachable true || t_fail "the tie-breaker answers again"

# --- heartbeats lost but the address still answers on the service network: no takeover --------
A=$(tb_ns a)
ip -n "$A" addr add 198.18.0.100/24 dev eth0        # the installer still serves the address
a_mac=$(ip -n "$A" -br link show eth0 | awk '{print $3}')
kill -KILL "$(tb_hbd_pid a)"                         # ... but its heartbeats stop
tb_poll 5 nprop_is PeerState dead || t_fail "the peer is seen dead"
if tb_poll 2 vip_held; then t_fail "no takeover while the address answers"; else t_pass "no takeover while the address still answers (ARP probe)"; fi
t_check "the refusal names the address and the MAC that answered" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd -o verbose --no-pager) | grep -q 'REASON=198.18.0.100 still answers from $a_mac'"
tb_hbd_start a
tb_poll 5 nprop_is PeerState alive || t_fail "the peer is back"
ip -n "$A" addr del 198.18.0.100/24 dev eth0

# --- the new epoch cannot be written: no takeover -------------------------------------------
# (The state directory made read-only for kusu-ha: the epoch is persisted before anything else
# happens, or nothing happens.)
state_mode=$(node_exec "$NODE" stat -c %a /var/lib/kusu-ha)
node_exec "$NODE" chmod 0500 /var/lib/kusu-ha
kill -KILL "$(tb_hbd_pid a)"
tb_poll 5 nprop_is PeerState dead || t_fail "the peer is seen dead"
if tb_poll 2 vip_held; then t_fail "no takeover when the epoch cannot be written"; else t_pass "no takeover when the new epoch cannot be written (peer dead for 2 s)"; fi
t_eq "... still standby" "$(nprop Role)" standby
t_eq "... the epoch is the persisted one" "$(nprop Epoch)" 0
t_check "... the refusal is logged with its reason" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd -o verbose --no-pager) | grep -q 'REASON=the new epoch could not be written: '"
t_check "... and the effector was not asked to take over" bash -c \
    "! $(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | grep -q 'OP_NAME=Takeover'"
tb_hbd_start a
tb_poll 5 nprop_is PeerState alive || t_fail "the peer is back"
node_exec "$NODE" chmod "$state_mode" /var/lib/kusu-ha

# --- automatic failover, first held back by a failing fencing command -----------------------
node_exec "$NODE" touch /run/kusu-fence-fails
kill -KILL "$(tb_hbd_pid a)"
tb_poll 5 nprop_is PeerState dead || t_fail "the peer is seen dead"
if tb_poll 2 vip_held; then t_fail "no takeover while fencing fails"; else t_pass "no takeover while the fencing command fails"; fi
t_check "the refusal says fencing failed" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd -o verbose --no-pager) | grep -q 'REASON=fencing the peer failed: /bin/sh exited with status 1'"
node_exec "$NODE" rm /run/kusu-fence-fails
t_kill=$(date +%s%N)   # from here: fencing succeeds at the next attempt (within 5 s)
if tb_poll 10 vip_held; then
    t_vip=$(date +%s%N)
    t_pass "once fencing succeeds the standby holds the address ($(( (t_vip - t_kill) / 1000000 )) ms after fencing was allowed)"
else
    t_fail "the standby takes the address" "$(node_exec "$NODE" journalctl -u kusu-hbd -u kusu-effectord --no-pager | tail -15)"
fi
t_check "the fencing is logged" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-hbd --no-pager) | grep -q 'peer fenced'"
written=""
for _ in $(seq 1 200); do
    written=$(pgnode_sql "$NODE" 5434 "INSERT INTO rows (note) VALUES ('after failover') RETURNING note" 2>/dev/null) && break
    sleep 0.02
done
t_eq "the database is promoted and writable" "$written" "after failover"
echo "# fencing allowed → first successful write: $(( ($(date +%s%N) - t_kill) / 1000000 )) ms (the retry comes within 5 s)"
t_eq "pg_is_in_recovery is false" "$(in_recovery)" f
tb_poll 5 nprop_is Role active
t_eq "Role is active" "$(nprop Role)" active
t_eq "Epoch raised to 1" "$(nprop Epoch)" 1
t_eq "the epoch is persisted" "$(node_exec "$NODE" sed -n 's/^epoch=//p' /var/lib/kusu-ha/state)" 1
t_eq "the units run" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-http.service | tr '\n' ' ')" "active active "
http=$(ip netns exec "$(tb_ns a)" python3 -c "import urllib.request; print(urllib.request.urlopen('http://198.18.0.100/index.txt', timeout=2).read().decode().strip())" 2>&1)
t_eq "the repository answers over HTTP through the floating address (from the client namespace)" "$http" "kusu repository index"
status=$(node_exec "$NODE" kusu-ha status)
t_match "kusu-ha status shows the active role" "$status" "active"
t_match "kusu-ha status shows the held address" "$status" "198.18.0.100/24"
t_check "RoleChanged standby → taking-over was emitted" bash -c "grep -A3 'member=RoleChanged' '$W/roles.log' | tr -d '\n' | grep -q 'string \"standby\" *string \"taking-over\"'"
t_check "RoleChanged taking-over → active was emitted" bash -c "grep -A3 'member=RoleChanged' '$W/roles.log' | tr -d '\n' | grep -q 'string \"taking-over\" *string \"active\"'"
t_check "the effector logged the takeover requested by kusu-ha" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | tr '\n' ' ' | grep -q 'CALLER_UID=$(id -u kusu-ha) .*OP_NAME=Takeover.*OP_REASON=peer installer dead on every link'"

# The journal catalog explains the events (journalctl -x): the takeover, the role change,
# the refusal while fencing failed, the promotion.
catalog=$(node_exec "$NODE" journalctl -x -u kusu-effectord -u kusu-hbd --no-pager)
t_match "journalctl -x explains the takeover (catalog)" "$catalog" 'kusu-ha: takeover complete, this node serves the cluster'
t_match "... the role change, with the new role" "$catalog" "kusu-ha: this node's role changed to active"
t_match "... the refused failover while fencing failed" "$catalog" 'kusu-ha: fencing the peer failed, no takeover'
t_match "... the promotion" "$catalog" 'The local PostgreSQL left recovery and accepts writes'
t_eq "the takeover's entry carries its MESSAGE_ID" \
    "$(node_exec "$NODE" journalctl -u kusu-effectord -o cat MESSAGE_ID=a30b36cf91914594af3fd936fdd4ee1b --no-pager | head -1)" \
    "effector operation succeeded"

# --- the installer node comes back: it stays standby (no failback) --------------------------
tb_hbd_start a
tb_poll 5 tb_prop_is a PeerState alive
t_eq "the returning installer node sees the failover node active" "$(tb_prop a PeerRole)" active
t_eq "... with epoch 1" "$(tb_prop a PeerEpoch)" 1
t_eq "the returning installer node stays standby" "$(tb_prop a Role)" standby
t_eq "the failover node stays active" "$(nprop Role)" active
vip_held && t_pass "the failover node keeps the address" || t_fail "the failover node keeps the address"

score=$(node_exec "$NODE" systemd-analyze security kusu-hbd.service 2>/dev/null | tail -1)
echo "# systemd-analyze security in the node: $score"
t_summary
