#!/usr/bin/env bash
# System test: the fault-injection suite on the two-node test bed (scripts/lib/pair.sh: two
# systemd containers with kusu-hbd, kusu-effectord, synchronous PostgreSQL, dnsmasq and
# nginx on the floating address, a client namespace).
#
# Each scenario runs FAULT_RUNS times (default 2) while two clients write numbered rows
# through the floating address and record every acknowledgement (at least 10 before the
# fault). During every run a sampler reads both nodes' namespaces for the address (every 50
# ms, timestamped) and an ARP watcher asks for it from the client; after every run the
# invariants of the contract are checked:
#   - never two holders of the floating address for longer than one heartbeat interval, the
#     samples never further apart than that, and never two MACs answering one ARP request
#   - no acknowledged row missing on the active node; at most one writable primary
#   - the KUSU services answer through the address: HTTP, TFTP, a DHCP offer, a write
# and the outage is measured: the longest time without an acknowledged write around the
# fault. At the end every row acknowledged in the whole suite must be on both nodes. The
# suite ends with a table: scenario, runs, outcome, outage min/median/max, rows lost.
# Tests/System/fault-mutations.sh shows that each of these checks fails on a violation.
#
# Scenarios: hard kill of the active node (and its return with an empty disk), also while an
# unprivileged user floods the standby's daemons with calls that need polkit; kill -9 of
# kusu-hbd and of kusu-effectord on the active node (systemd restarts them, no failover);
# SIGSTOP/SIGCONT of the active kusu-hbd past the dead time; loss of one heartbeat link; loss
# of every heartbeat link with the service network up; the active node cut off from the
# service network for 4 s (it hands over to the standby); PostgreSQL killed on the active node; a switchover and a
# switchback under load; a burst of forged heartbeat packets; a switchover after which the new
# active node dies hard 0, 100, 300, 1000 or 3000 ms later (the old one takes the role back); a
# switchover onto a standby whose takeover fails after its promotion (it gives the role back).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"
. "$here/../../scripts/lib/faultlib.sh"

RUNS=${FAULT_RUNS:-2}     # FAULT_ONLY=REGEX runs only the scenarios whose name matches;
                          # FAULT_LOG_DIR=DIR keeps each run's journals of both nodes there
INTERVAL_MS=200
pair_init
W="$TB_DIR/faults"; mkdir -p "$W"
if pair_boot "$W" "$TB_BIN"; then t_pass "pair booted (${PAIR_BOOT_MS} ms)"; else t_fail "pair booted"; t_summary; exit 1; fi

