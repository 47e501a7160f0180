# shellcheck shell=bash
# Test-bed nodes: systemd as PID 1 in an nspawn container, booted on a
# throw-away overlay of /, inside a network namespace made by the caller.
#
#   source scripts/lib/node.sh
#   trap node_cleanup EXIT
#   ip netns add kha-$$-a
#   node_boot kha-$$-a kha-$$-a ./units /path/kusu-hbd:/usr/local/bin/kusu-hbd
#   node_exec kha-$$-a systemctl is-active dbus.service
#   DBUS_SYSTEM_BUS_ADDRESS=$(node_bus kha-$$-a) busctl status
#   node_stop kha-$$-a          # clean poweroff; node_crash: kill -9 of PID 1
#
# Each node runs in its own mount namespace (unshare --mount --propagation
# private): a tmpfs holds the overlay's upper layer, / is the lower layer, and
# /run/systemd is covered by a tmpfs so nspawn writes nothing on the host. The
# node gets a fresh machine-id, its hostname is NAME, its journal stays inside
# the overlay, and it runs in its own cgroup subtrees
# (/sys/fs/cgroup/{systemd,unified}/kusu-node.NAME.RUN). Everything lives in
# memory and disappears with the node; the host is left as it was.
#
# NAME is the machine name and host name; use names that are unique on the
# machine (kha-<id>-a). The node boots kusu-node.target: the caller's unit
# directory is copied to the node's unit directory (bound on
# /run/systemd/system in the node; `node_unitdir NAME` prints it, for adding
# units later followed by `node_exec NAME systemctl daemon-reload`). If the
# caller gives no kusu-node.target, one with Wants=dbus.service is written;
# a caller's own kusu-node.target should also want dbus.service.
#
# Call node_boot/node_stop/node_crash in the test's own shell, not in $(...) or
# a pipeline: the node table lives in shell variables. node_cleanup (run it from
# the caller's EXIT trap) stops what is left. NODE_BOOT_MS / NODE_STOP_MS hold
# the last boot / stop duration. Only processes started here are ended, by PID.
# Tunables:
#   NODE_BOOT_TIMEOUT (s, default 30), NODE_STOP_TIMEOUT (s, default 10).

NODE_RUN=${NODE_RUN:-$$}
NODE_DIR=${NODE_DIR:-}
declare -gA NODE_NSPID=() NODE_PID1=() NODE_STATE=()
NODE_NAMES=()

