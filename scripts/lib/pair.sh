# shellcheck shell=bash
# A two-node pair of test-bed nodes, BOTH systemd containers running the full
# stack, with PostgreSQL replicated synchronously ACROSS the nodes over the
# service network (br0):
#
#   node a "installer" (netns kha-ID-a, service 198.18.0.11, heartbeats 198.18.4.11 and 198.18.8.11, priority 100)
#   node b "failover"  (netns kha-ID-b, service 198.18.0.12, heartbeats 198.18.4.12 and 198.18.8.12, priority 50)
#   client namespace   kha-ID-c on br0, 198.18.0.50/24 (HTTP and SQL through
#                      the floating address 198.18.0.100)
#
# Each node runs kusu-hbd from its own kusu-hbd.socket/.service (user kusu-ha,
# the shared key $TB_DIR/authkey of tb_config), kusu-effectord (bus-activated),
# kusu-ha, the polkit files, the KUSU provisioning services from Debian packages —
# kusu-dnsmasq.service (dnsmasq: DHCP and TFTP on the floating address) and
# nginx.service (the HTTP repositories in /srv/kusu-www on the floating address) —
# started by kusu-ha on the active node (the old stand-ins: kusu-ok.service, kusu-http.service (HTTP on the
# floating address), and kusu-pg.service: PostgreSQL 15 on port 5432 with its
# data in /var/lib/postgresql/kusu — on a the primary, on b a standby made with
# pg_basebackup over TCP from 198.18.0.11 that streams synchronously
# (synchronous_standby_names = '*' on a, application_name=failover).
#
# Source scripts/lib/testbed.sh and scripts/lib/effector-node.sh first, call
# pair_init, then pair_boot DIR BINDIR (node a becomes active through kusu-hbd's
# startup election; PAIR_ACTIVATE=takeover calls a's effector directly instead).
# Helpers take the short node names a and b: pair_node, pair_exec, pair_sql,
# pair_prop, pair_vip_holder, pair_client_http, pair_client_write,
# pair_writer_start, pair_session_writer_start, pair_writer_stop, pair_acked_lost,
# pair_crash.
#
# Extension hooks (set before pair_boot):
#   PAIR_EXTRA_TOML   TOML lines appended to both nodes' kusu-ha.toml (e.g. [[sync]]
#                     entries; a [database] key goes through PAIR_DATABASE_TOML).
#   PAIR_DATABASE_TOML  extra keys of [database] (e.g. 'synchronous = "strict"').
#   PAIR_CLUSTER_TOML   extra keys of [cluster] (e.g. timings: interval_ms = 50 ...).
#   PAIR_EXTRA_FILES  "SRC:DEST ..." copied into both nodes before boot.
#   PAIR_EXTRA_UNITS  unit files (paths) copied into both nodes' unit directory.
#
# PostgreSQL listens on the node's service address AND on the floating address
# (net.ipv4.ip_nonlocal_bind=1 in the node's namespace): listening on the node's
# own address only, clients could not reach it through the floating address.
#
# TEST ONLY: pg_hba trusts every connection as postgres from 198.18.0.0/24
# (replication and the client's SQL through the floating address). A real site
# uses scram-sha-256 or certificates.

PAIR_VIP=198.18.0.100
PAIR_PG_DATA=/var/lib/postgresql/kusu
PAIR_BOOT_MS=""
PAIR_WRITERS=()
declare -gA PAIR_NAME=([a]=installer [b]=failover) PAIR_HOST=([a]=11 [b]=12)

# pair_init — effnode_init (run directory, users, the two-link network) with an exit
# trap that also stops the writers, then the nodes, then the network.
pair_init() {
    effnode_init
    trap 'rc=$?; set +e; pair_writer_stop; node_cleanup; tb_cleanup; exit $rc' EXIT
}

