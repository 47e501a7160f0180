#!/usr/bin/env bash
# System test: data synchronisation on the two-node test bed (scripts/lib/pair.sh), with
# [database] synchronous = "degradable" (the default):
# - kusu-hbd on the active node makes commits wait for the standby (Synchronous "sync" on
#   both nodes; the administrator's '*' becomes exactly the peer);
# - from an empty failover node, `kusu-ha database clone installer` builds a streaming
#   synchronous standby (pg_basebackup, slot on the primary) and prints its progress;
# - a standby whose replication stopped is NOT in sync: the active node stops waiting for
#   it after the dead time, the standby says so and refuses automatic failover, also once
#   it is further behind than max_lag_bytes; when it streams again it is in sync again;
# - the standby node is killed: writes through the floating address succeed within
#   dead_ms + 1 s; it comes back with an empty disk, kusu-hbd rebuilds its database, it
#   catches up and is synchronous again without hands, with every acknowledged row.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"

pair_init
W="$TB_DIR/pair"; mkdir -p "$W"
DEAD_MS=1000

if pair_boot "$W" "$TB_BIN"; then
    t_pass "pair booted (${PAIR_BOOT_MS} ms)"
else
    t_fail "pair booted"
    t_summary; exit 1
fi
status() { pair_exec "$1" kusu-ha --no-ask-password status; }
dump() { pair_exec "$1" journalctl --no-pager -n 12 -u kusu-hbd -u kusu-effectord 2>/dev/null | sed 's/^/#   /'; }

# --- synchronous replication, managed by kusu-hbd --------------------------------------------
if tb_poll 15 pair_prop_is a Synchronous sync && tb_poll 5 pair_prop_is b Synchronous sync; then
    t_pass "Synchronous is sync on a (commits wait for b) and on b (b has every acknowledged commit)"
else
    t_fail "Synchronous is sync on both nodes" "a: $(pair_prop a Synchronous), b: $(pair_prop b Synchronous)"; dump a
fi
t_eq "a's synchronous_standby_names names exactly the peer" "$(pair_sql a 'SHOW synchronous_standby_names')" '"failover"'
out=$(status b)
t_match "status on b: in sync" "$out" 'replication: in sync'
t_match "status on b: automatic failover ready" "$out" 'automatic failover onto this node: ready'
t_match "status on b: the standby's slot" "$out" 'database: standby, timeline [0-9]*, streaming, lag .*'
t_match "status on a: synchronous, the standby streaming (sync)" "$(status a)" 'standby streaming (sync)'
echo "$out" | sed 's/^/# b: /'

# --- clone from an empty failover node ---------------------------------------------------------
# Maintenance on b: kusu-hbd would otherwise rebuild the database by itself (that is shown below).
pair_exec b kusu-ha --no-ask-password maintenance on >/dev/null
pair_exec b systemctl stop kusu-pg.service
pair_exec b rm -rf "$PAIR_PG_DATA"
t_eq "b's data directory is gone" "$(pair_exec b sh -c "test -e $PAIR_PG_DATA && echo present || echo absent")" absent
t0=$(date +%s%N)
id=$(PAIR_WRITE_TIMEOUT=5 pair_client_write while-b-empty)
t_match "a write through the floating address succeeds while b has no database (id $id, $(( ($(date +%s%N) - t0) / 1000000 )) ms)" "$id" '^[0-9][0-9]*$'
tb_poll 5 pair_prop_is a Synchronous none || t_fail "a says no standby is connected" "$(pair_prop a Synchronous)"
t0=$(date +%s%N)
out=$(pair_exec b kusu-ha --no-ask-password database clone installer 2>&1); rc=$?
clone_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "$out" | sed 's/^/# clone: /'
t_eq "kusu-ha database clone installer succeeds (${clone_ms} ms)" "$rc" 0
t_match "... and prints its progress (pg_basebackup, no cluster to rewind)" "$out" 'pg_basebackup: the local data directory holds no database cluster'
t_eq "b streams from a" "$(pair_sql b 'SELECT status FROM pg_stat_wal_receiver')" streaming
t_eq "a keeps the slot kusu_failover for b, in use" "$(pair_sql a "SELECT active FROM pg_replication_slots WHERE slot_name = 'kusu_failover'")" t
if tb_poll 15 pair_prop_is a Synchronous sync; then t_pass "a waits for b again (synchronous)"; else t_fail "a waits for b again" "$(pair_prop a Synchronous)"; dump a; fi
t_eq "b's auto.conf has wal_retrieve_retry_interval = 200ms" "$(pair_sql b 'SHOW wal_retrieve_retry_interval')" 200ms
id=$(pair_client_write after-clone)
t_eq "a write on the primary is visible on the clone" "$(pair_sql b "SELECT note FROM rows WHERE id = ${id:-0}")" after-clone
t_eq "the row written while b was empty is on b too" "$(pair_acked_lost b)" 0
pair_exec b kusu-ha --no-ask-password maintenance off >/dev/null

