#!/usr/bin/env bash
# Benchmark (prints figures; not a pass/fail test): failover of the floating address
# 198.18.0.100 after a hard failure of the active node — kusu-ha against keepalived
# (Debian's), on the same test-bed topology (a switch namespace with br0 = service
# network + tie-breaker 198.18.0.1 and the heartbeat-only br1/br2, nodes a and b with
# one link on each, a client namespace at 198.18.0.50 on br0), in one invocation:
#
#   kusu-ha   defaults       interval_ms 200, warn_ms 600, dead_ms 1000
#   kusu-ha   fastest safe   KUSU_FAST, default "50 150 250": interval 50, warn 150, dead 250 ms.
#                            Safe = no false failover and not even a false "dead" in a 10-minute
#                            idle run under stress-ng --cpu 2 (a false "dead" is stopped by the
#                            ARP probe, but the active node then stops waiting for its standby).
#                            Measured here side by side under one stress-ng: 50/150/250 none,
#                            30/90/150 one, 20/60/100 one to six per 10 min (heartbeat silences
#                            up to 306 ms on the wire); 10/30/50 does not even start cleanly.
#                            With kusu-hbd at SCHED_RR (KUSU_HBD_RT=10, an experiment) 20/60/100
#                            had no "late" at all and 10/30/50 no "dead".
#   keepalived default       VRRPv2, advert_int 1
#   keepalived fastest       VRRPv3, advert_int 0.01 (the smallest it accepts; KA_FAST_ADVERT)
#   keepalived matched       VRRPv3, the advert_int whose master-down interval (3 × advert_int
#                            + skew) is nearest to kusu-ha's fastest safe dead_ms (KA_MATCHED_ADVERT)
#
# kusu-ha: a fresh pair of full container nodes per run (scripts/lib/pair.sh: both
# daemons, PostgreSQL replicated synchronously, HTTP on the floating address); once b is
# in sync and ready for an automatic failover, node a fails hard: its three links go dark
# at the switch in one `ip -batch`, then kill -9 of its container's PID 1. keepalived:
# two instances (scripts/lib/keepalived-pair.sh, VRRP multicast over br0, a MASTER with
# priority 150, b BACKUP with 100), fresh per run; a fails the same way (links, then
# kill -9 of its keepalived processes). The moment of failure is random within one
# heartbeat / advertisement period.
#
# Measured from the failure (the instant before the first link went down), per run:
#   detection        → takeover starts: kusu-ha: b's journal "automatic failover" (after
#                      the tie-breaker and the ARP probe; "peer declared dead" is shown too);
#                      keepalived: b's instance reports MASTER (notify FIFO, no fork)
#   address          → the address answers from the client namespace: the first ICMP echo
#                      reply to an echo sent after the links went dark (one every 2 ms)
#   database         → an INSERT through the address is acknowledged (kusu-ha)
#   HTTP             → GET http://198.18.0.100/index.txt answers (kusu-ha)
# and the address step net of detection (takeover starts → address answers), plus the
# effector's own step times (OP_TIMING). One prober process in the client namespace
# (Python, no fork per attempt) does all of it; see probe.py below.
#
# Then the idle run: a fresh kusu-ha pair at the fastest safe setting and, on its own
# copy of the topology, keepalived at its fastest and at its matched setting (two VRRP
# instances in the same two daemons), all idle for IDLE_MINUTES
# while `stress-ng --cpu 2` loads the machine: every "peer dead" declaration, every
# "late" episode and every role change of kusu-ha (a false failover), every MASTER
# transition of keepalived's backup, and the longest silence of the heartbeats on the
# wire (tcpdump on br1 and br2: the longest gap during which NEITHER link carried one).
#
# Usage: scripts/bench-failover.sh [RUNS=10] [IDLE_MINUTES=10]
#   RUNS=0 skips the failover runs, IDLE_MINUTES=0 the idle run; BENCH_STRESS=0 runs the
#   idle run without its own stress-ng (to watch several settings side by side, in
#   concurrent invocations, under ONE stress-ng).
#   KUSU_FAST="INTERVAL WARN DEAD" (ms), KA_FAST_ADVERT, KA_MATCHED_ADVERT (s), BENCH_CONFIGS
#   (subset of "kusu-default kusu-fast ka-default ka-fast ka-matched"), KEEP_TB=1 keeps the
#   run directory, KUSU_HBD_RT=PRIO runs both kusu-hbd with SCHED_RR at PRIO (an experiment).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
RUNS=${1:-10}; IDLE_MINUTES=${2:-10}
KUSU_FAST=${KUSU_FAST:-"50 150 250"}
KA_FAST_ADVERT=${KA_FAST_ADVERT:-0.01}
BENCH_CONFIGS=${BENCH_CONFIGS:-"kusu-default kusu-fast ka-default ka-fast ka-matched"}
[[ $RUNS =~ ^[0-9]+$ && $IDLE_MINUTES =~ ^[0-9]+$ ]] || { echo "usage: $0 [RUNS=10] [IDLE_MINUTES=10]" >&2; exit 64; }
read -r FAST_INTERVAL FAST_WARN FAST_DEAD <<<"$KUSU_FAST"
# keepalived matched to kusu-ha's fastest safe setting: VRRPv3 with the advert_int (whole
# centiseconds, at least 0.01) whose master-down interval, 3 × advert_int + skew (the
# backup's priority 100: skew = 156/256 × advert_int), is nearest to dead_ms.
KA_MATCHED_ADVERT=${KA_MATCHED_ADVERT:-$(awk -v d="$FAST_DEAD" 'BEGIN { a = int(d / (3 + 156 / 256) / 10 + 0.5) / 100; if (a < 0.01) a = 0.01; printf "%.2f", a }')}

