# lib.sh — the counting and skipping every shell test shares; sourced after setting TEST.
#
#   TEST=name; . "$(dirname "$0")/lib.sh"
#
# Gives BIN, ROOT and SHARED (overridable by LLMAP_BIN, LLMAP_ROOT, LLMAP_SHARED as the runner
# sets them), ok / bad / check 'shell condition' 'what', check_run 'what' command args... (the
# command's exit status decides; no eval, so its arguments need no second quoting), skip
# (counts a skipped check: a failure when LLMAP_REQUIRE_SHARED=1, as in CI), skip_all (skip,
# then finish) and finish, which prints the closing "NAME: N passed, N failed[, N skipped]"
# line the runner reads and exits non-zero on any failure; listen_port LOG, the port a
# `llmap serve` started in the background announced in its LOG.
set -u
BIN=${LLMAP_BIN:-./llmap}
ROOT=${LLMAP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SHARED=${LLMAP_SHARED:-$ROOT/../shared}
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_$TEST: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
check_run() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
finish() {
    if [ "$skip" -gt 0 ]; then echo "$TEST: $pass passed, $fail failed, $skip skipped"
    else echo "$TEST: $pass passed, $fail failed"; fi
    [ "$fail" -eq 0 ]
    exit
}
skip() {
    echo "SKIP test_$TEST: $*" >&2
    if [ "${LLMAP_REQUIRE_SHARED:-0}" = 1 ]; then fail=$((fail + 1)); else skip=$((skip + 1)); fi
}
skip_all() { skip "$@"; finish; }
# listen_port LOG [tries] [seconds]: the port of the `llmap serve` writing LOG once it says it
# listens (polls tries times, 100, every seconds, 0.1); empty if it never does.
listen_port() {
    local port=
    for _ in $(seq "${2:-100}"); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$1" 2>/dev/null | sed 's/.*://')
        [ -n "$port" ] && break
        sleep "${3:-0.1}"
    done
    echo "$port"
}
