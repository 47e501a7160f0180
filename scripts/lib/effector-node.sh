# shellcheck shell=bash
# A test-bed node running kusu-effectord the way it is installed: the binary,
# its unit, bus policy and activation file, the polkit actions and rules, a
# kusu-ha.toml, test units and the PostgreSQL pair of node-postgres.sh.
# Source scripts/lib/testbed.sh first; this file brings node.sh and
# node-postgres.sh with it.

. "$(dirname "${BASH_SOURCE[0]}")/node.sh"
. "$(dirname "${BASH_SOURCE[0]}")/node-postgres.sh"

# effnode_init — tb_init with an exit trap that also stops the nodes (whatever
# set -e says), the system users and the two-link network of testbed.sh.
effnode_init() {
    tb_init
    trap 'rc=$?; set +e; node_cleanup; tb_cleanup; exit $rc' EXIT
    tb_users
    tb_network
}

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
        "$repo/polkit/org.kusu.ha.rules:/usr/share/polkit-1/rules.d/60-kusu-ha.rules" \
        "$repo/systemd/kusu-ha.catalog:/usr/lib/systemd/catalog/kusu-ha.catalog" "$@" || return 1
    # Pick up the bus policy and activation file copied in before boot; index the catalog.
    node_exec "$node" systemctl reload dbus.service || return 1
    node_exec "$node" journalctl --update-catalog || return 1
    pgnode_setup "$node"
}

# fonode_boot NODE NETNS DIR BINDIR — the failover node of a pair: kusu-hbd from its
# own units (socket activation, user kusu-ha) next to kusu-effectord, a PostgreSQL
# standby, and two KUSU stand-ins started on takeover: kusu-ok.service and
# kusu-http.service (an HTTP server bound to the floating address, port 80).
# Heartbeats cross two links to the installer node at 198.18.0.11/198.18.4.11;
# the tie-breaker is the switch's 198.18.0.1 (testbed.sh);
# with the key in $TB_DIR/authkey (testbed.sh's tb_config writes it). kusu-hbd is
# installed but not started: `node_exec NODE systemctl start kusu-hbd.socket kusu-hbd.service`.
fonode_boot() {
    local node=$1 netns=$2 dir=$3 bin=$4 repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    mkdir -p "$dir/units" "$dir/www"
    cat >"$dir/kusu-ha.toml" <<TOML
[cluster]
node = "failover"
auth_key_file = "/etc/kusu-ha/authkey"
tie_breakers = ["198.18.0.1"]

[[nodes]]
name = "installer"
priority = 100
addresses = ["198.18.0.11", "198.18.4.11"]

[[nodes]]
name = "failover"
priority = 50
addresses = ["198.18.0.12", "198.18.4.12"]

[[addresses]]
address = "198.18.0.100/24"
interface = "eth0"

[units]
start = ["kusu-ok.service", "kusu-http.service"]

[fencing]
# A stand-in for fence_ipmilan: fails while the test bed's /run/kusu-fence-fails exists.
command = ["/bin/sh", "-c", "test ! -e /run/kusu-fence-fails"]

[database]
unit = "kusu-pg-standby.service"
socket_directory = "/run/kusu-pg"
port = 5434
data_directory = "/var/lib/postgresql/kusu-standby"
user = "postgres"
# The installer here is a plain monitor without a database of its own (the standby's
# primary runs in this node), so nobody reports whether commits wait for this standby.
synchronous = "off"
TOML
    printf '[Service]\nExecStart=/bin/sleep infinity\n' >"$dir/units/kusu-ok.service"
    # A repository file served through the floating address (the KUSU HTTP repositories' stand-in).
    echo "kusu repository index" >"$dir/www/index.txt"
    cat >"$dir/units/kusu-http.service" <<'UNIT'
[Unit]
Description=kusu-ha test: HTTP repository on the floating address
[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --bind 198.18.0.100 --directory /srv/kusu-www
UNIT
    cp "$repo/systemd/kusu-hbd.service" "$repo/systemd/kusu-hbd.socket" "$dir/units/"
    cp "$TB_DIR/authkey" "$dir/authkey"
    effnode_boot "$node" "$netns" "$dir" "$bin" \
        "$bin/kusu-hbd:/usr/sbin/kusu-hbd" "$bin/kusu-ha:/usr/bin/kusu-ha" "$dir/authkey:/etc/kusu-ha/authkey" \
        "$dir/www/index.txt:/srv/kusu-www/index.txt" \
        "$repo/dbus/org.kusu.Heartbeat1.conf:/usr/share/dbus-1/system.d/org.kusu.Heartbeat1.conf" || return 1
    node_exec "$node" sh -c 'chown kusu-ha:kusu-ha /etc/kusu-ha/authkey && chmod 0400 /etc/kusu-ha/authkey' || return 1
    node_exec "$node" systemctl reload dbus.service
}
