#!/usr/bin/env bash
# System test: kusu-effectord in a test-bed node (systemd 252 as PID 1, its own
# dbus-daemon and polkitd), installed with the project's unit, bus policy,
# activation file and polkit files. Callers run inside the node as different
# users; the floating address is watched from a client namespace on the same
# bridge. Shows: bus activation, the contract's interface, polkit decisions,
# configured resources only, idempotence, Busy, takeover and release for real.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/node.sh"
. "$here/harness.sh"

tb_init
trap 'rc=$?; node_cleanup; tb_cleanup; exit $rc' EXIT
tb_users
tb_network            # netns a = client (198.18.0.11), netns b = the node's network (198.18.0.12)
[ -x "$TB_BIN/kusu-effectord" ] || tb_die "$TB_BIN/kusu-effectord is missing"
NODE=kha-$TB_ID-eff
E=org.kusu.Effector1
P=/org/kusu/Effector1
W="$TB_DIR/effector"; mkdir -p "$W/units"

cat >"$W/kusu-ha.toml" <<'TOML'
[cluster]
node = "failover"
tie_breakers = []

[[nodes]]
name = "installer"
addresses = ["198.18.0.11"]

[[nodes]]
name = "failover"
addresses = ["198.18.0.12"]

[[addresses]]
address = "198.18.0.100/24"
interface = "eth0"
arp_count = 3
arp_interval_ms = 100

[units]
start = ["kusu-ok.service", "kusu-slow.service"]
TOML
cat >"$W/units/kusu-node.target" <<'UNIT'
[Unit]
Description=kusu-ha test node
Wants=dbus.service polkit.service
UNIT
cat >"$W/units/kusu-ok.service" <<'UNIT'
[Service]
ExecStart=/bin/sleep infinity
UNIT
cat >"$W/units/kusu-slow.service" <<'UNIT'
[Service]
ExecStartPre=/bin/sleep 1
ExecStart=/bin/sleep infinity
UNIT
cp "$TB_REPO/systemd/kusu-effectord.service" "$W/units/"

node_boot "$NODE" "$(tb_ns b)" "$W/units" \
    "$TB_BIN/kusu-effectord:/usr/sbin/kusu-effectord" \
    "$W/kusu-ha.toml:/etc/kusu-ha/kusu-ha.toml" \
    "$TB_REPO/dbus/org.kusu.Effector1.conf:/usr/share/dbus-1/system.d/org.kusu.Effector1.conf" \
    "$TB_REPO/dbus/org.kusu.Effector1.service:/usr/share/dbus-1/system-services/org.kusu.Effector1.service" \
    "$TB_REPO/polkit/org.kusu.ha.policy:/usr/share/polkit-1/actions/org.kusu.ha.policy" \
    "$TB_REPO/polkit/org.kusu.ha.rules:/usr/share/polkit-1/rules.d/60-kusu-ha.rules" \
    || tb_die "the node did not boot"
t_pass "node booted in ${NODE_BOOT_MS} ms"
node_exec "$NODE" systemctl reload dbus.service  # pick up the newly copied bus policy and activation file

# as USER busctl ARGS... inside the node (so polkit sees a process it can identify).
as() {
    local user=$1; shift
    if [ "$user" = root ]; then node_exec "$NODE" busctl "$@" 2>&1
    else node_exec "$NODE" setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups busctl "$@" 2>&1; fi
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
for call in "Takeover s test" "AddAddress s 198.18.0.100" "StartUnits" "PromoteDatabase"; do
    # shellcheck disable=SC2086
    out=$(as nobody call $E $P $E $call)
    case "$call" in
        PromoteDatabase) want="no \[database\] is configured" ;;
        *) want="Access denied\|Not authorized" ;;
    esac
    t_check "nobody: $call is refused" bash -c "grep -q '$want' <<<'$out'"
done
# busctl shortens AccessDenied to "Access denied"; dbus-send prints the name and message.
out=$(node_exec "$NODE" setpriv --reuid=nobody --regid=nogroup --clear-groups dbus-send --system --print-reply \
    --dest=$E $P $E.AddAddress string:198.18.0.100 2>&1)
t_check "the denial is AccessDenied naming the polkit action" bash -c \
    "grep -q 'org.freedesktop.DBus.Error.AccessDenied: Not authorized to perform org.kusu.effector1.manage-address' <<<'$out'"
vip_held && t_fail "the refused calls added the address" || t_pass "the refused calls added no address"

# --- configured resources only, validated before polkit ---------------------------
out=$(as root call $E $P $E AddAddress s 198.18.0.101)
t_check "an unconfigured address is NotConfigured (even for root)" bash -c "grep -q 'not a floating address' <<<'$out'"
out=$(as nobody call $E $P $E AddAddress s 198.18.0.101)
t_check "an unconfigured address is NotConfigured whatever the caller" bash -c "grep -q 'not a floating address' <<<'$out'"
out=$(as root call $E $P $E AddAddress s not-an-address)
t_check "a malformed address is InvalidArgument" bash -c "grep -q 'is not an IPv4 or IPv6 address' <<<'$out'"
out=$(as root call $E $P $E AddAddress i 5)
t_check "a wrong signature is refused" bash -c "grep -qi 'invalid\|signature' <<<'$out'"

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
t_check "the floating address answers from the client" bash -c "ip netns exec $A ping -q -c1 -W1 198.18.0.100 >/dev/null"
last=$(as root get-property $E $P $E LastOperation)
t_check "LastOperation records the takeover" bash -c "grep -q '\"Takeover\" \"test takeover\" [0-9]* true \"\"' <<<'$last'"
t_eq "Busy is false afterwards" "$(prop Busy)" false
t_eq "Takeover again succeeds (idempotent)" "$(as kusu-ha call $E $P $E Takeover s again)" ""

# --- one operation at a time ------------------------------------------------------
as root call $E $P $E StopUnits >/dev/null
node_exec "$NODE" busctl call $E $P $E StartUnits >"$W/start.out" 2>&1 &
starter=$!
tb_poll 3 bash -c "[ \"\$(busctl --address=$(node_bus "$NODE") get-property $E $P $E Busy)\" = 'b true' ]"
out=$(as root call $E $P $E StopUnits)
t_check "a second operation while one runs gets Busy" bash -c "grep -q 'another operation is running' <<<'$out'"
wait "$starter"
t_eq "the first operation still completes" "$(cat "$W/start.out")" ""

# --- release --------------------------------------------------------------------------
out=$(as kusu-ha call $E $P $E Release s "test release")
t_eq "kusu-ha may release" "$out" ""
vip_held && t_fail "Release removes the address" || t_pass "Release removes the address"
t_eq "units are stopped after Release" "$(node_exec "$NODE" systemctl is-active kusu-ok.service kusu-slow.service | tr '\n' ' ')" "inactive inactive "
t_check "the journal shows the operations with structured fields" bash -c \
    "$(printf '%q ' nsenter -t "$(node_pid1 "$NODE")" -m -u -i -n -p -C -- journalctl -u kusu-effectord -o verbose --no-pager) | grep -q 'OP_NAME=Release'"

score=$(node_exec "$NODE" systemd-analyze security kusu-effectord.service 2>/dev/null | tail -1)
echo "# systemd-analyze security in the node: $score"
t_summary
