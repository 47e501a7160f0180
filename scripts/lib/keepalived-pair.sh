# shellcheck shell=bash
# keepalived (Debian's) on the test-bed topology, for comparisons with kusu-ha
# (scripts/bench-failover.sh). Its own namespaces, the same layout and addresses
# as testbed.sh + pair.sh, so it can run next to a kusu-ha pair:
#
#   switch netns  kha-ID-ksw: br0 (service network, 198.18.0.0/24, tie-breaker 198.18.0.1),
#                 br1 (198.18.4.0/24) and br2 (198.18.8.0/24)
#   node netns    kha-ID-ka:  eth0 198.18.0.11, eth1 198.18.4.11, eth2 198.18.8.11  (MASTER, priority 150)
#                 kha-ID-kb:  eth0 198.18.0.12, eth1 198.18.4.12, eth2 198.18.8.12  (BACKUP, priority 100)
#   client netns  kha-ID-kc:  eth0 198.18.0.50 on br0
#
# One VRRP instance (VI_KUSU, virtual_router_id 51) on eth0, multicast over br0,
# moving 198.18.0.100/24 (the address pair.sh floats). keepalived runs with only
# its VRRP subsystem (--vrrp), logs to KDIR/NODE.log, and reports each state change
# through its notify_fifo: a reader timestamps every line (CLOCK_REALTIME ns) into
# KDIR/NODE.states ("NS INSTANCE "VI_KUSU" MASTER 100"): no fork between the state
# change and the timestamp (notify scripts would add one).
#
# Source scripts/lib/testbed.sh first and call tb_init (the trap ends every process
# recorded by tb_track and deletes every namespace in TB_NETNS). Then:
#   ka_network                        the namespaces above
#   ka_start NODE ADVERT_INT [VERSION] [READER_S] [ADVERT_INT2]
#                                     keepalived in node a or b (VERSION 2 or 3; 3 for
#                                     fractional advert_int, in centiseconds, 0.01 at least);
#                                     ADVERT_INT2: a second instance VI_SECOND (router id 52,
#                                     198.18.0.101) in the same daemon
#   ka_wait_stable SECONDS            a MASTER holding the address, b BACKUP
#   ka_last_state / ka_state_is / ka_transitions NODE ... [INSTANCE]   from the FIFO log
#   ka_crash NODE                     ka_links_down NODE (its links dark at the switch in one
#                                     `ip -batch`; KA_T0_NS/KA_T1_NS: just before and after),
#                                     then ka_kill NODE (kill -9 of its keepalived processes)
#   ka_stop NODE                      SIGTERM, bounded wait, then SIGKILL; its address dropped
#   ka_reset                          both stopped, links up, the address nowhere

KA_VIP=198.18.0.100
KA_VRID=51
declare -gA KA_PID=() KA_READER=() KA_PRIO=([a]=150 [b]=100) KA_HOST=([a]=11 [b]=12)

ka_ns() { echo "kha-$TB_ID-k$1"; }

# ka_network — switch, nodes ka/kb (three links each), client kc.
ka_network() {
    KDIR="$TB_DIR/keepalived"; mkdir -p "$KDIR"
    local sw n ns link subnet br; sw=$(ka_ns sw)
    ip netns add "$sw" || return 1; TB_NETNS+=("$sw")
    ip -n "$sw" link set lo up
    for br in 0 1 2; do
        # A fixed MAC: a bridge otherwise takes the lowest of its ports' (it would change
        # with the ports).
        ip -n "$sw" link add "br$br" type bridge && ip -n "$sw" link set "br$br" address "02:6b:61:73:77:0$br" &&
            ip -n "$sw" link set "br$br" up || return 1
    done
    ip -n "$sw" addr add 198.18.0.1/24 dev br0   # the tie-breaker, as in testbed.sh
    for n in a b; do
        ns=$(ka_ns "$n")
        ip netns add "$ns" || return 1; TB_NETNS+=("$ns")
        ip -n "$ns" link set lo up
        link=0
        for subnet in 0 4 8; do
            ip -n "$ns" link add "eth$link" type veth peer name "$n$link" netns "$sw" || return 1
            ip -n "$sw" link set "$n$link" master "br$link" up
            ip -n "$ns" addr add "198.18.$subnet.${KA_HOST[$n]}/24" dev "eth$link"
            ip -n "$ns" link set "eth$link" up
            link=$((link + 1))
        done
    done
    ns=$(ka_ns c)
    ip netns add "$ns" || return 1; TB_NETNS+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name c0 netns "$sw" || return 1
    ip -n "$sw" link set c0 master br0 up
    ip -n "$ns" addr add 198.18.0.50/24 dev eth0
    ip -n "$ns" link set eth0 up
}

