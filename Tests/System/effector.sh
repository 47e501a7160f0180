#!/usr/bin/env bash
# System test: kusu-effectord in a test-bed node (systemd 252 as PID 1, its own
# dbus-daemon and polkitd, a PostgreSQL primary and a streaming standby, test
# units standing in for the KUSU services), installed with the project's unit,
# bus policy, activation file and polkit files. Callers run inside the node as
# root, kusu-ha, a kusu-admin member, an ordinary user and nobody; the floating
# address is watched from a client namespace on the same bridge (tcpdump and
# ip neigh). Shows: bus activation, the contract's interface, polkit decisions,
# configured resources only, idempotence, Busy, PropertiesChanged, takeover and
# release for real, named errors, and recovery after a crash half-way.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/harness.sh"

effnode_init            # netns a = client (198.18.0.11), netns b = the node's network (198.18.0.12)
[ -x "$TB_BIN/kusu-effectord" ] || tb_die "$TB_BIN/kusu-effectord is missing"
NODE=kha-$TB_ID-eff
E=org.kusu.Effector1
P=/org/kusu/Effector1
W="$TB_DIR/effector"; mkdir -p "$W/units"

EFFNODE_ADDRESS_KEYS=$'arp_count = 3\narp_interval_ms = 100' effnode_config "$W/kusu-ha.toml" kusu-ok.service kusu-slow.service
cat >"$W/units/kusu-ok.service" <<'UNIT'
[Service]
ExecStart=/bin/sleep infinity
UNIT
cat >"$W/units/kusu-slow.service" <<'UNIT'
[Service]
ExecStartPre=/bin/sleep 1
ExecStart=/bin/sleep infinity
UNIT
cat >"$W/units/kusu-fails.service" <<'UNIT'
[Service]
Type=oneshot
ExecStart=/bin/false
UNIT
t0=$(date +%s%N)
effnode_boot "$NODE" "$(tb_ns b)" "$W" "$TB_BIN" || tb_die "the node or its PostgreSQL did not come up"
t_pass "node booted in ${NODE_BOOT_MS} ms; with PostgreSQL primary and streaming standby in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
# An administrator (kusu-admin) and an ordinary user, in the node only.
node_exec "$NODE" useradd -M -G kusu-admin kusu-t-admin
node_exec "$NODE" useradd -M kusu-t-user
in_recovery() { pgnode_sql "$NODE" 5434 "SELECT pg_is_in_recovery()"; }

# as USER busctl ARGS... inside the node (so polkit sees a process it can identify).
as() {
    local user=$1; shift
    if [ "$user" = root ]; then node_exec "$NODE" busctl "$@" 2>&1
    else
        local gid; gid=$(node_exec "$NODE" id -g "$user")
        node_exec "$NODE" setpriv --reuid="$user" --regid="$gid" --init-groups busctl "$@" 2>&1
    fi
}
prop() { as root get-property $E $P $E "$1" | sed -E 's/^[a-z()]+ //; s/^"(.*)"$/\1/'; }
vip_held() { node_exec "$NODE" ip -4 addr show dev eth0 | grep -q 'inet 198.18.0.100/24'; }

# --- bus activation and the interface -----------------------------------------
t0=$(date +%s%N)
out=$(as root introspect --xml-interface $E $P)
printf '%s\n' "$out" >"$W/live.xml"
t_check "D-Bus activation starts kusu-effectord and it answers" grep -q "<interface name=\"$E\">" "$W/live.xml"
t_eq "kusu-effectord.service is active after activation" "$(node_exec "$NODE" systemctl is-active kusu-effectord.service)" active
echo "# activation and first introspection: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
t_check "live introspection matches dbus/$E.xml" \
    python3 "$TB_REPO/scripts/lib/compare-introspection.py" "$TB_REPO/dbus/$E.xml" "$W/live.xml" $E
t_eq "nothing held at start" "$(prop Addresses)" "0"
t_check "Units lists the configured units" bash -c "[[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E Units)\" == 'a(ss) 2 \"kusu-ok.service\" \"inactive\" \"kusu-slow.service\" \"inactive\"' ]]"

# --- unauthorised callers change nothing ------------------------------------------
node_exec "$NODE" id kusu-ha >/dev/null 2>&1 || tb_die "user kusu-ha missing in the node"
for user in nobody kusu-t-user; do
    for call in "Takeover s test" "Release s test" "AddAddress s 198.18.0.100" "RemoveAddress s 198.18.0.100" \
                "AnnounceAddress s 198.18.0.100" "PromoteDatabase" "RejoinDatabase s installer" "StartUnits" "StopUnits" \
                "DetachStandbys" "WaitForReplay tu 1 100"; do
        # shellcheck disable=SC2086
        out=$(as "$user" call $E $P $E $call)
        t_match "$user: $call is denied" "$out" 'Access denied'
    done
