# shellcheck shell=bash
# The harness of the fault-injection suites (Tests/System/faults.sh, health.sh) on the
# two-node test bed of scripts/lib/pair.sh: who holds the floating address (both nodes'
# namespaces and ARP from the client, every 50 ms), the outage clients see (from the writer
# log), the invariants checked after every run, and the table of outcomes. Source testbed.sh, effector-node.sh, pair.sh and
# Tests/System/harness.sh first; set INTERVAL_MS (the heartbeat interval) and W (the pair's
# directory).
#
# run_scenario NAME FUNCTION runs one scenario while clients write through the address:
# FUNCTION gets the active node, injects the fault and returns once the pair is settled
# again (non-zero if its own checks failed). Before the fault the clients must have had 10
# rows acknowledged. Then: never two holders for longer than one heartbeat interval (and the
# holders sampled no further apart than that), never two MACs answering one ARP request, no
# acknowledged row missing on the active node, at most one writable primary, HTTP, TFTP, a
# DHCP offer and a write through the address. fault_ledger_check (at the end of a suite):
# every row acknowledged in any run is on both nodes. FAULT_ONLY=REGEX runs only the
# matching scenarios; FAULT_LOG_DIR=DIR keeps each run's journals; FAULT_OUTAGE_MAX_MS (default
# 5000) bounds every run's outage (measured until the clients wrote again); FAULT_MUTATE breaks an
# invariant on purpose (see fault__mutate). fault_table prints the table: scenario, runs,
# outcome, outage min/median/max, rows lost.

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

