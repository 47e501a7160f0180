#!/usr/bin/env bash
# System test: a pair of test-bed nodes, both systemd containers running the full
# stack (kusu-hbd, kusu-effectord, kusu-ha, the test units, PostgreSQL replicated
# synchronously across the nodes over the service network; scripts/lib/pair.sh).
# Shows: kusu-hbd's startup election makes node a active (epoch 1): it holds the
# floating address and runs the primary, b streams synchronously; a client reads
# HTTP and writes rows through the floating address;
# then node a's container dies (kill -9 of its PID 1, its links dark) while a
# client keeps writing: b holds the address, HTTP answers and a write succeeds
# through it, no acknowledged row is lost (clients keep writing during the crash,
# one of them over a kept session, so commits are in flight), b is active with
# epoch 2. PAIR_ACTIVATE=takeover: a is activated by its effector directly.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"

pair_init
W="$TB_DIR/pair"; mkdir -p "$W"
t_start=$(node_now_ms)

if pair_boot "$W" "$TB_BIN"; then
    t_pass "pair booted: both nodes up, b a synchronous standby of a, both monitors alive (${PAIR_BOOT_MS} ms)"
else
    t_fail "pair booted"
    for n in a b; do pair_exec $n journalctl --no-pager -n 20 -u kusu-pg -u kusu-hbd -u kusu-effectord 2>/dev/null | sed 's/^/#   /'; done
    t_summary; exit 1
fi

# --- the pair before the crash -------------------------------------------------------------
t_eq "a holds the floating address" "$(pair_vip_holder)" a
t_eq "a's database is the primary" "$(pair_sql a 'SELECT pg_is_in_recovery()')" f
t_eq "b's database is a standby" "$(pair_sql b 'SELECT pg_is_in_recovery()')" t
t_eq "b streams from a" "$(pair_sql b 'SELECT status FROM pg_stat_wal_receiver')" streaming
t_eq "a sees b as its synchronous standby" "$(pair_sql a "SELECT application_name || ' ' || sync_state FROM pg_stat_replication")" "failover sync"
t_eq "a runs the KUSU units (dnsmasq, nginx)" "$(pair_units_state a)" "active active "
t_eq "b does not run them" "$(pair_units_state b)" "inactive inactive "
t_eq "the client fetches the boot loader over TFTP through the floating address" "$(pair_client_tftp)" "kusu boot loader stand-in"
dhcp=$(pair_client_dhcp)
t_match "the client gets a DHCP offer from a ($dhcp)" "$dhcp" "^OFFER 198.18.0.1[5-9][0-9] 198.18.0.11$"
# PAIR_ACTIVATE=election (default): kusu-hbd's startup election made a active at epoch 1;
# PAIR_ACTIVATE=takeover: a's effector took over directly, kusu-hbd may still elect a.
epoch0=$(pair_prop a Epoch)
echo "# before the crash: a Role $(pair_prop a Role) Epoch $epoch0, b Role $(pair_prop b Role) Epoch $(pair_prop b Epoch) (PAIR_ACTIVATE=${PAIR_ACTIVATE:-election})"
if [ "${PAIR_ACTIVATE:-election}" = election ]; then
    t_eq "a's Role is active (startup election)" "$(pair_prop a Role)" active
    t_eq "a's Epoch is 1 (raised by the election)" "$epoch0" 1
fi
t_eq "b's Role is standby" "$(pair_prop b Role)" standby
t_eq "b sees a active" "$(pair_prop b PeerRole)" active
t_eq "the client reads HTTP through the floating address" "$(pair_client_http)" "kusu repository index"
id0=$(pair_client_write before)
t_match "the client writes a row through the floating address (id $id0)" "$id0" '^[0-9][0-9]*$'
t_eq "... replicated to b" "$(pair_sql b "SELECT note FROM rows WHERE id = ${id0:-0}")" before