done
# busctl shortens AccessDenied to "Access denied"; dbus-send prints the name and message.
out=$(node_exec "$NODE" setpriv --reuid=nobody --regid=nogroup --clear-groups dbus-send --system --print-reply \
    --dest=$E $P $E.AddAddress string:198.18.0.100 2>&1)
t_match "the denial is AccessDenied naming the polkit action" "$out" 'org.freedesktop.DBus.Error.AccessDenied: Not authorized to perform org.kusu.effector1.manage-address'
vip_held && t_fail "the denied calls added the address" || t_pass "the denied calls added no address"
t_eq "the denied calls left the database a standby" "$(in_recovery)" t
t_eq "the denied calls started no unit" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "inactive inactive "
t_check "denials are logged with the caller" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | grep -q 'CALLER_UID=65534'"
tb_poll 3 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E DatabaseRole)\" = 's \"standby\"' ]"
t_eq "DatabaseRole is standby" "$(prop DatabaseRole)" standby

# --- WaitForReplay (reads only) and DetachStandbys on a standby ---------------------
out=$(as kusu-ha call $E $P $E WaitForReplay tu 1 1000)
t_match "WaitForReplay: a position already replayed is reached at once" "$out" '^bt true [1-9]'
replayed=$(awk '{print $3}' <<<"$out")
t0=$(date +%s%N)
out=$(as kusu-ha call $E $P $E WaitForReplay tu $(( ${replayed:-0} + (1 << 40) )) 300)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t_match "WaitForReplay: a position never written is not reached" "$out" '^bt false [1-9]'
if [ "$ms" -ge 300 ] && [ "$ms" -lt 3000 ]; then t_pass "... and the wait is bounded by timeout_ms ($ms ms for 300)"
else t_fail "WaitForReplay is bounded by timeout_ms" "$ms ms for 300"; fi
for bad in 0 60001; do
    t_match "WaitForReplay with timeout_ms $bad is InvalidArgument" "$(as root call $E $P $E WaitForReplay tu 1 $bad)" 'timeout_ms must be between 1 and 60000'
done
t_match "WaitForReplay with the wrong signature is refused" "$(as root call $E $P $E WaitForReplay s 1)" 'Invalid\|invalid\|signature'
t_match "DetachStandbys on a standby is refused" "$(as root call $E $P $E DetachStandbys)" 'is a standby'
t_eq "... and the database is still a standby" "$(in_recovery)" t

# --- configured resources only, validated before polkit ---------------------------
out=$(as root call $E $P $E AddAddress s 198.18.0.101)
t_match "an unconfigured address is NotConfigured (even for root)" "$out" 'not a floating address'
out=$(as nobody call $E $P $E AddAddress s 198.18.0.101)
t_match "an unconfigured address is NotConfigured whatever the caller" "$out" 'not a floating address'
out=$(as root call $E $P $E AddAddress s not-an-address)
t_match "a malformed address is InvalidArgument" "$out" 'is not an IPv4 or IPv6 address'
out=$(as root call $E $P $E AddAddress i 5)
t_match "a wrong signature is refused" "$out" 'invalid\|signature'

# --- ProbeAddress: is the address still in use on the link? ---------------------------
t_eq "ProbeAddress: nothing answers for a free address" "$(as root call $E $P $E ProbeAddress s 198.18.0.100)" 'bs false ""'
ip -n "$(tb_ns a)" addr add 198.18.0.100/24 dev eth0
a_mac=$(ip -n "$(tb_ns a)" -br link show eth0 | awk '{print $3}')
t_eq "ProbeAddress: the client's answer is seen with its MAC" "$(as root call $E $P $E ProbeAddress s 198.18.0.100)" "bs true \"$a_mac\""
ip -n "$(tb_ns a)" addr del 198.18.0.100/24 dev eth0
t_match "nobody may not probe" "$(as nobody call $E $P $E ProbeAddress s 198.18.0.100)" 'Access denied'
vip_held && t_fail "probing adds nothing" || t_pass "probing adds nothing"

# --- one address, idempotent --------------------------------------------------------
out=$(as root call $E $P $E AddAddress s 198.18.0.100/24)
t_check "root adds the floating address" vip_held
out2=$(as root call $E $P $E AddAddress s 198.18.0.100)
t_eq "adding it again succeeds (idempotent)" "$out2" ""
t_eq "Addresses lists it" "$(prop Addresses)" '1 "198.18.0.100/24"'
as root call $E $P $E RemoveAddress s 198.18.0.100 >/dev/null
vip_held && t_fail "RemoveAddress removes it" || t_pass "RemoveAddress removes it"
t_eq "removing it again succeeds (idempotent)" "$(as root call $E $P $E RemoveAddress s 198.18.0.100)" ""

