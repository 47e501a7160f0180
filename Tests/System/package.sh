#!/usr/bin/env bash
# System test: the Debian package and the RPM spec.
#
# Builds the .deb from the working tree (scripts/build-deb.sh: a release build
# inside dpkg-buildpackage, then lintian), checks that lintian is clean and
# that the RPM spec parses with the same layout, then installs the package with
# dpkg -i in a fresh test-bed node (systemd 252 as PID 1 on a throw-away
# overlay of /, in its own network namespace, without the kusu-ha users the
# host may have): files in place, users and group created by sysusers.d, a
# heartbeat key, units enabled but not started, the example configuration
# valid. Then it configures the node, starts kusu-hbd from its units, reads
# both services over the node's system bus (kusu-effectord bus-activated),
# prints and bounds `systemd-analyze security`, and removes (configuration
# kept) and purges (nothing left) the package.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/scripts/lib/testbed.sh"
. "$repo/scripts/lib/node.sh"
. "$repo/scripts/lib/package.sh"
. "$here/harness.sh"

[ "$(id -u)" = 0 ] || { echo "package.sh: run as root (dpkg-buildpackage, containers)" >&2; exit 1; }
export TMPDIR=${TMPDIR:-$repo/.build-tmp}
mkdir -p "$TMPDIR"
case ":$PATH:" in *:/opt/swift/usr/bin:*) ;; *) PATH=$PATH:/opt/swift/usr/bin ;; esac

# The test bed's network and cleanup, without tb_init (no debug build is needed here).
TB_ID=$$
TB_DIR=$(mktemp -d "$TMPDIR/kusu-ha-pkg.XXXXXX")
chmod 0755 "$TB_DIR"
trap 'rc=$?; set +e; node_cleanup; tb_cleanup; pkg_cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM
NODE=kha-$TB_ID-pkg
H=org.kusu.Heartbeat1; HP=/org/kusu/Heartbeat1
E=org.kusu.Effector1; EP=/org/kusu/Effector1
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
lacks() { ! grep -qE -- "$1" "$2"; }                    # lacks REGEX FILE
is_active() { [ "$(node_exec "$NODE" systemctl is-active "$1" 2>/dev/null)" = active ]; }

# The installed layout (Debian 12: units in /lib/systemd/system, which is
# /usr/lib/systemd/system on its merged /usr) and the source of each file.
declare -A SOURCE=(
    [/lib/systemd/system/kusu-hbd.service]=systemd/kusu-hbd.service
    [/lib/systemd/system/kusu-hbd.socket]=systemd/kusu-hbd.socket
    [/lib/systemd/system/kusu-effectord.service]=systemd/kusu-effectord.service
    [/lib/systemd/system/kusu-ha-rsyncd.service]=systemd/kusu-ha-rsyncd.service
    [/lib/systemd/system/kusu-ha-sync.service]=systemd/kusu-ha-sync.service
    [/usr/lib/systemd/catalog/kusu-ha.catalog]=systemd/kusu-ha.catalog
    [/usr/lib/sysusers.d/kusu-ha.conf]=systemd/kusu-ha.sysusers
    [/usr/share/dbus-1/system.d/org.kusu.Heartbeat1.conf]=dbus/org.kusu.Heartbeat1.conf
    [/usr/share/dbus-1/system.d/org.kusu.Effector1.conf]=dbus/org.kusu.Effector1.conf
    [/usr/share/dbus-1/interfaces/org.kusu.Heartbeat1.xml]=dbus/org.kusu.Heartbeat1.xml
    [/usr/share/dbus-1/interfaces/org.kusu.Effector1.xml]=dbus/org.kusu.Effector1.xml
    [/usr/share/dbus-1/system-services/org.kusu.Effector1.service]=dbus/org.kusu.Effector1.service
    [/usr/share/polkit-1/actions/org.kusu.ha.policy]=polkit/org.kusu.ha.policy
    [/usr/share/polkit-1/rules.d/60-kusu-ha.rules]=polkit/org.kusu.ha.rules
    [/etc/kusu-ha/kusu-ha.toml]=packaging/debian/kusu-ha.toml
)
PROGRAMS=(/usr/bin/kusu-ha /usr/sbin/kusu-hbd /usr/sbin/kusu-effectord)
GENERATED=(
    /usr/share/man/man1/kusu-ha.1.gz /usr/share/man/man5/kusu-ha.toml.5.gz
    /usr/share/man/man8/kusu-hbd.8.gz /usr/share/man/man8/kusu-effectord.8.gz
    /usr/share/bash-completion/completions/kusu-ha /usr/share/zsh/vendor-completions/_kusu-ha
    /usr/share/fish/vendor_completions.d/kusu-ha.fish
)

