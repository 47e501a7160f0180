# shellcheck shell=bash
# A test-bed node running kusu-effectord the way it is installed: the binary,
# its unit, bus policy and activation file, the polkit actions and rules, a
# kusu-ha.toml, test units and the PostgreSQL pair of node-postgres.sh.
# Needs scripts/lib/node.sh and scripts/lib/node-postgres.sh sourced first.

# effnode_config FILE UNIT... — the effector's configuration: this node is
# "failover" (198.18.0.12, eth0), the floating address 198.18.0.100/24 on eth0,
# the PostgreSQL standby of node-postgres.sh, and the given units. Extra
# [[addresses]] keys come from EFFNODE_ADDRESS_KEYS (TOML lines).
effnode_config() {
    local file=$1; shift
    local units="" u
    for u in "$@"; do units+="${units:+, }\"$u\""; done
    cat >"$file" <<TOML
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
${EFFNODE_ADDRESS_KEYS:-}

[units]
start = [$units]

[database]
unit = "kusu-pg-standby.service"
socket_directory = "/run/kusu-pg"
port = 5434
data_directory = "/var/lib/postgresql/kusu-standby"
user = "postgres"
TOML
}

# effnode_boot NODE NETNS DIR BINDIR [SRC:DEST...] — boot NODE with DIR/units
# (plus the effector's and PostgreSQL's units), DIR/kusu-ha.toml, the effector
# from BINDIR and any extra files; then reload the bus (new policy) and set up
# PostgreSQL.
effnode_boot() {
    local node=$1 netns=$2 dir=$3 bin=$4 repo
    shift 4
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    [ -f "$dir/units/kusu-node.target" ] ||
        printf '[Unit]\nDescription=kusu-ha test node\nWants=dbus.service polkit.service\n' >"$dir/units/kusu-node.target"
    cp "$repo/systemd/kusu-effectord.service" "$dir/units/"
    pgnode_units "$dir/units"
    node_boot "$node" "$netns" "$dir/units" \
        "$bin/kusu-effectord:/usr/sbin/kusu-effectord" \
        "$dir/kusu-ha.toml:/etc/kusu-ha/kusu-ha.toml" \
        "$repo/dbus/org.kusu.Effector1.conf:/usr/share/dbus-1/system.d/org.kusu.Effector1.conf" \
        "$repo/dbus/org.kusu.Effector1.service:/usr/share/dbus-1/system-services/org.kusu.Effector1.service" \
        "$repo/polkit/org.kusu.ha.policy:/usr/share/polkit-1/actions/org.kusu.ha.policy" \
        "$repo/polkit/org.kusu.ha.rules:/usr/share/polkit-1/rules.d/60-kusu-ha.rules" "$@" || return 1
    # Pick up the bus policy and activation file copied in before boot.
    node_exec "$node" systemctl reload dbus.service || return 1
    pgnode_setup "$node"
}