pair_log() { printf '%s pair: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

# pair_node a|b — the node's machine name for node.sh (node_exec, node_crash, node_bus).
pair_node() { echo "kha-$TB_ID-n$1"; }

# pair_exec a|b CMD... — node_exec in that node.
pair_exec() { local n=$1; shift; node_exec "$(pair_node "$n")" "$@"; }

# pair_sql a|b SQL — SQL as postgres over the node's unix socket; unaligned rows.
pair_sql() {
    pair_exec "$1" runuser -u postgres -- psql -h /run/kusu-pg -p 5432 -d postgres -XAtq -c "$2"
}

# pair_prop a|b PROPERTY — a Heartbeat1 property, value only.
pair_prop() {
    busctl --address="$(node_bus "$(pair_node "$1")" 2>/dev/null)" get-property \
        org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 "$2" 2>/dev/null |
        sed -E 's/^[a-z()]+ //; s/^"(.*)"$/\1/'
}
pair_prop_is() { [ "$(pair_prop "$1" "$2")" = "$3" ]; }

# pair_effector_prop a|b PROPERTY — an Effector1 property, value only.
pair_effector_prop() {
    busctl --address="$(node_bus "$(pair_node "$1")" 2>/dev/null)" get-property \
        org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 "$2" 2>/dev/null |
        sed -E 's/^[a-z()]+ //; s/^"(.*)"$/\1/'
}

# pair__holds a|b — the node is up and holds the floating address on eth0.
# (A crashed node holds nothing: pair_crash removes what its namespace kept.)
pair__holds() {
    [ "${NODE_STATE[$(pair_node "$1")]:-down}" = up ] || return 1
    pair_exec "$1" ip -4 addr show dev eth0 2>/dev/null | grep -q "inet $PAIR_VIP/"
}

# pair_vip_holder — prints a, b, both or none.
pair_vip_holder() {
    local a=0 b=0
    pair__holds a && a=1
    pair__holds b && b=1
    case $a$b in 10) echo a ;; 01) echo b ;; 11) echo both ;; *) echo none ;; esac
}
pair_vip_holder_is() { [ "$(pair_vip_holder)" = "$1" ]; }

# pair_client_http — GET http://198.18.0.100/index.txt from the client namespace; prints the body
# (PAIR_HTTP_TIMEOUT seconds, default 1).
pair_client_http() {
    ip netns exec "$(tb_ns c)" python3 -c "import urllib.request; print(urllib.request.urlopen('http://$PAIR_VIP/index.txt', timeout=${PAIR_HTTP_TIMEOUT:-1}).read().decode().strip())" 2>/dev/null
}
pair_client_http_ok() { [ "$(pair_client_http)" = "kusu repository index" ]; }

# pair_client_write N — from the client namespace, INSERT a row (note N) through the
# floating address over TCP; on success prints the id and appends "ID|N" to
# $TB_DIR/acked (only rows the server acknowledged — with synchronous_commit, after
# the standby flushed them). pair_acked_lost NODE counts those missing on NODE.
# PAIR_WRITE_TIMEOUT (s, default 3) bounds the attempt.
pair_client_write() {
    local row
    row=$(ip netns exec "$(tb_ns c)" env PGCONNECT_TIMEOUT=2 timeout "${PAIR_WRITE_TIMEOUT:-3}" \
        psql "host=$PAIR_VIP port=5432 user=postgres dbname=postgres" -XAtq \
        -c "INSERT INTO rows (note) VALUES ('$1') RETURNING id, note" 2>/dev/null) || return 1
    [[ $row =~ ^[0-9]+\|$1$ ]] || return 1
    echo "$row" >>"$TB_DIR/acked"
    echo "${row%%|*}"
}

