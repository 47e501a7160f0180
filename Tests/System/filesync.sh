#!/usr/bin/env bash
# System test: the KUSU file trees ([[sync]]) on the two-node test bed of
# scripts/lib/pair.sh. Both nodes run kusu-ha-rsyncd.service and kusu-ha-sync.service
# from systemd/ (interval_s = 2). Shows: a file written under the tree on the active
# node a appears on the standby b within the interval, with its owner, group, mode and
# symlinks; a file deleted on a disappears on b; excluded files are neither copied nor
# deleted; "kusu-ha sync status" says synchronised on b and paused on a (a is active);
# a file written on b never reaches a (a does not pull, and a's daemon refuses uploads
# even with the password); the daemon refuses a host that is not the peer's heartbeat
# address (with or without the password) and a wrong password from the peer's address;
# each result is in the journal; the puller stops cleanly on SIGTERM; after a's crash
# b becomes active and its status says how old its copy is. Needs rsync on the host
# (the nodes' root is an overlay of /).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/../../scripts/lib/testbed.sh"
. "$here/../../scripts/lib/effector-node.sh"
. "$here/../../scripts/lib/pair.sh"
. "$here/harness.sh"

if ! command -v rsync >/dev/null; then
    t_fail "rsync is installed on the host" "apt-get install -y --no-upgrade rsync"
    t_summary; exit 1
fi

INTERVAL=2
TREE=/srv/kusu-sync-test/repos
SIDE=/srv/kusu-sync-test/local-only
pair_init
W="$TB_DIR/filesync"; mkdir -p "$W"
echo "seed, on both nodes before boot" >"$W/seed.txt"
PAIR_EXTRA_TOML="
[[sync]]
path = \"$TREE\"
interval_s = $INTERVAL
exclude = [\"*.skip\"]

[[sync]]
path = \"$SIDE\"
pull = false

[[sync]]
path = \"/srv/kusu-www\"
interval_s = $INTERVAL"
PAIR_EXTRA_UNITS="$repo/systemd/kusu-ha-rsyncd.service $repo/systemd/kusu-ha-sync.service"
PAIR_EXTRA_FILES="$W/seed.txt:$TREE/seed.txt"

if pair_boot "$W" "$TB_BIN"; then
    t_pass "pair booted: a active, b standby (${PAIR_BOOT_MS} ms)"
else
    t_fail "pair booted"
    t_summary; exit 1
fi

ms() { date +%s%3N; }
on() { local n=$1; shift; pair_exec "$n" sh -c "$*"; }
exists() { pair_exec "$1" test -e "$2"; }
gone() { ! pair_exec "$1" test -e "$2"; }
sync_status() { pair_exec "$1" kusu-ha sync status 2>&1; }
status_matches() { sync_status "$1" | grep -q -- "$2"; }
journal() { pair_exec "$1" journalctl --no-pager -o verbose -u "$2" 2>/dev/null; }

# --- before the puller: contents on a, local leftovers on b ------------------------------
on a "mkdir -p $TREE/sub $SIDE && echo one >$TREE/one.txt && echo deep >$TREE/sub/deep.txt &&
      echo secret >$TREE/private.txt && chown 12345:54321 $TREE/private.txt && chmod 0600 $TREE/private.txt &&
      ln -s sub/deep.txt $TREE/link && echo skip >$TREE/a.skip && echo side-a >$SIDE/side.txt"
on b "echo stale >$TREE/only-on-b.txt && echo mine >$TREE/local.skip"

for n in a b; do pair_exec $n systemctl start kusu-ha-rsyncd.service; done
rsyncd_listens() { pair_exec "$1" sh -c 'ss -Hltn "sport = :873" | grep -q .'; }
for n in a b; do
    if tb_poll 10 rsyncd_listens $n; then t_pass "kusu-ha-rsyncd listens on port 873 on $n"
    else t_fail "kusu-ha-rsyncd listens on port 873 on $n" "$(journal $n kusu-ha-rsyncd.service | grep MESSAGE= | tail -5)"; fi
done
t_match "a's rsyncd.conf allows only b's heartbeat addresses" \
    "$(pair_exec a cat /run/kusu-ha-rsyncd/rsyncd.conf)" 'hosts allow = 198.18.4.12 198.18.8.12'
t_eq "a's secrets file is root's, mode 0600" "$(pair_exec a stat -c '%U %a' /run/kusu-ha-rsyncd/rsyncd.secrets)" "root 600"

for n in a b; do pair_exec $n systemctl start kusu-ha-sync.service; done
t_eq "kusu-ha-sync is active on both nodes" "$(for n in a b; do pair_exec $n systemctl is-active kusu-ha-sync.service; done | tr '\n' ' ')" "active active "

# --- the first pull ------------------------------------------------------------------------
if tb_poll $((INTERVAL + 8)) exists b "$TREE/one.txt"; then t_pass "the tree reaches b"
else t_fail "the tree reaches b" "$(sync_status b; journal b kusu-ha-sync.service | grep -E 'MESSAGE=|SYNC_ERROR' | tail -6)"; fi
t_eq "contents on b" "$(on b "cat $TREE/one.txt $TREE/sub/deep.txt $TREE/seed.txt")" "one
deep
seed, on both nodes before boot"
t_eq "owner, group and mode kept (a 0600 file of another user)" "$(pair_exec b stat -c '%u:%g %a' "$TREE/private.txt")" "12345:54321 600"
t_eq "... and its contents (the daemon reads every file)" "$(on b "cat $TREE/private.txt")" secret
t_eq "symlinks kept as symlinks" "$(pair_exec b readlink "$TREE/link")" sub/deep.txt
t_check "excluded files are not copied" gone b "$TREE/a.skip"
t_check "files gone on a are deleted on b (delete = true)" tb_poll 5 gone b "$TREE/only-on-b.txt"
t_check "excluded files on b are not deleted" exists b "$TREE/local.skip"
t_check "a pull = false tree is not pulled" gone b "$SIDE/side.txt"
t_check "no partial directory is left behind" gone b "$TREE/.kusu-sync-partial"

# --- a change on the active node reaches the standby within the interval --------------------
t0=$(ms)
on a "echo two >$TREE/two.txt"
if tb_poll $((INTERVAL + 2)) exists b "$TREE/two.txt"; then
    t_pass "a file written on a appears on b within interval_s + 2 s ($(( $(ms) - t0 )) ms, interval_s = $INTERVAL)"
else
    t_fail "a file written on a appears on b within interval_s + 2 s" "$(sync_status b)"
fi
t0=$(ms)
on a "rm $TREE/one.txt"
if tb_poll $((INTERVAL + 2)) gone b "$TREE/one.txt"; then
    t_pass "a file deleted on a disappears on b within interval_s + 2 s ($(( $(ms) - t0 )) ms)"
else
    t_fail "a file deleted on a disappears on b" "$(sync_status b)"
fi

# --- status and journal ---------------------------------------------------------------------
echo "# kusu-ha sync status on b:"; sync_status b | sed 's/^/#   /'
echo "# kusu-ha sync status on a:"; sync_status a | sed 's/^/#   /'
t_match "b: the tree is synchronised" "$(sync_status b)" "^$TREE  *synchronised [0-9]* s ago\|^$TREE  *synchronised just now"
t_match "b: the pull = false tree is not pulled" "$(sync_status b)" "^$SIDE  *not pulled here"
t_match "a: paused, a is active" "$(sync_status a)" "^$TREE  *paused: this node is active: it is the source, not a copy"
t_match "the status file is readable by everyone (kusu-hbd reads it as kusu-ha)" \
    "$(pair_exec b stat -c '%a' /run/kusu-ha-sync/status)" '^644$'
t_eq "kusu-ha sync status --json" "$(pair_exec b kusu-ha sync status --json |
    python3 -c 'import json, sys; t = json.load(sys.stdin)["trees"][0]; print(t["path"], t["state"], t["last_success_usec"] > 0)')" \
    "$TREE synchronised True"