scripts/install-deps.sh || exit 1
missing=()
for p in keepalived stress-ng postgresql-15; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null || exit 1
fi
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
# The build users get (packaging links the Swift runtime statically, as here).
for product in kusu-hbd kusu-effectord kusu-ha; do
    # (Waits for SwiftPM's lock while another build runs in .build.)
    swift build -c release --static-swift-stdlib --product "$product" >"$TMPDIR/bench-failover-build.$$.log" 2>&1 ||
        { cat "$TMPDIR/bench-failover-build.$$.log" >&2; echo "build of $product failed" >&2; exit 1; }
done
rm -f "$TMPDIR/bench-failover-build.$$.log"
export KUSU_BIN_DIR="$repo/.build/release"

. scripts/lib/testbed.sh
. scripts/lib/effector-node.sh
. scripts/lib/pair.sh
. scripts/lib/pair-timing.sh
. scripts/lib/keepalived-pair.sh

pair_init          # run directory, users, network sw/a/b; the trap ends nodes, processes, namespaces
# A bridge without an address of its own takes the lowest MAC among its ports: the client
# namespace, made anew for every pair, would change br0's (the tie-breaker's) now and then,
# and the nodes' namespaces, which outlive the containers, would keep the old one in their
# neighbour tables (a tie-breaker silent for seconds). Fixed addresses: the same each run.
for i in 0 1 2; do ip -n "$(tb_ns sw)" link set "br$i" address "02:6b:75:73:75:0$i"; done
ka_network || tb_die "the keepalived test bed could not be built"
RESULTS="$TB_DIR/results"; : >"$RESULTS"
TCPDUMPS=(); SLEEPERS=()
FAILURES="$TB_DIR/failures"; : >"$FAILURES"
PROBE="$TB_DIR/probe.py"
bench_log() { printf '%s bench: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
now_ns() { echo "${EPOCHREALTIME/./}000"; }

# bench_untrack PID... — forget PIDs that are gone (pid_max may be 32768 here: a recycled
# PID must not get tb_cleanup's SIGTERM).
bench_untrack() { ka__untrack "$@"; }

# ----------------------------------------------------------------------------------------
# The prober, run in a client namespace.
cat >"$PROBE" <<'PY'
# probe.py VIP GOFILE OUTFILE SECONDS KIND... — from the client namespace, watches the
# floating address across a failover. KIND: icmp (echo replies), http (GET /index.txt on
# port 80 answers "kusu repository index"), pg (an INSERT through port 5432 is acknowledged).
# Before GOFILE exists: ICMP echo every 2 ms; "ready NS" after 5 replies (the client's
# neighbour entry then points at the active node, as for a client in use).
# GOFILE holds "T0_NS T1_NS": the active node's links went dark between T0 and T1. From
# then on only what was sent after T1 counts (nothing sent after T1 can reach the old
# node): the first echo reply → "icmp NS"; a new TCP connection to port 80 / 5432 every
# 10 ms (each abandoned after 300 ms unconnected: a SYN sent to the dead node's MAC is
# lost, and TCP would resend it only after 1 s), the first complete answer → "http NS" /
# "pg NS". "done" when every KIND answered; "timeout KIND..." SECONDS after GOFILE, or
# 60 s after the start without GOFILE. Times: CLOCK_REALTIME ns.
import os, select, socket, struct, sys, time

vip, gofile, outfile, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
kinds = set(sys.argv[5:])
out = open(outfile, "a", buffering=1)
def say(line): out.write(line + "\n")
now = time.time_ns

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF

icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
icmp.setblocking(False)
ident = os.getpid() & 0xFFFF
seq = 0
sent = {}            # seq -> send time (ns)
def ping():
    global seq
    seq = (seq + 1) & 0xFFFF
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"kusu-bench"
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr), ident, seq) + b"kusu-bench"
    sent[seq] = now()
    try: icmp.sendto(pkt, (vip, 0))
    except OSError: pass
def replies():
    got = []
    for _ in range(1000):
        try: data, _ = icmp.recvfrom(2048)
        except (BlockingIOError, InterruptedError): break
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8: continue
        t, _, _, i, s = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if t == 0 and i == ident and s in sent: got.append((sent.pop(s), now()))
    return got

HTTP_REQ = ("GET /index.txt HTTP/1.0\r\nHost: %s\r\n\r\n" % vip).encode()
STARTUP = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0application_name\0kusu-bench\0\0"
STARTUP = struct.pack("!I", len(STARTUP) + 4) + STARTUP
QUERY = b"INSERT INTO rows (note) VALUES ('bench-failover') RETURNING id\0"
QUERY = b"Q" + struct.pack("!I", len(QUERY) + 4) + QUERY