# ka__reader FIFO OUT SECONDS — timestamps each line of keepalived's notify FIFO.
# Opened read-write, so it never sees end-of-file between writers; ends after SECONDS.
ka__reader() {
    python3 - "$1" "$2" "$3" <<'PY' &
import os, select, sys, time
fifo, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
deadline = time.monotonic() + seconds
buf = b""
with open(out, "a", buffering=1) as f:
    f.write(f"{time.time_ns()} reader listening\n")
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
        if not r:
            continue
        now = time.time_ns()
        buf += os.read(fd, 4096)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            f.write(f"{now} {line.decode(errors='replace')}\n")
PY
}

# ka_config NODE ADVERT_INT VERSION [ADVERT_INT2] — the node's keepalived.conf: VI_KUSU
# (virtual_router_id 51, 198.18.0.100); with ADVERT_INT2 a second instance VI_SECOND
# (virtual_router_id 52, 198.18.0.101) in the same daemon, for watching two settings at once.
ka_config() {
    local n=$1 advert=$2 version=$3 advert2=${4:-} state=BACKUP
    [ "$n" = a ] && state=MASTER
    cat <<CONF
global_defs {
    router_id kusu-$n
    notify_fifo $KDIR/$n.fifo
    vrrp_version $version
}
CONF
    ka__instance VI_KUSU "$KA_VRID" "$KA_VIP" "$state" "${KA_PRIO[$n]}" "$advert"
    [ -z "$advert2" ] || ka__instance VI_SECOND $((KA_VRID + 1)) "${KA_VIP%.*}.101" "$state" "${KA_PRIO[$n]}" "$advert2"
}

ka__instance() {
    cat <<CONF
vrrp_instance $1 {
    state $4
    interface eth0
    virtual_router_id $2
    priority $5
    advert_int $6
    virtual_ipaddress {
        $3/24 dev eth0
    }
}
CONF
}

