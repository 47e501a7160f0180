# shellcheck shell=bash
# The harness of the fault-injection suites (Tests/System/faults.sh, health.sh) on the
# two-node test bed of scripts/lib/pair.sh: who holds the floating address (a sampler, every
# 50 ms), the outage clients see (from the writer log), the invariants checked after every
# run, and the table of outcomes. Source testbed.sh, effector-node.sh, pair.sh and
# Tests/System/harness.sh first; set INTERVAL_MS (the heartbeat interval) and W (the pair's
# directory).
#
# run_scenario NAME FUNCTION runs one scenario while clients write through the address:
# FUNCTION gets the active node, injects the fault and returns once the pair is settled
# again (non-zero if its own checks failed). Then: never two holders for longer than one
# heartbeat interval, no acknowledged row missing on the active node, HTTP, TFTP, a DHCP
# offer and a write through the address. FAULT_ONLY=REGEX runs only the matching
# scenarios; FAULT_LOG_DIR=DIR keeps each run's journals. fault_table prints the table:
# scenario, runs, outcome, outage min/median/max, rows lost.

other() { [ "$1" = a ] && echo b || echo a; }
now_ns() { date +%s%N; }
# The active node: the one whose monitor says active and holds the address.
active_node() { local h; h=$(pair_vip_holder); case $h in a|b) echo "$h" ;; *) echo none ;; esac; }
in_sync() { pair_prop_is "$(other "$1")" Synchronous sync; }
settled() {   # settled ACTIVE — ACTIVE active with the address, the other standby, in sync and streaming
    local s; s=$(other "$1")
    pair_prop_is "$1" Role active && pair_prop_is "$s" Role standby && pair_vip_holder_is "$1" &&
        pair_prop_is "$s" Synchronous sync && pair__units_active "$1" &&
        # (In sync is also said while the old primary of a handover rejoins: streaming too, as the
        # active node's effector sees it, so a switchback is not refused.)
        [ "$(pair_effector_prop "$1" ReplicationState)" = streaming ]
}

# --- the sampler: who holds the address, every 50 ms ---------------------------------------------
sampler_start() {
    SAMPLES="$TB_DIR/holders"
    : >"$SAMPLES"
    rm -f "$TB_DIR/sampler.stop"
    (
        for _ in $(seq 1 6000); do   # ≤ 5 min
            [ -e "$TB_DIR/sampler.stop" ] && break
            echo "$(now_ns) $(pair_vip_holder)"
            sleep 0.05
        done
    ) >>"$SAMPLES" 2>/dev/null &
    SAMPLER=$!
    tb_track "$SAMPLER"
}
sampler_stop() { touch "$TB_DIR/sampler.stop"; wait "$SAMPLER" 2>/dev/null; }
# The longest stretch (ms) of consecutive samples with both nodes holding the address.
longest_both() {
    awk '$2 == "both" { if (!start) start = $1; last = $1; next }
         { if (start) { d = (last - start) / 1e6 + 50; if (d > max) max = d; start = 0 } }
         END { if (start) { d = (last - start) / 1e6 + 50; if (d > max) max = d } print int(max) }' "$SAMPLES"
}

# --- outage: the longest time without an acknowledged write, from the writer log -------------------
# outage_ms T0 — the largest gap between consecutive acknowledged writes (their completion
# times) that ends after T0 (ns), including the gap from the last acknowledgement before T0.
outage_ms() {
    awk -v t0="$1" '$3 == "ok" { print $2 }' "$TB_DIR/writer.log" | sort -n |
        awk -v t0="$1" 'NR > 1 && $1 > t0 { d = ($1 - prev) / 1e6; if (d > max) max = d } { prev = $1 } END { print int(max) }'
}

# --- the invariants after each run -------------------------------------------------------------------
declare -A R_RUNS=() R_FAIL=() R_OUT=() R_LOST=() R_BACK=()
SCENARIOS=()
record() {   # record SCENARIO OK OUTAGE_MS LOST
    local s=$1
    [ -n "${R_RUNS[$s]:-}" ] || SCENARIOS+=("$s")
    R_RUNS[$s]=$(( ${R_RUNS[$s]:-0} + 1 ))
    [ "$2" = 1 ] || R_FAIL[$s]=$(( ${R_FAIL[$s]:-0} + 1 ))
    R_OUT[$s]="${R_OUT[$s]:-} $3"
    R_LOST[$s]=$(( ${R_LOST[$s]:-0} + $4 ))
}