class Attempt:
    def __init__(self, kind, port):
        self.kind, self.t = kind, now()
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); self.s.setblocking(False)
        self.connected, self.buf, self.stage = False, b"", 0
        try: self.s.connect((vip, port))
        except BlockingIOError: pass
        except OSError: self.s.close(); self.s = None
    def expired(self, t):
        return t - self.t > (3_000_000_000 if self.connected else 300_000_000)
    def close(self):
        if self.s: self.s.close(); self.s = None
    def on_writable(self):   # the connect finished; None: go on, False: failed
        try:
            if self.s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR): return False
            self.connected = True
            self.s.send(HTTP_REQ if self.kind == "http" else STARTUP)
        except OSError: return False
        return None
    def on_readable(self):   # True: answered; False: failed; None: more to read
        try: chunk = self.s.recv(65536)
        except (BlockingIOError, InterruptedError): return None
        except OSError: return False
        if self.kind == "http":
            if chunk: self.buf += chunk; return None
            return b" 200 " in self.buf.split(b"\r\n", 1)[0] and b"kusu repository index" in self.buf
        if not chunk: return False
        self.buf += chunk
        while len(self.buf) >= 5:
            typ, length = self.buf[0:1], struct.unpack("!I", self.buf[1:5])[0]
            if len(self.buf) < 1 + length: break
            body, self.buf = self.buf[5:1 + length], self.buf[1 + length:]
            if typ == b"E": return False
            if typ == b"R" and struct.unpack("!I", body[:4])[0] != 0: return False
            if typ == b"C" and body.startswith(b"INSERT"): self.stage = 2
            if typ == b"Z":
                try:
                    if self.stage == 0: self.stage = 1; self.s.send(QUERY)
                    elif self.stage == 2: self.s.send(b"X\0\0\0\4"); return True
                except OSError: return self.stage == 2
        return None

go = None            # (t0, t1)
ready, replied = False, 0
answered = {}
attempts = []
next_ping = next_tcp = now()
deadline = time.monotonic() + 60
while True:
    t = now()
    if go is None and os.path.exists(gofile):
        try: go = tuple(int(x) for x in open(gofile).read().split())
        except ValueError: go = None
        if go: deadline = time.monotonic() + seconds
    if time.monotonic() > deadline:
        say("timeout " + " ".join(sorted(kinds - set(answered)))); break
    if t >= next_ping:
        ping(); next_ping = t + 2_000_000
    if go and t >= next_tcp:
        for kind, port in (("http", 80), ("pg", 5432)):
            if kind in kinds and kind not in answered and sum(a.kind == kind for a in attempts) < 40:
                a = Attempt(kind, port)
                if a.s: attempts.append(a)
        next_tcp = t + 10_000_000
    rl = [icmp] + [a.s for a in attempts if a.connected]
    wl = [a.s for a in attempts if not a.connected]
    wait = max(0.0, min(next_ping, next_tcp) - now()) / 1e9 if go else max(0.0, next_ping - now()) / 1e9
    r, w, _ = select.select(rl, wl, [], min(wait, 0.002))
    for st, rt in replies():
        if go is None:
            replied += 1
            if replied >= 5 and not ready: ready = True; say("ready %d" % rt)
        elif st >= go[1] and "icmp" in kinds and "icmp" not in answered:
            answered["icmp"] = rt; say("icmp %d" % rt)
    t = now()
    for a in list(attempts):
        res = None
        if a.s in w: res = a.on_writable()
        elif a.s in r: res = a.on_readable()
        if res is None and a.expired(t): res = False
        if res is True and a.kind not in answered:
            answered[a.kind] = now(); say("%s %d" % (a.kind, answered[a.kind]))
        if res is not None:
            a.close(); attempts.remove(a)
    for a in list(attempts):
        if a.kind in answered: a.close(); attempts.remove(a)
    if go and kinds <= set(answered):
        say("done"); break
    if len(sent) > 4000:     # echoes older than 2 s will not be answered
        for s in [s for s, ts in sent.items() if t - ts > 2_000_000_000]: del sent[s]
PY

# probe_start NETNS DIR KIND... — the prober in NETNS, writing DIR/probe.out; waits for "ready".
probe_start() {
    local ns=$1 dir=$2; shift 2
    rm -f "$dir/go" "$dir/probe.out"; : >"$dir/probe.out"
    ip netns exec "$ns" python3 "$PROBE" "$PAIR_VIP" "$dir/go" "$dir/probe.out" 30 "$@" 2>>"$dir/probe.err" &
    PROBE_PID=$!; tb_track "$PROBE_PID"
    tb_poll 15 grep -q '^ready' "$dir/probe.out"
}
# probe_go DIR T0 T1 — tell the prober the failure happened (atomically: write, then rename).
probe_go() { echo "$2 $3" >"$1/go.tmp" && mv "$1/go.tmp" "$1/go"; }
probe_wait() {
    tb_poll 40 grep -qE '^(done|timeout)' "$1/probe.out"
    kill -TERM "$PROBE_PID" 2>/dev/null; wait "$PROBE_PID" 2>/dev/null; bench_untrack "$PROBE_PID"
}
# probe_value DIR KIND — the prober's time for KIND (ns), or nothing.
probe_value() { awk -v k="$2" '$1 == k { print $2; exit }' "$1/probe.out"; }

# record LABEL METRIC START_NS END_NS — one figure (ms) into $RESULTS.
record() {
    [ -n "$3" ] && [ -n "$4" ] || return 0
    echo "$1 $2 $(( ($4 - $3) / 1000 ))" >>"$RESULTS"   # µs
}
fail_run() { echo "$1 run $2: $3" >>"$FAILURES"; bench_log "$1 run $2 FAILED: $3"; }

