#!/usr/bin/env bash
# System test: two kusu-hbd, each in its own network namespace with its own
# private system bus, running as user kusu-ha with no capabilities, heartbeating
# over two links. Checks the contract's monitor behaviour with real packets.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/harness.sh"

tb_init
tb_users
tb_network
H=org.kusu.Heartbeat1
P=/org/kusu/Heartbeat1
INTERVAL_MS=200
DEAD_MS=1000

for n in a b; do tb_bus $n; tb_config $n; done
tb_monitor a signals "type='signal',interface='$H'"
tb_monitor a props "type='signal',path='$P',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"

# --- start: both alive within a second ---------------------------------------
t0=$(date +%s%N)
tb_hbd_start a           # binds [0.0.0.0]:694 itself
tb_notify b
TB_HBD_ENV="NOTIFY_SOCKET=$TB_DIR/b/notify WATCHDOG_USEC=400000" tb_hbd_start b socket  # dual-stack socket as from kusu-hbd.socket
if tb_poll 3 bash -c "[ \"\$(busctl --address=$(tb_bus_address a) get-property $H $P $H PeerState 2>/dev/null)\" = 's \"alive\"' ] &&
                      [ \"\$(busctl --address=$(tb_bus_address b) get-property $H $P $H PeerState 2>/dev/null)\" = 's \"alive\"' ]"; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ "$ms" -le 1000 ]; then t_pass "both report PeerState alive within 1 s of start ($ms ms)"
    else t_fail "both report PeerState alive within 1 s of start" "took $ms ms"; fi
else
    t_fail "both report PeerState alive" "a=$(tb_prop a PeerState) b=$(tb_prop b PeerState); logs: $(tail -5 "$TB_DIR"/a/hbd.log "$TB_DIR"/b/hbd.log)"
fi

t_eq "NodeName on a" "$(tb_prop a NodeName)" installer
t_eq "PeerName on a" "$(tb_prop a PeerName)" failover
t_eq "ClusterName" "$(tb_prop b ClusterName)" kusu
t_eq "Role is standby" "$(tb_prop a Role)" standby
t_eq "PeerRole as heard" "$(tb_prop a PeerRole)" standby
t_check "PeerLastSeenUSec is a recent realtime stamp" bash -c \
    "v=\$(busctl --address=$(tb_bus_address a) get-property $H $P $H PeerLastSeenUSec | cut -d' ' -f2); now=\$((\$(date +%s%N)/1000)); [ \$((now - v)) -lt 2000000 ] && [ \$((now - v)) -gt -2000000 ]"
links=$(tb_busctl a get-property $H $P $H Links)
t_check "Links lists both links up" bash -c "[[ '$links' == 'a(ssbt) 2 \"link0\" \"198.18.0.12\" true '*' \"link1\" \"198.18.4.12\" true '* ]]"

# --- runs unprivileged ----------------------------------------------------------
for n in a b; do
    pid=$(tb_hbd_pid $n)
    uid=$(awk '/^Uid:/ {print $2}' /proc/"$pid"/status)
    caps=$(awk '/^CapEff:/ {print $2}' /proc/"$pid"/status)
    t_eq "kusu-hbd on $n runs as kusu-ha" "$uid" "$(id -u kusu-ha)"
    t_eq "kusu-hbd on $n has no effective capabilities" "$caps" 0000000000000000
done

# --- the interface matches the reference XML -----------------------------------
tb_busctl a introspect --xml-interface $H $P >"$TB_DIR/live.xml"
t_check "live introspection matches dbus/$H.xml" \
    python3 "$TB_REPO/scripts/lib/compare-introspection.py" "$TB_REPO/dbus/$H.xml" "$TB_DIR/live.xml" $H
t_check "busctl introspect shows the contract's interface" bash -c \
    "busctl --address=$(tb_bus_address a) introspect $H $P | grep -q '^$H *interface'"

# --- bus policy -----------------------------------------------------------------
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
out=$(as_nobody busctl --address="$(tb_bus_address a)" call org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus RequestName su $H 0 2>&1)
t_check "another user cannot own $H" bash -c "grep -q 'Access denied\|AccessDenied\|not allowed' <<<'$out'"
t_eq "anyone may read properties" "$(as_nobody busctl --address="$(tb_bus_address a)" get-property $H $P $H PeerName 2>&1)" 's "failover"'
out=$(as_nobody busctl --address="$(tb_bus_address a)" call $H $P $H Takeover b true 2>&1)
t_match "nobody may not take over" "$out" 'Access denied'
# No polkitd on this private bus: polkit unavailable means denied, even for root.
out=$(tb_busctl a call $H $P $H SetMaintenance b true 2>&1)
t_match "without polkit even root is denied SetMaintenance" "$out" 'Access denied'
t_eq "Maintenance unchanged" "$(tb_prop a Maintenance)" false
out=$(tb_busctl a call $H $P $H Switchover 2>&1)
t_match "without polkit Switchover is denied too" "$out" 'Access denied'

