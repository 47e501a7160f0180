#!/usr/bin/env bash
# System test: Effector's UnitManager against a real systemd 252. A test-bed node
# (systemd as PID 1 in an nspawn container on a throw-away overlay of /, in its
# own network namespace) gets a few test units; unit-manager-probe runs on the
# host and drives the node's systemd over the node's system bus. Also checks the
# node lifecycle of scripts/lib/node.sh (crash, boot again, clean stop, nothing
# left on the host).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/scripts/lib/node.sh"
. "$here/harness.sh"

[ "$(id -u)" = 0 ] || { echo "units.sh: run as root" >&2; exit 1; }
cd "$repo"
BIN=${KUSU_BIN_DIR:-.build/debug}
PROBE=$BIN/unit-manager-probe
[ -x "$PROBE" ] || { echo "units.sh: $PROBE is missing: build first (swift build)" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "units.sh: systemd-nspawn missing (apt-get install systemd-container)" >&2; exit 1; }
export TMPDIR=${TMPDIR:-/tmp}

ID=$$
NS=kha-$ID-u
NODE=kha-$ID-n
WORK=$(mktemp -d "$TMPDIR/kusu-units.XXXXXX")
cleanup() {
    local rc=$?
    node_cleanup
    ip netns delete "$NS" 2>/dev/null
    rm -rf "$WORK"
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

host_run_before=$(ls -A /run/systemd 2>/dev/null | sort | tr '\n' ' ')
ip netns add "$NS"
ip -n "$NS" link set lo up

# --- the test units ----------------------------------------------------------
mkdir -p "$WORK/units"
unit() { cat >"$WORK/units/$1"; }
unit kusu-ok.service <<'EOF'
[Unit]
Description=kusu test: runs until stopped
[Service]
ExecStart=/bin/sleep infinity
EOF
unit kusu-fails.service <<'EOF'
[Unit]
Description=kusu test: fails to start
[Service]
Type=oneshot
ExecStart=/bin/false
EOF
unit kusu-limited.service <<'EOF'
[Unit]
Description=kusu test: fails until /run/kusu-limited.ok exists, at most 2 starts a minute
StartLimitIntervalSec=60
StartLimitBurst=2
[Service]
ExecStart=/bin/sh -c 'test -e /run/kusu-limited.ok && exec sleep infinity'
EOF
unit kusu-slow.service <<'EOF'
[Unit]
Description=kusu test: takes a second to start
[Service]
ExecStartPre=/bin/sleep 1
ExecStart=/bin/sleep infinity
EOF
unit kusu-hang.service <<'EOF'
[Unit]
Description=kusu test: never finishes starting
[Service]
ExecStartPre=/bin/sleep 300
ExecStart=/bin/sleep infinity
EOF
unit kusu-dep.service <<'EOF'
[Unit]
Description=kusu test: needs a unit that fails
Requires=kusu-fails.service
After=kusu-fails.service
[Service]
ExecStart=/bin/sleep infinity
EOF

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# probe ARGS... — runs the probe against the node's bus (or $BUS); sets OUT, ERR, RC, MS.
probe() {
    local t0 bus=${BUS:-}
    # Never fall back to the host's system bus.
    [ -n "$bus" ] || bus=$(node_bus "$NODE") || bus=unix:path=/nonexistent/kusu-node-is-down
    t0=$(now_ms)
    OUT=$(DBUS_SYSTEM_BUS_ADDRESS=$bus "$PROBE" "$@" 2>"$WORK/err"); RC=$?
    MS=$(( $(now_ms) - t0 ))
    ERR=$(cat "$WORK/err")
}
is_active() { node_exec "$NODE" systemctl is-active "$1" 2>/dev/null; }

# --- boot ----------------------------------------------------------------------
if node_boot "$NODE" "$NS" "$WORK/units"; then
    t_pass "node boots to kusu-node.target with dbus active (${NODE_BOOT_MS} ms)"
else
    t_fail "node boots"; t_summary; exit 1
fi
echo "# node boot: ${NODE_BOOT_MS} ms"
t_eq "node has its own host name" "$(node_exec "$NODE" hostname)" "$NODE"
[ "$(node_exec "$NODE" cat /etc/machine-id)" != "$(cat /etc/machine-id 2>/dev/null)" ] &&
    t_pass "node has a fresh machine-id" || t_fail "node has a fresh machine-id"
t_eq "node is in the given network namespace" \
    "$(node_exec "$NODE" readlink /proc/self/ns/net)" "$(ip netns exec "$NS" readlink /proc/self/ns/net)"

# --- start ---------------------------------------------------------------------
probe start kusu-ok.service
t_eq "start kusu-ok succeeds" "$RC" 0
echo "# start job kusu-ok.service: $MS ms (probe run, connect included): $OUT"
t_eq "kusu-ok is active (systemctl)" "$(is_active kusu-ok.service)" active
probe states kusu-ok.service
t_eq "ActiveState read over the bus" "$OUT" "kusu-ok.service active"

probe start kusu-ok.service
t_eq "starting an active unit succeeds (idempotent)" "$RC" 0
t_eq "kusu-ok still active" "$(is_active kusu-ok.service)" active

probe start kusu-slow.service
if [ "$RC" = 0 ] && [ "$MS" -ge 1000 ]; then t_pass "start waits for the job (kusu-slow took $MS ms)"
else t_fail "start waits for the job" "rc=$RC after $MS ms: $ERR"; fi
echo "# start job kusu-slow.service: $MS ms: $OUT"
t_eq "kusu-slow is active" "$(is_active kusu-slow.service)" active

# --- failures ------------------------------------------------------------------
probe start kusu-fails.service
t_eq "start of a failing unit exits 1 (jobFailed)" "$RC" 1
case $ERR in
    "error jobFailed kusu-fails.service failed:"*kusu-fails.service*) t_pass "job result 'failed' reported naming the unit" ;;
    *) t_fail "job result 'failed' reported naming the unit" "got: $ERR" ;;