# phase_sleep PERIOD_MS — a random point within one period, so the failure does not always
# fall at the same phase of the heartbeats (this sleep is the experiment, not a wait).
phase_sleep() { sleep "$(awk -v p="$1" -v r="$RANDOM" 'BEGIN { printf "%.3f", p * r / 32768 / 1000 }')"; }

# ----------------------------------------------------------------------------------------
# kusu-ha

# links_down SWITCH_NETNS NODE — the node's three links dark in one `ip -batch`; T0/T1.
links_down() {
    T0=$(now_ns)
    printf 'link set %s0 down\nlink set %s1 down\nlink set %s2 down\n' "$2" "$2" "$2" | ip -n "$1" -batch -
    T1=$(now_ns)
}

b_ready() { [[ $(pair_prop b FailoverReadiness) == true* ]]; }

# kusu_hbd_rt — with KUSU_HBD_RT=PRIO, both nodes' kusu-hbd (every thread) go to SCHED_RR
# at PRIO, set from the host (an experiment: the packaged unit does not ask for it).
kusu_hbd_rt() {
    [ -n "${KUSU_HBD_RT:-}" ] || return 0
    local n p p1
    for n in a b; do
        p1=$(node_pid1 "$(pair_node "$n")") || continue
        for p in $(pgrep -x kusu-hbd); do
            [ "$(readlink "/proc/$p/ns/pid")" = "$(readlink "/proc/$p1/ns/pid")" ] && chrt -a -r -p "$KUSU_HBD_RT" "$p" >/dev/null
        done
    done
}

# kusu_ready — b in sync and ready for an automatic failover. A kusu-hbd limitation seen at
# small dead_ms: when b's monitor starts more than dead_ms after a's, a declares b dead, then
# back; a replication connection older than that return never counts as live again
# (liveWalSenderState), so a stops waiting for b and b stays "not in sync" until its WAL
# receiver reconnects. That is a set-up artefact here: reconnect it once (counted).
SETUP_RETRIES=0
kusu_ready() {
    tb_poll 15 pair_prop_is b Synchronous sync && tb_poll 10 b_ready && return 0
    [ "$(pair_sql a "SELECT state FROM pg_stat_replication WHERE application_name = 'failover'" 2>/dev/null)" = streaming ] || return 1
    bench_log "b is not in sync although it streams (a: Synchronous $(pair_prop a Synchronous)): reconnecting its WAL receiver"
    SETUP_RETRIES=$((SETUP_RETRIES + 1))
    pair_sql b "SELECT pg_terminate_backend(pid) FROM pg_stat_wal_receiver" >/dev/null
    tb_poll 20 pair_prop_is b Synchronous sync && tb_poll 10 b_ready
}

# kusu_teardown — both nodes gone (kill -9), the address nowhere, links up, no client namespace.
kusu_teardown() {
    local n l
    for n in a b; do
        [ "${NODE_STATE[$(pair_node "$n")]:-down}" = down ] || node_crash "$(pair_node "$n")"
    done
    for n in a b; do
        ip -n "$(tb_ns "$n")" addr del "$PAIR_VIP/24" dev eth0 2>/dev/null
        ip -n "$(tb_ns "$n")" neigh flush all 2>/dev/null
        for l in 0 1 2; do tb_link "$n" "$l" up; done
    done
    ip netns delete "$(tb_ns c)" 2>/dev/null
    return 0
}

# kusu_journal NODE FILE — the node's kusu-hbd and kusu-effectord journal as JSON lines.
kusu_journal() { pair_exec "$1" journalctl -o json --no-pager -u kusu-hbd.service -u kusu-effectord.service >"$2" 2>/dev/null; }

