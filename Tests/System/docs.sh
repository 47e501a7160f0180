#!/usr/bin/env bash
# System test: man pages and shell completions are generated from the command
# definitions (scripts/generate-docs.sh) and document what they should.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/harness.sh"
export TMPDIR=${TMPDIR:-/tmp}
out=$(mktemp -d "$TMPDIR/kusu-docs.XXXXXX")
trap 'rm -rf "$out"' EXIT
if "$repo/scripts/generate-docs.sh" "$out" >"$out.log" 2>&1; then t_pass "scripts/generate-docs.sh runs"; else t_fail "scripts/generate-docs.sh runs" "$(tail -5 "$out.log")"; fi
rm -f "$out.log"
t_check "kusu-ha(1) exists" test -s "$out/man1/kusu-ha.1"
t_check "kusu-hbd(8) exists" test -s "$out/man8/kusu-hbd.8"
t_check "kusu-effectord(8) exists" test -s "$out/man8/kusu-effectord.8"
t_match "kusu-ha(1) documents the switchover verb" "$(cat "$out/man1/kusu-ha.1" 2>/dev/null)" 'switchover'
t_match "kusu-ha(1) documents the exit statuses" "$(cat "$out/man1/kusu-ha.1" 2>/dev/null)" 'not authorized'
t_match "kusu-hbd(8) documents --check-config" "$(cat "$out/man8/kusu-hbd.8" 2>/dev/null)" 'check-config'
for shell in bash zsh fish; do
    t_match "the $shell completion knows the verbs" "$(cat "$out/completions/kusu-ha.$shell" 2>/dev/null)" 'auto-failover'
done
t_match "kusu-ha(1) documents database clone" "$(cat "$out/man1/kusu-ha.1" 2>/dev/null)" 'pg_basebackup'
t_match "kusu-ha(1) documents resource cleanup" "$(cat "$out/man1/kusu-ha.1" 2>/dev/null)" 'CleanupResource'
t_match "kusu-hbd(8) documents service health" "$(cat "$out/man8/kusu-hbd.8" 2>/dev/null)" 'migration_threshold'
t_match "kusu-ha.toml(5) documents [health]" "$(cat "$repo/man/kusu-ha.toml.5")" 'database_timeout_ms'
t_match "kusu-ha.toml(5) documents [[checks]]" "$(cat "$repo/man/kusu-ha.toml.5")" 'expect_status'

# The journal catalog: every MESSAGE_ID the programs log is explained, and nothing else.
ids_code=$(grep -o '"[0-9a-f]\{32\}"' "$repo/Sources/ClusterAPI/MessageIDs.swift" | tr -d '"' | sort)
ids_catalog=$(sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$repo/systemd/kusu-ha.catalog" | sort)
t_eq "systemd/kusu-ha.catalog explains exactly the MESSAGE_IDs of MessageIDs.swift ($(wc -w <<<"$ids_code") ids)" "$ids_catalog" "$ids_code"
t_eq "the MESSAGE_IDs are distinct" "$(uniq -d <<<"$ids_code")" ""
t_summary
