#!/usr/bin/env bash
# Benchmark (prints figures; not a pass/fail test): kusu-effectord's Takeover,
# broken into its steps, over RUNS runs in a test-bed node (systemd as PID 1,
# PostgreSQL primary + streaming standby, one quick test unit). Between runs the
# node releases and the standby is rebuilt by pg_basebackup, so every run
# promotes a real streaming standby. Step times come from the effector's own
# journal field OP_TIMING; the call time is the busctl round trip.
# Usage: scripts/bench-takeover.sh [RUNS=10]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
RUNS=${1:-10}
scripts/install-deps.sh
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
# The build users get (packaging links the Swift runtime statically, as here).
swift build -c release --static-swift-stdlib --product kusu-effectord >/dev/null
export KUSU_BIN_DIR="$repo/.build/release"
. scripts/lib/testbed.sh
. scripts/lib/effector-node.sh
effnode_init
NODE=kha-$TB_ID-bench
E=org.kusu.Effector1; P=/org/kusu/Effector1
W="$TB_DIR/bench"; mkdir -p "$W/units"
effnode_config "$W/kusu-ha.toml" kusu-ok.service
printf '[Service]\nExecStart=/bin/sleep infinity\n' >"$W/units/kusu-ok.service"
effnode_boot "$NODE" "$(tb_ns b)" "$W" "$KUSU_BIN_DIR" || tb_die "the node or its PostgreSQL did not come up"
node_exec "$NODE" busctl introspect $E $P >/dev/null   # activate the effector

: >"$W/calls"
for i in $(seq 1 "$RUNS"); do
    node_exec "$NODE" busctl call $E $P $E Release s "bench reset" >/dev/null
    [ "$i" -gt 1 ] && { pgnode_rebuild_standby "$NODE" || tb_die "standby rebuild failed"; }
    t0=$(date +%s%N)
    node_exec "$NODE" busctl call $E $P $E Takeover s "bench run $i" >/dev/null
    echo $(( ($(date +%s%N) - t0) / 1000 )) >>"$W/calls"
done
node_exec "$NODE" journalctl -u kusu-effectord -o json --no-pager >"$W/journal.json"
python3 - "$W/journal.json" "$W/calls" "$RUNS" <<'PY'
import json, statistics, sys
journal, calls, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = {}
for line in open(journal):
    entry = json.loads(line)
    if entry.get("OP_NAME") == "Takeover" and entry.get("MESSAGE") == "effector operation succeeded" \
            and str(entry.get("OP_REASON", "")).startswith("bench run"):
        for part in entry["OP_TIMING"].split():
            kind, value = part.split("=")
            steps.setdefault(kind, []).append(float(value[:-2]))
n = len(steps.get("promote", []))
print(f"== Takeover over {n} runs (of {runs}), milliseconds: min / median / max")
total = [sum(v) for v in zip(*(steps[k] for k in ("promote", "address", "announce") if k in steps))]
for kind in ("promote", "address", "announce", "units"):
    v = steps.get(kind, [])
    if v:
        print(f"   {kind:<26} {min(v):7.3f} / {statistics.median(v):7.3f} / {max(v):7.3f}")
print(f"   {'takeover without units':<26} {min(total):7.3f} / {statistics.median(total):7.3f} / {max(total):7.3f}   (target: median < 150)")
c = [int(x) / 1000 for x in open(calls)]
print(f"   {'busctl Takeover call':<26} {min(c):7.1f} / {statistics.median(c):7.1f} / {max(c):7.1f}   (incl. polkit and one unit)")
PY
exit 0
