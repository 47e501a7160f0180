# shellcheck shell=bash
# The kusu-ha network test bed: nodes in network namespaces joined by bridges,
# each with a private D-Bus system bus that enforces the project's bus policy.
#
#   switch netns  kha-ID-sw: br0 (service network and link0, 198.18.0.0/24),
#                 br1 (198.18.4.0/24) and br2 (198.18.8.0/24), heartbeat-only networks;
#                 it answers on 198.18.0.1, the tie-breaker
#   node netns    kha-ID-a:  eth0 198.18.0.11, eth1 198.18.4.11, eth2 198.18.8.11  (node "installer")
#                 kha-ID-b:  eth0 198.18.0.12, eth1 198.18.4.12, eth2 198.18.8.12  (node "failover")
#
# Addresses come from 198.18.0.0/15 and live only inside these namespaces.
# Everything started here is recorded and ended by PID in tb_cleanup, which runs
# on exit, failure or interrupt. Source this file, then call tb_init.

TB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TB_PIDS=()
TB_NETNS=()

tb_log() { printf '%s %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
tb_die() { tb_log "error: $*"; exit 1; }

# tb_init: a fresh run directory and the cleanup trap.
tb_init() {
    TB_ID=${TB_ID:-$$}
    TB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kusu-ha-tb.XXXXXX")
    chmod 0755 "$TB_DIR"
    TB_BIN=${KUSU_BIN_DIR:-$TB_REPO/.build/debug}
    [ -x "$TB_BIN/kusu-hbd" ] || tb_die "$TB_BIN/kusu-hbd is missing: build first (swift build)"
    trap tb_cleanup EXIT
    trap 'exit 130' INT TERM
}

tb_ns() { echo "kha-$TB_ID-$1"; }

# Remember a PID we started, so cleanup ends exactly our processes.
tb_track() { TB_PIDS+=("$1"); }

tb_cleanup() {
    local rc=$? pid i
    set +e   # callers may run under set -e: a process already gone must not stop the cleanup
    for pid in "${TB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${TB_PIDS[@]}"; do
        for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    for ns in "${TB_NETNS[@]}"; do ip netns delete "$ns" 2>/dev/null; done
    if [ "${KEEP_TB:-0}" = 1 ]; then tb_log "kept $TB_DIR"; else rm -rf "$TB_DIR"; fi
    return "$rc"
}

# The system user and group of the packaged sysusers.d file.
tb_users() {
    systemd-sysusers "$TB_REPO/systemd/kusu-ha.sysusers" >/dev/null
    id kusu-ha >/dev/null || tb_die "user kusu-ha was not created"
}

# tb_network: switch + nodes a and b, two links each.
tb_network() {
    local sw; sw=$(tb_ns sw)
    ip netns add "$sw"; TB_NETNS+=("$sw")
    ip -n "$sw" link set lo up
    local i=0
    for br in br0 br1 br2; do
        # A fixed MAC: a bridge otherwise takes its lowest port's, which changes when a
        # namespace joins or leaves — and br0's is the tie-breaker's, cached by the nodes.
        ip -n "$sw" link add "$br" address "02:6b:75:73:75:0$i" type bridge
        ip -n "$sw" link set "$br" up
        i=$((i + 1))
    done
    # The tie-breaker: an address the switch itself answers pings on (service network).
    ip -n "$sw" addr add 198.18.0.1/24 dev br0
    tb_node_net a 11
    tb_node_net b 12
}

tb_node_net() {
    local node=$1 host=$2 ns sw
    ns=$(tb_ns "$node"); sw=$(tb_ns sw)
    ip netns add "$ns"; TB_NETNS+=("$ns")
    ip -n "$ns" link set lo up
    # The heartbeat port 694 is privileged; under systemd kusu-hbd.socket binds it.
    # Here the node's own namespace lets unprivileged users bind it instead.
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_unprivileged_port_start=0
    # Unprivileged ICMP echo for kusu-hbd's tie-breaker probe: systemd's sysctl.d
    # (50-default.conf) sets this on a real host; in a container systemd-sysctl is
    # skipped (/proc/sys is read-only there), so the test bed sets it per namespace.
    ip netns exec "$ns" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
    local link=0 subnet
    for subnet in 0 4 8; do
        ip -n "$ns" link add "eth$link" type veth peer name "$node$link" netns "$sw"
        ip -n "$sw" link set "$node$link" master "br$link" up
        ip -n "$ns" addr add "198.18.$subnet.$host/24" dev "eth$link"
        ip -n "$ns" link set "eth$link" up
        link=$((link + 1))
    done
}

# tb_tiebreaker up|down — the tie-breaker 198.18.0.1 answers, or is gone.
tb_tiebreaker() {
    if [ "$1" = up ]; then ip -n "$(tb_ns sw)" addr add 198.18.0.1/24 dev br0
    else ip -n "$(tb_ns sw)" addr del 198.18.0.1/24 dev br0; fi
}

# tb_link NODE LINK up|down — cut or restore one heartbeat link at the switch.
tb_link() { ip -n "$(tb_ns sw)" link set "$1$2" "$3"; }

# tb_bus NODE — a private bus with the system bus's default policy plus ours.
tb_bus() {
    local node=$1 dir="$TB_DIR/$1"
    mkdir -p "$dir"; chmod 0755 "$dir"
    cat >"$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=$dir/bus</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>$TB_REPO/dbus/org.kusu.Heartbeat1.conf</include>
</busconfig>
CONF
    dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile >"$dir/bus.log" 2>&1 &
    tb_track $!
    echo $! >"$dir/bus.pid"
    tb_poll 5 test -S "$dir/bus" || tb_die "the private bus of $node did not start: $(cat "$dir/bus.log")"
    chmod 0666 "$dir/bus"
}

tb_bus_address() { echo "unix:path=$TB_DIR/$1/bus"; }

# tb_config NODE [KEY=VALUE...] — the node's kusu-ha.toml ([cluster] overrides as TOML lines;
# auto_failover defaults to false here, see below).
tb_config() {
    local node=$1; shift
    local name=installer; [ "$node" = b ] && name=failover
    local dir="$TB_DIR/$node"
    mkdir -p "$dir/state"
    chown kusu-ha:kusu-ha "$dir/state"; chmod 0750 "$dir/state"
    if [ ! -f "$TB_DIR/authkey" ]; then
        head -c 32 /dev/urandom >"$TB_DIR/authkey"
        chown kusu-ha:kusu-ha "$TB_DIR/authkey"; chmod 0400 "$TB_DIR/authkey"
    fi
    {
        echo "[cluster]"
        echo "name = \"kusu\""
        echo "node = \"$name\""
        echo "auth_key_file = \"$TB_DIR/authkey\""
        echo "tie_breakers = []"
        local line; for line in "$@"; do echo "$line"; done
        # These monitors have no effector beside them: no automatic action (no startup
        # election, no failover) unless a test asks for it.
        case " $* " in *auto_failover*) ;; *) echo "auto_failover = false" ;; esac
        cat <<TOML

[[nodes]]
name = "installer"
priority = 100
addresses = ["198.18.0.11", "198.18.4.11"]

[[nodes]]
name = "failover"
priority = 50
addresses = ["198.18.0.12", "198.18.4.12"]
TOML
    } >"$dir/kusu-ha.toml"
    chmod 0644 "$dir/kusu-ha.toml"
}