# --- takeover by the monitor's user, watched from the client namespace ---------------
A=$(tb_ns a)
ip -n "$A" neigh replace 198.18.0.100 lladdr 02:00:00:00:00:99 dev eth0 nud stale
ip netns exec "$A" tcpdump -i eth0 -n -l -e arp >"$W/arp.log" 2>"$W/arp.err" &
tb_track $!
# tcpdump says "listening on" once its capture is open: before that, packets are missed.
tb_poll 10 grep -q 'listening on' "$W/arp.err" || t_fail "tcpdump started on the client" "$(cat "$W/arp.err")"
dbus-monitor --address "$(node_bus "$NODE")" --monitor "type='signal',path='$P',member='PropertiesChanged'" >"$W/props.log" 2>&1 &
tb_track $!
tb_poll 5 grep -q 'member=NameAcquired\|member=NameLost' "$W/props.log"
node_mac=$(ip -n "$(tb_ns b)" -br link show eth0 | awk '{print $3}')
t0=$(date +%s%N)
out=$(as kusu-ha call $E $P $E Takeover s "test takeover")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t_eq "kusu-ha may take over (polkit rule)" "$out" ""
echo "# Takeover (address, announce, two units incl. a 1 s start) took $ms ms"
t_check "the address is held after Takeover" vip_held
t_eq "units are active after Takeover" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "active active "
if tb_poll 3 bash -c "ip -n $A neigh show 198.18.0.100 | grep -qi '$node_mac'"; then
    t_pass "the client's neighbour entry now points at the node ($node_mac): gratuitous ARP"
else
    t_fail "gratuitous ARP updated the client" "$(ip -n "$A" neigh show 198.18.0.100)"
fi
t_check "tcpdump on the client saw the gratuitous ARP request" tb_poll 3 grep -q "Request who-has 198.18.0.100 tell 198.18.0.100" "$W/arp.log"
t_check "tcpdump on the client saw the gratuitous ARP reply" tb_poll 3 grep -q "Reply 198.18.0.100 is-at $node_mac" "$W/arp.log"
t_eq "the standby was promoted (pg_is_in_recovery)" "$(in_recovery)" f
t_eq "the promoted database accepts a write" "$(pgnode_sql "$NODE" 5434 "INSERT INTO rows (note) VALUES ('after takeover') RETURNING note")" "after takeover"
tb_poll 3 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E DatabaseRole)\" = 's \"primary\"' ]"
t_eq "DatabaseRole is primary" "$(prop DatabaseRole)" primary
t_check "DatabaseTimeline moved to 2" bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E DatabaseTimeline)\" = 'u 2' ]"
t_check "PropertiesChanged announced Busy" grep -q 'string "Busy"' "$W/props.log"
t_check "PropertiesChanged announced LastOperation" grep -q 'string "LastOperation"' "$W/props.log"
t_check "PropertiesChanged announced Addresses" grep -q 'string "Addresses"' "$W/props.log"
t_check "the floating address answers from the client" bash -c "ip netns exec $A ping -q -c1 -W1 198.18.0.100 >/dev/null"
last=$(as root get-property $E $P $E LastOperation)
t_match "LastOperation records the takeover" "$last" '"Takeover" "test takeover" [0-9]* true ""'
t_eq "Busy is false afterwards" "$(prop Busy)" false
t_eq "Takeover again as root succeeds" "$(as root call $E $P $E Takeover s again)" ""
t_eq "Takeover again as a kusu-admin member succeeds" "$(as kusu-t-admin call $E $P $E Takeover s again)" ""
t_eq "the repeated takeovers changed nothing (still timeline 2, one address)" \
    "$(prop DatabaseTimeline) $(prop Addresses)" '2 1 "198.18.0.100/24"'
out=$(as root call $E $P $E PromoteDatabase)
t_match "PromoteDatabase on a primary is DatabaseNotStandby" "$out" 'not a standby\|not in recovery\|already'
out=$(node_exec "$NODE" dbus-send --system --print-reply --dest=$E $P $E.PromoteDatabase 2>&1)
t_match "... with the named error" "$out" 'org.kusu.Effector1.Error.DatabaseNotStandby'
t_eq "DetachStandbys on the primary succeeds" "$(as kusu-ha call $E $P $E DetachStandbys)" ""
out=$(node_exec "$NODE" dbus-send --system --print-reply --dest=$E $P $E.WaitForReplay uint64:1 uint32:100 2>&1)
t_match "WaitForReplay on a primary is DatabaseNotStandby" "$out" 'org.kusu.Effector1.Error.DatabaseNotStandby'