b_journal=$(journal b kusu-ha-sync.service)
t_match "b's journal: file tree synchronised" "$b_journal" 'MESSAGE=file tree synchronised'
t_match "... with its fields" "$b_journal" "SYNC_PATH=$TREE"
t_match "... and the counts" "$b_journal" 'SYNC_FILES=[0-9]'
t_match "a's journal: paused, with the reason" "$(journal a kusu-ha-sync.service)" 'SYNC_REASON=this node is active'
t_match "a's rsyncd logs b's pulls to the journal" "$(journal a kusu-ha-rsyncd.service)" 'kusu-sync'

# --- the standby never writes onto the active node -----------------------------------------
on b "echo from-b >$TREE/written-on-b.txt"
if tb_poll $((2 * INTERVAL + 2)) exists a "$TREE/written-on-b.txt"; then
    t_fail "a file written on b is not copied to a"
else
    t_pass "a file written on b is not copied to a (watched for $((2 * INTERVAL + 2)) s)"
fi
t_check "... and b's next pull removes it from b (the copy follows a)" tb_poll $((INTERVAL + 2)) gone b "$TREE/written-on-b.txt"

secret=$(python3 -c 'import hmac, hashlib, sys; print(hmac.new(open(sys.argv[1], "rb").read(), b"kusu-ha rsync v1", hashlib.sha256).hexdigest()[:32])' "$TB_DIR/authkey")
echo pushed >"$W/pushed.txt"
out=$(RSYNC_PASSWORD=$secret ip netns exec "$(tb_ns b)" rsync --contimeout=3 --timeout=5 --address=198.18.4.12 \
    "$W/pushed.txt" "rsync://kusu-sync@198.18.4.11/kusu-0/" 2>&1); rc=$?
t_match "a's daemon refuses an upload from b, even with the password (exit $rc)" "$out" 'read only'
t_check "... nothing arrived" gone a "$TREE/pushed.txt"