# kusu_run LABEL RUN INTERVAL WARN DEAD
kusu_run() {
    local label=$1 run=$2 interval=$3 warn=$4 dead=$5 W="$TB_DIR/kusu-run"
    rm -rf "$W"; mkdir -p "$W"
    pair_timing "$interval" "$warn" "$dead"
    if ! pair_boot "$W" "$KUSU_BIN_DIR" 2>>"$W/boot.log"; then
        fail_run "$label" "$run" "the pair did not boot: $(tail -2 "$W/boot.log" | tr '\n' ' ')"; kusu_teardown; return 1
    fi
    kusu_hbd_rt
    if ! kusu_ready; then
        fail_run "$label" "$run" "b not ready (Synchronous $(pair_prop b Synchronous), FailoverReadiness $(pair_prop b FailoverReadiness), TieBreakerReachable $(pair_prop b TieBreakerReachable), PeerState $(pair_prop b PeerState))"
        pair_exec b journalctl --no-pager -o short-precise -u kusu-hbd.service >"$TB_DIR/$label-$run-b-notready.log" 2>&1
        kusu_teardown; return 1
    fi
    if ! probe_start "$(tb_ns c)" "$W" icmp http pg; then
        fail_run "$label" "$run" "the client does not reach the address before the failure"; kusu_teardown; return 1
    fi
    phase_sleep "$interval"
    links_down "$(tb_ns sw)" a
    probe_go "$W" "$T0" "$T1"
    node_crash "$(pair_node a)"
    ip -n "$(tb_ns a)" addr del "$PAIR_VIP/24" dev eth0 2>/dev/null
    probe_wait "$W"
    kusu_journal b "$W/b.json"
    local t_dead t_start t_active timing
    read -r t_dead t_start t_active timing < <(python3 - "$W/b.json" "$T0" <<'PY'
import json, sys
t0 = int(sys.argv[2]) // 1000
dead = start = active = None; timing = "-"
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    t = int(e.get("__REALTIME_TIMESTAMP", 0))
    if t < t0: continue
    m = e.get("MESSAGE")
    if m == "peer state changed" and e.get("PEER_STATE") == "dead" and dead is None: dead = t
    if m == "automatic failover" and start is None: start = t
    if m == "role changed" and e.get("NODE_ROLE") == "active" and active is None: active = t
    if m == "effector operation succeeded" and e.get("OP_NAME") == "Takeover" and timing == "-":
        timing = e.get("OP_TIMING", "-").replace(" ", ",")
print(*[(x * 1000 if x else "") or "-" for x in (dead, start, active)], timing)
PY
)
    [ "$t_dead" = - ] && t_dead=""; [ "$t_start" = - ] && t_start=""; [ "$t_active" = - ] && t_active=""
    local t_icmp t_pg t_http
    t_icmp=$(probe_value "$W" icmp); t_pg=$(probe_value "$W" pg); t_http=$(probe_value "$W" http)
    record "$label" dead "$T0" "$t_dead"
    record "$label" detect "$T0" "$t_start"
    record "$label" address "$T0" "$t_icmp"
    record "$label" database "$T0" "$t_pg"
    record "$label" http "$T0" "$t_http"
    record "$label" net "$t_start" "$t_icmp"
    record "$label" active "$T0" "$t_active"
    if [ "$timing" != - ]; then
        local part
        for part in ${timing//,/ }; do
            echo "$label step-${part%%=*} $(awk -v v="${part#*=}" 'BEGIN { sub(/ms$/, "", v); printf "%d", v * 1000 }')" >>"$RESULTS"
        done
    fi
    if [ -z "$t_start" ] || [ -z "$t_icmp" ] || [ -z "$t_pg" ] || [ -z "$t_http" ]; then
        fail_run "$label" "$run" "incomplete: $(tail -1 "$W/probe.out"); b: Role $(pair_prop b Role)"
        cp "$W/b.json" "$TB_DIR/$label-$run-b.json" 2>/dev/null
    fi
    bench_log "$label run $run: detect $(( (${t_start:-$T0} - T0) / 1000000 )) ms, address $(( (${t_icmp:-$T0} - T0) / 1000000 )) ms, database $(( (${t_pg:-$T0} - T0) / 1000000 )) ms, HTTP $(( (${t_http:-$T0} - T0) / 1000000 )) ms ($timing)"
    kusu_teardown
}

# ----------------------------------------------------------------------------------------
# keepalived

b_backup_settled() {   # b's VI_KUSU reported BACKUP at least $1 ms ago and nothing since
    local last; last=$(awk '$2 == "INSTANCE" && $3 == "\"VI_KUSU\"" { t = $1; s = $4 } END { if (s == "BACKUP") print t }' "$KDIR/b.states")
    [ -n "$last" ] && [ $(( ($(now_ns) - last) / 1000000 )) -ge "$1" ]
}

# ka_run LABEL RUN ADVERT_INT VERSION
ka_run() {
    local label=$1 run=$2 advert=$3 version=$4 W="$TB_DIR/ka-run" settle
    rm -rf "$W"; mkdir -p "$W"
    ka_reset
    settle=$(awk -v a="$advert" 'BEGIN { s = a * 5000; printf "%d", (s < 500 ? 500 : s) }')
    if ! ka_start a "$advert" "$version" 600 || ! ka_start b "$advert" "$version" 600 ||
        ! ka_wait_stable 20 || ! tb_poll 20 b_backup_settled "$settle" || ! ka_state_is a MASTER; then
        fail_run "$label" "$run" "keepalived not stable (a $(ka_last_state a), b $(ka_last_state b))"; return 1
    fi
    if ! probe_start "$(ka_ns c)" "$W" icmp; then
        fail_run "$label" "$run" "the client does not reach the address before the failure"; return 1
    fi
    phase_sleep "$(awk -v a="$advert" 'BEGIN { printf "%d", a * 1000 }')"
    ka_links_down a
    probe_go "$W" "$KA_T0_NS" "$KA_T1_NS"
    ka_kill a
    probe_wait "$W"
    local t_master t_icmp
    t_master=$(awk -v t0="$KA_T0_NS" '$2 == "INSTANCE" && $4 == "MASTER" && $1 > t0 { print $1; exit }' "$KDIR/b.states")
    t_icmp=$(probe_value "$W" icmp)
    record "$label" detect "$KA_T0_NS" "$t_master"
    record "$label" address "$KA_T0_NS" "$t_icmp"
    record "$label" net "$t_master" "$t_icmp"
    [ -n "$t_master" ] && [ -n "$t_icmp" ] || fail_run "$label" "$run" "incomplete: $(tail -1 "$W/probe.out"); b $(ka_last_state b)"
    bench_log "$label run $run: detect $(( (${t_master:-$KA_T0_NS} - KA_T0_NS) / 1000000 )) ms, address $(( (${t_icmp:-$KA_T0_NS} - KA_T0_NS) / 1000000 )) ms"
}

# ----------------------------------------------------------------------------------------
# The runs

bench_log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_BENCH=$(now_ns)
if [ "$RUNS" -gt 0 ]; then
    for config in $BENCH_CONFIGS; do
        for run in $(seq 1 "$RUNS"); do
            case $config in
                kusu-default) kusu_run "$config" "$run" 200 600 1000 ;;
                kusu-fast) kusu_run "$config" "$run" "$FAST_INTERVAL" "$FAST_WARN" "$FAST_DEAD" ;;
                ka-default) ka_run "$config" "$run" 1 2 ;;
                ka-fast) ka_run "$config" "$run" "$KA_FAST_ADVERT" 3 ;;
                ka-matched) ka_run "$config" "$run" "$KA_MATCHED_ADVERT" 3 ;;
                *) tb_die "unknown configuration $config" ;;
            esac
        done
        [ "${config#ka-}" != "$config" ] && ka_reset
    done