# --- switchover a → b under write load, then back b → a asked on the standby ----------------
writer_acked() { [ "$(grep -c ' s\?ok ' "$TB_DIR/writer.log" 2>/dev/null)" -ge "$1" ]; }
switch_to() {   # switch_to FROM TO: kusu-ha switchover run on node $3 (default: FROM)
    local from=$1 to=$2 on=${3:-$1} t0 out
    pair_writer_start 20 100000 2
    tb_poll 10 writer_acked 20 || t_fail "the writer gets rows acknowledged before the switchover"
    t0=$(date +%s%N)
    out=$(pair_exec "$on" kusu-ha --no-ask-password switchover 2>&1)
    t_match "kusu-ha switchover on $on ($from → $to) reports success" "$out" 'switchover'
    tb_poll 15 pair_prop_is "$to" Role active || t_fail "$to becomes active"
    echo "# switchover $from → $to: $(( ($(date +%s%N) - t0) / 1000000 )) ms until kusu-ha returned"
    if tb_poll 10 pair_vip_holder_is "$to"; then t_pass "$to holds the address"; else t_fail "$to holds the address" "$(pair_vip_holder)"; fi
    pair_writer_stop
    t_eq "no acknowledged row lost in the switchover $from → $to" "$(pair_acked_lost "$to")" 0
    streams() { [ "$(pair_sql "$1" 'SELECT status FROM pg_stat_wal_receiver' 2>/dev/null)" = streaming ]; }
    if tb_poll 30 streams "$from"; then
        t_pass "$from rejoined as a standby of $to and streams"
    else
        t_fail "$from rejoined as a standby of $to" "$(pair_exec "$from" journalctl -u kusu-hbd -u kusu-effectord --no-pager | tail -8)"
    fi
    t_eq "$from is standby, $to active" "$(pair_prop "$from" Role) $(pair_prop "$to" Role)" "standby active"
}
switch_to a b
switch_to b a a          # asked on the standby a: b hands over
t_eq "the client reads HTTP through the address after the switchback" "$(pair_client_http)" "kusu repository index"

# --- a's kusu-hbd is stopped (SIGSTOP) past the dead time, then continued -------------------
# b stops hearing a, but a still serves the address on the service network: b's ARP probe
# finds it, so b does not take over; at no moment do both hold the address.
hbd_a=$(pair_exec a systemctl show -P MainPID kusu-hbd.service)
pair_exec a kill -STOP "$hbd_a"
t_stop=$(date +%s%N)
if tb_poll 2 pair_prop_is b PeerState dead; then
    t_pass "b sees a's monitor dead while it is stopped ($(( ($(date +%s%N) - t_stop) / 1000000 )) ms)"
else
    t_fail "b sees a's monitor dead while it is stopped" "$(pair_prop b PeerState); a's monitor: $(pair_exec a ps -o stat=,pid= -p "$hbd_a")"
fi
both=0
for _ in $(seq 1 8); do   # watch ≈ 1 s more: b probes the address and must not take it
    [ "$(pair_vip_holder)" = both ] && both=$((both + 1))
    sleep 0.1
done
t_eq "no second holder of the address while a's monitor is stopped" "$both" 0
t_eq "a still holds the address" "$(pair_vip_holder)" a
t_eq "b stayed standby" "$(pair_prop b Role)" standby
pair_exec a kill -CONT "$hbd_a"
tb_poll 5 pair_prop_is b PeerState alive || t_fail "b hears a again after SIGCONT"
t_eq "after SIGCONT a is still the active node" "$(pair_prop a Role) $(pair_vip_holder)" "active a"
t_eq "a's monitor is the same process (stopped for less than WatchdogSec=3s)" "$(pair_exec a systemctl show -P MainPID kusu-hbd.service)" "$hbd_a"

# --- every heartbeat link cut while the service network stays up: no takeover ---------------
# The heartbeats cross br1 and br2 only; br0 (the service network, the address, the
# tie-breaker) stays up, so b's ARP probe finds a still holding the address.
tb_link a 1 down; tb_link a 2 down
if tb_poll 3 pair_prop_is b PeerState dead; then t_pass "with both heartbeat links cut b sees a dead"; else t_fail "b sees a dead with the heartbeat links cut"; fi
both=0
for _ in $(seq 1 15); do   # ≈ 1.5 s: b probes, finds the address in use, keeps looking
    [ "$(pair_vip_holder)" = both ] && both=$((both + 1))
    sleep 0.1