out=$(tb_busctl a call $H $P $H Takeover s oops 2>&1)
t_check "a wrong signature gets InvalidArgs" bash -c "grep -qi 'invalid\|signature' <<<'$out'"
out=$(tb_busctl a get-property $H $P $H NoSuchProperty 2>&1)
t_check "an unknown property is refused" bash -c "grep -q 'Unknown .*property NoSuchProperty' <<<'$out'"

# --- hostile packets change nothing but PacketsRejected -------------------------
gen_b=$(sed -n 's/^generation=//p' "$TB_DIR/b/state/state")
rej0=$(tb_prop a PacketsRejected); epoch0=$(tb_prop a PeerEpoch)
inject() { ip netns exec "$(tb_ns b)" "$TB_BIN/kusu-hb-inject" --config "$TB_DIR/b/kusu-ha.toml" --node failover --to 198.18.0.11 "$@"; }
sent=0
inject --mode wrong-key --count 20 --generation $((gen_b + 1)) --sequence 1 && sent=$((sent + 20))
inject --mode random --count 50 --seed 7 && sent=$((sent + 50))
inject --mode truncated --count 20 --generation $((gen_b + 1)) --seed 3 && sent=$((sent + 20))
inject --mode bitflip --count 20 --generation $((gen_b + 1)) --seed 5 && sent=$((sent + 20))
# Replays: genuine signatures, an old generation, or an old sequence of the current one.
inject --mode valid --count 10 --generation 1 --sequence 1 && sent=$((sent + 10))
# (Sequence 1 ten times: it is certainly behind B's own; a higher one would be a valid
# packet from a key holder, not a replay.)
for _ in $(seq 1 10); do inject --mode valid --count 1 --generation "$gen_b" --sequence 1 && sent=$((sent + 1)); done
# Wrong link number for the link it arrived on.
inject --mode valid --count 5 --generation "$gen_b" --sequence 999999999 --link 1 && sent=$((sent + 5))
tb_poll 3 bash -c "[ \$(( \$(busctl --address=$(tb_bus_address a) get-property $H $P $H PacketsRejected | cut -d' ' -f2) - $rej0 )) -ge $sent ]"
rej1=$(tb_prop a PacketsRejected)
t_eq "every hostile packet is counted in PacketsRejected" "$((rej1 - rej0))" "$sent"
t_eq "PeerState unchanged by hostile packets" "$(tb_prop a PeerState)" alive
t_eq "PeerEpoch unchanged by hostile packets (they claimed 99)" "$(tb_prop a PeerEpoch)" "$epoch0"
t_eq "PeerRole unchanged by hostile packets (they claimed active)" "$(tb_prop a PeerRole)" standby
t_check "rejections are logged with their reason" grep -q 'heartbeat packet rejected.*hb.reason=badSignature' "$TB_DIR/a/hbd.log"

# --- one link cut: peer stays alive, that link goes down ------------------------
link_up() { tb_busctl a get-property $H $P $H Links | grep -q "\"link$1\" \"[0-9.]*\" $2 "; }
changes0=$(grep -c 'member=PeerStateChanged' "$TB_DIR/a/signals.log")
tb_link b 1 down
if tb_poll 3 link_up 1 false; then t_pass "cutting link1 shows link1 down in Links"; else t_fail "cutting link1 shows link1 down in Links" "$(tb_busctl a get-property $H $P $H Links)"; fi
t_check "link0 stays up" link_up 0 true
t_eq "PeerState stays alive with one link left" "$(tb_prop a PeerState)" alive
t_eq "no PeerStateChanged while one link is cut" "$(grep -c 'member=PeerStateChanged' "$TB_DIR/a/signals.log")" "$changes0"
tb_link b 1 up
if tb_poll 3 link_up 1 true; then t_pass "link1 comes back up"; else t_fail "link1 comes back up"; fi
t_check "PropertiesChanged announces the Links change" grep -q 'string "Links"' "$TB_DIR/a/props.log"
t_check "no PropertiesChanged carries the counters (they are marked no-signal)" bash -c "! grep -q 'PacketsReceived\|PacketsRejected' '$TB_DIR/a/props.log'"