# tb_hbd_start NODE [socket] — kusu-hbd in the node's netns as user kusu-ha with no
# capabilities. With "socket", the heartbeat socket is bound by a root helper and
# passed as systemd does (LISTEN_FDS, dual-stack [::]:694).
tb_hbd_start() {
    local node=$1 mode=${2:-bind} dir="$TB_DIR/$1"
    local -a drop=(setpriv --reuid=kusu-ha --regid=kusu-ha --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs)
    local -a env=(env "DBUS_SYSTEM_BUS_ADDRESS=$(tb_bus_address "$node")" "KUSU_HA_LOG_LEVEL=${KUSU_HA_LOG_LEVEL:-info}" ${TB_HBD_ENV:-})
    local -a hbd=("$TB_BIN/kusu-hbd" --config "$dir/kusu-ha.toml" --state-directory "$dir/state")
    if [ "$mode" = socket ]; then
        ip netns exec "$(tb_ns "$node")" python3 "$TB_REPO/scripts/lib/socket-activate.py" 694 kusu-ha -- \
            "${env[@]}" "${hbd[@]}" >>"$dir/hbd.log" 2>&1 &
    else
        ip netns exec "$(tb_ns "$node")" "${drop[@]}" "${env[@]}" "${hbd[@]}" >>"$dir/hbd.log" 2>&1 &
    fi
    local pid=$!
    tb_track "$pid"
    echo "$pid" >"$dir/hbd.pid"
}

tb_hbd_pid() { cat "$TB_DIR/$1/hbd.pid"; }

# tb_busctl NODE ARGS... — busctl against the node's private bus.
tb_busctl() { local node=$1; shift; busctl --address="$(tb_bus_address "$node")" "$@"; }

# tb_prop NODE PROPERTY — the value only (busctl prints `s "alive"`).
tb_prop() {
    tb_busctl "$1" get-property org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 "$2" 2>/dev/null |
        sed -E 's/^[a-z()]+ //; s/^"(.*)"$/\1/'
}

# tb_poll SECONDS CMD... — run CMD every 20 ms until it succeeds or the time is up.
tb_poll() {
    local seconds=$1; shift
    local deadline=$(( $(date +%s%N) + seconds * 1000000000 ))
    while :; do
        "$@" && return 0
        [ "$(date +%s%N)" -ge "$deadline" ] && return 1
        sleep 0.02
    done
}

tb_prop_is() { [ "$(tb_prop "$1" "$2")" = "$3" ]; }

# tb_monitor NODE NAME MATCH — dbus-monitor of the node's bus into $TB_DIR/NODE/NAME.log.
tb_monitor() {
    local node=$1 name=$2 match=$3
    dbus-monitor --address "$(tb_bus_address "$node")" --monitor "$match" >"$TB_DIR/$node/$name.log" 2>&1 &
    tb_track $!
    # dbus-monitor prints a NameAcquired/NameLost pair for itself once it is listening.
    tb_poll 5 grep -q 'member=NameLost\|member=NameAcquired' "$TB_DIR/$node/$name.log" || true
}

tb_now() { date +%s.%N; }

# tb_notify NODE — a stand-in for systemd's NOTIFY_SOCKET; messages go to NODE/notify.log.
# Start kusu-hbd with TB_HBD_ENV="NOTIFY_SOCKET=$TB_DIR/NODE/notify WATCHDOG_USEC=..." to use it.
tb_notify() {
    local node=$1
    python3 "$TB_REPO/scripts/lib/notify-listen.py" "$TB_DIR/$node/notify" kusu-ha 120 >"$TB_DIR/$node/notify.log" 2>&1 &
    tb_track $!
    tb_poll 5 grep -q listening "$TB_DIR/$node/notify.log" || tb_die "notify listener did not start"
}