# --- who may connect -------------------------------------------------------------------------
out=$(ip netns exec "$(tb_ns c)" rsync --contimeout=3 --timeout=5 "rsync://198.18.0.11/kusu-0/" </dev/null 2>&1); rc=$?
t_match "a host that is not the peer's heartbeat address is refused (exit $rc)" "$out" 'Unknown module\|access denied'
out=$(RSYNC_PASSWORD=$secret ip netns exec "$(tb_ns c)" rsync --contimeout=3 --timeout=5 "rsync://kusu-sync@198.18.0.11/kusu-0/" 2>&1); rc=$?
t_match "... even with the password (exit $rc)" "$out" 'Unknown module\|access denied'
out=$(RSYNC_PASSWORD=wrong ip netns exec "$(tb_ns b)" rsync --contimeout=3 --timeout=5 --address=198.18.4.12 \
    "rsync://kusu-sync@198.18.4.11/kusu-0/" 2>&1); rc=$?
t_match "the peer's address with a wrong password is refused (exit $rc)" "$out" 'auth failed'
out=$(ip netns exec "$(tb_ns b)" rsync --contimeout=3 --timeout=5 --address=198.18.4.12 "rsync://198.18.4.11/" </dev/null 2>&1)
t_eq "the modules are not listed" "$(grep -c kusu- <<<"$out")" 0

# --- units ---------------------------------------------------------------------------------
for unit in kusu-ha-rsyncd kusu-ha-sync; do
    score=$(pair_exec b systemd-analyze security "$unit.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
    echo "# systemd-analyze security $unit.service in node b: $score"
    t_match "$unit.service: exposure rated OK or better" "$score" ' OK$\| SAFE$'
done
pair_exec b systemctl stop kusu-ha-sync.service
t_eq "the puller stops cleanly on SIGTERM" "$(pair_exec b systemctl show -P Result kusu-ha-sync.service) $(pair_exec b systemctl is-active kusu-ha-sync.service)" "success inactive"
pair_exec b systemctl start kusu-ha-sync.service
t_check "... and starts again, remembering the last success" tb_poll 5 status_matches b "synchronised"

# --- failover: b goes on with the data it has -----------------------------------------------
on a "echo after >$TREE/after.txt"
tb_poll $((INTERVAL + 2)) exists b "$TREE/after.txt" || t_fail "the last change reached b before the crash"
# A new file in the HTTP repository tree (nginx serves /srv/kusu-www on the floating address).
on a "echo 'a new repository file' >/srv/kusu-www/new-package.txt"
if tb_poll $((INTERVAL + 2)) exists b /srv/kusu-www/new-package.txt; then
    t_pass "a file written in the HTTP repository tree on a appears on b within the interval"
else
    t_fail "the repository file reaches b"
fi
tree_synchronised() { pair_exec b kusu-ha --no-ask-password status | grep -q 'file tree /srv/kusu-www: synchronised'; }
if tb_poll $((INTERVAL + 3)) tree_synchronised; then
    t_pass "kusu-ha status on b shows the tree synchronised (Heartbeat1.FileSync)"
else
    t_fail "kusu-ha status on b shows the tree synchronised" "$(pair_exec b kusu-ha --no-ask-password status)"
fi
hb_status=$(pair_exec b kusu-ha --no-ask-password status)
t_match "... and the tree not pulled here" "$hb_status" "file tree $SIDE: not pulled here"
pair_crash a
if tb_poll 15 pair_prop_is b Role active; then t_pass "b takes over after a's crash"; else t_fail "b takes over after a's crash" "Role $(pair_prop b Role)"; fi
if tb_poll 5 status_matches b 'paused: this node is active'; then
    t_pass "b's status: paused, b is active now"
else
    t_fail "b's status: paused, b is active now" "$(sync_status b)"
fi
t_match "... and says how old its copy is" "$(sync_status b)" "last synchronised [0-9]* s ago\|last synchronised just now"
echo "# kusu-ha sync status on b after the failover:"; sync_status b | sed 's/^/#   /'
t_eq "b serves the data it has" "$(on b "cat $TREE/two.txt $TREE/after.txt")" "two
after"
fetch_new() { ip netns exec "$(tb_ns c)" python3 -c "import urllib.request; print(urllib.request.urlopen('http://$PAIR_VIP/new-package.txt', timeout=1).read().decode().strip())" 2>/dev/null; }
new_served() { [ "$(fetch_new)" = "a new repository file" ]; }
if tb_poll 10 new_served; then
    t_pass "after the failover b serves the synchronised repository file over HTTP through the floating address"
else
    t_fail "b serves the synchronised file through the floating address" "got '$(fetch_new)'"
fi
t_match "kusu-ha status on b says the copy's age while paused" "$(pair_exec b kusu-ha --no-ask-password status)" 'file tree /srv/kusu-www: paused: this node is active.*copy from'

t_summary
