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

# Test namespaces that exist before this run (another run's, or one left by a killed run) are
# not this run's: only the ones this run leaves behind count as a failure at the end.
ns_before=$(ip netns list | awk '/^kha-/ { print $1 }' | sort)

echo "== build"
swift build --build-tests >"$TMPDIR/build.log" 2>&1
build_status=$?
grep -v '^\[' "$TMPDIR/build.log"
if [ "$build_status" -ne 0 ]; then echo "build failed"; exit 1; fi

passed=0; failed=0
echo "== swift test"
swift test --skip-build 2>&1 | tee "$TMPDIR/swift-test.log" | grep -E '✘|passed|failed|error' | tail -40
status=${PIPESTATUS[0]}
# Swift Testing ends with "Test run with N tests in M suites passed|failed after ...", and
# says "Test NAME skipped" or "Suite NAME skipped" for what a condition left out. A skip is not
# a pass: it is counted apart, and in CI (CI=true, where every dependency is installed) it is
# a failure, so a suite that silently stops running cannot turn the run green.
n=$(grep -oE 'Test run with [0-9]+ tests?' "$TMPDIR/swift-test.log" | grep -oE '[0-9]+' | tail -1)
bad=$(grep -E '^✘ Test .* failed after' "$TMPDIR/swift-test.log" | grep -vc '^✘ Test run with' || true)
skipped=$(grep -cE '^\S+ (Test|Suite) .* skipped' "$TMPDIR/swift-test.log" || true)
skipped_tests=$(grep -cE '^\S+ Test .* skipped' "$TMPDIR/swift-test.log" || true)
n=${n:-0}
if [ "$n" -eq 0 ]; then echo "swift test ran no test"; failed=$((failed + 1)); fi
if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
passed=$((passed + n - bad - skipped_tests)); failed=$((failed + bad))
if [ "$skipped" -ne 0 ]; then
    echo "swift test skipped $skipped tests or suites:"
    grep -E '^\S+ (Test|Suite) .* skipped' "$TMPDIR/swift-test.log" | sed 's/^/  /'
    if [ "${CI:-}" = true ]; then failed=$((failed + skipped)); fi
fi

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
    rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then tail -20 "$TMPDIR/$(basename "$t").err"; fi
    line=$(tail -1 "$TMPDIR/$(basename "$t").log")
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
        # A summary line is not enough: a test that exits non-zero failed, whatever it printed.
        if [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then echo "$t exited $rc"; failed=$((failed + 1)); fi
    else
        echo "$t did not finish (exit $rc)"; failed=$((failed + 1))
    fi
done

leftover=$(comm -13 <(echo "$ns_before") <(ip netns list | awk '/^kha-/ { print $1 }' | sort) | grep -c . || true)
if [ "$leftover" -ne 0 ]; then echo "test namespaces left behind: $leftover"; failed=$((failed + 1)); fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