# --- a standby that stops replicating is not in sync, and is refused for failover ---------------
conninfo=$(pair_sql b 'SHOW primary_conninfo')
pair_sql b "ALTER SYSTEM SET primary_conninfo = ''" >/dev/null
pair_sql b 'SELECT pg_reload_conf()' >/dev/null
if tb_poll 10 pair_prop_is b Synchronous async; then
    t_pass "b's replication stopped: a stops waiting for it after the dead time, b is not in sync"
else
    t_fail "b is not in sync once its replication stopped" "a: $(pair_prop a Synchronous) b: $(pair_prop b Synchronous)"; dump a
fi
no_standby_named() { [ -z "$(pair_sql a 'SHOW synchronous_standby_names')" ]; }
if tb_poll 5 no_standby_named; then t_pass "a no longer waits for any standby"; else t_fail "a no longer waits for any standby" "$(pair_sql a 'SHOW synchronous_standby_names')"; fi
out=$(status b)
t_match "status on b: NOT in sync" "$out" 'NOT in sync'
t_match "status on b: automatic failover refused because not in sync" "$out" 'refused: the local standby was not in sync'
t_eq "Preflight automatic on b refuses" "$(pair_exec b busctl call org.kusu.Heartbeat1 /org/kusu/Heartbeat1 org.kusu.Heartbeat1 Preflight s automatic | cut -d' ' -f2)" false
# Further behind than max_lag_bytes (1 MiB): about 3 MB of WAL that b does not receive.
pair_sql a "INSERT INTO rows (note) SELECT repeat('x', 1000) FROM generate_series(1, 3000)" >/dev/null
behind() { pair_exec b kusu-ha --no-ask-password status | grep -q 'refused: the local database is [0-9]* bytes behind the peer'; }
if tb_poll 5 behind; then t_pass "status on b: refused, the database is behind the peer by more than max_lag_bytes"; else t_fail "b is refused for lag" "$(status b)"; fi
pair_sql b "ALTER SYSTEM SET primary_conninfo = '${conninfo//\'/\'\'}'" >/dev/null
pair_sql b 'SELECT pg_reload_conf()' >/dev/null
if tb_poll 20 pair_prop_is b Synchronous sync; then
    t_pass "b streams again, catches up and is in sync again without hands"
else
    t_fail "b is in sync again" "a: $(pair_prop a Synchronous) b: $(pair_prop b Synchronous)"; dump a
fi
t_match "status on b: ready again" "$(status b)" 'automatic failover onto this node: ready'

# --- the standby node dies: writes go on within dead_ms + 1 s ------------------------------------
pair_writer_start 60 100000 2
writer_acked() { [ "$(grep -c ' ok ' "$TB_DIR/writer.log" 2>/dev/null)" -ge "$1" ]; }
tb_poll 10 writer_acked 10 || t_fail "the writers get rows acknowledged before the crash"
pair_crash b
t_crash=$(date +%s%N)
id=$(PAIR_WRITE_TIMEOUT=5 pair_client_write after-b-died)
write_ms=$(( ($(date +%s%N) - t_crash) / 1000000 ))
echo "# a write started right after b died was acknowledged after ${write_ms} ms"
if [ -n "$id" ] && [ "$write_ms" -le $((DEAD_MS + 1000)) ]; then
    t_pass "with b dead a write through the floating address succeeds within dead_ms + 1 s (${write_ms} ms)"
else
    t_fail "a write succeeds within dead_ms + 1 s of b's death" "id '$id' after ${write_ms} ms"; dump a
fi
if tb_poll 3 pair_prop_is a Synchronous none; then t_pass "a says: degraded, no standby connected"; else t_fail "a says: degraded, no standby connected" "$(pair_prop a Synchronous)"; fi
t_match "status on a says so" "$(status a)" 'degraded: no standby connected'

# --- b returns with an empty disk: rebuilt, caught up, synchronous, nothing lost ------------------
t_return=$(date +%s%N)
pair_return b "$W" "$TB_BIN" || t_fail "b boots again"
if tb_poll 90 pair_prop_is a Synchronous sync; then
    t_pass "b came back empty, kusu-hbd rebuilt its database and a waits for it again ($(( ($(date +%s%N) - t_return) / 1000000 )) ms)"
else
    t_fail "b is synchronous again after its return" "a: $(pair_prop a Synchronous)"; dump b
fi
rebuilt() { pair_exec b journalctl --no-pager -u kusu-effectord -o cat | grep -q 'database prepared as a standby'; }
if tb_poll 5 rebuilt; then t_pass "b's effector rebuilt it (RejoinDatabase)"; else t_fail "b's effector rebuilt it" "$(pair_exec b journalctl --no-pager -u kusu-effectord -o cat | tail -5)"; fi
pair_writer_stop
t_eq "every acknowledged row is on a" "$(pair_acked_lost a)" 0
caught_up() { [ "$(pair_acked_lost b)" = 0 ]; }
if tb_poll 10 caught_up; then t_pass "every acknowledged row (before, during and after b's absence) is on b"; else t_fail "b has every acknowledged row" "$(pair_acked_lost b) missing"; fi
t_eq "a is still the only holder of the address" "$(pair_vip_holder)" a

t_summary