fi
LOAD_AFTER_RUNS=$(cut -d' ' -f1-3 /proc/loadavg)

# ----------------------------------------------------------------------------------------
# The idle run: no failure; the machine loaded.

IDLE_REPORT="$TB_DIR/idle"; : >"$IDLE_REPORT"
if [ "$IDLE_MINUTES" -gt 0 ]; then
    W="$TB_DIR/idle-run"; rm -rf "$W"; mkdir -p "$W"
    pair_timing "$FAST_INTERVAL" "$FAST_WARN" "$FAST_DEAD"
    pair_boot "$W" "$KUSU_BIN_DIR" 2>>"$W/boot.log" || tb_die "idle run: the pair did not boot: $(tail -3 "$W/boot.log")"
    kusu_hbd_rt
    kusu_ready || tb_die "idle run: b is not ready (Synchronous $(pair_prop b Synchronous), FailoverReadiness $(pair_prop b FailoverReadiness))"
    ka_reset
    for n in a b; do
        ka_start "$n" "$KA_FAST_ADVERT" 3 $(( IDLE_MINUTES * 60 + 300 )) "$KA_MATCHED_ADVERT" || tb_die "idle run: keepalived $n did not start"
    done
    ka_wait_stable 20 && tb_poll 20 ka_state_is a MASTER VI_SECOND && tb_poll 20 ka_state_is b BACKUP VI_SECOND ||
        tb_die "idle run: keepalived is not stable"
    window=$(( IDLE_MINUTES * 60 ))
    # The heartbeats on the wire (both heartbeat links), for the longest silence.
    for br in br1 br2; do
        ip netns exec "$(tb_ns sw)" timeout $(( window + 120 )) tcpdump -i "$br" -nn -tt -l 'udp port 694' \
            >"$W/wire-$br.txt" 2>"$W/tcpdump-$br.err" &
        tb_track $!; TCPDUMPS+=("$!")
    done
    tb_poll 10 grep -q 'listening on' "$W/tcpdump-br1.err" && tb_poll 10 grep -q 'listening on' "$W/tcpdump-br2.err" ||
        bench_log "tcpdump did not start: no wire figures"
    STRESS=""
    if [ "${BENCH_STRESS:-1}" = 1 ]; then
        stress-ng --cpu 2 --timeout $(( window + 60 ))s --quiet >"$W/stress.log" 2>&1 &
        STRESS=$!; tb_track "$STRESS"
        tb_poll 10 bash -c "[ \$(pgrep -c -P $STRESS) -ge 2 ]" || bench_log "stress-ng workers not seen"
    fi
    # Two 5-ms sleepers, one under the normal scheduler and one SCHED_FIFO: how late they
    # wake tells the machine's own stalls (both late: the whole VM stopped) from CPU
    # contention (only the normal one late), whatever kusu-ha does.
    for policy in other fifo; do
        cmd=(python3 -c '
import sys, time
seconds, out = float(sys.argv[1]), sys.argv[2]
end = time.monotonic() + seconds; worst = 0.0; n = 0; over = {20: 0, 50: 0, 100: 0, 250: 0}
while time.monotonic() < end:
    t = time.monotonic(); time.sleep(0.005); late = (time.monotonic() - t - 0.005) * 1000
    n += 1; worst = max(worst, late)
    for k in over:
        if late > k: over[k] += 1
open(out, "w").write(f"{worst:.1f} {n} " + " ".join(f"{over[k]}" for k in sorted(over)) + "\n")
' "$window" "$W/sleeper-$policy.txt")
        if [ "$policy" = fifo ]; then chrt -f 10 "${cmd[@]}" & else "${cmd[@]}" & fi
        tb_track $!; SLEEPERS+=("$!")
    done
    t_idle0=$(now_ns)
    bench_log "idle run: $IDLE_MINUTES min, kusu-ha at $FAST_INTERVAL/$FAST_WARN/$FAST_DEAD ms, keepalived at advert_int $KA_FAST_ADVERT and $KA_MATCHED_ADVERT s (VRRPv3)$( [ -n "$STRESS" ] && echo ", stress-ng --cpu 2")"
    holder_changes=0; samples=0
    end=$(( $(date +%s) + window ))
    while [ "$(date +%s)" -lt "$end" ] && [ "$samples" -lt $(( window + 10 )) ]; do   # one sample a second
        samples=$((samples + 1))
        [ "$(pair_vip_holder)" = a ] || holder_changes=$((holder_changes + 1))
        sleep 1
    done
    t_idle1=$(now_ns)
    load_end=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ -n "$STRESS" ]; then
        kill -TERM "$STRESS" 2>/dev/null; tb_poll 10 bash -c "! kill -0 $STRESS 2>/dev/null"; wait "$STRESS" 2>/dev/null; bench_untrack "$STRESS"
    fi
    # What a false "dead" leaves behind: is b still in sync and ready to take over?
    end_sync_a=$(pair_prop a Synchronous); end_ready_b=$(pair_prop b FailoverReadiness)
    for p in "${TCPDUMPS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; bench_untrack "$p"; done
    for p in "${SLEEPERS[@]}"; do   # they end by themselves at the end of the window
        tb_poll 10 bash -c "! kill -0 $p 2>/dev/null" || kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null; bench_untrack "$p"
    done
    kusu_journal a "$W/a.json"; kusu_journal b "$W/b.json"
    ka_b_master=$(ka_transitions b MASTER VI_KUSU "$t_idle0")
    ka_b_master2=$(ka_transitions b MASTER VI_SECOND "$t_idle0")
    python3 - "$W" "$t_idle0" "$t_idle1" "$FAST_INTERVAL" "$FAST_WARN" "$FAST_DEAD" <<'PY' >>"$IDLE_REPORT"
