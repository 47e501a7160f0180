#!/usr/bin/env bash
# Benchmark (prints figures; not a pass/fail test):
#  1. failure detection: N kills of the peer's kusu-hbd; latency from kill -9 to
#     the PeerStateChanged(dead) signal, against dead_ms;
#  2. kusu-hbd's idle cost: CPU per cent of one core and resident memory, with
#     interval_ms 100 and 1000, over a measuring window.
# Usage: scripts/bench-detect.sh [KILLS=20] [WINDOW_S=20]
#   BENCH_SMAPS=1 also prints the resident size of each mapping over 200 KiB. kusu-hbd unmaps
#   its start-up code 10 s after it starts (ResidentCode): give WINDOW_S ≥ 10 to see that.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
KILLS=${1:-20}; WINDOW=${2:-20}
scripts/install-deps.sh
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
# The build users get (packaging links the Swift runtime statically, as here).
swift build -c release --static-swift-stdlib --product kusu-hbd >/dev/null
export KUSU_BIN_DIR="$repo/.build/release"
. scripts/lib/testbed.sh
tb_init; tb_users; tb_network
for n in a b; do tb_bus $n; done
tb_config a "interval_ms = 200" "dead_ms = 1000"; tb_config b "interval_ms = 200" "dead_ms = 1000"
tb_hbd_start a; tb_hbd_start b
tb_poll 5 tb_prop_is a PeerState alive || tb_die "no heartbeat"
tb_monitor a signals "type='signal',interface='org.kusu.Heartbeat1',member='PeerStateChanged'"

echo "== detection latency over $KILLS kills (interval_ms 200, dead_ms 1000; bound 1200 ms)"
lat=()
for i in $(seq 1 "$KILLS"); do
    tb_poll 5 tb_prop_is a PeerState alive || tb_die "peer not alive before kill $i"
    # Kill at a random phase of the heartbeat period.
    sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
    before=$(grep -c 'string "dead"' "$TB_DIR/a/signals.log" || true)
    t_kill=$(date +%s.%N); kill -KILL "$(tb_hbd_pid b)"
    tb_poll 5 bash -c "[ \$(grep -c 'string \"dead\"' '$TB_DIR/a/signals.log') -gt $before ]" || tb_die "no dead signal on kill $i"
    t_sig=$(grep -B3 'string "dead"' "$TB_DIR/a/signals.log" | grep -o 'time=[0-9.]*' | tail -1 | cut -d= -f2)
    lat+=("$(python3 -c "print(round(($t_sig - $t_kill) * 1000, 1))")")
    tb_hbd_start b
done
python3 - "${lat[@]}" <<'PY'
import statistics, sys
v = sorted(float(x) for x in sys.argv[1:])
print(f"   kills {len(v)}  min {v[0]:.1f} ms  median {statistics.median(v):.1f} ms  max {v[-1]:.1f} ms"
      f"  (dead_ms 1000; within dead_ms+interval_ms: {sum(x <= 1200 for x in v)}/{len(v)})")
PY

idle() {
    local interval=$1 dead=$(( $1 * 5 ))
    for n in a b; do kill -TERM "$(tb_hbd_pid $n)"; done
    tb_poll 5 bash -c "! kill -0 $(tb_hbd_pid a) 2>/dev/null && ! kill -0 $(tb_hbd_pid b) 2>/dev/null"
    tb_config a "interval_ms = $interval" "warn_ms = $(( interval * 3 ))" "dead_ms = $dead"
    tb_config b "interval_ms = $interval" "warn_ms = $(( interval * 3 ))" "dead_ms = $dead"
    tb_hbd_start a; tb_hbd_start b
    tb_poll 10 tb_prop_is a PeerState alive || tb_die "no heartbeat at interval $interval"
    sleep 2  # settle after start-up before measuring
    local pid t0 t1 c0 c1
    pid=$(tb_hbd_pid a)
    # /proc/PID/schedstat: nanoseconds on a CPU (finer than the 10 ms ticks of /proc/PID/stat).
    c0=$(cut -d' ' -f1 /proc/"$pid"/schedstat); t0=$(date +%s%N)
    sleep "$WINDOW"
    c1=$(cut -d' ' -f1 /proc/"$pid"/schedstat); t1=$(date +%s%N)
    local rss anon
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status)
    anon=$(awk '/^RssAnon:/ {print $2}' /proc/"$pid"/status)
    [ -n "${BENCH_SMAPS:-}" ] && awk '/^[0-9a-f]+-/ {name=$6 " " $2} /^Rss:/ {r[name]+=$2} END {for (n in r) if (r[n] > 200) printf "      %6d kB  %s\n", r[n], n}' /proc/"$pid"/smaps | sort -rn
    python3 -c "
cpu = ($c1 - $c0) / ($t1 - $t0) * 100
print(f'   interval_ms {$interval:>4}: idle CPU {cpu:.3f} % of a core over ${WINDOW} s, RSS {$rss / 1024:.1f} MiB (anonymous {$anon / 1024:.1f} MiB)')"
}
echo "== idle cost of kusu-hbd (node a, peer alive, two links)"
idle 100
idle 1000
exit 0
