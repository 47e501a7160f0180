#!/usr/bin/env bash
# System test of the fault suite itself: each of its invariant checks must fail when the
# invariant is broken on purpose. Runs Tests/System/faults.sh on one scenario ("kill -9
# kusu-hbd (active)", quick and without failover) five times, with FAULT_MUTATE giving each run
# a deliberate violation after the fault (scripts/lib/faultlib.sh):
#   run 1  none            every check passes (the baseline)
#   run 2  sparse          the holders sampled every 0.4 s      → "sampled densely" fails
#   run 3  two-holders     the standby adds the address, 0.6 s  → "two holders" and the ARP check fail
#   run 4  lost-row        an acknowledged row deleted          → "acknowledged rows missing" fails
#   run 5  two-primaries   the standby's kusu-hbd stopped, its PostgreSQL promoted → "two writable primaries" fails
# and at the end the suite's ledger check misses the deleted row. A check that let its
# violation through would make this test fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/harness.sh"
[ "$(id -u)" = 0 ] || { echo "fault-mutations.sh: run as root" >&2; exit 1; }
out=$(mktemp "${TMPDIR:-/tmp}/fault-mutations.XXXXXX")
trap 'rm -f "$out"' EXIT

FAULT_ONLY='^kill -9 kusu-hbd' FAULT_RUNS=5 FAULT_MUTATE="- sparse two-holders lost-row two-primaries" \
    timeout 900 bash "$here/faults.sh" >"$out" 2>&1
rc=$?
sed 's/^/#   | /' "$out" | grep -E '^#   \| (not ok|# mutation|[0-9]+ passed)' || true

# The "not ok" lines of the run that follows each "# mutation: M" line.
failures_of() { awk -v m="$1" '/^# mutation: / { cur = substr($0, 13) } cur == m && /^not ok/' "$out"; }
[ "$rc" != 0 ] && t_pass "the suite fails under mutation (exit $rc)" || t_fail "the suite fails under mutation" "exit $rc"
grep -q '^ok - pair booted' "$out" && t_pass "the pair booted" || t_fail "the pair booted" "$(tail -5 "$out")"
t_eq "the baseline run passes every check" "$(failures_of -)" ""
failures_of sparse | grep -q 'the holders sampled densely' && t_pass "sparse sampling is caught" || t_fail "sparse sampling is caught" "$(failures_of sparse)"
failures_of two-holders | grep -q 'two holders for' && t_pass "two holders are caught by the sampler" || t_fail "two holders are caught by the sampler" "$(failures_of two-holders)"
failures_of two-holders | grep -q 'one MAC answered ARP' && t_pass "two holders are caught by the ARP watcher" || t_fail "two holders are caught by the ARP watcher" "$(failures_of two-holders)"
failures_of lost-row | grep -q 'acknowledged rows missing' && t_pass "a lost row is caught" || t_fail "a lost row is caught" "$(failures_of lost-row)"
failures_of two-primaries | grep -q 'two writable primaries' && t_pass "two primaries are caught" || t_fail "two primaries are caught" "$(failures_of two-primaries)"
grep -q '^not ok - every row acknowledged in the suite is on' "$out" && t_pass "the suite's ledger misses the deleted row" || t_fail "the suite's ledger misses the deleted row"
t_summary