# run_scenario NAME FUNCTION — one run: writers and sampler on, the fault, recovery, checks.
run_scenario() {
    local name=$1 fn=$2 act before ok=1 t0 lost both out services
    [[ "$name" =~ ${FAULT_ONLY:-.} ]] || return 0   # FAULT_ONLY=REGEX: only the scenarios it matches
    act=$(active_node); before=$act
    if [ "$act" = none ] || ! tb_poll 30 settled "$act"; then
        t_fail "$name: the pair is settled before the run" "holder $(pair_vip_holder), a $(pair_prop a Role)/$(pair_prop a Synchronous), b $(pair_prop b Role)/$(pair_prop b Synchronous)"
        record "$name" 0 0 0
        return
    fi
    : >"$TB_DIR/acked"
    pair_writer_start 120 100000 2
    tb_poll 10 writer_acked 10 || true
    sampler_start
    t0=$(now_ns)
    FAULT_BACK_MS=""   # a scenario may set it: the time from its fault to the service answering again
    "$fn" "$act"      # the fault and the recovery, leaving the pair settled (either node active)
    local rc=$?
    pair_writer_stop
    sampler_stop
    act=$(active_node)
    if [ "$rc" != 0 ]; then
        ok=0; t_fail "$name: the scenario's own checks"
        local n
        for n in a b; do   # the state it ended in, for the record
            echo "#   $n: Role $(pair_prop "$n" Role), Synchronous $(pair_prop "$n" Synchronous), units $(pair_units_state "$n" 2>/dev/null)," \
                "database $(pair_sql "$n" 'SELECT pg_is_in_recovery()' 2>/dev/null), holder $(pair_vip_holder)"
        done
    fi
    both=$(longest_both)
    if [ "$both" -le "$INTERVAL_MS" ]; then t_pass "$name: never two holders longer than ${INTERVAL_MS} ms (longest $both ms)"; else ok=0; t_fail "$name: two holders for $both ms"; fi
    if [ "$act" = none ]; then
        ok=0; lost=$(wc -l <"$TB_DIR/acked"); t_fail "$name: nobody holds the address afterwards"
    else
        lost=$(pair_acked_lost "$act")
        if [ "$lost" = 0 ]; then t_pass "$name: no acknowledged row lost ($(sort -u "$TB_DIR/acked" | wc -l) rows, active: $act)"; else ok=0; t_fail "$name: $lost acknowledged rows missing on $act"; fi
    fi
    services="$(pair_client_http_ok && echo http) $(tb_poll 5 pair_client_tftp_ok && echo tftp) $(tb_poll 5 pair_client_dhcp_ok && echo dhcp) $(PAIR_WRITE_TIMEOUT=3 pair_client_write after-run >/dev/null && echo sql)"
    if [ "$services" = "http tftp dhcp sql" ]; then t_pass "$name: HTTP, TFTP, DHCP and SQL answer through the address afterwards"; else ok=0; t_fail "$name: services afterwards" "answering: $services"; fi
    out=$(outage_ms "$t0")
    echo "# $name: outage $out ms, active before/after: $before/$act"
    if [ -n "${FAULT_LOG_DIR:-}" ]; then   # keep the run's journals, for a closer look
        mkdir -p "$FAULT_LOG_DIR"
        local n since=$(( (t0 / 1000000000) - 5 ))
        for n in a b; do
            pair_exec "$n" journalctl -q -o short-precise --since "@$since" \
                >"$FAULT_LOG_DIR/${name//[^a-z0-9]/_}-$n-$(date +%s).log" 2>&1
        done
    fi
    record "$name" "$ok" "$out" "${lost:-0}"
    if [ -n "${FAULT_BACK_MS:-}" ]; then R_BACK[$name]="${R_BACK[$name]:-} $FAULT_BACK_MS"; fi
}
writer_acked() { [ "$(grep -c ' ok ' "$TB_DIR/writer.log" 2>/dev/null)" -ge "$1" ]; }

fault_table() {
    local s mn md mx fails back
    echo
    if [ "${#R_BACK[@]}" -gt 0 ]; then
        printf '# %-44s %4s  %-8s %20s %20s  %s\n' "scenario" "runs" "outcome" "service back ms" "SQL outage ms" "rows lost"
    else
        printf '# %-40s %4s  %-8s %22s  %s\n' "scenario" "runs" "outcome" "outage ms min/med/max" "rows lost"
    fi
    for s in "${SCENARIOS[@]}"; do
        read -r mn md mx < <(fault__spread "${R_OUT[$s]}")
        fails=${R_FAIL[$s]:-0}
        if [ "${#R_BACK[@]}" -gt 0 ]; then
            back=$(fault__spread "${R_BACK[$s]:-}" | tr ' ' '/')
            printf '# %-44s %4s  %-8s %20s %20s  %s\n' "$s" "${R_RUNS[$s]}" "$([ "$fails" = 0 ] && echo ok || echo "$fails FAIL")" \
                "$back" "$mn/$md/$mx" "${R_LOST[$s]}"
        else
            printf '# %-40s %4s  %-8s %22s  %s\n' "$s" "${R_RUNS[$s]}" "$([ "$fails" = 0 ] && echo ok || echo "$fails FAIL")" "$mn/$md/$mx" "${R_LOST[$s]}"
        fi
    done
}
# fault__spread "N N N" — "min median max" (the lower median of an even count).
fault__spread() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[1], v[int((NR + 1) / 2)], v[NR] }'; }