done
t_eq "no takeover while the service network shows a holding the address" "$(pair_vip_holder) $(pair_prop b Role)" "a standby"
t_eq "no second holder of the address with the heartbeat links cut" "$both" 0
t_eq "a (which hears nothing either) stays active" "$(pair_prop a Role)" active
tb_link a 1 up; tb_link a 2 up
tb_poll 5 pair_prop_is b PeerState alive || t_fail "b hears a again when the links return"

# --- the standby cut off from the tie-breaker and the peer: no takeover ---------------------
tb_link b 0 down; tb_link b 1 down; tb_link b 2 down
if tb_poll 3 pair_prop_is b PeerState dead; then t_pass "b, cut off, sees a dead"; else t_fail "b, cut off, sees a dead"; fi
tb_poll 5 pair_prop_is b TieBreakerReachable false || t_fail "b's tie-breaker goes silent"
sleep_watch=0; for _ in $(seq 1 15); do [ "$(pair_prop b Role)" != standby ] && sleep_watch=$((sleep_watch + 1)); sleep 0.1; done
t_eq "the cut-off standby does not take over (tie-breaker silent)" "$sleep_watch $(pair_prop b Role)" "0 standby"
tb_link b 0 up; tb_link b 1 up; tb_link b 2 up
tb_poll 5 pair_prop_is b PeerState alive || t_fail "b hears a again"
tb_poll 6 pair_prop_is b TieBreakerReachable true || t_fail "b's tie-breaker answers again"
t_eq "a is still the only holder" "$(pair_vip_holder)" a

# --- a caller outside kusu-admin cannot switch ------------------------------------------------
pair_exec a useradd -M kusu-t-user
out=$(pair_exec a setpriv --reuid=kusu-t-user --regid="$(pair_exec a id -g kusu-t-user)" --init-groups kusu-ha --no-ask-password switchover 2>&1)
rc=$?
t_eq "kusu-ha switchover by a user outside kusu-admin exits 3" "$rc" 3
t_match "... with one line naming the polkit action" "$out" 'org.kusu.heartbeat1.switchover'
t_eq "... and nothing moves" "$(pair_prop a Role) $(pair_prop b Role) $(pair_vip_holder)" "active standby a"

