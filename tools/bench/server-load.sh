#!/usr/bin/env bash
# Bigger load run for `llmap serve` than tests/sh/test_server.sh does (not part of the suite):
# wrk on cheap endpoints, then many small generations with several in flight, with the
# server's RSS and thread count before and after.
#   tools/bench/server-load.sh [BIN] [SECONDS] [GEN_REQUESTS] [GEN_CONCURRENCY] [PARALLEL]
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/build/llmap}
SECS=${2:-10}
NGEN=${3:-200}
CGEN=${4:-8}
PAR=${5:-2}
SHARED=${LLMAP_SHARED:-$ROOT/../shared}
command -v wrk >/dev/null || { echo "server-load: wrk missing (apt-get install -y wrk)" >&2; exit 1; }
[ -d "$ROOT/tests/node/node_modules" ] || (cd "$ROOT/tests/node" && npm ci --no-audit --no-fund --loglevel=error)
WORK=$(mktemp -d)
"$BIN" serve --port 0 --models "$SHARED/models" --parallel "$PAR" >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$WORK/log" && break; sleep 0.1; done
URL=http://127.0.0.1:$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/log" | sed 's/.*://')
mem() { awk '/^VmRSS/ {r=$2} /^Threads/ {t=$2} END {printf "VmRSS %d kB, %d threads", r, t}' "/proc/$PID/status"; }
node "$ROOT/tests/node/load.mjs" "$URL" generate 8 4 >/dev/null # load the model, create sessions
echo "start:            $(mem)"
for path in /api/version /api/tags /; do
    echo "wrk -t2 -c8 -d${SECS}s $path: $(wrk -t2 -c8 -d"${SECS}s" "$URL$path" | awk '/Requests\/sec/ {r=$2} /Non-2xx/ {e=$NF} /Latency/ {l=$2" avg, max "$4} END {printf "%s req/s, latency %s, non-2xx %s", r, l, e ? e : 0}')"
done
echo "after wrk:        $(mem)"
echo "generate x$NGEN at $CGEN concurrent (--parallel $PAR, num_predict 4): $(node "$ROOT/tests/node/load.mjs" "$URL" generate "$NGEN" "$CGEN")"
echo "after generate:   $(mem)"
node "$ROOT/tests/node/load.mjs" "$URL" generate "$NGEN" "$CGEN" >/dev/null
echo "after 2nd round:  $(mem)"
kill -TERM $PID; wait $PID; echo "exit status after SIGTERM: $?"