import json, sys
w, t0, t1 = sys.argv[1], int(sys.argv[2]) // 1000, int(sys.argv[3]) // 1000
interval, warn, dead = sys.argv[4:7]
def events(node):
    late = deadc = roles = 0; roles_list = []
    for line in open(f"{w}/{node}.json"):
        try: e = json.loads(line)
        except ValueError: continue
        t = int(e.get("__REALTIME_TIMESTAMP", 0))
        if not t0 <= t <= t1: continue
        m = e.get("MESSAGE")
        if m == "peer state changed":
            if e.get("PEER_STATE") == "late": late += 1
            if e.get("PEER_STATE") == "dead": deadc += 1
        if m == "role changed":
            roles += 1; roles_list.append(f'{e.get("NODE_ROLE_OLD")}->{e.get("NODE_ROLE")}')
    return late, deadc, roles, roles_list
for node, name in (("a", "installer (active)"), ("b", "failover (standby)")):
    late, deadc, roles, rl = events(node)
    print(f"   kusu-ha {name:<19} peer late {late:>3}   peer declared dead {deadc:>3}   role changes {roles:>3} {' '.join(rl)}")
def gaps(host):   # the longest time during which neither heartbeat link carried one from host
    times = []
    for br, net in (("br1", "198.18.4."), ("br2", "198.18.8.")):
        try:
            for line in open(f"{w}/wire-{br}.txt"):
                parts = line.split()
                if len(parts) > 2 and parts[2].startswith(net + host + "."):
                    times.append(float(parts[0]))
        except OSError: pass
    times = sorted(x for x in times if t0 / 1e6 <= x <= t1 / 1e6)
    g = [b - a for a, b in zip(times, times[1:])]
    return len(times), (max(g) * 1000 if g else float("nan"))
for host, what in (("11", "a → b"), ("12", "b → a")):
    n, g = gaps(host)
    print(f"   heartbeats {what}: {n} packets seen, longest silence on both links {g:.1f} ms "
          f"(interval_ms {interval}, warn_ms {warn}, dead_ms {dead})")
PY
    {
        echo "   keepalived fastest (VRRPv3 advert_int $KA_FAST_ADVERT s): the backup became MASTER $ka_b_master times"
        echo "   keepalived matched (VRRPv3 advert_int $KA_MATCHED_ADVERT s): the backup became MASTER $ka_b_master2 times"
        echo "   floating address not on a (sampled once a second): $holder_changes of $samples samples"
        echo "   at the end: a's Synchronous $end_sync_a; b's FailoverReadiness $end_ready_b"
        for policy in other fifo; do
            read -r worst n o20 o50 o100 o250 <"$W/sleeper-$policy.txt" 2>/dev/null || continue
            printf '   a 5-ms sleeper (%-12s) woke at worst %s ms late; of %s wake-ups late by > 20/50/100/250 ms: %s/%s/%s/%s\n' \
                "$( [ "$policy" = fifo ] && echo SCHED_FIFO || echo SCHED_OTHER)" "$worst" "$n" "$o20" "$o50" "$o100" "$o250"
        done
        echo "   load average at the end: $load_end"
    } >>"$IDLE_REPORT"
    FALSE_FAILOVERS=$(python3 - "$W/b.json" "$t_idle0" "$t_idle1" <<'PY'
import json, sys
t0, t1 = int(sys.argv[2]) // 1000, int(sys.argv[3]) // 1000
n = 0
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if t0 <= int(e.get("__REALTIME_TIMESTAMP", 0)) <= t1 and e.get("MESSAGE") == "role changed" and e.get("NODE_ROLE") == "taking-over": n += 1
print(n)
PY
)
    echo "   FALSE FAILOVERS over $IDLE_MINUTES min: kusu-ha $FALSE_FAILOVERS (b began a takeover); keepalived fastest $ka_b_master, matched $ka_b_master2" >>"$IDLE_REPORT"
    ka_reset
    kusu_teardown
fi

# ----------------------------------------------------------------------------------------
# The report

