#!/usr/bin/env bash
# System test: the kusu-ha client in a test-bed node running kusu-effectord the
# way it is installed (bus activation, polkit, the PostgreSQL standby, test
# units), kusu-hbd absent. The client runs INSIDE the node, as root, as a
# kusu-admin member and as an ordinary user, so polkit can identify the caller.
# Shows: status (text and JSON), address add/remove with a named error,
# authorisation (exit 3 naming the action, nothing started), release, the
# "not running" line for kusu-hbd (exit 4), and watch printing events.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/harness.sh"

effnode_init            # netns b = the node's network (198.18.0.12)
for b in kusu-effectord kusu-ha; do [ -x "$TB_BIN/$b" ] || tb_die "$TB_BIN/$b is missing"; done
NODE=kha-$TB_ID-cli
W="$TB_DIR/client"; mkdir -p "$W/units"

effnode_config "$W/kusu-ha.toml" kusu-ok.service
cat >"$W/units/kusu-ok.service" <<'UNIT'
[Service]
ExecStart=/bin/sleep infinity
UNIT
effnode_boot "$NODE" "$(tb_ns b)" "$W" "$TB_BIN" || tb_die "the node or its PostgreSQL did not come up"
node_exec "$NODE" sh -c 'cat > /usr/bin/kusu-ha && chmod 755 /usr/bin/kusu-ha' <"$TB_BIN/kusu-ha"
node_exec "$NODE" useradd -M -G kusu-admin kusu-c-admin
node_exec "$NODE" useradd -M kusu-c-user
t_pass "node booted in ${NODE_BOOT_MS} ms, kusu-ha installed in it"

# as USER kusu-ha ARGS... inside the node; prints stdout+stderr, then "rc=N" on the last line.
as() {
    local user=$1; shift
    if [ "$user" = root ]; then node_exec "$NODE" kusu-ha "$@" 2>&1
    else
        local gid; gid=$(node_exec "$NODE" id -g "$user")
        node_exec "$NODE" setpriv --reuid="$user" --regid="$gid" --init-groups kusu-ha "$@" 2>&1
    fi
    echo "rc=$?"
}
vip_held() { node_exec "$NODE" ip -4 addr show dev eth0 | grep -q 'inet 198.18.0.100/24'; }
units_state() { node_exec "$NODE" systemctl is-active kusu-ok.service; }

# --- status ---------------------------------------------------------------------------
deadline=$(( $(date +%s) + 10 ))
until out=$(as root status); grep -q '^database: standby' <<<"$out" || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.2; done
printf '%s\n' "$out" | sed 's/^/#   /'
t_match "status (root) shows the database as standby" "$out" '^database: standby, timeline'
t_match "status shows each unit and its state" "$out" '^units: kusu-ok.service inactive'
t_match "status says kusu-hbd is not running" "$out" '^heartbeat: kusu-hbd is not running'
t_match "status names the node from the configuration" "$out" '^cluster kusu, node failover$'
t_match "status: no floating address held" "$out" '^addresses: none held here'
t_match "status exits 0 with the effector up" "$out" 'rc=0$'
out=$(node_exec "$NODE" kusu-ha status --json 2>/dev/null)
printf '%s\n' "$out" >"$W/status.json"
t_check "status --json parses (python3 -m json.tool)" python3 -m json.tool "$W/status.json" /dev/null
keys=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(d), "|", " ".join(d["effector"]), "|", " ".join(d["heartbeat"]))' "$W/status.json")
t_eq "status --json has the documented keys" "$keys" \
    "cluster node now_usec heartbeat effector | running error addresses database progress units busy last_operation | running error"
t_eq "status --json: database role and units" \
    "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["effector"]; print(d["database"]["role"], d["units"][0]["name"])' "$W/status.json")" \
    "standby kusu-ok.service"

# --- watch (in the background), then addresses --------------------------------------------
node_exec "$NODE" sh -c 'echo $$ >/run/kusu-ha-watch.pid; exec kusu-ha watch' >"$W/watch.out" 2>"$W/watch.err" &
watcher=$!
tb_poll 5 grep -q 'watching' "$W/watch.err" || t_fail "watch subscribes" "$(cat "$W/watch.err")"

out=$(as root address add 198.18.0.100)
t_match "address add 198.18.0.100 exits 0" "$out" 'rc=0$'
t_match "... and says what happened and how long it took" "$out" '^address add 198.18.0.100: done in [0-9]* ms'
t_check "the address is held (ip addr in the node)" vip_held
out=$(as root address add 198.18.0.101)
t_match "address add 198.18.0.101 exits 1" "$out" 'rc=1$'
t_match "... with one line naming NotConfigured" "$out" '^kusu-ha: NotConfigured: .*198.18.0.101'

if tb_poll 5 grep -q 'kusu-effectord: .*Addresses=\[198.18.0.100/24\]' "$W/watch.out"; then
    t_pass "watch printed a timestamped line for the address change"
else
    t_fail "watch printed a line for the address change" "$(cat "$W/watch.out" "$W/watch.err")"
fi
t_match "watch lines start with a timestamp" "$(head -1 "$W/watch.out")" '^[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:.]* kusu-effectord: '
node_exec "$NODE" sh -c 'kill -TERM "$(cat /run/kusu-ha-watch.pid)"'
if tb_poll 5 bash -c "! kill -0 $watcher 2>/dev/null"; then
    wait "$watcher"; rc=$?
    t_eq "watch exits 0 on SIGTERM" "$rc" 0
else
    kill "$watcher" 2>/dev/null; t_fail "watch exits on SIGTERM"
fi

# --- authorisation -------------------------------------------------------------------------
out=$(as kusu-c-user --no-ask-password units start)
t_match "an ordinary user: units start exits 3" "$out" 'rc=3$'
t_match "... with one line naming org.kusu.effector1.manage-units" "$out" '^kusu-ha: not authorized: .*org.kusu.effector1.manage-units'
t_eq "... and nothing started" "$(units_state)" inactive
out=$(as kusu-c-admin units start </dev/null)
t_match "a kusu-admin member: units start succeeds without a password" "$out" 'rc=0$'
t_eq "... and the unit is active" "$(units_state)" active
out=$(as root status)
t_match "status shows the unit active" "$out" '^units: kusu-ok.service active'
t_match "status shows the address held" "$out" '^addresses: 198.18.0.100/24'
t_match "status shows the last operation" "$out" '^last operation: StartUnits succeeded'

# --- release ---------------------------------------------------------------------------------
out=$(as root release)
t_match "release exits 0 and reports its duration" "$out" '^release: done in [0-9]* ms'
vip_held && t_fail "release removes the address" || t_pass "release removes the address"
t_eq "release stops the unit" "$(units_state)" inactive
last=$(node_exec "$NODE" busctl get-property org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 LastOperation)
t_match "the default release reason names the user" "$last" '"Release" "kusu-ha release by root"'

# --- kusu-hbd is not in this node --------------------------------------------------------------
out=$(as root takeover)
t_match "takeover: kusu-hbd is not running, exit 4" "$out" '^kusu-ha: kusu-hbd is not running'
t_match "... exit status 4" "$out" 'rc=4$'
out=$(as root maintenance on)
t_match "maintenance on: the same line and status" "$out" 'kusu-hbd is not running'
out=$(as root bogus-command)
t_match "a bad command line exits 64" "$out" 'rc=64$'

t_summary