esac
t_eq "kusu-fails is failed" "$(is_active kusu-fails.service)" failed

# A unit that hit systemd's start rate limit (given up on this node a moment ago) starts once
# it is fixed: a start from kusu-ha resets the failed state and the limit first.
node_exec "$NODE" systemctl start kusu-limited.service 2>/dev/null
node_exec "$NODE" systemctl start kusu-limited.service 2>/dev/null
node_exec "$NODE" systemctl start kusu-limited.service 2>/dev/null
t_eq "a unit failing again and again ends failed" "$(is_active kusu-limited.service)" failed
if node_exec "$NODE" journalctl -q -u kusu-limited.service -o cat | grep -q 'Start request repeated too quickly'; then
    t_pass "... having hit systemd's start rate limit"
else t_fail "... having hit systemd's start rate limit" "$(node_exec "$NODE" journalctl -q -u kusu-limited.service -o cat | tail -3)"; fi
node_exec "$NODE" touch /run/kusu-limited.ok
probe start kusu-limited.service
if [ "$RC" = 0 ] && [ "$(is_active kusu-limited.service)" = active ]; then
    t_pass "once fixed it starts: the failed state and the start limit are reset first"
else t_fail "once fixed it starts" "rc=$RC: $ERR"; fi
probe stop kusu-limited.service

probe start kusu-dep.service
case "$RC $ERR" in
    "1 error jobFailed kusu-dep.service dependency:"*) t_pass "a failed dependency gives job result 'dependency'" ;;
    *) t_fail "a failed dependency gives job result 'dependency'" "rc=$RC: $ERR" ;;
esac

probe start kusu-nope.service
case "$RC $ERR" in
    "2 error noSuchUnit kusu-nope.service:"*) t_pass "unknown unit gives noSuchUnit" ;;
    *) t_fail "unknown unit gives noSuchUnit" "rc=$RC: $ERR" ;;
esac

probe --timeout 500 start kusu-hang.service
if [ "$RC" = 3 ] && [ "$MS" -lt 2500 ]; then t_pass "a hanging start times out, bounded ($MS ms for a 500 ms timeout)"
else t_fail "a hanging start times out, bounded" "rc=$RC after $MS ms: $ERR"; fi
t_eq "the hanging unit is still activating (job left to systemd)" "$(is_active kusu-hang.service)" activating

# --- sequences and concurrency -------------------------------------------------
probe stop kusu-slow.service kusu-ok.service
t_eq "stop of a list succeeds" "$RC" 0
t_eq "kusu-slow inactive after stop" "$(is_active kusu-slow.service)" inactive
t_eq "kusu-ok inactive after stop" "$(is_active kusu-ok.service)" inactive
probe stop kusu-ok.service
t_eq "stopping an inactive unit succeeds (idempotent)" "$RC" 0
probe stop kusu-hang.service
# systemd kills the ExecStartPre= process: the unit ends "failed" (or "inactive").
case "$RC $(is_active kusu-hang.service)" in
    "0 inactive"|"0 failed") t_pass "stop replaces the pending start of kusu-hang" ;;
    *) t_fail "stop replaces the pending start of kusu-hang" "rc=$RC state=$(is_active kusu-hang.service): $ERR" ;;