# --- who holds the address: two watchers through every run -----------------------------------------
# scripts/lib/holder-watch.py, one process without a fork per sample, every 50 ms:
# - reads both nodes' network namespaces (netlink sockets opened in them: the namespaces are the
#   test bed's and outlive the containers, so a node that returns after a crash is watched like
#   any other); a node whose links pair_crash cut ($TB_DIR/cut-N) holds nothing for the
#   network. $TB_DIR/holders: "T_BEFORE T_AFTER HOLDER" (ns; HOLDER a, b, both, none or error);
# - asks "who has the address" by ARP from the client's namespace: $TB_DIR/arps, "T_NS MACS"
#   (the MACs that answered that one broadcast): two MACs are two holders as clients see them.
sampler_start() {
    SAMPLES="$TB_DIR/holders"; ARPS="$TB_DIR/arps"
    : >"$SAMPLES"; : >"$ARPS"
    rm -f "$TB_DIR/sampler.stop"
    python3 "$TB_REPO/scripts/lib/holder-watch.py" "$(tb_ns a)" "$(tb_ns b)" "$(tb_ns c)" 198.18.0.50 "$PAIR_VIP" \
        "$([ "$FAULT__M" = sparse ] && echo 0.4 || echo 0.05)" "$TB_DIR" "$TB_DIR/sampler.stop" 300 "$SAMPLES" "$ARPS" \
        2>>"$TB_DIR/holder-watch.err" &
    SAMPLER=$!
    tb_track "$SAMPLER"
    # Watching before the fault: the gaps are measured from here.
    watching() { [ -s "$SAMPLES" ] && [ -s "$ARPS" ]; }
    tb_poll 5 watching || echo "# the watcher did not start: $(tail -2 "$TB_DIR/holder-watch.err" 2>/dev/null)"
    SAMPLER_FROM=$(now_ns)
}
sampler_stop() { SAMPLER_TO=$(now_ns); touch "$TB_DIR/sampler.stop"; wait "$SAMPLER" 2>/dev/null; }
# The longest stretch (ms) with both nodes holding the address, as an upper bound: from the
# start of the last sample that saw one holder or none before it to the end of the first one
# after it (the overlap began and ended somewhere in between). One stray sample scores about
# two sampling periods.
longest_both() {
    awk '$3 == "error" { next }
         $3 == "both" { if (!inside) { inside = 1; from = prev0 ? prev0 : $1 } next }
         { if (inside) { d = ($2 - from) / 1e6; if (d > max) max = d; inside = 0 } prev0 = $1 }
         END { if (inside) { d = ($2 - from) / 1e6; if (d > max) max = d } print int(max) }' "$SAMPLES"
}
# The largest gap (ms) between good samples (an error sample is a gap), counting from the
# sampler's start to its stop (a sampler that died early leaves a gap), their count, and the
# number of error samples.
sample_gaps() {
    awk -v from="$SAMPLER_FROM" -v to="$SAMPLER_TO" 'BEGIN { last = from }
         $3 == "error" { errors++ }
         $3 != "error" { n++; d = ($1 - last) / 1e6; if (d > max) max = d; last = $1 }
         END { d = (to - last) / 1e6; if (d > max) max = d; print int(max), n + 0, errors + 0 }' "$SAMPLES"
}
# ARP: "REQUESTS ANSWERED TWO_MACS LARGEST_GAP_MS" over the run (gaps from start to stop too).
arp_summary() {
    awk -v from="$SAMPLER_FROM" -v to="$SAMPLER_TO" 'BEGIN { last = from }
         { n++; if ($2 != "-") a++; if ($2 ~ /,/) two++; d = ($1 - last) / 1e6; if (d > max) max = d; last = $1 }
         END { d = (to - last) / 1e6; if (d > max) max = d; print n + 0, a + 0, two + 0, int(max) }' "$ARPS"
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
    local mutations
    read -ra mutations <<<"${FAULT_MUTATE:-}"
    FAULT__M=${mutations[$FAULT__RUN]:--}; FAULT__RUN=$((FAULT__RUN + 1))
    : >"$TB_DIR/acked"
    pair_writer_start 120 100000 2
    # Rows acknowledged before the fault, or the run proves nothing about rows kept.
    if ! tb_poll 10 writer_acked 10; then ok=0; t_fail "$name: the clients wrote before the fault" "$(grep -c ' ok ' "$TB_DIR/writer.log" 2>/dev/null) rows acknowledged in 10 s"; fi
    sampler_start
    t0=$(now_ns)
    FAULT_BACK_MS=""   # a scenario may set it: the time from its fault to the service answering again
    "$fn" "$act"      # the fault and the recovery, leaving the pair settled (either node active)
    local rc=$?
    fault__mutate
    # The clients write again before they stop, so the outage the scenario caused is closed
    # (a scenario returns once the pair is settled, maybe before a client reconnected).
    local t_end; t_end=$(now_ns)
    acked_since() { awk -v t="$t_end" '$3 == "ok" && $2 > t { found = 1 } END { exit !found }' "$TB_DIR/writer.log"; }
    if ! tb_poll 10 acked_since; then ok=0; t_fail "$name: the clients write again after the scenario" "no acknowledgement within 10 s"; fi
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
        fault__journal_tail "$t0"
    fi
    both=$(longest_both)
    if [ "$both" -le "$INTERVAL_MS" ]; then t_pass "$name: never two holders longer than ${INTERVAL_MS} ms (longest $both ms)"; else ok=0; t_fail "$name: two holders for $both ms"; fi
    # The watchers watched: samples no further apart than one heartbeat interval (a longer
    # overlap cannot fall between two; SAMPLE_GAP_MS overrides), and the ARP watcher heard answers.
    local gap count errors requests answered two arp_gap
    read -r gap count errors < <(sample_gaps)
    read -r requests answered two arp_gap < <(arp_summary)
    if [ "$count" -ge 2 ] && [ "$gap" -le "${SAMPLE_GAP_MS:-$INTERVAL_MS}" ]; then
        t_pass "$name: the holders sampled densely ($count samples, largest gap $gap ms)"
    else ok=0; t_fail "$name: the holders sampled densely" "$count samples, $errors unreadable, largest gap $gap ms (at most ${SAMPLE_GAP_MS:-$INTERVAL_MS}): $(tail -2 "$TB_DIR/holder-watch.err" 2>/dev/null | tr '\n' ' ')"; fi
    if [ "$two" = 0 ] && [ "$answered" -ge 1 ] && [ "$arp_gap" -le "${SAMPLE_GAP_MS:-$INTERVAL_MS}" ]; then
        t_pass "$name: one MAC answered ARP for the address at a time ($answered of $requests requests answered, largest gap $arp_gap ms)"
    else
        ok=0; t_fail "$name: one MAC answered ARP for the address at a time" \
            "$two of $requests requests answered by two MACs, $answered answered, largest gap $arp_gap ms: $(grep ',' "$ARPS" | head -3 | tr '\n' ' ')"
    fi
    # Never two writable databases: at most one node's PostgreSQL out of recovery.
    local primaries=0 n
    for n in a b; do [ "$(pair_sql "$n" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && primaries=$((primaries + 1)); done
    if [ "$primaries" -le 1 ]; then t_pass "$name: at most one writable primary afterwards"; else ok=0; t_fail "$name: two writable primaries afterwards"; fi
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
    if [ "$out" -gt "${FAULT_OUTAGE_MAX_MS:-5000}" ]; then ok=0; t_fail "$name: outage $out ms, more than ${FAULT_OUTAGE_MAX_MS:-5000} ms"; fi
    if [ -n "${FAULT_LOG_DIR:-}" ]; then   # keep the run's journals, for a closer look
        mkdir -p "$FAULT_LOG_DIR"
        local n since=$(( (t0 / 1000000000) - 5 ))
        for n in a b; do
            pair_exec "$n" journalctl -q -o short-precise --since "@$since" \
                >"$FAULT_LOG_DIR/${name//[^a-z0-9]/_}-$n-$(date +%s).log" 2>&1
        done
    fi
    cat "$TB_DIR/acked" >>"$TB_DIR/acked.all"
    record "$name" "$ok" "$out" "${lost:-0}"
    if [ -n "${FAULT_BACK_MS:-}" ]; then R_BACK[$name]="${R_BACK[$name]:-} $FAULT_BACK_MS"; fi
}
# fault_ledger_check — at the end of a suite: every row acknowledged in any run, on both nodes
# (the standby given 15 s to replay), so a row lost by a later failover or rejoin, or
# missing on the standby, is caught too.
fault_ledger_check() {
    local n lost total
    total=$(sort -u "$TB_DIR/acked.all" 2>/dev/null | wc -l)
    for n in a b; do
        none_lost() { lost=$(pair_acked_lost "$n" "$TB_DIR/acked.all"); [ "$lost" = 0 ]; }
        if [ "$total" -gt 0 ] && tb_poll 15 none_lost; then
            t_pass "every row acknowledged in the suite is on $n ($total rows)"
        else t_fail "every row acknowledged in the suite is on $n" "${lost:-?} of $total missing"; fi
    done
}

# Mutations (FAULT_MUTATE="M1 M2 ...": the Kth run of the suite gets the Kth word, "-" none): a
# deliberate violation, to show that the checks catch it (Tests/System/fault-mutations.sh).
#   two-holders    the standby adds the floating address for 0.6 s after the scenario
#   lost-row       an acknowledged row deleted on the active node after the scenario
#   two-primaries  the standby's PostgreSQL promoted after the scenario (its kusu-hbd stopped)
#   sparse         the holders sampled every 0.4 s during the run
FAULT__RUN=0 FAULT__M=-
fault__mutate() {
    local s
    [ -n "${FAULT_MUTATE:-}" ] || return 0
    echo "# mutation: $FAULT__M"
    s=$(other "$(active_node)")
    case $FAULT__M in
        -|sparse) ;;
        two-holders) ip -n "$(tb_ns "$s")" addr add "$PAIR_VIP/24" dev eth0; sleep 0.6; ip -n "$(tb_ns "$s")" addr del "$PAIR_VIP/24" dev eth0 ;;
        lost-row) pair_sql "$(active_node)" "DELETE FROM rows WHERE id = $(head -1 "$TB_DIR/acked" | cut -d'|' -f1)" >/dev/null ;;
        two-primaries)   # (kusu-hbd stopped first: it would rejoin a standby's database found primary)
            pair_exec "$s" systemctl stop kusu-hbd.service kusu-hbd.socket; pair_sql "$s" 'SELECT pg_promote()' >/dev/null ;;
    esac
}
# fault__journal_tail T0_NS — what both nodes' daemons said since T0, with the reasons (the last
# 40 lines each), so that a failure in CI can be read from its log alone.
fault__journal_tail() {
    local n since=$(( $1 / 1000000000 - 1 ))
    for n in a b; do
        echo "#   --- $n: kusu-hbd, kusu-effectord and the KUSU units since the fault"
        pair_exec "$n" journalctl -q --since "@$since" -u kusu-hbd -u kusu-effectord -u nginx -u kusu-dnsmasq \
            -o json 2>/dev/null | python3 "$TB_REPO/scripts/lib/journal-tail.py" | tail -40
    done
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