# --- switchovers the standby does not complete: a takes the role back -------------------------
# Each time b is broken first, a is asked for a switchover and hands over, b never takes over,
# and a takes the role back: nothing is lost, as a's database (stopped at the final LSN) is the
# newest there is.
#   - b's monitor frozen (SIGSTOP) right before: b is declared dead, a takes over as in a failover;
#   - b's effector broken (a drop-in whose ExecStartPre fails; first, or b's monitor would start
#     it again through D-Bus activation): b is heard but cannot act; after 10 s a withdraws the
#     handover, gives b the dead time to notice, and takes the role back.
in_sync_b() { pair_prop_is b Synchronous sync && pair_prop_is a Synchronous sync; }
taken_back() {   # taken_back WHAT BREAK MEND
    local what=$1 note=${1//[^a-z]/-} id t0 out rc ms
    tb_poll 30 in_sync_b || t_fail "$what: b is in sync before" "$(pair_prop b Synchronous)"
    id=$(pair_client_write "before-$note")
    "$2"
    t0=$(date +%s%N)
    out=$(pair_exec a kusu-ha --no-ask-password switchover 2>&1)
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    "$3"
    t_eq "$what: the switchover fails (exit 1)" "$rc" 1
    t_match "$what: a took the active role back ($ms ms)" "$out" 'took the active role back'
    t_eq "$what: a is active and holds the address" "$(pair_prop a Role) $(pair_vip_holder)" "active a"
    t_eq "$what: a's database is a primary, running the KUSU units" \
        "$(pair_sql a 'SELECT pg_is_in_recovery()') $(pair_units_state a)" "f active active "
    t_eq "$what: the row written before is there" "$(pair_sql a "SELECT note FROM rows WHERE id = ${id:-0}")" "before-$note"
    t_match "$what: a write through the address succeeds" "$(pair_client_write "after-$note")" '^[0-9][0-9]*$'
    tb_poll 10 pair_prop_is b PeerState alive || t_fail "$what: b is heard again"
    t_eq "$what: b never took over" "$(pair_prop b Role)" standby
    if ! pair_prop_is b Role standby; then   # what happened, for the record
        pair_exec b journalctl -q -u kusu-hbd -u kusu-effectord -o short-precise --since=-90s | grep -v 'resource\|progress' | tail -40 | sed 's/^/#   b: /'
        pair_exec a journalctl -q -u kusu-hbd -o short-precise --since=-90s | grep -v 'resource' | tail -25 | sed 's/^/#   a: /'
    fi
    tb_poll 30 in_sync_b && t_pass "$what: b is a synchronous standby of a again" || t_fail "$what: b in sync again" "$(pair_prop b Synchronous)"
}
freeze_b() { hbd_b=$(pair_exec b systemctl show -P MainPID kusu-hbd.service); pair_exec b kill -STOP "$hbd_b"; }
thaw_b() { pair_exec b kill -CONT "$hbd_b"; }
break_effector_b() {
    pair_exec b sh -c 'mkdir -p /run/systemd/system/kusu-effectord.service.d &&
        printf "[Service]\nExecStartPre=/bin/false\n" >/run/systemd/system/kusu-effectord.service.d/broken.conf &&
        systemctl daemon-reload && systemctl stop kusu-effectord.service'
    effector_gone() { ! pair_exec b busctl get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 Busy >/dev/null 2>&1; }
    t_check "b's effector is stopped and cannot be activated" effector_gone
}
mend_effector_b() {
    pair_exec b sh -c 'rm -r /run/systemd/system/kusu-effectord.service.d && systemctl daemon-reload && systemctl reset-failed kusu-effectord.service'
    # A D-Bus activation that systemd refused (the unit hit its start limit) stays pending in
    # dbus-daemon until its service_start_timeout (25 s): only then is the effector activated
    # again. Wait for it, so the scenarios below start from a working standby.
    effector_back() { pair_exec b busctl get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 Busy >/dev/null 2>&1; }
    tb_poll 40 effector_back || t_fail "b's effector is back after the mend"
}
taken_back "b's monitor frozen" freeze_b thaw_b
taken_back "b's effector broken" break_effector_b mend_effector_b
withdrew() { pair_exec a journalctl -q -u kusu-hbd -o cat --no-pager | grep -q 'the peer did not take over: withdrawing the handover'; }
t_check "a logged why it withdrew the handover" withdrew

# --- node a dies while a client writes -----------------------------------------------------
# After the cuts above a stopped waiting for b (degradable) until b caught up again; b takes
# over only once it is in sync again (it refuses a failover while not).
if tb_poll 15 pair_prop_is b Synchronous sync; then t_pass "b is in sync again before the crash"; else t_fail "b is in sync again before the crash" "$(pair_prop b Synchronous)"; fi
epoch_crash=$(pair_prop a Epoch)
pair_writer_start 30 100000 3
pair_session_writer_start 30 100000
tb_poll 10 writer_acked 50 || t_fail "the background writer gets rows acknowledged"
t_crash_ns=$(date +%s%N)
echo "$t_crash_ns" >"$TB_DIR/crash_ns"
pair_crash a
crash_ms=$(( ($(date +%s%N) - t_crash_ns) / 1000000 ))

if tb_poll 20 pair_vip_holder_is b; then
    t_pass "b holds the floating address ($(( ($(date +%s%N) - t_crash_ns) / 1000000 )) ms after the crash)"
else
    t_fail "b holds the floating address" "holder: $(pair_vip_holder); $(pair_exec b journalctl -u kusu-hbd -u kusu-effectord --no-pager | tail -15)"
fi
# A foreground probe (nothing answers on the address before b holds it, polled above):
# short attempts (0.3 s; a SYN sent before b announced the address would wait 1 s for
# its retransmission), so the first success is close to when writes work again.
probe_write() { PAIR_WRITE_TIMEOUT=0.3 pair_client_write probe >/dev/null; }
if tb_poll 20 probe_write; then
    t_pass "a write through the floating address succeeds after the crash (probe)"
    echo "# crash → first acknowledged write through the floating address (probe): $(( ($(date +%s%N) - t_crash_ns) / 1000000 )) ms (dead_ms 1000)"
else
    t_fail "a write through the floating address succeeds after the crash (probe)"
fi
echo "# node a crashed: links dark, kill -9 of its PID 1, its PID namespace gone after $crash_ms ms"
# The first write through the address that the writer STARTED after the crash and got
# acknowledged: only b can have served it (a's links were dark before its kill).
first_ok() { awk -v t="$t_crash_ns" '$3 == "ok" && $1 > t { print $2; exit }' "$TB_DIR/writer.log"; }
first_ok_seen() { [ -n "$(first_ok)" ]; }
if tb_poll 20 first_ok_seen; then
    t_pass "a write through the floating address started after the crash succeeds (background writers)"
    echo "# crash → first acknowledged write of the background writers: $(( ($(first_ok) - t_crash_ns) / 1000000 )) ms (their SYNs sent before the takeover wait 1 s to be retransmitted)"
else
    t_fail "a write through the floating address succeeds after the crash" "$(tail -5 "$TB_DIR/writer.log")"
fi
if tb_poll 10 pair_client_http_ok; then
    t_pass "HTTP answers through the floating address from b"
else
    t_fail "HTTP answers through the floating address from b"
fi
# Let the writer run a little past the takeover, then stop it.
# ... until a session opened after the crash had 20 rows acknowledged (by b).
session_after_crash() {
    awk -v t="$t_crash_ns" '$3 == "session" && $1 > t { s[$4] = 1 } $3 == "sok" && ($4 in s) { n++ } END { exit !(n >= 20) }' "$TB_DIR/writer.log"
}
tb_poll 10 session_after_crash && t_pass "a client session opened through the floating address after the crash writes on b" ||
    t_fail "a client session opened after the crash writes on b" "$(cat "$TB_DIR/session.err" 2>/dev/null | tail -3)"
pair_writer_stop

# --- nothing acknowledged is lost ------------------------------------------------------------
acked=$(sort -n -u "$TB_DIR/acked" | wc -l)
before_crash=$(awk -v t="$t_crash_ns" '$3 ~ /ok$/ && $2 <= t' "$TB_DIR/writer.log" | wc -l)
last_before=$(awk -v t="$t_crash_ns" '$3 ~ /ok$/ && $2 <= t { l = $2 } END { print (l == "" ? 0 : l) }' "$TB_DIR/writer.log")
lost=$(pair_acked_lost b)
echo "# acknowledged ids: $acked ($before_crash by a before the crash, $(grep -c ' sok ' "$TB_DIR/writer.log") over kept sessions); failed connections: $(grep -c ' fail ' "$TB_DIR/writer.log")"
t_eq "every acknowledged row (id and note) is on b (zero lost with synchronous replication)" "$lost" 0
{ cat "$TB_DIR/acked"; echo "${id0:-1}|not this note"; } >"$TB_DIR/acked.control"
t_eq "... and the check does see a row that is not there (control)" "$(pair_acked_lost b "$TB_DIR/acked.control")" 1
gap=$(( (t_crash_ns - last_before) / 1000000 ))
[ "$before_crash" -ge 50 ] && [ "$gap" -lt 200 ] &&
    t_pass "rows were acknowledged by a right up to the crash ($before_crash, the last $gap ms before it)" ||
    t_fail "rows were acknowledged by a right up to the crash" "$before_crash rows, the last $gap ms before the crash"

# --- b is the active node -----------------------------------------------------------------------
t_eq "b's database is promoted" "$(pair_sql b 'SELECT pg_is_in_recovery()')" f
tb_poll 5 pair_prop_is b Role active
t_eq "b's Role is active" "$(pair_prop b Role)" active
want=$(( ${epoch_crash:-0} + 1 ))
t_eq "b's Epoch is $want (one above a's $epoch_crash when it crashed)" "$(pair_prop b Epoch)" "$want"
t_eq "b runs the KUSU units (dnsmasq, nginx)" "$(pair_units_state b)" "active active "
if tb_poll 5 pair_client_tftp_ok; then t_pass "TFTP answers through the floating address from b"; else t_fail "TFTP answers from b" "$(pair_client_tftp)"; fi
dhcp_from_b() { [[ "$(pair_client_dhcp)" == "OFFER "*" 198.18.0.12" ]]; }
if tb_poll 5 dhcp_from_b; then t_pass "DHCP offers come from b"; else t_fail "DHCP offers from b" "$(pair_client_dhcp)"; fi
t_eq "b sees a dead" "$(pair_prop b PeerState)" dead

echo "# total $(( $(node_now_ms) - t_start )) ms"
t_summary