# --- the scenarios (each gets the active node; returns non-zero if its own checks fail) ---------------
hard_kill_active() {
    local act=$1 s; s=$(other "$1")
    pair_crash "$act"
    tb_poll 15 pair_vip_holder_is "$s" || return 1
    tb_poll 10 pair_prop_is "$s" Role active || return 1
    pair_return "$act" "$W" "$TB_BIN" || return 1
    tb_poll 90 settled "$s"
}
# hard_kill_during_flood ACTIVE — an unprivileged user on the standby (nobody) floods both of
# its daemons with calls that need polkit (8 connections, pipelined, scripts/lib/dbus-flood.py)
# and the active node dies 2 s into the flood: the standby takes over within the usual time
# (dead_ms, the probe and the takeover: bounded like a hard kill, dead_ms + 1.5 s), and the flood
# was refused at once beyond the bound of pending authorizations (LimitsExceeded).
hard_kill_during_flood() {
    local act=$1 s t_crash ms flood rc=0; s=$(other "$1")
    # (Copied into the node: the repository may live where the container does not see it.)
    pair_exec "$s" sh -c 'cat >/run/kusu-dbus-flood.py' <"$TB_REPO/scripts/lib/dbus-flood.py" || return 1
    pair_exec "$s" setpriv --reuid=nobody --regid=nogroup --clear-groups python3 /run/kusu-dbus-flood.py \
        /run/dbus/system_bus_socket 6 8 \
        org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 PromoteDatabase \
        org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 Switchover >"$TB_DIR/flood.out" 2>&1 &
    flood=$!
    tb_track "$flood"
    sleep 2   # the fault's schedule: the flood is under way when the active node dies
    t_crash=$(now_ns)
    pair_crash "$act"
    if tb_poll 15 pair_vip_holder_is "$s"; then
        ms=$(( ($(now_ns) - t_crash) / 1000000 ))
        echo "# $act crashed during a D-Bus flood on $s: $s holds the address after $ms ms"
        [ "$ms" -le $(( 1000 + 1500 )) ] || { echo "# later than dead_ms + 1.5 s"; rc=1; }
    else
        echo "# $s did not take over during the flood: $(pair_prop "$s" FailoverReadiness)"; rc=1
    fi
    wait "$flood"
    echo "# the flood: $(cat "$TB_DIR/flood.out")"
    grep -qE 'limits-exceeded [1-9]' "$TB_DIR/flood.out" || { echo "# the flood was not limited"; rc=1; }
    tb_poll 10 pair_prop_is "$s" Role active || return 1
    pair_return "$act" "$W" "$TB_BIN" || return 1
    tb_poll 90 settled "$s" || return 1
    return "$rc"
}
kill_hbd_active() {
    local act=$1 pid; pid=$(pair_exec "$act" systemctl show -P MainPID kusu-hbd.service)
    pair_exec "$act" kill -KILL "$pid"
    restarted() { local p; p=$(pair_exec "$act" systemctl show -P MainPID kusu-hbd.service); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; }
    tb_poll 5 restarted || return 1
    tb_poll 10 settled "$act"   # no failover: the same node is active again
}
kill_effectord_active() {
    local act=$1 pid; pid=$(pair_exec "$act" systemctl show -P MainPID kusu-effectord.service)
    [ -n "$pid" ] && [ "$pid" != 0 ] && pair_exec "$act" kill -KILL "$pid"
    # The effector is not in the data path: the service goes on; the monitor's next call starts it again.
    effector_back() { pair_exec "$act" busctl get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 Busy >/dev/null 2>&1; }
    tb_poll 10 effector_back || return 1
    tb_poll 10 settled "$act"
}
sigstop_hbd_active() {
    local act=$1 s pid; s=$(other "$1"); pid=$(pair_exec "$act" systemctl show -P MainPID kusu-hbd.service)
    pair_exec "$act" kill -STOP "$pid"
    # The precondition of the scenario: the standby declares the stopped monitor dead.
    tb_poll 3 pair_prop_is "$s" PeerState dead || { pair_exec "$act" kill -CONT "$pid"; echo "# $s never saw $act dead"; return 1; }
    local i; for i in $(seq 1 10); do [ "$(pair_vip_holder)" = "$act" ] || break; sleep 0.1; done   # ≈ 1 s past the dead time
    pair_exec "$act" kill -CONT "$pid"
    [ "$(pair_prop "$s" Role)" = standby ] || return 1
    tb_poll 15 settled "$act"
}
one_link_down() {
    local act=$1 s; s=$(other "$1")
    tb_link "$act" 1 down
    link_down() { pair_exec "$s" busctl get-property org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 Links | grep -q 'false'; }
    tb_poll 5 link_down || { tb_link "$act" 1 up; return 1; }
    local same; same=$(pair_prop "$s" PeerState)
    tb_link "$act" 1 up
    [ "$same" = alive ] || return 1
    tb_poll 10 settled "$act"
}
all_links_down() {
    local act=$1 s; s=$(other "$1")
    tb_link "$act" 1 down; tb_link "$act" 2 down
    tb_poll 3 pair_prop_is "$s" PeerState dead || { tb_link "$act" 1 up; tb_link "$act" 2 up; echo "# $s never saw $act dead"; return 1; }
    local i; for i in $(seq 1 15); do sleep 0.1; done   # 1.5 s: the standby probes the address and must not take it
    tb_link "$act" 1 up; tb_link "$act" 2 up
    [ "$(pair_prop "$s" Role)" = standby ] || return 1
    tb_poll 20 settled "$act"
}
cut_from_service() {
    # The standby still hears the active node on the heartbeat network, so it is not "dead":
    # the active node itself sees its tie-breaker fall silent and hands over (service-loss
    # handover), without the final LSN, which cannot cross the cut link.
    local act=$1 s; s=$(other "$1")
    ready() { [[ $(pair_prop "$act" ServiceLossReadiness) == true* ]]; }
    tb_poll 10 ready || {
        echo "# ServiceLossReadiness on $act before the cut: $(pair_prop "$act" ServiceLossReadiness);" \
            "Synchronous $act $(pair_prop "$act" Synchronous), $s $(pair_prop "$s" Synchronous)"
        return 1
    }
    tb_link "$act" 0 down
    local moved=1
    tb_poll 4 pair_vip_holder_is "$s" || moved=0   # within the 4 s cut
    tb_link "$act" 0 up
    [ "$moved" = 1 ] || { echo "# the service did not move during the cut"; return 1; }
    tb_poll 10 pair_prop_is "$s" Role active || return 1
    pair_exec "$act" journalctl -q -u kusu-hbd -o cat --since=-60s | grep -q 'service network lost' || return 1
    tb_poll 30 settled "$s"    # the old active node's database rejoins (pg_rewind) once the link is back
}
pg_killed_active() {
    local act=$1 pid; pid=$(pair_exec "$act" systemctl show -P MainPID kusu-pg.service)
    pair_exec "$act" kill -KILL "$pid"
    pg_back() { local p; p=$(pair_exec "$act" systemctl show -P MainPID kusu-pg.service); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ] && [ "$(pair_sql "$act" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; }
    tb_poll 15 pg_back || return 1
    tb_poll 20 settled "$(active_node)"
}
switchover_and_back() {
    local act=$1 s out; s=$(other "$1")
    out=$(pair_exec "$act" kusu-ha --no-ask-password switchover 2>&1) || { echo "# switchover on $act: $out"; return 1; }
    tb_poll 30 settled "$s" || return 1
    out=$(pair_exec "$s" kusu-ha --no-ask-password switchover 2>&1) || { echo "# switchover on $s: $out"; return 1; }
    tb_poll 30 settled "$act"
}
# switchover_then_crash ACTIVE — a switchover, then the new active node dies hard
# CRASH_AFTER_MS after the switchover returned (it is active then). The old active node, still
# rejoining or already a standby, has every acknowledged row (the new primary waited for it from
# its first commit) and takes the role back within the dead time and a second; the crashed node
# returns with an empty disk.
switchover_then_crash() {
    local act=$1 s t_crash held ms; s=$(other "$1")
    pair_exec "$act" kusu-ha --no-ask-password switchover >/dev/null || { echo "# the switchover failed"; return 1; }
    pair_prop_is "$s" Role active || { echo "# $s is not active after the switchover"; return 1; }
    [ "$CRASH_AFTER_MS" = 0 ] || sleep "$(printf '%d.%03d' $((CRASH_AFTER_MS / 1000)) $((CRASH_AFTER_MS % 1000)))"   # the fault's schedule
    t_crash=$(now_ns)
    pair_crash "$s"
    tb_poll 15 pair_vip_holder_is "$act" || { echo "# $act did not take the role back: $(pair_prop "$act" FailoverReadiness)"; return 1; }
    held=$(now_ns); ms=$(( (held - t_crash) / 1000000 ))
    echo "# $s crashed ${CRASH_AFTER_MS} ms after the switchover: $act holds the address again after $ms ms"
    [ "$ms" -le $(( 1000 + 1000 + 500 )) ] || { echo "# later than dead_ms + 1 s (and the 0.5 s it takes to see the address from here)"; return 1; }
    tb_poll 10 pair_prop_is "$act" Role active || return 1
    pair_return "$s" "$W" "$TB_BIN" || return 1
    tb_poll 90 settled "$act"
}

# takeover_fails ACTIVE — a switchover onto a standby whose nginx cannot start (a broken
# configuration): its takeover fails after the promotion; it gives the role back at once (releases
# what it holds), the old active node takes it back, and the failed side's promoted database
# rejoins as a standby (pg_rewind): never two primaries that both serve, no acknowledged row lost.
takeover_fails() {
    local act=$1 s out; s=$(other "$1")
    pair_exec "$s" sh -c 'cp /etc/nginx/sites-enabled/default /root/kusu-site.good && echo "not nginx syntax" >>/etc/nginx/sites-enabled/default'
    out=$(pair_exec "$act" kusu-ha --no-ask-password switchover 2>&1) && { echo "# the switchover succeeded: $out"; }
    echo "# switchover onto $s whose nginx cannot start: $out"
    pair_exec "$s" sh -c 'cp /root/kusu-site.good /etc/nginx/sites-enabled/default'
    local rc=0
    pair_prop_is "$act" Role active && pair_vip_holder_is "$act" || { echo "# $act did not take the role back"; rc=1; }
    pair_exec "$s" journalctl -q -u kusu-hbd -o cat --since=-60s | grep -q 'the takeover completing the handover failed: giving the role back' ||
        { echo "# $s did not give the role back"; rc=1; }
    # The failed side's database was promoted, then rewound: a standby of the active node again.
    rewound() { [ "$(pair_sql "$s" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]; }
    tb_poll 60 rewound || { echo "# $s's database is still a primary"; rc=1; }
    pair_exec "$s" kusu-ha --no-ask-password resource cleanup >/dev/null
    tb_poll 60 settled "$act" || return 1
    return "$rc"
}

forged_burst() {
    local act=$1 s before after; s=$(other "$1")
    sed "s|^auth_key_file = .*|auth_key_file = \"$TB_DIR/authkey\"|" "$W/$act/kusu-ha.toml" >"$W/inject.toml"
    before=$(pair_exec "$s" busctl get-property org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 PacketsRejected | cut -d' ' -f2)
    local to="198.18.4.${PAIR_HOST[$s]}" mode
    for mode in wrong-key random truncated bitflip; do
        ip netns exec "$(tb_ns "$act")" "$TB_BIN/kusu-hb-inject" --config "$W/inject.toml" --node "${PAIR_NAME[$act]}" \
            --to "$to" --mode "$mode" --count 2500 >/dev/null 2>&1 || return 1
    done
    # Genuine packets, replayed from an old generation.
    ip netns exec "$(tb_ns "$act")" "$TB_BIN/kusu-hb-inject" --config "$W/inject.toml" --node "${PAIR_NAME[$act]}" \
        --to "$to" --mode valid --generation 1 --count 1000 >/dev/null 2>&1 || return 1
    # 11,000 datagrams sent as fast as possible: the socket buffer drops some, the rest are counted.
    counted() { local n; n=$(pair_exec "$s" busctl get-property org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 PacketsRejected | cut -d' ' -f2); [ "$((n - before))" -ge 1000 ]; }
    tb_poll 5 counted || return 1
    after=$(pair_exec "$s" busctl get-property org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 PacketsRejected | cut -d' ' -f2)
    echo "# forged burst: $((after - before)) packets rejected by $s"
    pair_prop_is "$s" PeerState alive && settled "$act"
}

for run in $(seq 1 "$RUNS"); do
    run_scenario "kill -9 kusu-hbd (active)" kill_hbd_active
    run_scenario "kill -9 kusu-effectord (active)" kill_effectord_active
    run_scenario "SIGSTOP/SIGCONT kusu-hbd (active)" sigstop_hbd_active
    run_scenario "one heartbeat link lost" one_link_down
    run_scenario "all heartbeat links lost" all_links_down
    run_scenario "active cut off from service network" cut_from_service
    run_scenario "PostgreSQL killed (active)" pg_killed_active
    run_scenario "forged heartbeat burst" forged_burst
    run_scenario "switchover and switchback" switchover_and_back
    run_scenario "hard kill of the active node + return" hard_kill_active
    run_scenario "hard kill during a D-Bus flood + return" hard_kill_during_flood
    run_scenario "switchover, standby's takeover fails" takeover_fails
    for CRASH_AFTER_MS in 0 100 300 1000 3000; do
        run_scenario "switchover, new active dies +${CRASH_AFTER_MS} ms" switchover_then_crash
    done
done

fault_ledger_check
fault_table
t_summary