# --- build and lintian -----------------------------------------------------------
t0=$(date +%s%N)
if pkg_deb >/dev/null; then
    t_pass "the package builds from the tree and lintian reports no error or warning ($(( $(ms_since "$t0") / 1000 )) s)"
else
    t_fail "the package builds from the tree and lintian reports no error or warning" "see $PKG_DEB_DIR/build-deb.log"
    t_summary; exit 1
fi
echo "# $PKG_DEB ($(du -h "$PKG_DEB" | cut -f1))"
lintian_log=$(pkg_lintian_log)
sed 's/^/# lintian: /' "$lintian_log"
t_check "lintian: no E: or W: line" lacks '^[EW]: ' "$lintian_log"
# Each lintian override is preceded by a comment saying why.
overrides=$repo/packaging/debian/kusu-ha.lintian-overrides
if [ -f "$overrides" ]; then
    # (a blank line ends a group; a group of overrides needs a comment before it)
    bare=$(awk '/^[[:space:]]*$/ { c = 0; next } /^#/ { c = 1; next } !c { print }' "$overrides")
    t_eq "every lintian override carries a comment" "$bare" ""
fi
# The package's files and symlinks (not its directories).
dpkg-deb -c "$PKG_DEB" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|' >"$TB_DIR/contents.list"
t_check "the test tools are not packaged" lacks 'kusu-hb-inject|unit-manager-probe' "$TB_DIR/contents.list"
t_eq "the example configuration is the only conffile" \
    "$(dpkg-deb --ctrl-tarfile "$PKG_DEB" | tar -xOf - ./conffiles)" /etc/kusu-ha/kusu-ha.toml

# --- the documented keys ---------------------------------------------------------------
# Every section and key the parser knows (Sources/ClusterCore/Config+Parsing.swift, Config+Health.swift)
# is in the example configuration and in kusu-ha.toml(5).
undocumented=$(python3 - "$repo" <<'PY'
import re, sys
repo = sys.argv[1]
src = open(f"{repo}/Sources/ClusterCore/Config+Parsing.swift").read() + open(f"{repo}/Sources/ClusterCore/Config+Health.swift").read()
example = open(f"{repo}/packaging/debian/kusu-ha.toml").read()
manual = open(f"{repo}/man/kusu-ha.toml.5").read()
missing = []
for name, body in re.findall(r"static let (\w+) = \[(.*?)\]", src, re.S):
    if name == "checkKinds": continue   # values of [[checks]] kind, not keys
    for word in re.findall(r'"([a-z_]+)"', body):
        if name == "sections":
            if not re.search(rf"^#? ?\[\[?{word}\]?\]", example, re.M): missing.append(f"example:[{word}]")
            if not re.search(rf'^\.SH "?\[\[?{word}\]?\]"?$', manual, re.M): missing.append(f"manual:[{word}]")
        else:
            if not re.search(rf"^#? ?{word} = ", example, re.M): missing.append(f"example:{word}")
            if not re.search(rf"^\.BR {word} ", manual, re.M): missing.append(f"manual:{word}")
print(" ".join(missing))
PY
)
t_eq "every configuration section and key is in the example configuration and kusu-ha.toml(5)" "$undocumented" ""

# --- the RPM spec -------------------------------------------------------------------
if ! command -v rpmspec >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-upgrade --no-install-recommends rpm >/dev/null 2>&1
fi
spec=$repo/packaging/rpm/kusu-ha.spec
if out=$(rpmspec --parse "$spec" 2>&1); then t_pass "rpmspec --parse accepts packaging/rpm/kusu-ha.spec"
else t_fail "rpmspec --parse accepts packaging/rpm/kusu-ha.spec" "$(tail -5 <<<"$out")"; fi
# Debian's rpm has no systemd-rpm-macros: give the directories their RHEL values.
rhel=(--define '_unitdir /usr/lib/systemd/system' --define '_sysusersdir /usr/lib/sysusers.d'
      --define '_sharedstatedir /var/lib')
