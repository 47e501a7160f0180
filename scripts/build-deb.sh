#!/usr/bin/env bash
# Builds the kusu-ha Debian package from the working tree and checks it with lintian.
#
#   scripts/build-deb.sh [OUTDIR]          (default OUTDIR: .build/deb)
#
# The tracked and untracked-but-not-ignored files (`git ls-files -co
# --exclude-standard`, so uncommitted edits are included) are copied into a
# fresh directory under $TMPDIR (default .build-tmp), packaging/debian becomes
# its debian/, and `dpkg-buildpackage -us -uc -b` builds there (debian/rules
# does the release build with the Swift runtime linked statically, in the build
# tree's own .build, with HOME inside the build tree). The .deb, .buildinfo and
# .changes are copied to OUTDIR, lintian's report goes to OUTDIR/lintian.log,
# and the last line printed is the path of the .deb.
#
# Exit status: 0 when the package built and lintian reports no error and no
# warning (overridden tags excepted), 1 otherwise (the .deb is still in OUTDIR
# if it was built).
#
# KUSU_DEB_REUSE=1: print the .deb already in OUTDIR, without building, when it
# is newer than every file of the tree and its lintian report is clean.
# Installs the Debian packages the build needs (apt-get install --no-upgrade).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "build-deb.sh: run as root (it installs the build dependencies)" >&2; exit 1; }
out=${1:-$repo/.build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export TMPDIR=${TMPDIR:-$repo/.build-tmp}
mkdir -p "$TMPDIR"
case ":$PATH:" in *:/opt/swift/usr/bin:*) ;; *) [ -d /opt/swift/usr/bin ] && PATH=$PATH:/opt/swift/usr/bin ;; esac
export PATH

log() { printf '%s build-deb: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- build dependencies --------------------------------------------------------
# debian/control's Build-Depends, plus dpkg-dev (dpkg-buildpackage) and lintian.
# The Swift toolchain is not a Debian package: it must be on PATH.
build_deps=(debhelper dpkg-dev lintian libsystemd-dev libpq-dev pkg-config)
missing=()
for p in "${build_deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "build-deb.sh: swift is not on PATH (expected Swift 6.x, e.g. /opt/swift/usr/bin)" >&2; exit 1; }

version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
arch=$(dpkg --print-architecture)
deb_name=kusu-ha_${version}_${arch}.deb

# The files of the tree: tracked (as they are now, deleted ones left out) and
# untracked ones that are not ignored.
git rev-parse --git-dir >/dev/null 2>&1 || { echo "build-deb.sh: $repo is not a git work tree" >&2; exit 1; }
files=$(mktemp "$TMPDIR/deb-files.XXXXXX")
trap 'rm -f "$files"' EXIT
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done >"$files"

# --- reuse -----------------------------------------------------------------------
if [ "${KUSU_DEB_REUSE:-0}" = 1 ] && [ -f "$out/$deb_name" ] && [ -f "$out/lintian.log" ]; then
    newer=""
    while IFS= read -r -d '' f; do
        if [ "$f" -nt "$out/$deb_name" ]; then newer=$f; break; fi
    done <"$files"
    if [ -z "$newer" ] && ! grep -qE '^[EW]: ' "$out/lintian.log"; then
        log "reusing $out/$deb_name (newer than every file of the tree)"
        echo "$out/$deb_name"
        exit 0
    fi
fi

# --- build -----------------------------------------------------------------------
work=$(mktemp -d "$TMPDIR/deb.XXXXXX")
trap 'rm -f "$files"; rm -rf "$work"' EXIT
src=$work/kusu-ha-$version
mkdir -p "$src"
tar -C "$repo" --null -T "$files" -cf - | tar -C "$src" -xf -
cp -a "$src/packaging/debian" "$src/debian"

log "building kusu-ha $version in $src (release build: several minutes)"
t0=$(date +%s)
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    cp "$work/build.log" "$out/build.log"
    log "dpkg-buildpackage failed; the whole log is in $out/build.log"
    exit 1
fi
cp "$work/build.log" "$out/build.log"
log "built in $(( $(date +%s) - t0 )) s"

changes=$work/kusu-ha_${version}_${arch}.changes
if [ ! -f "$work/$deb_name" ] || [ ! -f "$changes" ]; then log "dpkg-buildpackage produced no $deb_name"; exit 1; fi
rm -f "$out"/kusu-ha_*.deb "$out"/kusu-ha-dbgsym_*.deb "$out"/kusu-ha_*.buildinfo "$out"/kusu-ha_*.changes
cp "$work"/kusu-ha_"$version"_*.deb "$work"/*.buildinfo "$changes" "$out/"
if compgen -G "$work/kusu-ha-dbgsym_${version}_*.deb" >/dev/null; then cp "$work"/kusu-ha-dbgsym_"$version"_*.deb "$out/"; fi

# --- lintian ---------------------------------------------------------------------
# Errors and warnings fail the build; overridden tags (debian/kusu-ha.lintian-overrides,
# each with its reason) are listed with --show-overrides as "O:" lines.
log "lintian"
set +e
lintian --show-overrides --tag-display-limit 0 "$out/$deb_name" >"$out/lintian.log" 2>"$work/lintian.err"
lintian_status=$?
set -e
# Its own complaint about running as root is no finding.
grep -v '^running with root privileges is not recommended!$' "$work/lintian.err" >&2 || true
cat "$out/lintian.log" >&2
if [ "$lintian_status" -ne 0 ] || grep -qE '^[EW]: ' "$out/lintian.log"; then
    log "lintian found errors or warnings (see above); the package is $out/$deb_name"
    exit 1
fi
log "lintian: no errors, no warnings"
echo "$out/$deb_name"
