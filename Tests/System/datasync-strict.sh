#!/usr/bin/env bash
# System test: [database] synchronous = "strict" on the two-node test bed (scripts/lib/pair.sh).
# Commits always wait for the standby, as the administrator chose: while the standby node is
# dead, a write through the floating address does not complete (asserted with a bounded
# wait) and a says it waits; the standby returns with an empty disk, kusu-hbd rebuilds it,
# and writes complete again; no acknowledged row is lost.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"

pair_init
W="$TB_DIR/pair"; mkdir -p "$W"
PAIR_DATABASE_TOML='synchronous = "strict"'
if pair_boot "$W" "$TB_BIN"; then t_pass "pair booted with synchronous = \"strict\" (${PAIR_BOOT_MS} ms)"; else t_fail "pair booted"; t_summary; exit 1; fi

if tb_poll 15 pair_prop_is a Synchronous sync && tb_poll 5 pair_prop_is b Synchronous sync; then
    t_pass "Synchronous is sync on both nodes"
else
    t_fail "Synchronous is sync on both nodes" "a: $(pair_prop a Synchronous), b: $(pair_prop b Synchronous)"
fi
id=$(pair_client_write before)
t_match "a write succeeds while b is there (id $id)" "$id" '^[0-9][0-9]*$'

pair_crash b
tb_poll 3 pair_prop_is a PeerState dead || t_fail "a sees b dead"
if id=$(PAIR_WRITE_TIMEOUT=3 pair_client_write while-b-dead); then
    t_fail "with b dead a write waits (strict)" "it was acknowledged: id $id"
else
    t_pass "with b dead a write through the floating address does not complete within 3 s (strict: commits wait)"
fi
t_eq "a says commits wait for a standby that is not there" "$(pair_prop a Synchronous)" waiting
t_match "status on a says so" "$(pair_exec a kusu-ha --no-ask-password status)" 'strict: commits WAIT for a standby that is not connected'
t_eq "a still names b in synchronous_standby_names" "$(pair_sql a 'SHOW synchronous_standby_names')" '"failover"'

t_return=$(date +%s%N)
pair_return b "$W" "$TB_BIN" || t_fail "b boots again"
write_ok() { PAIR_WRITE_TIMEOUT=3 pair_client_write after-return >/dev/null; }
if tb_poll 90 write_ok; then
    t_pass "once b is back (rebuilt by kusu-hbd) writes complete again ($(( ($(date +%s%N) - t_return) / 1000000 )) ms after its return)"
else
    t_fail "writes complete again after b's return" "$(pair_prop a Synchronous)"
fi
tb_poll 15 pair_prop_is a Synchronous sync || t_fail "a is synchronous again" "$(pair_prop a Synchronous)"
t_eq "no acknowledged row lost on a" "$(pair_acked_lost a)" 0
caught_up() { [ "$(pair_acked_lost b)" = 0 ]; }
if tb_poll 10 caught_up; then t_pass "every acknowledged row is on b"; else t_fail "every acknowledged row is on b" "$(pair_acked_lost b) missing"; fi
t_summary
