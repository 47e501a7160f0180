# shellcheck shell=bash
# The kusu-ha Debian package on the test bed.
#
#   . scripts/lib/node.sh
#   . scripts/lib/package.sh
#   pkg_deb >/dev/null || exit 1      # builds once per run; sets PKG_DEB
#   node_boot NODE NETNS UNITDIR
#   pkg_install NODE                  # dpkg -i inside the node
#   trap 'node_cleanup; pkg_cleanup' EXIT
#
# pkg_deb builds the package from the working tree with scripts/build-deb.sh
# into PKG_DEB_DIR (default .build-pkg/deb) once per run (PKG_RUN: this shell
# and its start time), so that calls from $(...) in the same run reuse the
# build. With PKG_REUSE=1 a .deb from an earlier run is reused when it is newer
# than every file of the tree (scripts/build-deb.sh, KUSU_DEB_REUSE). The
# build's messages go to PKG_DEB_DIR/build-deb.log, lintian's report to
# PKG_DEB_DIR/lintian.log (pkg_lintian_log prints its path).
#
# A node's root is a throw-away overlay of the host's /: dpkg inside it writes
# nothing on the host.

PKG_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PKG_DEB_DIR=${PKG_DEB_DIR:-$PKG_REPO/.build-pkg/deb}
PKG_RUN=${PKG_RUN:-$$.$(cut -d' ' -f22 "/proc/$$/stat")}
PKG_DEB=${PKG_DEB:-}

pkg_log() { printf '%s package: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

pkg__marker() { echo "$PKG_DEB_DIR/.run-$PKG_RUN"; }

# pkg_deb — print the path of the .deb built from the working tree, building it
# on the first call of the run. Fails (with the end of the build's log on
# stderr) when the build fails or lintian reports an error or a warning.
pkg_deb() {
    if [ -n "$PKG_DEB" ] && [ -f "$PKG_DEB" ]; then echo "$PKG_DEB"; return 0; fi
    local marker deb
    marker=$(pkg__marker)
    if [ -f "$marker" ] && deb=$(cat "$marker") && [ -f "$deb" ]; then
        PKG_DEB=$deb; echo "$deb"; return 0
    fi
    mkdir -p "$PKG_DEB_DIR" || return 1
    pkg_log "building the package (scripts/build-deb.sh $PKG_DEB_DIR)"
    # build-deb.sh prints only the path of the .deb on stdout.
    if ! deb=$(KUSU_DEB_REUSE=${PKG_REUSE:-0} "$PKG_REPO/scripts/build-deb.sh" "$PKG_DEB_DIR" 2>"$PKG_DEB_DIR/build-deb.log") ||
        [ ! -f "$deb" ]; then
        pkg_log "scripts/build-deb.sh failed:"
        tail -30 "$PKG_DEB_DIR/build-deb.log" | sed 's/^/  | /' >&2
        return 1
    fi
    echo "$deb" >"$marker"
    PKG_DEB=$deb
    echo "$deb"
}

# pkg_lintian_log — lintian's report on the package of this run.
pkg_lintian_log() { echo "$PKG_DEB_DIR/lintian.log"; }

# pkg_install NODE [DEB] — copy the .deb into the node and install it with dpkg -i.
# dpkg's output goes to stderr.
pkg_install() {
    local node=$1 deb=${2:-} name
    [ -n "$deb" ] || deb=$(pkg_deb) || return 1
    name=$(basename "$deb")
    node_exec "$node" sh -c "cat >/root/$name" <"$deb" || return 1
    node_exec "$node" env DEBIAN_FRONTEND=noninteractive dpkg -i "/root/$name" >&2
}

# pkg_remove NODE [--purge] — dpkg -r (or --purge) kusu-ha inside the node.
pkg_remove() {
    local node=$1 action=-r
    [ "${2:-}" = --purge ] && action=--purge
    node_exec "$node" env DEBIAN_FRONTEND=noninteractive dpkg "$action" kusu-ha >&2
}

# pkg_cleanup — forget this run's build (the .deb stays in PKG_DEB_DIR).
pkg_cleanup() { rm -f "$(pkg__marker)"; }