node_log() { printf '%s node: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

# Monotonic-enough milliseconds for deadlines and timings.
node_now_ms() { local t; t=$(cut -d' ' -f1 /proc/uptime); echo $(( ${t%.*} * 1000 + 10#${t#*.} * 10 )); }

node__state() { echo "$NODE_DIR/$1"; }
node__cgroup() { echo "kusu-node.$1.$NODE_RUN"; }

# node__pid1 NSPID — the child of nspawn that is PID 1 of a new PID namespace.
node__pid1() {
    local c f
    for f in /proc/"$1"/task/*/children; do
        for c in $(cat "$f" 2>/dev/null); do
            if grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$c/status" 2>/dev/null; then
                echo "$c"; return 0
            fi
        done
    done
    return 1
}

# node_boot NAME NETNS UNITDIR [SRC:DEST ...]
# Boots the node and returns once its systemd finished the boot transaction
# and dbus.service is active; fails (and tears the node down) after
# NODE_BOOT_TIMEOUT seconds. SRC:DEST files are copied into the node's root
# before boot (DEST absolute, in the node; parent directories are created).
node_boot() {
    local name=$1 netns=$2 unitdir=$3; shift 3
    [ -n "$name" ] && [ -n "$netns" ] && [ -d "$unitdir" ] || { node_log "usage: node_boot NAME NETNS UNITDIR [SRC:DEST ...]"; return 2; }
    [ -e "/run/netns/$netns" ] || { node_log "no network namespace /run/netns/$netns"; return 2; }
    if [ -n "${NODE_NSPID[$name]:-}" ] && kill -0 "${NODE_NSPID[$name]}" 2>/dev/null; then
        node_log "$name is already running"; return 2
    fi
    if [ -z "$NODE_DIR" ]; then
        NODE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kusu-nodes.XXXXXX") || return 1
        chmod 0755 "$NODE_DIR"
    fi
    node__forget "$name"
    local s; s=$(node__state "$name")
    mkdir -p "$s/units" "$s/files" || return 1
    cp -a "$unitdir"/. "$s/units/" || return 1
    if [ ! -e "$s/units/kusu-node.target" ]; then
        cat >"$s/units/kusu-node.target" <<'EOF'
[Unit]
Description=kusu-ha test-bed node
Wants=dbus.service
After=dbus.service
AllowIsolate=yes
EOF
    fi
    # Files to copy in: staged here, copied into the overlay inside the namespace.
    local spec src dest i=0
    : >"$s/files.list"
    for spec in "$@"; do
        src=${spec%%:*}; dest=${spec#*:}
        [ -e "$src" ] && [ "${dest#/}" != "$dest" ] || { node_log "bad file spec '$spec'"; return 2; }
        cp -a "$src" "$s/files/$i" || return 1
        printf '%s\t%s\n' "$i" "$dest" >>"$s/files.list"
        i=$((i + 1))
    done
    local cg; cg=$(node__cgroup "$name")
    mkdir -p "/sys/fs/cgroup/systemd/$cg" "/sys/fs/cgroup/unified/$cg" || return 1

    local t0; t0=$(node_now_ms)
    # shellcheck disable=SC2016
    unshare --mount --propagation private bash -c '
        set -e
        s=$1 name=$2 netns=$3 cg=$4
        echo $$ >"$s/nspawn.pid"
        echo $$ >"/sys/fs/cgroup/systemd/$cg/cgroup.procs"
        echo $$ >"/sys/fs/cgroup/unified/$cg/cgroup.procs"
        mkdir -p "$s/ovl"
        mount -t tmpfs -o mode=0755 kusu-node "$s/ovl"
        mkdir "$s/ovl/upper" "$s/ovl/work" "$s/ovl/root"
        mount -t overlay -o "lowerdir=/,upperdir=$s/ovl/upper,workdir=$s/ovl/work" kusu-node "$s/ovl/root"
        r=$s/ovl/root
        echo "$name" >"$r/etc/hostname"
        id=$(systemd-id128 new)
        rm -f "$r/etc/machine-id" "$r/var/lib/dbus/machine-id"
        echo "$id" >"$r/etc/machine-id"
        mkdir -p "$r/var/lib/dbus"; echo "$id" >"$r/var/lib/dbus/machine-id"
        while IFS="	" read -r i dest; do
            mkdir -p "$r$(dirname "$dest")"
            rm -rf "$r$dest"
            cp -a "$s/files/$i" "$r$dest"
        done <"$s/files.list"
        # nspawn writes /run/systemd/nspawn/: keep it off the host.
        mount -t tmpfs -o mode=0755 kusu-node /run/systemd
        exec env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet \
            --directory="$r" --boot --machine="$name" --register=no --keep-unit \
            --link-journal=no --network-namespace-path="/run/netns/$netns" \
            --capability=CAP_NET_ADMIN --bind="$s/units:/run/systemd/system" \
            --console=passive -- --unit=kusu-node.target
    ' node-boot "$s" "$name" "$netns" "$cg" </dev/null >"$s/nspawn.log" 2>&1 &
    local bgpid=$!
    NODE_NAMES+=("$name")
    NODE_NSPID[$name]=$bgpid
    NODE_STATE[$name]=booting

    local deadline=$(( t0 + ${NODE_BOOT_TIMEOUT:-30} * 1000 )) pid1="" st=""
    while :; do
        if ! kill -0 "$bgpid" 2>/dev/null; then
            node_log "$name: nspawn exited during boot:"; sed 's/^/  | /' "$s/nspawn.log" >&2
            node__teardown "$name"; return 1
        fi
        if [ -z "$pid1" ]; then
            pid1=$(node__pid1 "$bgpid") && NODE_PID1[$name]=$pid1 || pid1=""
        fi
        if [ -n "$pid1" ] && [ -S "/proc/$pid1/root/run/dbus/system_bus_socket" ]; then
            st=$(node_exec "$name" systemctl is-system-running 2>/dev/null)
            case $st in
                running|degraded)
                    if [ "$(node_exec "$name" systemctl is-active dbus.service 2>/dev/null)" = active ]; then break; fi ;;
            esac
        fi
        if [ "$(node_now_ms)" -ge "$deadline" ]; then
            node_log "$name: not up after ${NODE_BOOT_TIMEOUT:-30} s (pid1=${pid1:-none}, state=${st:-?})"
            sed 's/^/  | /' "$s/nspawn.log" >&2
            node__teardown "$name"; return 1
        fi
        sleep 0.05
    done
    NODE_STATE[$name]=up
    NODE_BOOT_MS=$(( $(node_now_ms) - t0 ))
    [ "$st" = degraded ] && node_log "$name: booted degraded: $(node_exec "$name" systemctl --failed --no-legend --plain | tr '\n' ' ')"
    return 0
}

# node_pid1 NAME — the node's PID 1 as seen from the host.
node_pid1() {
    local p=${NODE_PID1[$1]:-}
    [ -n "$p" ] && [ -d "/proc/$p" ] || { node_log "$1 is not running"; return 1; }
    echo "$p"
}

# node_unitdir NAME — the host directory bound on the node's /run/systemd/system.
node_unitdir() { echo "$(node__state "$1")/units"; }

# node_exec NAME CMD... — run CMD inside the node (all its namespaces), with a clean environment.
node_exec() {
    local name=$1 p; shift
    p=$(node_pid1 "$name") || return 125
    nsenter -t "$p" -m -u -i -n -p -C -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# node_bus NAME — the node's system bus address, usable from the host (as root).
node_bus() {
    local p; p=$(node_pid1 "$1") || return 1
    echo "unix:path=/proc/$p/root/run/dbus/system_bus_socket"
}

# node__wait_gone NAME TIMEOUT_S — wait until nspawn (and so the node) has exited.
node__wait_gone() {
    local nspid=${NODE_NSPID[$1]:-} pid1=${NODE_PID1[$1]:-} deadline
    deadline=$(( $(node_now_ms) + $2 * 1000 ))
    while { [ -n "$nspid" ] && kill -0 "$nspid" 2>/dev/null; } || { [ -n "$pid1" ] && [ -d "/proc/$pid1" ] && node__is_ours "$1" "$pid1"; }; do
        [ "$(node_now_ms)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
    [ -n "$nspid" ] && wait "$nspid" 2>/dev/null
    return 0
}

# Is PID still the PID 1 we recorded (not a recycled PID)?
node__is_ours() {
    local nspid=${NODE_NSPID[$1]:-}
    [ -n "$nspid" ] && grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$2/status" 2>/dev/null &&
        [ "$(awk '/^PPid:/ {print $2}' "/proc/$2/status" 2>/dev/null)" = "$nspid" ]
}

# node_stop NAME — clean poweroff (SIGRTMIN+4 to PID 1), then kill -9 after NODE_STOP_TIMEOUT.
node_stop() {
    local name=$1 pid1=${NODE_PID1[$1]:-} nspid=${NODE_NSPID[$1]:-} t0
    [ -n "$nspid" ] || { node_log "$name was not booted here"; return 1; }
    t0=$(node_now_ms)
    if [ -n "$pid1" ] && node__is_ours "$name" "$pid1"; then kill -s SIGRTMIN+4 "$pid1" 2>/dev/null; fi
    if ! node__wait_gone "$name" "${NODE_STOP_TIMEOUT:-10}"; then
        node_log "$name: no clean stop within ${NODE_STOP_TIMEOUT:-10} s, killing"
        if [ -n "$pid1" ] && node__is_ours "$name" "$pid1"; then kill -9 "$pid1" 2>/dev/null; fi
        node__wait_gone "$name" 5 || kill -9 "$nspid" 2>/dev/null
        node__wait_gone "$name" 5
    fi
    NODE_STOP_MS=$(( $(node_now_ms) - t0 ))
    node__teardown "$name"
}

# node_crash NAME — kill -9 of the node's PID 1; returns when its PID namespace is gone.
node_crash() {
    local name=$1 pid1=${NODE_PID1[$1]:-} nspid=${NODE_NSPID[$1]:-}
    [ -n "$nspid" ] || { node_log "$name was not booted here"; return 1; }
    if [ -n "$pid1" ] && node__is_ours "$name" "$pid1"; then kill -9 "$pid1" 2>/dev/null; fi
    if ! node__wait_gone "$name" "${NODE_STOP_TIMEOUT:-10}"; then
        kill -9 "$nspid" 2>/dev/null; node__wait_gone "$name" 5
    fi
    node__teardown "$name"
}

# After the node's processes are gone: its mount namespace (overlay, tmpfs)
# went with them; remove its cgroup subtrees and state directory.
node__teardown() {
    local name=$1 nspid=${NODE_NSPID[$1]:-} cg s h i
    if [ -n "$nspid" ] && kill -0 "$nspid" 2>/dev/null; then
        kill -9 "$nspid" 2>/dev/null; node__wait_gone "$name" 5
    fi
    cg=$(node__cgroup "$name")
    for h in systemd unified; do
        [ -d "/sys/fs/cgroup/$h/$cg" ] || continue
        for i in $(seq 1 50); do
            find "/sys/fs/cgroup/$h/$cg" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "/sys/fs/cgroup/$h/$cg" ] || break
            sleep 0.05
        done
        [ -d "/sys/fs/cgroup/$h/$cg" ] && node_log "$name: could not remove cgroup $h/$cg"
    done
    NODE_STATE[$name]=down
    s=$(node__state "$name")
    if [ -n "$NODE_DIR" ] && [ -d "$s" ]; then
        if grep -qF " $s/" /proc/self/mountinfo; then
            node_log "$name: $s still has mounts, keeping it"
        elif [ "${KEEP_NODES:-0}" = 1 ]; then
            node_log "$name: kept $s"
        else
            rm -rf "$s"
        fi
    fi
}

# Drop what we knew about a node that is down (before booting it again).
node__forget() {
    unset 'NODE_PID1[$1]' 'NODE_NSPID[$1]'
    NODE_STATE[$1]=down
}

# node_cleanup — stop every node booted by this shell, remove cgroups and temp dirs.
node_cleanup() {
    local name
    for name in "${NODE_NAMES[@]}"; do
        [ "${NODE_STATE[$name]:-down}" = down ] && continue
        NODE_STOP_TIMEOUT=${NODE_STOP_TIMEOUT:-5} node_stop "$name"
    done
    NODE_NAMES=()
    if [ -n "$NODE_DIR" ] && [ -d "$NODE_DIR" ] && [ "${KEEP_NODES:-0}" != 1 ]; then
        if grep -qF " $NODE_DIR/" /proc/self/mountinfo; then
            node_log "$NODE_DIR still has mounts, keeping it"
        else
            rm -rf "$NODE_DIR"; NODE_DIR=""
        fi
    fi
    return 0
}