esac

probe start kusu-ok.service kusu-fails.service kusu-slow.service
case "$RC $ERR" in
    "1 error jobFailed kusu-fails.service failed:"*) t_pass "start of a list stops at the first failure, naming it" ;;
    *) t_fail "start of a list stops at the first failure, naming it" "rc=$RC: $ERR" ;;
esac
t_eq "units before the failure were started" "$(is_active kusu-ok.service)" active
t_eq "units after the failure were not started" "$(is_active kusu-slow.service)" inactive

probe parallel kusu-slow.service kusu-ok.service kusu-fails.service kusu-nope.service
okl=$(printf '%s\n' "$OUT" | grep -c '^ok start')
if [ "$okl" = 2 ] && printf '%s' "$ERR" | grep -q '^error jobFailed kusu-fails.service failed' &&
   printf '%s' "$ERR" | grep -q '^error noSuchUnit kusu-nope.service'; then
    t_pass "concurrent jobs on one connection each get their own result"
else t_fail "concurrent jobs on one connection each get their own result" "out: $OUT err: $ERR"; fi
probe states kusu-slow.service kusu-ok.service kusu-fails.service kusu-nope.service
t_eq "ActiveState of several units" "$(echo "$OUT" | tr '\n' ' ')" \
    "kusu-slow.service active kusu-ok.service active kusu-fails.service failed kusu-nope.service inactive "

# --- watching ------------------------------------------------------------------
DBUS_SYSTEM_BUS_ADDRESS=$(node_bus "$NODE") "$PROBE" --timeout 10000 watch failed kusu-ok.service \
    >"$WORK/watch.out" 2>&1 &
watch_pid=$!
deadline=$(( $(now_ms) + 5000 ))
until grep -q '^watching' "$WORK/watch.out" || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
node_exec "$NODE" systemctl kill -s KILL kusu-ok.service
wait "$watch_pid"; wrc=$?
if [ "$wrc" = 0 ] && grep -q '^kusu-ok.service failed$' "$WORK/watch.out"; then
    t_pass "watch reports the unit's ActiveState change to failed"
else t_fail "watch reports the unit's ActiveState change to failed" "rc=$wrc: $(tr '\n' '|' <"$WORK/watch.out")"; fi

# --- node lifecycle ------------------------------------------------------------
pid1=$(node_pid1 "$NODE")
dead_bus=$(node_bus "$NODE")
node_crash "$NODE"
if [ ! -d "/proc/$pid1" ]; then t_pass "node_crash: the node's PID 1 is gone"; else t_fail "node_crash: the node's PID 1 is gone"; fi
BUS=$dead_bus probe --timeout 1000 start kusu-ok.service
if [ "$RC" != 0 ] && [ "$MS" -lt 3000 ]; then t_pass "probe against a dead node fails at once (rc $RC, $MS ms)"
else t_fail "probe against a dead node fails at once" "rc=$RC after $MS ms"; fi

if node_boot "$NODE" "$NS" "$WORK/units"; then
    t_pass "the node boots again after a crash (${NODE_BOOT_MS} ms)"
    t_eq "a fresh boot starts with kusu-ok inactive" "$(is_active kusu-ok.service)" inactive
    probe start kusu-ok.service
    t_eq "start after reboot" "$RC$(is_active kusu-ok.service)" 0active
    node_stop "$NODE"
    t_pass "node_stop: clean poweroff in ${NODE_STOP_MS} ms"
    echo "# node stop: ${NODE_STOP_MS} ms"
else
    t_fail "the node boots again after a crash"
fi

left=$(ls -d /sys/fs/cgroup/systemd/kusu-node."$NODE".* /sys/fs/cgroup/unified/kusu-node."$NODE".* 2>/dev/null)
t_eq "no cgroup left on the host" "$left" ""
t_eq "host /run/systemd untouched" "$(ls -A /run/systemd 2>/dev/null | sort | tr '\n' ' ')" "$host_run_before"

t_summary