files=$(rpmspec --parse "${rhel[@]}" "$spec" 2>/dev/null | sed -n '/^%files/,/^%changelog/p')
missing=""
for f in "${!SOURCE[@]}" "${PROGRAMS[@]}" "${GENERATED[@]}"; do
    f=${f%.gz}; f=${f/#\/lib\/systemd/\/usr\/lib\/systemd}; f=${f/vendor-completions/site-functions}
    grep -qF -- "$f" <<<"$files" || missing+=" $f"
done
t_eq "the RPM spec packages the same files" "${missing# }" ""

# --- a fresh node -----------------------------------------------------------------
tb_network                          # the node lives in netns b: eth0 198.18.0.12, eth1 198.18.4.12
W=$TB_DIR/node; mkdir -p "$W/units"
printf '[Unit]\nDescription=kusu-ha package test node\nWants=dbus.service polkit.service\nAfter=dbus.service polkit.service\n' \
    >"$W/units/kusu-node.target"
node_boot "$NODE" "$(tb_ns b)" "$W/units" || tb_die "the node did not boot"
t_pass "node booted in ${NODE_BOOT_MS} ms"
# The host may have the users from other tests (its / is the node's lower layer):
# the node starts without them, as a fresh machine would.
node_exec "$NODE" sh -c 'if id kusu-ha >/dev/null 2>&1; then userdel kusu-ha; fi
    for g in kusu-ha kusu-admin; do if getent group $g >/dev/null; then groupdel $g; fi; done
    rm -rf /etc/kusu-ha /var/lib/kusu-ha'
# This machine's / carries Docker's /usr/sbin/policy-rc.d ("exit 101": no package
# may start or stop a service); a real node has none.
node_exec "$NODE" rm -f /usr/sbin/policy-rc.d
t_check "the node has no user kusu-ha and no group kusu-admin before the install" \
    node_exec "$NODE" sh -c '! id kusu-ha >/dev/null 2>&1 && ! getent group kusu-admin >/dev/null'

# --- dpkg -i ------------------------------------------------------------------------
t0=$(date +%s%N)
if pkg_install "$NODE" "$PKG_DEB" 2>"$TB_DIR/dpkg-i.log"; then t_pass "dpkg -i installs the package in the node ($(ms_since "$t0") ms)"
else t_fail "dpkg -i installs the package in the node" "$(tail -10 "$TB_DIR/dpkg-i.log")"; fi
sed 's/^/# dpkg -i: /' "$TB_DIR/dpkg-i.log" | grep -v -e 'Reading database' -e '^# dpkg -i: $' | head -20

missing=""; differ=""
for f in "${PROGRAMS[@]}" "${GENERATED[@]}"; do
    node_exec "$NODE" test -f "$f" || missing+=" $f"
done
for f in "${!SOURCE[@]}"; do
    if ! node_exec "$NODE" test -f "$f"; then missing+=" $f"
    elif ! node_exec "$NODE" cat "$f" | cmp -s - "$repo/${SOURCE[$f]}"; then differ+=" $f"; fi
done
t_eq "every file of the layout is installed" "${missing# }" ""
t_eq "units, sysusers.d, bus policy, interfaces, polkit files and the example configuration are the tree's" "${differ# }" ""
t_check "units are found at /usr/lib/systemd/system (merged /usr)" node_exec "$NODE" test -f /usr/lib/systemd/system/kusu-hbd.service
t_check "the programs need no Swift library at run time" \
    node_exec "$NODE" sh -c '! ldd /usr/bin/kusu-ha /usr/sbin/kusu-hbd /usr/sbin/kusu-effectord | grep -qiE "swift|not found"'
t_check "kusu-hb-inject and unit-manager-probe are not installed" \
    node_exec "$NODE" sh -c '! dpkg -L kusu-ha | grep -qE "kusu-hb-inject|unit-manager-probe"'

t_check "user kusu-ha exists (sysusers.d), home /var/lib/kusu-ha, no login shell" \
    node_exec "$NODE" sh -c 'getent passwd kusu-ha | grep -qE "^kusu-ha:x:[0-9]+:[0-9]+:[^:]*:/var/lib/kusu-ha:/usr/sbin/nologin$"'
t_check "group kusu-admin exists" node_exec "$NODE" sh -c 'getent group kusu-admin >/dev/null'
t_eq "the heartbeat key: 32 bytes, mode 0400, owner kusu-ha" \
    "$(node_exec "$NODE" stat -c '%s %a %U:%G' /etc/kusu-ha/authkey 2>&1)" "32 400 kusu-ha:kusu-ha"
for u in kusu-hbd.service kusu-hbd.socket kusu-ha-rsyncd.service kusu-ha-sync.service; do
    t_eq "$u is enabled" "$(node_exec "$NODE" systemctl is-enabled "$u" 2>&1)" enabled
done
t_match "the journal catalog is indexed (journalctl --list-catalog)" \
    "$(node_exec "$NODE" journalctl --list-catalog 2>&1 | grep a30b36cf91914594af3fd936fdd4ee1b)" 'takeover complete'
t_eq "kusu-effectord.service is static (bus-activated)" "$(node_exec "$NODE" systemctl is-enabled kusu-effectord.service 2>&1)" static
for u in kusu-hbd.service kusu-hbd.socket kusu-effectord.service kusu-ha-rsyncd.service kusu-ha-sync.service; do
    t_eq "$u is not started by the install" "$(node_exec "$NODE" systemctl is-active "$u" 2>&1)" inactive
done
out=$(node_exec "$NODE" setpriv --reuid=kusu-ha --regid=kusu-ha --clear-groups kusu-hbd --check-config 2>&1)
t_match "the example configuration and the key are valid (kusu-hbd --check-config as kusu-ha)" "$out" \
    '^/etc/kusu-ha/kusu-ha.toml: valid; cluster kusu, this node installer, peer failover'
out=$(node_exec "$NODE" env MANWIDTH=80 man 5 kusu-ha.toml 2>&1)
t_match "man 5 kusu-ha.toml documents auth_key_file" "$out" 'auth_key_file'
out=$(node_exec "$NODE" env MANWIDTH=80 man 8 kusu-hbd 2>&1)
t_match "man 8 kusu-hbd documents --check-config" "$out" 'check-config'

# --- configured and started ---------------------------------------------------------
# Two links; no database; the floating address on eth0; no automatic action
# (there is no peer).
node_exec "$NODE" sh -c 'cat >/etc/kusu-ha/kusu-ha.toml' <<'TOML'
[cluster]
node = "failover"
tie_breakers = []
auto_failover = false

[[nodes]]
name = "installer"
priority = 100
addresses = ["198.18.0.11", "198.18.4.11"]

[[nodes]]
name = "failover"
priority = 50
addresses = ["198.18.0.12", "198.18.4.12"]

[[addresses]]
address = "198.18.0.100/24"
interface = "eth0"
TOML
prop() { node_exec "$NODE" busctl get-property "$1" "$2" "$1" "$3" 2>&1; }
t_eq "kusu-effectord is not running before the first call" "$(node_exec "$NODE" systemctl is-active kusu-effectord.service)" inactive
t0=$(date +%s%N)
t_eq "reading Effector1.Busy bus-activates kusu-effectord" "$(prop $E $EP Busy)" "b false"
echo "# activation and first read: $(ms_since "$t0") ms"
if tb_poll 10 is_active kusu-effectord.service; then
    t_pass "kusu-effectord.service is active after activation"
else t_fail "kusu-effectord.service is active after activation" "$(node_exec "$NODE" systemctl status kusu-effectord.service 2>&1 | tail -5)"; fi
t_eq "Effector1.Addresses: nothing held" "$(prop $E $EP Addresses)" "as 0"

t0=$(date +%s%N)
node_exec "$NODE" systemctl start kusu-hbd.socket kusu-hbd.service
if tb_poll 10 is_active kusu-hbd.service; then
    t_pass "kusu-hbd.service is active ($(ms_since "$t0") ms)"
else t_fail "kusu-hbd.service is active" "$(node_exec "$NODE" journalctl -u kusu-hbd --no-pager 2>&1 | tail -5)"; fi
t_eq "Heartbeat1.NodeName answers on the bus" "$(prop $H $HP NodeName)" 's "failover"'
t_eq "Heartbeat1.Role is standby" "$(prop $H $HP Role)" 's "standby"'
pid=$(node_exec "$NODE" systemctl show -p MainPID --value kusu-hbd.service)
t_eq "kusu-hbd runs as kusu-ha" "$(node_exec "$NODE" ps -o user= -p "$pid" 2>&1)" kusu-ha
t_eq "kusu-hbd keeps its state in /var/lib/kusu-ha, owned by kusu-ha" \
    "$(node_exec "$NODE" stat -c '%a %U' /var/lib/kusu-ha 2>&1)" "750 kusu-ha"

# --- systemd-analyze security -------------------------------------------------------
# The targets: kusu-hbd 2.0 or less, kusu-effectord 4.5 or less.
for spec in kusu-hbd.service:2.0 kusu-effectord.service:4.5; do
    unit=${spec%%:*} limit=${spec#*:}
    line=$(node_exec "$NODE" systemd-analyze security --no-pager "$unit" 2>&1 | grep 'Overall exposure level')
    echo "# ${line#→ }"
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$line")
    if [ -n "$score" ] && awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s <= l) }'; then
        t_pass "systemd-analyze security $unit: $score <= $limit"
    else t_fail "systemd-analyze security $unit: ${score:-?} <= $limit" "$line"; fi
