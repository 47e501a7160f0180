#!/usr/bin/env bash
# Generates the man pages and shell completions of kusu-ha's programs from their
# command definitions (swift-argument-parser): kusu-ha(1), kusu-hbd(8),
# kusu-effectord(8), and bash/zsh/fish completion for kusu-ha.
# Usage: scripts/generate-docs.sh [OUTPUT_DIR=.build/docs]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${1:-$repo/.build/docs}
export TMPDIR=${TMPDIR:-$repo/.build-tmp}; mkdir -p "$TMPDIR"
work=$(mktemp -d "$TMPDIR/docs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/1" "$work/8" "$out/man1" "$out/man8" "$out/completions"
swift package --allow-writing-to-package-directory generate-manual --section 1 --output-directory "$work/1" >/dev/null
swift package --allow-writing-to-package-directory generate-manual --section 8 --output-directory "$work/8" >/dev/null
cp "$work/1/kusu-ha.1" "$out/man1/"
cp "$work/8/kusu-hbd.8" "$work/8/kusu-effectord.8" "$out/man8/"
# argument-parser keeps the discussions' blank lines, which groff (lintian) warns about:
# make them paragraph breaks.
sed -i 's/^$/.Pp/' "$out/man1/kusu-ha.1" "$out/man8/kusu-hbd.8" "$out/man8/kusu-effectord.8"
swift build -c release --product kusu-ha >/dev/null
for shell in bash zsh fish; do
    # A completion is sourced, not run: no #! line.
    "$repo/.build/release/kusu-ha" --generate-completion-script "$shell" | sed '1{/^#!/d}' >"$out/completions/kusu-ha.$shell"
done
echo "man pages and completions in $out"
