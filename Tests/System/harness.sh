# shellcheck shell=bash
# A tiny TAP-like harness: each check prints "ok" or "not ok" and the script ends
# with the plain summary line "N passed, N failed".
T_PASSED=0
T_FAILED=0
T_FAILURES=()

t_pass() { T_PASSED=$((T_PASSED + 1)); printf 'ok - %s\n' "$1"; }
t_fail() {
    T_FAILED=$((T_FAILED + 1)); T_FAILURES+=("$1")
    printf 'not ok - %s\n' "$1"
    [ -n "${2:-}" ] && printf '#   %s\n' "$2"
    return 0
}
# t_check NAME CMD... — pass if CMD succeeds.
t_check() { local name=$1; shift; if "$@"; then t_pass "$name"; else t_fail "$name" "command failed: $*"; fi; }
# t_eq NAME GOT WANT
t_eq() { if [ "$2" = "$3" ]; then t_pass "$1"; else t_fail "$1" "got '$2', want '$3'"; fi; }

# t_match NAME TEXT REGEX — pass if TEXT matches the grep regex REGEX (no shell quoting games).
t_match() { if grep -qi -- "$3" <<<"$2"; then t_pass "$1"; else t_fail "$1" "no match for '$3' in: $2"; fi; }

t_summary() {
    local f
    for f in "${T_FAILURES[@]}"; do printf '# failed: %s\n' "$f"; done
    printf '%d passed, %d failed\n' "$T_PASSED" "$T_FAILED"
    [ "$T_FAILED" -eq 0 ]
}
