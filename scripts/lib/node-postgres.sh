# shellcheck shell=bash
# A PostgreSQL 15 primary and a streaming standby inside one test-bed node
# (scripts/lib/node.sh), each a systemd unit, for the effector's tests and
# benchmarks. Sockets only, in /run/kusu-pg:
#   kusu-pg-primary.service   port 5433, /var/lib/postgresql/kusu-primary
#   kusu-pg-standby.service   port 5434, /var/lib/postgresql/kusu-standby (the "KUSU database")
# Peer authentication with the map "kusu" (root and postgres → postgres), as
# the effector (root) needs; wal_log_hints for pg_rewind; the standby retries
# WAL every 200 ms (a promote right after the primary died must not stall).

PGBIN=/usr/lib/postgresql/15/bin

# pgnode_units DIR — write the two units into a node's unit directory (before boot).
pgnode_units() {
    local dir=$1 role port
    for role in primary standby; do
        port=5433; [ "$role" = standby ] && port=5434
        cat >"$dir/kusu-pg-$role.service" <<UNIT
[Unit]
Description=kusu-ha test PostgreSQL ($role, port $port)
[Service]
Type=notify
User=postgres
ExecStart=$PGBIN/postgres -D /var/lib/postgresql/kusu-$role
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
KillSignal=SIGINT
TimeoutSec=60
UNIT
    done
}

# pgnode_sql NODE PORT SQL — run SQL as postgres in the node; prints unaligned rows.
pgnode_sql() {
    node_exec "$1" runuser -u postgres -- psql -h /run/kusu-pg -p "$2" -d postgres -XAtq -c "$3"
}

# pgnode_setup NODE — initdb the primary, start it, base-backup the standby, start it,
# and wait until the standby streams.
pgnode_setup() {
    local node=$1
    node_exec "$node" sh -c "install -d -o postgres -g postgres -m 0755 /run/kusu-pg &&
        rm -rf /var/lib/postgresql/kusu-primary /var/lib/postgresql/kusu-standby" || return 1
    node_exec "$node" runuser -u postgres -- "$PGBIN/initdb" -D /var/lib/postgresql/kusu-primary -U postgres \
        --auth-local=peer --auth-host=reject -E UTF8 --locale=C.UTF-8 >/dev/null || return 1
    node_exec "$node" runuser -u postgres -- sh -c "cat >>/var/lib/postgresql/kusu-primary/postgresql.conf <<CONF
port = 5433
listen_addresses = ''
unix_socket_directories = '/run/kusu-pg'
wal_level = replica
wal_log_hints = on
wal_keep_size = '128MB'
fsync = off
CONF
cat >/var/lib/postgresql/kusu-primary/pg_hba.conf <<HBA
local all         all peer map=kusu
local replication all peer map=kusu
HBA
cat >/var/lib/postgresql/kusu-primary/pg_ident.conf <<IDENT
kusu root     postgres
kusu postgres postgres
IDENT" || return 1
    node_exec "$node" systemctl start kusu-pg-primary.service || return 1
    node_exec "$node" runuser -u postgres -- "$PGBIN/pg_basebackup" -D /var/lib/postgresql/kusu-standby \
        -h /run/kusu-pg -p 5433 -U postgres -R -X stream -c fast || return 1
    node_exec "$node" runuser -u postgres -- sh -c "cat >>/var/lib/postgresql/kusu-standby/postgresql.auto.conf <<CONF
port = 5434
wal_retrieve_retry_interval = '200ms'
CONF" || return 1
    node_exec "$node" systemctl start kusu-pg-standby.service || return 1
    pgnode_sql "$node" 5433 "CREATE TABLE IF NOT EXISTS rows (id serial PRIMARY KEY, note text)" || return 1
    local i
    for i in $(seq 1 100); do
        [ "$(pgnode_sql "$node" 5434 "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ] && return 0
        sleep 0.05
    done
    return 1
}

# pgnode_rebuild_standby NODE — throw the standby away and base-backup it again
# (after a promotion), so another takeover can be measured.
pgnode_rebuild_standby() {
    local node=$1
    node_exec "$node" systemctl stop kusu-pg-standby.service
    node_exec "$node" rm -rf /var/lib/postgresql/kusu-standby
    node_exec "$node" runuser -u postgres -- "$PGBIN/pg_basebackup" -D /var/lib/postgresql/kusu-standby \
        -h /run/kusu-pg -p 5433 -U postgres -R -X stream -c fast || return 1
    node_exec "$node" runuser -u postgres -- sh -c "printf \"port = 5434\nwal_retrieve_retry_interval = '200ms'\n\" >>/var/lib/postgresql/kusu-standby/postgresql.auto.conf"
    node_exec "$node" systemctl start kusu-pg-standby.service || return 1
    local i
    for i in $(seq 1 100); do
        [ "$(pgnode_sql "$node" 5434 "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ] && return 0
        sleep 0.05
    done
    return 1
}
