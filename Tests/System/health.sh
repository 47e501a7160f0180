#!/usr/bin/env bash
# System test: service health on the two-node test bed (scripts/lib/pair.sh), under the
# client write load and with the invariants of the fault suite checked after every run
# (scripts/lib/faultlib.sh: never two holders, no acknowledged row lost, HTTP, TFTP, DHCP and
# SQL through the address afterwards).
#
# Scenarios, each on the active node:
#   1. nginx's configuration broken and nginx restarted: it ends failed, kusu-hbd starts it
#      again until it gave it up (migration_threshold), then hands over;
#   2. dnsmasq killed again and again: systemd restarts it (Restart=on-failure) each time, and
#      past the threshold the node hands over;
#   3. every PostgreSQL process stopped with SIGSTOP (hung, not dead): seen within
#      database_timeout_ms, the hung server killed, handover with 0 rows lost, and the old
#      primary rejoins as a standby once its processes are continued;
#   4. a check failing on both nodes: one handover, then no ping-pong, one clear status line;
#   5. one crash of dnsmasq that systemd's restart repairs: no handover;
#   6. in maintenance, dnsmasq killed past the threshold: counted, not acted on; the handover
#      comes when maintenance is switched off;
#   7. nginx fails while the standby's nginx unit is masked: the handover is refused (not ready),
#      with the reason in `kusu-ha status`, and goes ahead once the standby is fixed.
# Each run ends with `kusu-ha resource cleanup` on the standby, which tells the active node. The table gives, per scenario,
# the time from the fault (for 6 and 7: from lifting what held the handover back) to the
# service answering through the address again (HTTP and TFTP, probed every 20 ms from the client), the longest time without an acknowledged write, and
# the rows lost.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"
. "$here/../../scripts/lib/faultlib.sh"

RUNS=${HEALTH_RUNS:-2}    # FAULT_ONLY=REGEX and FAULT_LOG_DIR=DIR as in faults.sh
INTERVAL_MS=200
DB_TIMEOUT_MS=2000
DB_INTERVAL_MS=500
pair_init
W="$TB_DIR/health"; mkdir -p "$W"
echo "kusu health" >"$TB_DIR/health.txt"
PAIR_EXTRA_FILES="$TB_DIR/health.txt:/srv/kusu-www/health.txt"
PAIR_EXTRA_TOML="
[health]
database_interval_ms = $DB_INTERVAL_MS
database_timeout_ms = $DB_TIMEOUT_MS

[[checks]]
name = \"repository\"
kind = \"http\"
url = \"http://$PAIR_VIP/health.txt\"
interval_ms = 500
timeout_ms = 400
failures = 2
"
if pair_boot "$W" "$TB_BIN"; then t_pass "pair booted (${PAIR_BOOT_MS} ms)"; else t_fail "pair booted"; t_summary; exit 1; fi

# --- helpers -------------------------------------------------------------------------------------------
# resource NODE NAME — "STATE FAILURES FAILED_ON_PEER" from Heartbeat1.Resources.
resource() {
    busctl --address="$(node_bus "$(pair_node "$1")" 2>/dev/null)" --json=short get-property \
        org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 Resources 2>/dev/null |
        python3 -c 'import json, sys
for name, kind, state, failures, last, peer, detail in json.load(sys.stdin)["data"]:
    if name == sys.argv[1]: print(state, failures, str(peer).lower())' "$2"
}
resource_state_is() { [ "$(resource "$1" "$2" | cut -d' ' -f1)" = "$3" ]; }
# cleanup NODE — `kusu-ha resource cleanup` on NODE: the peer is told in the heartbeats.
cleanup() { pair_exec "$1" kusu-ha --no-ask-password resource cleanup >/dev/null; }
all_healthy() {   # all_healthy ACTIVE — every resource of the active node healthy, nothing failed anywhere
    local n r
    for r in database kusu-dnsmasq.service nginx.service repository; do
        resource_state_is "$1" "$r" healthy || return 1
        for n in a b; do [ "$(resource "$n" "$r" | cut -d' ' -f2)" = 0 ] || return 1; done
    done
}
# hbd_log NODE T0_NS [FIELD=VALUE...] — kusu-hbd's messages on NODE since T0 (ns), optionally
# only those with the journal fields given.
hbd_log() { local n=$1 since=$(( $2 / 1000000000 - 1 )); shift 2; pair_exec "$n" journalctl -q -u kusu-hbd -o cat --since="@$since" "$@"; }
main_pid() { pair_exec "$1" systemctl show -P MainPID "$2"; }
# stays ACTIVE SECONDS — the address stays with ACTIVE (and it stays active) for SECONDS (bounded).
stays() {
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        pair_vip_holder_is "$1" && pair_prop_is "$1" Role active || return 1
        sleep 0.1
    done
}