done

# --- upgrade ---------------------------------------------------------------------------
# dpkg -i of the same package again runs the upgrade path (postinst configure
# with the old version): kusu-hbd is restarted, kusu-effectord is left alone.
main_pid() { node_exec "$NODE" systemctl show -p MainPID --value "$1"; }
hbd_pid=$(main_pid kusu-hbd.service); eff_pid=$(main_pid kusu-effectord.service)
key_sum=$(node_exec "$NODE" sha256sum /etc/kusu-ha/authkey)
if pkg_install "$NODE" "$PKG_DEB" 2>"$TB_DIR/dpkg-upgrade.log"; then t_pass "dpkg -i over the installed package (upgrade path)"
else t_fail "dpkg -i over the installed package (upgrade path)" "$(tail -5 "$TB_DIR/dpkg-upgrade.log")"; fi
new_hbd=$(main_pid kusu-hbd.service)
if [ "$new_hbd" != "$hbd_pid" ] && [ "$new_hbd" != 0 ] && is_active kusu-hbd.service; then t_pass "the upgrade restarted kusu-hbd"
else t_fail "the upgrade restarted kusu-hbd" "MainPID $hbd_pid -> $new_hbd, $(node_exec "$NODE" systemctl is-active kusu-hbd.service)"; fi
t_eq "the upgrade left kusu-effectord running, not restarted" "$(main_pid kusu-effectord.service)" "$eff_pid"
hbd_answers() { [ "$(prop $H $HP NodeName)" = 's "failover"' ]; }
t_check "kusu-hbd answers on the bus after the upgrade" tb_poll 10 hbd_answers
t_eq "the upgrade kept the key" "$(node_exec "$NODE" sha256sum /etc/kusu-ha/authkey)" "$key_sum"