# pair_writer_start SECONDS MAX [WRITERS] — WRITERS (default 3) background clients
# writing rows "wK.N" through the floating address until SECONDS passed or each had
# MAX rows acknowledged; every acknowledged id goes to $TB_DIR/acked, every attempt
# to $TB_DIR/writer.log as "START_NS END_NS ok|fail wK.N [id=ID]" (appends of one
# short line: the writers do not interleave within a line). Several writers keep
# commits in flight when the primary dies.
pair_writer_start() {
    local seconds=$1 max=$2 writers=${3:-3} k
    PAIR_WRITERS=()
    rm -f "$TB_DIR/writer.stop"
    : >"$TB_DIR/writer.log"
    for k in $(seq 1 "$writers"); do
        (
            end=$(( $(date +%s) + seconds )); n=0; ok=0
            while [ "$(date +%s)" -lt "$end" ] && [ "$ok" -lt "$max" ] && [ ! -e "$TB_DIR/writer.stop" ]; do
                n=$((n + 1)); start=$(date +%s%N)
                if id=$(pair_client_write "w$k.$n"); then
                    ok=$((ok + 1)); echo "$start $(date +%s%N) ok w$k.$n id=$id"
                else
                    echo "$start $(date +%s%N) fail w$k.$n"; sleep 0.02
                fi
            done
        ) >>"$TB_DIR/writer.log" 2>&1 &
        PAIR_WRITERS+=("$!")
        tb_track "$!"
    done
}
# pair_session_writer_start SECONDS MAX — one more background client that keeps ONE
# psql session (at most MAX INSERTs) open through the floating address and sends INSERTs back to back, so
# a commit is almost always in flight when the primary dies (per-connection writers
# spend most of their time starting psql). The session dies within about a second of
# the primary (tcp_user_timeout) and a new one connects, to whichever node holds the
# address. Acknowledged ids go to $TB_DIR/acked and to $TB_DIR/writer.log as
# "NS NS sok sN id=ID" (NS: when the acknowledgement was read, within a few ms of
# psql getting it), each session's start as "NS NS session sN".
pair_session_writer_start() {
    local seconds=$1 max=$2
    (
        end=$(( $(date +%s) + seconds )); s=0
        while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$TB_DIR/writer.stop" ]; do
            s=$((s + 1))
            t=${EPOCHREALTIME/./}000; echo "$t $t session s$s"
            seq 1 "$max" | sed "s/.*/INSERT INTO rows (note) VALUES ('s$s.&') RETURNING id, note;/" |
                ip netns exec "$(tb_ns c)" timeout "$seconds" stdbuf -oL psql -XAtq -v ON_ERROR_STOP=1 \
                    "host=$PAIR_VIP port=5432 user=postgres dbname=postgres connect_timeout=2 tcp_user_timeout=1000" 2>>"$TB_DIR/session.err" |
                while read -r id; do
                    # Leaving the loop ends psql (SIGPIPE at its next row) and the generator.
                    [ -e "$TB_DIR/writer.stop" ] && break
                    [[ $id =~ ^[0-9]+\|s$s\.[0-9]+$ ]] || continue
                    echo "$id" >>"$TB_DIR/acked"; id=${id%%|*}
                    t=${EPOCHREALTIME/./}000; echo "$t $t sok s$s id=$id"   # no fork: keep up with psql
                done
            sleep 0.02
        done
    ) >>"$TB_DIR/writer.log" 2>&1 &
    PAIR_WRITERS+=("$!")
    tb_track "$!"
}

# pair_acked_lost NODE [FILE] — how many acknowledged rows (FILE, default $TB_DIR/acked:
# "ID|NOTE" lines) NODE lacks (same id and note).
pair_acked_lost() {
    local values
    values=$(sort -u "${2:-$TB_DIR/acked}" | sed -E "s/^([0-9]+)\|(.*)$/(\1,'\2')/" | paste -sd, -)
    [ -n "$values" ] || { echo 0; return; }
    # On stdin: thousands of rows exceed the 128 KiB limit of one command-line argument.
    printf 'SELECT count(*) FROM (VALUES %s) AS a(id, note) WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.id = a.id AND r.note = a.note);\n' "$values" |
        pair_exec "$1" runuser -u postgres -- psql -h /run/kusu-pg -p 5432 -d postgres -XAtq -v ON_ERROR_STOP=1
}

# pair_writer_stop — ask every writer to stop and wait for them (bounded: a writer
# blocked on a dead connection gives up within its timeouts; then TERM).
pair_writer_stop() {
    local pid i
    [ "${#PAIR_WRITERS[@]}" -gt 0 ] || return 0
    touch "$TB_DIR/writer.stop"
    for i in $(seq 1 100); do
        for pid in "${PAIR_WRITERS[@]}"; do kill -0 "$pid" 2>/dev/null && break; pid=""; done
        [ -z "$pid" ] && break
        sleep 0.05
    done
    for pid in "${PAIR_WRITERS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    PAIR_WRITERS=()
}

# pair_crash a|b — the node dies: its links go dark at the switch, kill -9 of its
# container's PID 1 (returns when the PID namespace is gone), and what its network
# namespace still holds of the floating address is dropped (the namespace is the
# test bed's, it outlives the container; a real machine's NIC would be silent).
pair_crash() {
    local n=$1
    : >"$TB_DIR/cut-$n"   # for the fault suites' sampler: from here on it serves nobody
    tb_link "$n" 0 down; tb_link "$n" 1 down; tb_link "$n" 2 down
    node_crash "$(pair_node "$n")"
    ip -n "$(tb_ns "$n")" addr del "$PAIR_VIP/24" dev eth0 2>/dev/null
    return 0
}