# --- the service prober: HTTP and TFTP through the address, every 20 ms --------------------------------
# scripts/lib/service-probe.py in the client namespace: one line per round, "NS HTTP TFTP", each
# service given 0.2 s.
prober_start() {
    PROBES="$TB_DIR/probes"; : >"$PROBES"; rm -f "$TB_DIR/prober.stop"
    ip netns exec "$(tb_ns c)" python3 "$TB_REPO/scripts/lib/service-probe.py" "$PAIR_VIP" 0.02 0.2 "$TB_DIR/prober.stop" 300 \
        >>"$PROBES" 2>/dev/null &
    PROBER=$!
    tb_track "$PROBER"
    probed() { [ -s "$PROBES" ]; }
    tb_poll 5 probed
}
prober_stop() { touch "$TB_DIR/prober.stop"; wait "$PROBER" 2>/dev/null; }
# back_ms T0 — from the fault at T0 (ns) until HTTP and TFTP both answered again after their last
# failure (waits up to 5 s for the prober to see it); 0 when neither failed, -1 when not back.
back_ms() {
    local i v
    for i in $(seq 1 50); do
        v=$(awk -v t0="$1" '$1 >= t0 { if ($2 == 0 || $3 == 0) { bad = 1; good = 0 } else if (bad && !good) good = $1 }
            END { if (!bad) print 0; else if (good) print int((good - t0) / 1e6); else print -1 }' "$PROBES")
        [ "$v" != -1 ] && break
        sleep 0.1
    done
    echo "$v"
}
# settled_clean ACTIVE — settled, and every failure forgotten on both nodes.
settled_clean() { settled "$1" && all_healthy "$1"; }
finish() {   # finish EXPECTED_ACTIVE — clean up the failures (on the standby: the active node is told) and wait until settled
    cleanup "$(other "$1")" || return 1
    tb_poll 90 settled_clean "$1"
}

# --- the scenarios ---------------------------------------------------------------------------------------
nginx_broken() {
    local act=$1 s t0 rc=0; s=$(other "$1")
    prober_start
    pair_exec "$act" sh -c 'cp /etc/nginx/sites-enabled/default /root/kusu-site.good && echo "this is not nginx syntax" >>/etc/nginx/sites-enabled/default'
    t0=$(now_ns)
    pair_exec "$act" systemctl restart nginx.service >/dev/null 2>&1   # fails: ExecStartPre nginx -t
    if tb_poll 30 pair_vip_holder_is "$s" && tb_poll 10 pair_client_http_ok; then
        FAULT_BACK_MS=$(back_ms "$t0")
        echo "# nginx broken on $act: the service is back through the address after $FAULT_BACK_MS ms"
        hbd_log "$act" "$t0" | grep -q 'a resource failed here: handing over to the standby' || { echo "# no handover line in $act's journal"; rc=1; }
        [ "$(hbd_log "$act" "$t0" | grep -c 'starting the units again')" -ge 2 ] || { echo "# nginx was not started again before the handover"; rc=1; }
        resource_state_is "$act" nginx.service failed || { echo "# nginx.service on $act: $(resource "$act" nginx.service)"; rc=1; }
        [ "$(resource "$s" nginx.service | cut -d' ' -f3)" = true ] || { echo "# $s does not know that $act gave nginx up"; rc=1; }
    else
        echo "# the service did not move: $act Role $(pair_prop "$act" Role), nginx $(resource "$act" nginx.service), readiness $(pair_prop "$act" ServiceFaultReadiness)"
        rc=1
    fi
    prober_stop
    pair_exec "$act" sh -c 'cp /root/kusu-site.good /etc/nginx/sites-enabled/default'
    finish "$s" || return 1
    return "$rc"
}

dnsmasq_killed_repeatedly() {
    local act=$1 s t0 pid i rc=0; s=$(other "$1")
    prober_start
    t0=$(now_ns)
    for i in 1 2 3; do
        pid=$(main_pid "$act" kusu-dnsmasq.service)
        [ -n "$pid" ] && [ "$pid" != 0 ] || break
        pair_exec "$act" kill -KILL "$pid"
        [ "$i" = 3 ] && break
        restarted() { local p; p=$(main_pid "$act" kusu-dnsmasq.service); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; }
        tb_poll 5 restarted || { echo "# systemd did not restart dnsmasq"; rc=1; break; }
    done
    if tb_poll 30 pair_vip_holder_is "$s" && tb_poll 10 pair_client_tftp_ok; then
        FAULT_BACK_MS=$(back_ms "$t0")
        echo "# dnsmasq killed 3 times on $act: the service is back through the address after $FAULT_BACK_MS ms"
        # Three failures counted (systemd's restarts), then given up. (NRestarts itself is reset
        # when the release stops the unit.)
        local failures; failures=$(hbd_log "$act" "$t0" RESOURCE_NAME=kusu-dnsmasq.service | grep -c '^resource failed$')
        [ "$failures" = 3 ] || { echo "# $failures failures of dnsmasq counted, not 3"; rc=1; }
        hbd_log "$act" "$t0" RESOURCE_NAME=kusu-dnsmasq.service | grep -q 'resource given up on this node' || rc=1
    else
        echo "# the service did not move: dnsmasq $(resource "$act" kusu-dnsmasq.service), readiness $(pair_prop "$act" ServiceFaultReadiness)"
        rc=1
    fi
    prober_stop
    finish "$s" || return 1
    return "$rc"
}

pg_hung() {
    local act=$1 s t0 detected rc=0; s=$(other "$1")
    ready() { [[ $(pair_prop "$act" ServiceFaultReadiness) == true* ]]; }
    tb_poll 10 ready || { echo "# ServiceFaultReadiness on $act before the fault: $(pair_prop "$act" ServiceFaultReadiness)"; return 1; }
    prober_start
    t0=$(now_ns)
    pair_exec "$act" pkill -STOP -u postgres
    if tb_poll 10 resource_state_is "$act" database failed; then
        detected=$(( ($(now_ns) - t0) / 1000000 ))
        echo "# database hang seen by $act after $detected ms (database_timeout_ms $DB_TIMEOUT_MS, interval $DB_INTERVAL_MS)"
        # Within the timeout after the last answer, which came at most an interval before the hang
        # (plus the time to read the property from here).
        [ "$detected" -le $(( DB_TIMEOUT_MS + DB_INTERVAL_MS + 1000 )) ] || { echo "# seen too late"; rc=1; }
    else
        echo "# the hang was not seen: $(resource "$act" database)"; rc=1
    fi
    if tb_poll 30 pair_vip_holder_is "$s" && tb_poll 10 pair_prop_is "$s" Role active; then
        FAULT_BACK_MS=$(back_ms "$t0")
        echo "# $s active after the hang of $act's database; HTTP and TFTP back after $FAULT_BACK_MS ms"
        hbd_log "$act" "$t0" | grep -q 'handing over at the last known LSN' || { echo "# no kill-and-handover line in $act's journal"; rc=1; }
        pair_exec "$act" journalctl -q -u kusu-effectord -o cat --since="@$(( t0 / 1000000000 - 1 ))" | grep -q 'killing the database' || rc=1
    else
        echo "# the service did not move: $act Role $(pair_prop "$act" Role), readiness $(pair_prop "$act" ServiceFaultReadiness)"
        rc=1
    fi
    prober_stop
    pair_exec "$act" pkill -CONT -u postgres   # what is left of the hung server resumes; the old primary rejoins
    finish "$s" || return 1
    return "$rc"
}

check_fails_on_both() {
    local act=$1 s t0 rc=0 n; s=$(other "$1")
    prober_start
    t0=$(now_ns)
    for n in a b; do pair_exec "$n" rm -f /srv/kusu-www/health.txt; done
    if tb_poll 30 pair_vip_holder_is "$s" && tb_poll 15 resource_state_is "$s" repository failed; then
        FAULT_BACK_MS=$(back_ms "$t0")
        # No ping-pong: the check fails on the new active node too, but the old one gave it up.
        stays "$s" 4 || { echo "# the service moved again (ping-pong)"; rc=1; }
        local lines; lines=$(pair_exec "$s" kusu-ha status | grep -c 'repository (check): FAILED here: .*not handing over: repository failed on the peer too')
        [ "$lines" = 1 ] || { echo "# status on $s:"; pair_exec "$s" kusu-ha status | sed 's/^/#   /'; rc=1; }
        [ "$(hbd_log "$s" "$t0" | grep -c 'a resource failed here, but this node does not hand over')" = 1 ] || { echo "# the refusal was not logged exactly once"; rc=1; }
        echo "# check failing on both nodes: moved once to $s and stayed; $(pair_exec "$s" kusu-ha status | grep 'repository (check)')"
    else
        echo "# repository on $act: $(resource "$act" repository), on $s: $(resource "$s" repository)"
        rc=1
    fi
    prober_stop
    for n in a b; do pair_exec "$n" sh -c 'echo "kusu health" >/srv/kusu-www/health.txt'; done
    finish "$s" || return 1
    return "$rc"
}

single_crash_repaired() {
    local act=$1 pid t0 rc=0
    prober_start
    pid=$(main_pid "$act" kusu-dnsmasq.service)
    t0=$(now_ns)
    pair_exec "$act" kill -KILL "$pid"
    restarted() { local p; p=$(main_pid "$act" kusu-dnsmasq.service); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; }
    tb_poll 5 restarted || { echo "# systemd did not restart dnsmasq"; rc=1; }
    tb_poll 5 pair_client_tftp_ok || rc=1
    stays "$act" 3 || { echo "# the service moved after a single repaired crash"; rc=1; }
    [ "$(resource "$act" kusu-dnsmasq.service)" = "healthy 1 false" ] || { echo "# dnsmasq on $act: $(resource "$act" kusu-dnsmasq.service)"; rc=1; }
    FAULT_BACK_MS=$(back_ms "$t0")
    echo "# dnsmasq crashed once on $act and systemd restarted it: no handover, TFTP back after $FAULT_BACK_MS ms"
    prober_stop
    finish "$act" || return 1
    return "$rc"
}

maintenance_observes_only() {
    local act=$1 s pid i t0 rc=0; s=$(other "$1")
    pair_exec "$act" kusu-ha --no-ask-password maintenance on >/dev/null || return 1
    prober_start
    t0=$(now_ns)
    for i in 1 2 3; do
        pid=$(main_pid "$act" kusu-dnsmasq.service)
        pair_exec "$act" kill -KILL "$pid"
        restarted() { local p; p=$(main_pid "$act" kusu-dnsmasq.service); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ]; }
        tb_poll 5 restarted || { echo "# systemd did not restart dnsmasq"; rc=1; }
    done
    # Observed and counted (given up), but not acted on: no handover in maintenance.
    tb_poll 5 resource_state_is "$act" kusu-dnsmasq.service failed || { echo "# dnsmasq on $act: $(resource "$act" kusu-dnsmasq.service)"; rc=1; }
    stays "$act" 2 || { echo "# the service moved in maintenance"; rc=1; }
    [[ $(pair_prop "$act" ServiceFaultReadiness) == 'false "the pair is in maintenance"' ]] || { echo "# readiness: $(pair_prop "$act" ServiceFaultReadiness)"; rc=1; }
    # Maintenance off: the node acts on what it saw meanwhile (timed from here).
    t0=$(now_ns)
    pair_exec "$act" kusu-ha --no-ask-password maintenance off >/dev/null || rc=1
    if tb_poll 20 pair_vip_holder_is "$s"; then
        FAULT_BACK_MS=$(back_ms "$t0")
        echo "# dnsmasq given up in maintenance on $act: no handover until maintenance was switched off, then to $s"
    else
        echo "# no handover after maintenance off: $(pair_prop "$act" ServiceFaultReadiness)"; rc=1
    fi
    prober_stop
    finish "$s" || return 1
    return "$rc"
}

