#!/usr/bin/env bash
# Runs every test of kusu-ha: the Swift unit and integration tests (a private
# dbus-daemon for the binding), then the system tests (network namespaces, real
# packets, kusu-hbd as an unprivileged user). Needs root. Ends with one line
# "N passed, N failed" for the whole run.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (network namespaces, users)" >&2; exit 1; }
scripts/install-deps.sh || exit 1
export TMPDIR=${TMPDIR:-$repo/.build-tmp}
mkdir -p "$TMPDIR"

echo "== build"
swift build --build-tests 2>&1 | grep -v '^\[' || true
if [ "${PIPESTATUS[0]}" -ne 0 ]; then echo "build failed"; exit 1; fi

passed=0; failed=0
echo "== swift test"
swift test --skip-build 2>&1 | tee "$TMPDIR/swift-test.log" | grep -E '✘|passed|failed|error' | tail -40
status=${PIPESTATUS[0]}
# Swift Testing: "Test run with N tests in M suites passed/failed after ..."
# Swift Testing ends with "Test run with N tests in M suites passed|failed after ...".
n=$(grep -oE 'Test run with [0-9]+ tests?' "$TMPDIR/swift-test.log" | grep -oE '[0-9]+' | tail -1)
bad=$(grep -E '^✘ Test .* failed after' "$TMPDIR/swift-test.log" | grep -vc '^✘ Test run with' || true)
n=${n:-0}
if [ "$n" -eq 0 ]; then echo "swift test ran no test"; failed=$((failed + 1)); fi
if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
passed=$((passed + n - bad)); failed=$((failed + bad))

# The Debian package, built once (release build, lintian): the two-node test bed installs it
# in its nodes with dpkg -i (PAIR_DEB), and Tests/System/package.sh tests it (PKG_DEB), so the
# system tests run what users install.
echo "== package (scripts/build-deb.sh)"
deb_dir=$repo/.build-pkg/deb
if deb=$(scripts/build-deb.sh "$deb_dir" 2>"$TMPDIR/build-deb.err" | tail -1) && [ -f "$deb" ]; then
    echo "built $deb"
    export PAIR_DEB=$deb PKG_DEB=$deb PKG_DEB_DIR=$deb_dir
else
    tail -30 "$TMPDIR/build-deb.err"
    echo "the package did not build: the system tests copy the files instead"
    failed=$((failed + 1))
fi

for t in Tests/System/*.sh; do
    case "$t" in */harness.sh) continue ;; esac
    echo "== $t"
    bash "$t" 2>"$TMPDIR/$(basename "$t").err" | tee "$TMPDIR/$(basename "$t").log"
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then tail -20 "$TMPDIR/$(basename "$t").err"; fi
    line=$(tail -1 "$TMPDIR/$(basename "$t").log")
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    else
        echo "$t did not finish"; failed=$((failed + 1))
    fi
done

leftover=$(ip netns list | grep -c '^kha-' || true)
if [ "$leftover" -ne 0 ]; then echo "test namespaces left behind"; failed=$((failed + 1)); fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