# --- the peer restarts: a new generation is accepted ----------------------------
pid_b=$(tb_hbd_pid b)
kill -TERM "$pid_b"
if tb_poll 5 bash -c "! kill -0 $pid_b 2>/dev/null"; then t_pass "SIGTERM stops kusu-hbd"; else t_fail "SIGTERM stops kusu-hbd"; fi
wait "$pid_b"; t_eq "kusu-hbd exits 0 on SIGTERM" "$?" 0
t_check "it logged that it was stopping" grep -q 'kusu-hbd stopping' "$TB_DIR/b/hbd.log"
t_check "it told the service manager READY=1" grep -q ' READY=1$' "$TB_DIR/b/notify.log"
pings=$(grep -c ' WATCHDOG=1$' "$TB_DIR/b/notify.log")
t_check "it pinged the watchdog from its loop (WATCHDOG_USEC 400 ms: $pings pings)" test "$pings" -ge 5
t_check "it told the service manager STOPPING=1" grep -q ' STOPPING=1$' "$TB_DIR/b/notify.log"
t_check "its STATUS= names the peer's state" grep -q ' STATUS=standby; peer installer is alive$' "$TB_DIR/b/notify.log"
tb_hbd_start b socket
if tb_poll 3 tb_prop_is a PeerState alive && tb_poll 3 grep -q 'peer restarted' "$TB_DIR/a/hbd.log"; then
    t_pass "a restarted peer (new generation) is accepted"
else
    t_fail "a restarted peer (new generation) is accepted" "a: $(tb_prop a PeerState); $(tail -3 "$TB_DIR/a/hbd.log")"
fi
gen_b2=$(sed -n 's/^generation=//p' "$TB_DIR/b/state/state")
t_check "the boot generation increases across restarts" test "$gen_b2" -gt "$gen_b"

# --- kill -9 of the peer: dead within dead_ms + interval_ms ---------------------
tb_poll 3 link_up 1 true
: >"$TB_DIR/a/signals.log.mark"
pid_b=$(tb_hbd_pid b)
t_kill=$(tb_now)
kill -KILL "$pid_b"
if tb_poll 4 grep -q 'string "dead"' "$TB_DIR/a/signals.log"; then
    line=$(grep -B3 'string "dead"' "$TB_DIR/a/signals.log" | grep -o 'time=[0-9.]*' | tail -1 | cut -d= -f2)
    ms=$(python3 -c "print(round(($line - $t_kill) * 1000))")
    bound=$((DEAD_MS + INTERVAL_MS))
    if [ "$ms" -le "$bound" ]; then t_pass "PeerStateChanged(alive→dead) $ms ms after kill -9 (bound $bound ms)"
    else t_fail "PeerStateChanged(dead) within dead_ms + interval_ms" "$ms ms > $bound ms"; fi
    t_check "the signal names the peer and both states" bash -c \
        "grep -A3 'member=PeerStateChanged' '$TB_DIR/a/signals.log' | tr -d '\n' | grep -q 'string \"failover\" *string \"\(alive\|late\)\" *string \"dead\"'"
else
    t_fail "PeerStateChanged to dead after kill -9" "$(tail -20 "$TB_DIR/a/signals.log")"
fi
t_eq "PeerState is dead" "$(tb_prop a PeerState)" dead
t_check "both links down once the peer is dead" bash -c "! busctl --address=$(tb_bus_address a) get-property $H $P $H Links | grep -q true"
t_check "the journal line for the transition has structured fields" grep -q 'peer state changed.*peer.state=dead' "$TB_DIR/a/hbd.log"
# auto_failover = false (these monitors' configuration): the peer's death is not acted on.
stays_standby() { local i; for i in $(seq 1 20); do [ "$(tb_prop a Role)" = standby ] || return 1; sleep 0.05; done; }
t_check "auto_failover = false: no takeover after the peer died (Role stays standby for 1 s)" stays_standby
t_eq "... and FailoverReadiness says why" "$(tb_prop a FailoverReadiness)" 'false "automatic failover is off"'
t_check "... and the journal too" grep -q 'automatic failover is off' "$TB_DIR/a/hbd.log"

# --- losing the system bus ends kusu-hbd with a failure (systemd restarts it) ----
pid_a=$(tb_hbd_pid a)
kill -KILL "$(cat "$TB_DIR/a/bus.pid")"
if tb_poll 5 bash -c "! kill -0 $pid_a 2>/dev/null"; then
    wait "$pid_a"; status=$?
    t_check "kusu-hbd exits non-zero when the bus goes away (status $status)" test "$status" -ne 0
else
    t_fail "kusu-hbd exits when the bus goes away" "still running"
fi

t_summary