standby_not_ready() {
    local act=$1 s t0 rc=0; s=$(other "$1")
    # The standby's copy of nginx could not start: its unit is masked there.
    pair_exec "$s" systemctl mask --runtime nginx.service >/dev/null 2>&1
    not_ready() { [[ $(pair_prop "$s" ServiceReady) == 'false "nginx.service could not start here: systemd says its unit is masked"' ]]; }
    tb_poll 10 not_ready || { echo "# ServiceReady on $s: $(pair_prop "$s" ServiceReady)"; rc=1; }
    prober_start
    pair_exec "$act" sh -c 'cp /etc/nginx/sites-enabled/default /root/kusu-site.good && echo "this is not nginx syntax" >>/etc/nginx/sites-enabled/default'
    t0=$(now_ns)
    pair_exec "$act" systemctl restart nginx.service >/dev/null 2>&1
    tb_poll 10 resource_state_is "$act" nginx.service failed || rc=1
    stays "$act" 2 || { echo "# handed over onto a standby that is not ready"; rc=1; }
    local line; line=$(pair_exec "$act" kusu-ha status | grep 'nginx.service: FAILED here')
    [[ $line == *"not handing over: the standby says its own copy of the service is not ready"* ]] || { echo "# status: $line"; rc=1; }
    # The standby fixed: the handover goes ahead by itself (timed from here).
    t0=$(now_ns)
    pair_exec "$s" systemctl unmask --runtime nginx.service >/dev/null 2>&1
    if tb_poll 20 pair_vip_holder_is "$s" && tb_poll 10 pair_client_http_ok; then
        FAULT_BACK_MS=$(back_ms "$t0")
        echo "# refused onto a standby with nginx masked; handed over once it was unmasked"
    else
        echo "# no handover after the standby was fixed: $(pair_prop "$act" ServiceFaultReadiness)"; rc=1
    fi
    prober_stop
    pair_exec "$act" sh -c 'cp /root/kusu-site.good /etc/nginx/sites-enabled/default'
    finish "$s" || return 1
    return "$rc"
}