echo
echo "== kusu-ha vs keepalived: failover of $PAIR_VIP after a hard failure of the active node"
echo "   $RUNS runs per configuration; milliseconds from the failure (the instant before the node's links went dark)"
echo "   load average: before $LOAD_BEFORE, after the runs $LOAD_AFTER_RUNS (2 cores; the machine is shared)"
python3 - "$RESULTS" "$RUNS" "$FAST_INTERVAL" "$FAST_WARN" "$FAST_DEAD" "$KA_FAST_ADVERT" "$KA_MATCHED_ADVERT" <<'PY'
import statistics, sys
path, runs = sys.argv[1], int(sys.argv[2])
fi, fw, fd, ka, km = sys.argv[3:8]
data = {}
for line in open(path):
    label, metric, us = line.split()
    data.setdefault(label, {}).setdefault(metric, []).append(int(us) / 1000)
configs = [
    ("kusu-default", "kusu-ha defaults (interval 200, warn 600, dead 1000 ms)"),
    ("kusu-fast", f"kusu-ha fastest safe (interval {fi}, warn {fw}, dead {fd} ms)"),
    ("ka-default", "keepalived default (VRRPv2, advert_int 1 s)"),
    ("ka-fast", f"keepalived fastest accepted (VRRPv3, advert_int {ka} s)"),
    ("ka-matched", f"keepalived matched to kusu-ha's fastest safe (VRRPv3, advert_int {km} s, "
                   f"master down {float(km) * (3 + 156 / 256) * 1000:.0f} ms)"),
]
rows = [
    ("dead", "peer declared dead"),
    ("detect", "detection: takeover starts"),
    ("address", "address answers (client ping)"),
    ("database", "database writable (INSERT)"),
    ("http", "HTTP answers through the address"),
    ("active", "takeover finished (b's role active)"),
    ("net", "  takeover start → address answers"),
    ("step-promote", "  effector: promote"),
    ("step-sync", "  effector: synchronous standby"),
    ("step-address", "  effector: address add"),
    ("step-announce", "  effector: announce"),
    ("step-units", "  effector: units"),
]
def fmt(v): return f"{min(v):8.1f} {statistics.median(v):8.1f} {max(v):8.1f}  {len(v):>2}"
for key, title in configs:
    if key not in data: continue
    print(f"\n-- {title}")
    print(f"   {'':<38} {'min':>8} {'median':>8} {'max':>8}   n")
    for metric, name in rows:
        v = data[key].get(metric)
        if v: print(f"   {name:<38} {fmt(v)}")
def ratio(a, b, metric):
    va, vb = data.get(a, {}).get(metric), data.get(b, {}).get(metric)
    if not va or not vb: return "n/a"
    return (f"median {statistics.median(va) / statistics.median(vb):.3f}  "
            f"(min {min(va) / min(vb):.3f}, max {max(va) / max(vb):.3f})")
def diff(a, b, metric):
    va, vb = data.get(a, {}).get(metric), data.get(b, {}).get(metric)
    if not va or not vb: return "n/a"
    return f"{statistics.median(va):.1f} vs {statistics.median(vb):.1f} ms (difference {statistics.median(va) - statistics.median(vb):+.1f} ms)"
print("\n-- ratio kusu-ha / keepalived, address step (failure → address answers)")
print(f"   defaults (kusu-ha defaults / keepalived advert_int 1):           {ratio('kusu-default', 'ka-default', 'address')}")
print(f"   fastest (kusu-ha fastest safe / keepalived fastest accepted):    {ratio('kusu-fast', 'ka-fast', 'address')}")
print(f"   matched (kusu-ha fastest safe / keepalived same master-down):    {ratio('kusu-fast', 'ka-matched', 'address')}")
print("   takeover start → address answers, medians kusu-ha vs keepalived (keepalived writes its")
print("   notify FIFO after adding and announcing the address: its figure is ~0, even below)")
print(f"   defaults  {diff('kusu-default', 'ka-default', 'net')}")
print(f"   fastest   {diff('kusu-fast', 'ka-fast', 'net')}")
print(f"   matched   {diff('kusu-fast', 'ka-matched', 'net')}")
full = [("kusu-default", 1500, "defaults"), ("kusu-fast", 600, "fastest safe")]
print("\n-- goals")
for key, limit, name in full:
    d = data.get(key, {})
    if d.get("database") and d.get("http"):
        worst = [max(x, y) for x, y in zip(d["database"], d["http"])]
        print(f"   full service (database writable and HTTP) at {name}: median {statistics.median(worst):.1f} ms, "
              f"max {max(worst):.1f} ms, goal < {limit} ms: {sum(x < limit for x in worst)}/{len(worst)} runs within")
PY
if [ -s "$FAILURES" ]; then echo; echo "-- failed or incomplete runs"; sed 's/^/   /' "$FAILURES"; fi
[ "$SETUP_RETRIES" -eq 0 ] || { echo; echo "   set-up: b's WAL receiver reconnected $SETUP_RETRIES times before a run (see kusu_ready)"; }
if [ -s "$IDLE_REPORT" ]; then
    echo
    echo "-- idle run: $IDLE_MINUTES min, no failure, $( [ "${BENCH_STRESS:-1}" = 1 ] && echo "stress-ng --cpu 2" || echo "no stress-ng of its own"); kusu-ha at interval $FAST_INTERVAL / warn $FAST_WARN / dead $FAST_DEAD ms${KUSU_HBD_RT:+, kusu-hbd SCHED_RR $KUSU_HBD_RT}"
    cat "$IDLE_REPORT"
fi
echo
echo "   total $(( ($(now_ns) - T_BENCH) / 1000000000 )) s"
exit 0
