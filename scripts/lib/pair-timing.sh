# shellcheck shell=bash
# Heartbeat timing for the pair of scripts/lib/pair.sh. pair.sh writes the [cluster]
# section of both nodes' kusu-ha.toml itself (pair__files, called by pair_boot and
# pair_return just before each node boots) and its hooks append after [database], so
# [cluster] keys cannot go through them. Source this file AFTER pair.sh; then
#
#   pair_timing INTERVAL_MS WARN_MS DEAD_MS    # before pair_boot / pair_return
#   pair_timing                                # back to the defaults (200/600/1000)
#
# wraps pair__files: once it has written DIR/kusu-ha.toml, the keys interval_ms, warn_ms
# and dead_ms are put right after its "[cluster]" line (a key the file already has in
# [cluster] is replaced, so a native hook in pair.sh later does not make it a duplicate).
# kusu-hbd checks them at start: dead_ms > 2 × interval_ms, interval_ms ≤ warn_ms < dead_ms.

PAIR_TIMING=()

pair_timing() {
    if [ $# -eq 0 ]; then PAIR_TIMING=(); return 0; fi
    [ $# -eq 3 ] || { echo "usage: pair_timing INTERVAL_MS WARN_MS DEAD_MS" >&2; return 2; }
    PAIR_TIMING=("interval_ms = $1" "warn_ms = $2" "dead_ms = $3")
}

# The original, under another name (defined once, even if this file is sourced twice).
if ! declare -F pair__files_untimed >/dev/null; then
    declare -F pair__files >/dev/null || { echo "pair-timing.sh: source pair.sh first" >&2; return 1; }
    eval "pair__files_untimed()$(declare -f pair__files | tail -n +2)"
fi

pair__files() {
    pair__files_untimed "$@" || return 1
    [ "${#PAIR_TIMING[@]}" -gt 0 ] || return 0
    python3 - "$1/kusu-ha.toml" "${PAIR_TIMING[@]}" <<'PY'
import re, sys
path, lines = sys.argv[1], sys.argv[2:]
keys = {l.split("=")[0].strip() for l in lines}
out, section, done = [], None, False
for line in open(path).read().splitlines():
    m = re.match(r"^\s*\[+\s*([A-Za-z0-9_.]+)\s*\]+", line)
    if m:
        section = m.group(1)
    elif section == "cluster" and line.split("=")[0].strip() in keys:
        continue  # replaced below
    out.append(line)
    if section == "cluster" and m and not done:
        out.extend(lines); done = True
if not done:
    sys.exit(f"{path}: no [cluster] section")
open(path, "w").write("\n".join(out) + "\n")
PY
}