# --- one operation at a time ------------------------------------------------------
as root call $E $P $E StopUnits >/dev/null
node_exec "$NODE" busctl call $E $P $E StartUnits >"$W/start.out" 2>&1 &
starter=$!
tb_poll 3 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E Busy)\" = 'b true' ]"
out=$(as root call $E $P $E StopUnits)
t_match "a second operation while one runs gets Busy" "$out" 'another operation is running'
wait "$starter"
t_eq "the first operation still completes" "$(cat "$W/start.out")" ""

# --- release --------------------------------------------------------------------------
out=$(as kusu-t-admin call $E $P $E Release s "test release")
t_eq "a kusu-admin member may release" "$out" ""
vip_held && t_fail "Release removes the address" || t_pass "Release removes the address"
t_eq "units are stopped after Release" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "inactive inactive "
t_check "the journal shows the operations with structured fields" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | grep -q 'OP_NAME=Release'"
t_eq "Release again changes nothing" "$(as root call $E $P $E Release s again)" ""
t_check "the operation log names the caller, the action and the outcome" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | tr '\n' ' ' | grep -q 'MESSAGE=effector operation succeeded.*CALLER_UID=[0-9].*OP_NAME=Release.*POLKIT_ACTION=org.kusu.effector1.takeover'"

# --- a crash half-way: Takeover or Release completes the job when called again --------
node_exec "$NODE" busctl call $E $P $E Takeover s "to be interrupted" >/dev/null 2>&1 &
tb_poll 5 bash -c "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- systemctl is-active kusu-ok.service) | grep -qx active"
main_pid=$(node_exec "$NODE" systemctl show -P MainPID kusu-effectord.service)
node_exec "$NODE" kill -9 "$main_pid"
vip_held && t_pass "after a crash half-way the address is held (added before the units)" || t_fail "the address is held after the crash"
# The first call may still reach the dying process; a new one is activated or restarted.
if tb_poll 10 bash -c "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- busctl get-property $E $P $E Addresses) 2>/dev/null | grep -q '198.18.0.100/24'"; then
    t_pass "after the crash the effector answers again and describes the node (the address is listed)"
else
    t_fail "after the crash the effector answers again and describes the node" "$(prop Addresses)"
fi
t_check "a new effector process serves the bus" test "$(node_exec "$NODE" systemctl show -P MainPID kusu-effectord.service)" != "$main_pid"
t_eq "Takeover after the crash completes it" "$(as root call $E $P $E Takeover s "after crash")" ""
t_eq "all units active after completing" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "active active "
t_eq "Release after that cleans up" "$(as root call $E $P $E Release s "after crash")" ""
vip_held && t_fail "no address after Release" || t_pass "no address after Release"
# A kusu-admin member performs a whole takeover too (the database is already primary by now).
t_eq "a kusu-admin member takes over" "$(as kusu-t-admin call $E $P $E Takeover s "admin takeover")" ""
vip_held && t_pass "... the address is held" || t_fail "... the address is held"
t_eq "... the units are active" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "active active "
t_eq "... and releases" "$(as kusu-t-admin call $E $P $E Release s "admin release")" ""
vip_held && t_fail "... the address is gone" || t_pass "... the address is gone"

# --- a unit that fails: a named error naming the unit and its result -----------------
sed -i 's/start = \["kusu-ok.service", "kusu-slow.service"\]/start = ["kusu-ok.service", "kusu-fails.service"]/' "$W/kusu-ha.toml"
node_exec "$NODE" sh -c "cat >/etc/kusu-ha/kusu-ha.toml" <"$W/kusu-ha.toml"
node_exec "$NODE" systemctl restart kusu-effectord.service
out=$(node_exec "$NODE" dbus-send --system --print-reply --dest=$E $P $E.StartUnits 2>&1)
t_match "a unit that fails to start is UnitFailed naming the unit and the result" "$out" 'org.kusu.Effector1.Error.UnitFailed: .*kusu-fails.service.*failed'
last=$(as root get-property $E $P $E LastOperation)
t_match "LastOperation records the failure" "$last" '"StartUnits" "StartUnits" [0-9]* false ".*kusu-fails.service'

score=$(node_exec "$NODE" systemd-analyze security kusu-effectord.service 2>/dev/null | tail -1)
echo "# systemd-analyze security in the node: $score"
t_summary
