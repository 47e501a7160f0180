#!/usr/bin/env bash
# System test: kusu-hbd --check-config refuses bad configuration and key files
# with the file, the line where known and what is wrong, and accepts a good one.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/harness.sh"
tb_init
tb_users
HBD="$TB_BIN/kusu-hbd"
tb_config a

# check NAME WANT_STATUS PATTERN [as-user] — run --check-config on $TB_DIR/a/kusu-ha.toml.
check() {
    local name=$1 want=$2 pattern=$3 out status
    if [ "${4:-}" = kusu-ha ]; then
        out=$(setpriv --reuid=kusu-ha --regid=kusu-ha --clear-groups "$HBD" --check-config --config "$TB_DIR/a/kusu-ha.toml" 2>&1)
    else
        out=$("$HBD" --check-config --config "$TB_DIR/a/kusu-ha.toml" 2>&1)
    fi
    status=$?
    if [ "$want" = 0 ] && [ "$status" -ne 0 ]; then t_fail "$name" "exit $status: $out"; return; fi
    if [ "$want" != 0 ] && [ "$status" -eq 0 ]; then t_fail "$name" "accepted: $out"; return; fi
    if grep -qE -- "$pattern" <<<"$out"; then t_pass "$name"; else t_fail "$name" "output: $out"; fi
}
edit() { python3 - "$TB_DIR/a/kusu-ha.toml" "$@" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
assert old in text, old
open(path, "w").write(text.replace(old, new, 1))
PY
}
cfg="$TB_DIR/a/kusu-ha.toml"

check "a valid configuration is accepted" 0 "valid; cluster kusu, this node installer, peer failover on 2 link"
check "the key file is readable by kusu-ha" 0 "valid" kusu-ha

edit 'tie_breakers = []' 'tie_breakers = []
dead_ms = 300'
check "dead_ms not greater than twice interval_ms is refused with its line" 2 "kusu-ha.toml:6: cluster.dead_ms = 300 must be greater than twice cluster.interval_ms"
tb_config a "colour = \"blue\""
check "an unknown key is refused with its line" 2 "kusu-ha.toml:6: .*colour"
tb_config a "port = \"694\""
check "a wrong type is refused" 2 "kusu-ha.toml:6: .*port"
tb_config a
edit '"198.18.4.12"' '"198.18.4.300"'
check "a bad address is refused" 2 "kusu-ha.toml:[0-9]+: .*198.18.4.300"
tb_config a
edit 'node = "installer"' 'node = "elsewhere"'
check "a node missing from [[nodes]] is refused" 2 "elsewhere"
tb_config a
edit 'name = "kusu"' 'name = "kusu'
check "a TOML syntax error is refused with its line" 2 "kusu-ha.toml:2"

tb_config a
mv "$TB_DIR/authkey" "$TB_DIR/authkey.saved"
check "a missing key file is refused naming it" 2 "authkey: .*No such file"
: >"$TB_DIR/authkey"
check "an empty key file is refused" 2 "authkey: .*empty"
mv "$TB_DIR/authkey.saved" "$TB_DIR/authkey"; chown root:root "$TB_DIR/authkey"
check "an unreadable key file is refused" 2 "authkey: .*Permission denied" kusu-ha
chown kusu-ha:kusu-ha "$TB_DIR/authkey"; chmod 0644 "$TB_DIR/authkey"
check "a key file readable by others is refused, with the fix" 2 "authkey: the heartbeat key file is open to others \(mode 0644\).*chmod 0400" kusu-ha
chmod 0420 "$TB_DIR/authkey"
check "a key file writable by its group is refused" 2 "authkey: the heartbeat key file is writable by its group" kusu-ha
chown nobody:kusu-ha "$TB_DIR/authkey"; chmod 0440 "$TB_DIR/authkey"
check "a key file of another user is refused" 2 "authkey: the heartbeat key file belongs to uid [0-9]+, neither root, kusu-ha nor this user"
chown root:kusu-ha "$TB_DIR/authkey"; chmod 0440 "$TB_DIR/authkey"
check "a key file root's and readable by the group kusu-ha is accepted" 0 "valid" kusu-ha
chown kusu-ha:kusu-ha "$TB_DIR/authkey"; chmod 0400 "$TB_DIR/authkey"
out=$("$HBD" --check-config --config "$TB_DIR/nowhere.toml" 2>&1); status=$?
if [ $status -ne 0 ] && grep -q "nowhere.toml: .*No such file" <<<"$out"; then t_pass "a missing configuration is refused naming it"; else t_fail "a missing configuration is refused naming it" "$out"; fi
out=$("$HBD" --help 2>&1)
if grep -q -- '--config <path>' <<<"$out" && grep -q -- '--check-config' <<<"$out"; then t_pass "--help documents --config and --check-config"
else t_fail "--help documents --config and --check-config" "$out"; fi

t_summary