# The configuration check of [[checks]] and [health] at start: refused with the file and line.
bad=$(printf '[cluster]\nnode = "installer"\n[[nodes]]\nname = "installer"\naddresses = ["198.18.4.11"]\n[[nodes]]\nname = "failover"\naddresses = ["198.18.4.12"]\n[[checks]]\nname = "web"\nkind = "htp"\n')
pair_exec a sh -c "cat >/tmp/bad.toml" <<<"$bad"
out=$(pair_exec a kusu-hbd --config /tmp/bad.toml --check-config 2>&1); rc=$?
if [ "$rc" != 0 ] && grep -q '/tmp/bad.toml:11: checks\[0\].kind = "htp" is not one of http, tcp, tftp, command; did you mean "http"?' <<<"$out"; then
    t_pass "a bad [[checks]] entry is refused at start with the file, the line and the reason"
else
    t_fail "a bad [[checks]] entry is refused at start" "exit $rc: $out"
fi

tb_poll 30 settled_clean a || echo "# before the first run: a $(pair_prop a Role), resources $(resource a database)"
for run in $(seq 1 "$RUNS"); do
    run_scenario "nginx broken, restarted: fails to start" nginx_broken
    run_scenario "dnsmasq killed past the threshold" dnsmasq_killed_repeatedly
    run_scenario "PostgreSQL hung (SIGSTOP), active" pg_hung
    run_scenario "a check failing on both nodes" check_fails_on_both
    run_scenario "one crash, repaired by systemd" single_crash_repaired
    run_scenario "maintenance: observed, not acted on" maintenance_observes_only
    run_scenario "refused onto a standby not ready" standby_not_ready
done

fault_ledger_check
fault_table
t_summary