# ka_start NODE ADVERT_INT [VERSION=2] [READER_SECONDS=3600] [ADVERT_INT2] — keepalived
# (VRRP only) in the node; ADVERT_INT2: a second instance (see ka_config).
ka_start() {
    local n=$1 advert=$2 version=${3:-2} seconds=${4:-3600} advert2=${5:-} d
    d="$KDIR/$n"; mkdir -p "$d"
    ka_config "$n" "$advert" "$version" "$advert2" >"$KDIR/$n.conf"
    rm -f "$d"/*.pid
    rm -f "$KDIR/$n.fifo"; mkfifo -m 0600 "$KDIR/$n.fifo" || return 1
    : >"$KDIR/$n.states"
    ka__reader "$KDIR/$n.fifo" "$KDIR/$n.states" "$seconds"
    KA_READER[$n]=$!; tb_track "$!"
    tb_poll 5 grep -q 'reader listening' "$KDIR/$n.states" || { tb_log "keepalived $n: the FIFO reader did not start"; return 1; }
    ip netns exec "$(ka_ns "$n")" keepalived --dont-fork --log-console --log-detail --no-syslog --vrrp \
        --use-file="$KDIR/$n.conf" --pid="$d/keepalived.pid" --vrrp_pid="$d/vrrp.pid" \
        --checkers_pid="$d/checkers.pid" --bfd_pid="$d/bfd.pid" >>"$KDIR/$n.log" 2>&1 </dev/null &
    KA_PID[$n]=$!; tb_track "$!"
    disown "$!"   # no job notice when it is killed; ended by PID (ka_stop, ka_crash, tb_cleanup)
    # The VRRP child writes its pid file once it runs.
    tb_poll 5 test -s "$d/vrrp.pid" || { tb_log "keepalived $n did not start: $(tail -5 "$KDIR/$n.log")"; return 1; }
    tb_track "$(cat "$d/vrrp.pid")"
}

# ka_last_state NODE [INSTANCE=VI_KUSU] — the last state the instance reported (MASTER,
# BACKUP, FAULT, STOP), or none.
ka_last_state() {
    awk -v i="\"${2:-VI_KUSU}\"" '$2 == "INSTANCE" && $3 == i { s = $4 } END { print (s == "" ? "none" : s) }' "$KDIR/$1.states" 2>/dev/null
}
ka_state_is() { [ "$(ka_last_state "$1" "${3:-VI_KUSU}")" = "$2" ]; }

# ka_transitions NODE STATE [INSTANCE=VI_KUSU] [AFTER_NS=0] — how many times the instance entered STATE.
ka_transitions() {
    awk -v s="$2" -v i="\"${3:-VI_KUSU}\"" -v t="${4:-0}" '$2 == "INSTANCE" && $3 == i && $4 == s && $1 > t { n++ } END { print n + 0 }' \
        "$KDIR/$1.states" 2>/dev/null
}

ka_holds() { ip -n "$(ka_ns "$1")" -4 addr show dev eth0 2>/dev/null | grep -q "inet $KA_VIP/"; }
ka__client_sees_vip() { ip netns exec "$(ka_ns c)" ping -c1 -W1 -q "$KA_VIP" >/dev/null 2>&1; }

# ka_wait_stable SECONDS — a is MASTER and holds the address, b is BACKUP and does not,
# and the client reaches the address.
ka_wait_stable() {
    local s=$1
    tb_poll "$s" ka_state_is a MASTER && tb_poll "$s" ka_state_is b BACKUP && tb_poll "$s" ka_holds a &&
        ! ka_holds b && tb_poll "$s" ka__client_sees_vip
}

# ka__pids NODE — the node's keepalived processes that are still alive (parent and VRRP child).
ka__pids() {
    local n=$1 p d="$KDIR/$1"
    for p in "${KA_PID[$n]:-}" "$(cat "$d/vrrp.pid" 2>/dev/null)"; do
        [ -n "$p" ] && [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = keepalived ] && echo "$p"
    done
}

# ka__untrack PID... — forget PIDs that are gone (PIDs are recycled: tb_cleanup must
# not signal a stranger's process that got one of them later).
ka__untrack() {
    local p keep=() q
    for q in "${TB_PIDS[@]}"; do
        for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
        keep+=("$q")
    done
    TB_PIDS=("${keep[@]}")
}

# ka_links_down NODE — the node's three links go dark at the switch in one `ip -batch`;
# KA_T0_NS just before, KA_T1_NS just after (CLOCK_REALTIME ns).
ka_links_down() {
    local n=$1
    KA_T0_NS=${EPOCHREALTIME/./}000
    printf 'link set %s0 down\nlink set %s1 down\nlink set %s2 down\n' "$n" "$n" "$n" | ip -n "$(ka_ns sw)" -batch -
    KA_T1_NS=${EPOCHREALTIME/./}000
}

# ka_kill NODE — kill -9 of the node's keepalived processes (bounded wait until they are
# gone); what its namespace still holds of the address is dropped (a dead machine's NIC
# would be silent).
ka_kill() {
    local n=$1 p i pids
    pids=$(ka__pids "$n")
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    for i in $(seq 1 100); do [ -z "$(ka__pids "$n")" ] && break; sleep 0.02; done
    # shellcheck disable=SC2086
    [ -n "$pids" ] && ka__untrack $pids
    ip -n "$(ka_ns "$n")" addr del "$KA_VIP/24" dev eth0 2>/dev/null
    return 0
}

# ka_crash NODE — a hard failure: links dark (ka_links_down), then kill -9 (ka_kill).
ka_crash() { ka_links_down "$1"; ka_kill "$1"; }

# ka_stop NODE — SIGTERM to the parent (it stops its child), bounded wait, then SIGKILL.
ka_stop() {
    local n=$1 p i pids
    pids=$(ka__pids "$n")
    [ -n "${KA_PID[$n]:-}" ] && kill -TERM "${KA_PID[$n]}" 2>/dev/null
    for i in $(seq 1 100); do [ -z "$(ka__pids "$n")" ] && break; sleep 0.05; done
    for p in $(ka__pids "$n"); do kill -9 "$p" 2>/dev/null; done
    for i in $(seq 1 50); do [ -z "$(ka__pids "$n")" ] && break; sleep 0.02; done
    # shellcheck disable=SC2086
    [ -n "$pids" ] && ka__untrack $pids
    if [ -n "${KA_READER[$n]:-}" ]; then
        kill -TERM "${KA_READER[$n]}" 2>/dev/null; wait "${KA_READER[$n]}" 2>/dev/null
        ka__untrack "${KA_READER[$n]}"
    fi
    KA_PID[$n]=""; KA_READER[$n]=""
    ip -n "$(ka_ns "$n")" addr del "$KA_VIP/24" dev eth0 2>/dev/null
    return 0
}

# ka_reset — both instances stopped, every link up, nobody holds the address.
ka_reset() {
    local n l
    for n in a b; do ka_stop "$n"; done
    for n in a b; do
        for l in 0 1 2; do ip -n "$(ka_ns sw)" link set "$n$l" up; done
        ip -n "$(ka_ns "$n")" neigh flush all 2>/dev/null
    done
    ip -n "$(ka_ns c)" neigh flush all 2>/dev/null
    return 0
}