# --- dpkg -r ------------------------------------------------------------------------
if pkg_remove "$NODE" 2>"$TB_DIR/dpkg-r.log"; then t_pass "dpkg -r removes the package"
else t_fail "dpkg -r removes the package" "$(tail -5 "$TB_DIR/dpkg-r.log")"; fi
for u in kusu-hbd.service kusu-hbd.socket kusu-effectord.service; do
    t_eq "$u is stopped by the removal" "$(node_exec "$NODE" systemctl is-active "$u" 2>&1)" inactive
done
t_check "the programs are gone" node_exec "$NODE" sh -c '! test -e /usr/sbin/kusu-hbd && ! test -e /usr/sbin/kusu-effectord && ! test -e /usr/bin/kusu-ha'
t_check "the configuration (a modified conffile) is kept" node_exec "$NODE" grep -q 'node = "failover"' /etc/kusu-ha/kusu-ha.toml
t_check "the key and the state are kept" node_exec "$NODE" test -f /etc/kusu-ha/authkey -a -f /var/lib/kusu-ha/state
t_eq "dpkg knows the package as removed, configuration files left" \
    "$(node_exec "$NODE" dpkg-query -W -f='${Status}' kusu-ha 2>&1)" "deinstall ok config-files"

# --- dpkg --purge ---------------------------------------------------------------------
if pkg_remove "$NODE" --purge 2>"$TB_DIR/dpkg-purge.log"; then t_pass "dpkg --purge purges the package"
else t_fail "dpkg --purge purges the package" "$(tail -5 "$TB_DIR/dpkg-purge.log")"; fi
t_check "nothing is left under /etc/kusu-ha or /var/lib/kusu-ha" \
    node_exec "$NODE" sh -c '! test -e /etc/kusu-ha && ! test -e /var/lib/kusu-ha'
left=""
while IFS= read -r f; do
    if node_exec "$NODE" test -f "$f" -o -L "$f"; then left+=" $f"; fi
done <"$TB_DIR/contents.list"
t_eq "no file of the package is left" "${left# }" ""
t_check "the units are no longer enabled" node_exec "$NODE" sh -c \
    '! test -e /etc/systemd/system/multi-user.target.wants/kusu-hbd.service && ! test -e /etc/systemd/system/sockets.target.wants/kusu-hbd.socket'
if node_exec "$NODE" id kusu-ha >/dev/null 2>&1; then echo "# user kusu-ha stays after the purge (Debian policy: files it owns may remain)"; fi

node_stop "$NODE"
t_summary