# pair_return a|b DIR BINDIR — a crashed node comes back: its links up, a fresh
# container (empty disk: no PostgreSQL data, as after a disk replacement), kusu-hbd
# started. Its database is rebuilt by kusu-hbd's automatic rejoin (RejoinDatabase:
# pg_basebackup from the active peer, no cluster to rewind).
pair_return() {
    local n=$1 dir=$2 bin=$3
    tb_link "$n" 0 up; tb_link "$n" 1 up; tb_link "$n" 2 up
    rm -f "$TB_DIR/cut-$n"
    pair__boot_node "$dir/$n" "$n" "$bin" || return 1
    pair_exec "$n" systemctl start kusu-hbd.socket kusu-hbd.service
}

# pair__client_net — namespace c on br0 with 198.18.0.50/24 (cleaned by tb_cleanup).
pair__client_net() {
    local ns sw; ns=$(tb_ns c); sw=$(tb_ns sw)
    ip netns add "$ns"; TB_NETNS+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name c0 netns "$sw"
    ip -n "$sw" link set c0 master br0 up
    ip -n "$ns" addr add 198.18.0.50/24 dev eth0
    ip -n "$ns" link set eth0 up
}

# pair__files DIR a|b — the node's kusu-ha.toml and units (written before boot).
pair__files() {
    local dir=$1 n=$2 repo=$TB_REPO
    mkdir -p "$dir/units" "$dir/www"
    cat >"$dir/kusu-ha.toml" <<TOML
[cluster]
name = "kusu"
node = "${PAIR_NAME[$n]}"
auth_key_file = "/etc/kusu-ha/authkey"
tie_breakers = ["198.18.0.1"]
tie_breaker_interval_ms = 250
${PAIR_CLUSTER_TOML:-}

[[nodes]]
name = "installer"
priority = 100
addresses = ["198.18.4.11", "198.18.8.11"]

[[nodes]]
name = "failover"
priority = 50
addresses = ["198.18.4.12", "198.18.8.12"]

[[addresses]]
address = "$PAIR_VIP/24"
interface = "eth0"

[units]
start = ["kusu-dnsmasq.service", "nginx.service"]

[database]
unit = "kusu-pg.service"
socket_directory = "/run/kusu-pg"
port = 5432
data_directory = "$PAIR_PG_DATA"
user = "postgres"
${PAIR_DATABASE_TOML:-}
${PAIR_EXTRA_TOML:-}
TOML
    printf '[Unit]\nDescription=kusu-ha test node\nWants=dbus.service polkit.service\n' >"$dir/units/kusu-node.target"
    printf '[Service]\nExecStart=/bin/sleep infinity\n' >"$dir/units/kusu-ok.service"
    echo "kusu repository index" >"$dir/www/index.txt"
    cat >"$dir/units/kusu-http.service" <<UNIT
[Unit]
Description=kusu-ha test: HTTP repository on the floating address
[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --bind $PAIR_VIP --directory /srv/kusu-www
UNIT
    # The KUSU services, from Debian's dnsmasq-base and nginx-light, bound to the floating address.
    echo "kusu boot loader stand-in" >"$dir/www/pxelinux.0"
    cat >"$dir/dnsmasq.conf" <<CONF
# DHCP and TFTP for the provisioned nodes, on the floating address only; no DNS.
port=0
interface=eth0
bind-interfaces
listen-address=$PAIR_VIP
dhcp-range=198.18.0.150,198.18.0.199,255.255.255.0,1h
dhcp-authoritative
# The test bed's addresses are all known: no ICMP check (up to 3 s) before an offer.
no-ping
dhcp-boot=pxelinux.0,kusu,$PAIR_VIP
dhcp-leasefile=/run/kusu-dnsmasq/leases
enable-tftp
tftp-root=/srv/tftp
user=nobody
group=nogroup
log-dhcp
CONF
    cat >"$dir/units/kusu-dnsmasq.service" <<UNIT
[Unit]
Description=KUSU DHCP and TFTP (dnsmasq) on the floating address
[Service]
RuntimeDirectory=kusu-dnsmasq
ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/etc/kusu-ha-test/dnsmasq.conf --pid-file=
# systemd restarts a crashed dnsmasq itself; kusu-hbd counts each restart (NRestarts) and
# hands over once it restarted [health] migration_threshold times within failure_timeout_s.
Restart=on-failure
RestartSec=200ms
UNIT
    cat >"$dir/nginx-site" <<CONF
# The KUSU repositories over HTTP, on the floating address only.
server {
    listen $PAIR_VIP:80;
    root /srv/kusu-www;
    autoindex on;
    access_log off;
}
CONF
    cat >"$dir/units/kusu-pg.service" <<UNIT
[Unit]
Description=kusu-ha test PostgreSQL (the KUSU database, port 5432)
After=network.target
[Service]
Type=notify
User=postgres
RuntimeDirectory=kusu-pg
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
ExecStart=$PGBIN/postgres -D $PAIR_PG_DATA
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
KillSignal=SIGINT
TimeoutSec=60
# A crashed postmaster is started again at once (crash recovery); as on a real site with
# a drop-in for postgresql@.service: [Service] Restart=on-failure.
Restart=on-failure
RestartSec=100ms
UNIT
    cp "$repo/systemd/kusu-hbd.service" "$repo/systemd/kusu-hbd.socket" "$repo/systemd/kusu-effectord.service" "$dir/units/"
    local unit
    for unit in ${PAIR_EXTRA_UNITS:-}; do cp "$unit" "$dir/units/"; done
}

# pair__boot_node DIR a|b BINDIR
# With PAIR_DEB (a kusu-ha .deb, e.g. from scripts/build-deb.sh) kusu-ha is installed
# in each node with dpkg -i, as users install it; otherwise its files are copied from
# BINDIR and the tree to where the package puts them.
pair__boot_node() {
    local dir=$1 n=$2 bin=$3 repo=$TB_REPO name
    local -a files=()
    name=$(pair_node "$n")
    if [ -z "${PAIR_DEB:-}" ]; then
        files=(
            "$bin/kusu-effectord:/usr/sbin/kusu-effectord"
            "$bin/kusu-hbd:/usr/sbin/kusu-hbd"
            "$bin/kusu-ha:/usr/bin/kusu-ha"
            "$repo/dbus/org.kusu.Effector1.conf:/usr/share/dbus-1/system.d/org.kusu.Effector1.conf"
            "$repo/dbus/org.kusu.Effector1.service:/usr/share/dbus-1/system-services/org.kusu.Effector1.service"
            "$repo/dbus/org.kusu.Heartbeat1.conf:/usr/share/dbus-1/system.d/org.kusu.Heartbeat1.conf"
            "$repo/polkit/org.kusu.ha.policy:/usr/share/polkit-1/actions/org.kusu.ha.policy"
            "$repo/polkit/org.kusu.ha.rules:/usr/share/polkit-1/rules.d/60-kusu-ha.rules"
            "$repo/systemd/kusu-ha.catalog:/usr/lib/systemd/catalog/kusu-ha.catalog"
        )
    else
        # The package's units, not copies in the node's runtime unit directory.
        rm -f "$dir/units/kusu-hbd.service" "$dir/units/kusu-hbd.socket" "$dir/units/kusu-effectord.service"
    fi
    # The shared key is in place before the package's postinst, which then keeps it.
    node_boot "$name" "$(tb_ns "$n")" "$dir/units" \
        "${files[@]}" \
        "$dir/kusu-ha.toml:/etc/kusu-ha/kusu-ha.toml" \
        "$TB_DIR/authkey:/etc/kusu-ha/authkey" \
        "$dir/www/index.txt:/srv/kusu-www/index.txt" \
        "$dir/www/pxelinux.0:/srv/tftp/pxelinux.0" \
        "$dir/dnsmasq.conf:/etc/kusu-ha-test/dnsmasq.conf" \
        "$dir/nginx-site:/etc/nginx/sites-enabled/default" \
        ${PAIR_EXTRA_FILES:-} || return 1
    pair_log "$n (${PAIR_NAME[$n]}) booted in ${NODE_BOOT_MS} ms"
    pair_exec "$n" sh -c 'chown kusu-ha:kusu-ha /etc/kusu-ha/authkey && chmod 0400 /etc/kusu-ha/authkey' || return 1
    if [ -n "${PAIR_DEB:-}" ]; then
        local t0; t0=$(node_now_ms)
        pair_exec "$n" sh -c "cat >/root/kusu-ha.deb" <"$PAIR_DEB" || return 1
        # --force-confold: keep the test bed's kusu-ha.toml (placed before) over the example.
        pair_exec "$n" env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /root/kusu-ha.deb >"$TB_DIR/dpkg-$n.log" 2>&1 ||
            { pair_log "dpkg -i failed on $n: $(tail -3 "$TB_DIR/dpkg-$n.log")"; return 1; }
        pair_log "$n: kusu-ha installed with dpkg -i in $(( $(node_now_ms) - t0 )) ms"
    fi
    # Pick up the bus policies and the activation file copied in before boot; index the catalog.
    pair_exec "$n" journalctl --update-catalog
    pair_exec "$n" systemctl reload dbus.service
}

# pair__pg_conf a|b — lines for the node's postgresql.conf. PostgreSQL listens on every
# address (so also on the floating address once the node holds it, and the same file
# works on both nodes: a standby cloned with pg_basebackup gets a copy), plus the
# socket in /run/kusu-pg.
pair__pg_conf() {
    cat <<CONF
port = 5432
listen_addresses = '*'
unix_socket_directories = '/run/kusu-pg'
wal_level = replica
wal_log_hints = on
wal_keep_size = '128MB'
synchronous_commit = on
wal_retrieve_retry_interval = '200ms'
fsync = off
CONF
}

PAIR_UNITS=(kusu-dnsmasq.service nginx.service)
# pair_units_state a|b — the ActiveState of the KUSU units, space-separated ("active active ").
pair_units_state() { pair_exec "$1" systemctl is-active "${PAIR_UNITS[@]}" | tr '\n' ' '; }
pair__units_active() { [ "$(pair_units_state "$1")" = "active active " ]; }

# pair_client_tftp — fetch the boot loader over TFTP from the floating address (client namespace).
pair_client_tftp() { ip netns exec "$(tb_ns c)" curl -s --max-time "${PAIR_TFTP_TIMEOUT:-2}" "tftp://$PAIR_VIP/pxelinux.0" 2>/dev/null; }
pair_client_tftp_ok() { [ "$(pair_client_tftp)" = "kusu boot loader stand-in" ]; }
# pair_client_dhcp — a DHCPDISCOVER from the client namespace; prints "OFFER ADDRESS SERVER"
# (the server identifier is the active node's own address on the service network).
pair_client_dhcp() { ip netns exec "$(tb_ns c)" python3 "$TB_REPO/scripts/lib/dhcp-probe.py" eth0 2>/dev/null; }
pair_client_dhcp_ok() { [[ "$(pair_client_dhcp)" =~ ^OFFER\ 198\.18\.0\.1[5-9][0-9]\ 198\.18\.0\.[0-9]+$ ]]; }
pair__streams() { [ "$(pair_sql b 'SELECT status FROM pg_stat_wal_receiver' 2>/dev/null)" = streaming ]; }
pair__sync() { [ "$(pair_sql a "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'failover'" 2>/dev/null)" = sync ]; }

# pair__pg_setup — primary on a, synchronous standby on b (over TCP), both streaming.
pair__pg_setup() {
    local n
    for n in a b; do
        ip netns exec "$(tb_ns "$n")" sysctl -qw net.ipv4.ip_nonlocal_bind=1 || return 1
        pair_exec "$n" rm -rf "$PAIR_PG_DATA" || return 1
    done
    pair_exec a runuser -u postgres -- "$PGBIN/initdb" -D "$PAIR_PG_DATA" -U postgres \
        --auth-local=peer --auth-host=reject -E UTF8 --locale=C.UTF-8 >/dev/null || return 1
    pair__pg_conf a | pair_exec a runuser -u postgres -- sh -c "cat >>$PAIR_PG_DATA/postgresql.conf" || return 1
    pair_exec a runuser -u postgres -- sh -c "cat >$PAIR_PG_DATA/pg_hba.conf <<HBA
local all         all peer map=kusu
local replication all peer map=kusu
# TEST ONLY: trust postgres from the service network (replication, clients via the floating address)
host  all,replication postgres 198.18.0.0/16 trust
HBA
cat >$PAIR_PG_DATA/pg_ident.conf <<IDENT
kusu root     postgres
kusu postgres postgres
IDENT" || return 1
    pair_exec a systemctl start kusu-pg.service || return 1
    pair_sql a "CREATE TABLE IF NOT EXISTS rows (id serial PRIMARY KEY, note text, at timestamptz DEFAULT now())" >/dev/null || return 1
    # The standby, over TCP from the primary's service address.
    pair_exec b install -d -o postgres -g postgres -m 0755 /run/kusu-pg || return 1
    pair_exec b runuser -u postgres -- "$PGBIN/pg_basebackup" -D "$PAIR_PG_DATA" \
        -d "host=198.18.0.11 port=5432 user=postgres application_name=failover" -R -X stream -c fast || return 1
    {
        pair__pg_conf b
        echo "primary_conninfo = 'host=198.18.0.11 port=5432 user=postgres application_name=failover'"
        # b has no standby of its own once promoted: it must not wait for one.
        echo "synchronous_standby_names = ''"
    } | pair_exec b runuser -u postgres -- sh -c "cat >>$PAIR_PG_DATA/postgresql.auto.conf" || return 1
    pair_exec b systemctl start kusu-pg.service || return 1
    tb_poll 20 pair__streams ||
        { pair_log "b does not stream"; return 1; }
    # Only now make the primary wait for its standby (earlier, the CREATE TABLE would hang).
    pair_exec a runuser -u postgres -- sh -c "echo \"synchronous_standby_names = '*'\" >>$PAIR_PG_DATA/postgresql.conf" || return 1
    pair_exec a systemctl reload kusu-pg.service || return 1
    tb_poll 20 pair__sync ||
        { pair_log "b is not a synchronous standby of a"; return 1; }
}

# pair_boot DIR BINDIR — network (client namespace c), both nodes, PostgreSQL, node a
# active, then kusu-hbd on both. PAIR_BOOT_MS is the whole duration.
#
# Activation of a. PAIR_ACTIVATE=election (default): kusu-hbd's startup election
# makes a active (both nodes standby and hear each other; a holds the primary
# database and has the higher priority) and a's effector takes the address and
# starts the units; the election raises the epoch to 1. PAIR_ACTIVATE=takeover
# (for a kusu-hbd without the startup election) calls a's effector Takeover
# directly before kusu-hbd starts on either node, so a holds the address and runs
# the units while its database is primary — kusu-hbd then publishes Role standby
# on a although a holds the resources.
pair_boot() {
    local dir=$1 bin=$2 t0 n
    t0=$(node_now_ms)
    [ -f "$TB_DIR/authkey" ] || tb_config a >/dev/null
    pair__client_net
    for n in a b; do
        pair__files "$dir/$n" "$n" || return 1
        pair__boot_node "$dir/$n" "$n" "$bin" || { pair_log "node $n did not boot"; return 1; }
    done
    pair__pg_setup || return 1
    pair_log "PostgreSQL: a primary, b synchronous standby ($(( $(node_now_ms) - t0 )) ms since start)"
    if [ "${PAIR_ACTIVATE:-election}" = takeover ]; then
        pair_exec a busctl call org.kusu.Effector1 /org/kusu/Effector1 org.kusu.Effector1 Takeover s "initial activation" ||
            { pair_log "a's effector refused the initial Takeover"; return 1; }
    fi
    for n in a b; do
        pair_exec "$n" systemctl start kusu-hbd.socket kusu-hbd.service || return 1
    done
    tb_poll 10 pair_prop_is a PeerState alive && tb_poll 10 pair_prop_is b PeerState alive ||
        { pair_log "the monitors do not see each other (a: $(pair_prop a PeerState), b: $(pair_prop b PeerState))"; return 1; }
    if [ "${PAIR_ACTIVATE:-election}" = election ]; then
        tb_poll 10 pair_prop_is a Role active && tb_poll 10 pair_vip_holder_is a ||
            { pair_log "the election did not make a active (Role $(pair_prop a Role), holder: $(pair_vip_holder))"; return 1; }
        tb_poll 10 pair__units_active a || { pair_log "a does not run the units"; return 1; }
    fi
    PAIR_BOOT_MS=$(( $(node_now_ms) - t0 ))
}
