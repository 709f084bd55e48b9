#!/usr/bin/env bash
# Runs every test program of a build tree (BUILD/tests/test_*) and every script tests/sh/test_*.sh,
# adds up their "N passed, N failed" lines and prints the total as the last line.
# A test that crashes, times out or prints no count line counts as one failure.
#   tools/run-tests.sh BUILD [name-filter]
set -u
BUILD=${1:-build}
FILTER=${2:-}
cd "$(dirname "$0")/.."
export LLMAP_BIN="$PWD/$BUILD/llmap"
export LLMAP_ROOT="$PWD"
export LLMAP_BUILD="$PWD/$BUILD"
TIMEOUT=${TEST_TIMEOUT:-600}
passed=0; failed=0; skipped=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

run_one() {
    local name=$1; shift
    local t0=$EPOCHREALTIME
    timeout -k 5 "$TIMEOUT" "$@" >"$log/out" 2>"$log/err"
    local rc=$?
    local dt
    dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
    local line
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log/out" | tail -1)
    if [ -n "$line" ]; then
        local p f s
        p=$(sed -E 's/^(.*[^0-9])?([0-9]+) passed.*/\2/' <<<"$line")
        f=$(sed -E 's/.*passed, ([0-9]+) failed.*/\1/' <<<"$line")
        s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); line="$line (exit $rc)"; fi
    else
        failed=$((failed + 1)); line="$name: no result line (exit $rc)"
    fi
    printf '%-28s %6ss  %s\n' "$name" "$dt" "${line#*: }"
    if [ "$rc" -ne 0 ] || grep -q '^\(FAIL\|SKIP\)' "$log/err"; then
        grep -E '^(FAIL|SKIP)|ERROR|runtime error|Sanitizer|leak' "$log/err" | head -40 | sed 's/^/    /'
        if [ "$rc" -ne 0 ] && ! grep -q '^FAIL' "$log/err"; then tail -20 "$log/err" | sed 's/^/    /'; fi
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    name=$(basename "$t")
    [ -n "$FILTER" ] && [[ "$name" != *$FILTER* ]] && continue
    run_one "$name" "$t"
done
for t in tests/sh/test_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    [ -n "$FILTER" ] && [[ "$name" != *$FILTER* ]] && continue
    run_one "$name" bash "$t"
done
[ "$skipped" -gt 0 ] && echo "($skipped checks skipped: see SKIP lines above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
