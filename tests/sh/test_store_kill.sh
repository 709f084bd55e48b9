#!/usr/bin/env bash
# Crash safety of the store: SIGKILL lands at random points during import, pull and rm
# (several iterations, random delays). After every kill `llmap store check` must pass (it
# verifies every blob against its digest and every manifest's blob), and `llmap list` must
# show only complete models: each listed name is one the test finished or was adding, and
# its blob hashes (sha256sum) to the source's digest.
TEST=store_kill; . "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/tiny-llama-q8_0.gguf
# Fewer rounds under the sanitizers, whose processes start several times slower.
ITER=${KILL_ITERATIONS:-$([ "${LLMAP_SANITIZED:-0}" = 1 ] && echo 2 || echo 3)}
[ -f "$MODEL" ] || skip_all "shared model $MODEL absent"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

T=$(mktemp -d /tmp/llmap-test-kill-XXXXXX)
# The source lives on tmpfs when possible: a different filesystem from the store forces a
# real copy (no hard link), which is what makes an import take long enough to be killed.
SRC_DIR=$(mktemp -d /dev/shm/llmap-kill-XXXXXX 2>/dev/null || mktemp -d "$T/src-XXXXXX")
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T" "$SRC_DIR"; }
trap cleanup EXIT
cp "$MODEL" "$SRC_DIR/m.gguf"
SUM=$(sha256sum "$SRC_DIR/m.gguf" | cut -c1-64)
export LLMAP_HOME=$T/home

# After a kill: the store is consistent and lists only complete models from the allowed set.
verify_store() { # label allowed-names...
    local label=$1; shift
    local out rc
    out=$("$BIN" store check 2>&1); rc=$?
    check_run "$label: store check passes ($out)" test "$rc" -eq 0
    local listed name id unexpected=
    listed=$("$BIN" list | awk 'NR > 1 {print $1, $2}')
    [ -z "$listed" ] && return
    while read -r name id; do
        case " $* " in *" $name "*) ;; *) unexpected="$unexpected $name";; esac
        [ "$id" = "${SUM:0:12}" ] || unexpected="$unexpected $name(id $id)"
    done <<<"$listed"
    check_run "$label: only expected names listed ($listed)" test -z "$unexpected"
    # Every listed name shares the one blob: hash it once, independently of llmap.
    check_run "$label: the listed blob is complete" \
        test "$(sha256sum "$LLMAP_HOME/blobs/sha256-$SUM" 2>/dev/null | cut -c1-64)" = "$SUM"
}

rand_ms() { echo $((RANDOM % $1)); }
# How many kills interrupted the operation (its name not listed afterwards), for the log.
interrupted=0
tally() { "$BIN" list | awk 'NR > 1 {print $1}' | grep -qx "$1" || interrupted=$((interrupted + 1)); }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN{printf "%.3f", m/1000}')"; }

# ---- import ------------------------------------------------------------------------------------
for i in $(seq 1 "$ITER"); do
    "$BIN" import "$SRC_DIR/m.gguf" "imp$i" >/dev/null 2>&1 &
    p=$!
    sleep_ms "$(rand_ms 400)"
    kill -9 $p 2>/dev/null; wait $p 2>/dev/null
    tally "imp$i:latest"
    verify_store "import kill $i" "imp$i:latest" $(seq -f 'imp%g:latest' 1 "$i")
done
echo "import: $interrupted of $ITER kills landed before completion"; interrupted=0
check_run "import after the kills succeeds" "$BIN" import "$SRC_DIR/m.gguf" imported
verify_store "after import" imported:latest $(seq -f 'imp%g:latest' 1 "$ITER")

# ---- rm ------------------------------------------------------------------------------------------
for i in $(seq 1 "$ITER"); do
    "$BIN" rm "imp$i" >/dev/null 2>&1 &
    p=$!
    sleep_ms "$(rand_ms 30)"
    kill -9 $p 2>/dev/null; wait $p 2>/dev/null
    "$BIN" list | awk 'NR > 1 {print $1}' | grep -qx "imp$i:latest" && interrupted=$((interrupted + 1))
    verify_store "rm kill $i" imported:latest $(seq -f 'imp%g:latest' 1 "$ITER")
done
echo "rm: $interrupted of $ITER kills landed before completion"; interrupted=0
"$BIN" rm imported $(seq -f 'imp%g' 1 "$ITER") >/dev/null 2>&1
check_run "all removed: list empty" test -z "$("$BIN" list | awk 'NR > 1')"
check_run "all removed: no blob left" test -z "$(ls -A "$LLMAP_HOME/blobs")"

# ---- pull ----------------------------------------------------------------------------------------
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" -m http.server "$PORT" --bind 127.0.0.1 --directory "$SRC_DIR" >/dev/null 2>&1 &
SRV_PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/m.gguf#sha256=$SUM"
for i in $(seq 1 "$ITER"); do
    LLMAP_PULL_RATE_LIMIT=20m "$BIN" pull "$URL" "pulled$i" --quiet >/dev/null 2>&1 &
    p=$!
    sleep_ms "$(rand_ms 1200)"
    kill -9 $p 2>/dev/null; wait $p 2>/dev/null
    tally "pulled$i:latest"
    verify_store "pull kill $i" $(seq -f 'pulled%g:latest' 1 "$i")
done
echo "pull: $interrupted of $ITER kills landed before completion"
out=$("$BIN" pull "$URL" pulled --quiet 2>&1); rc=$?
check_run "pull after the kills succeeds ($out)" test "$rc" -eq 0
verify_store "after pull" pulled:latest $(seq -f 'pulled%g:latest' 1 "$ITER")
check_run "store check --fix" "$BIN" store check --fix
check_run "no temp files after --fix" test -z "$(ls -A "$LLMAP_HOME/tmp")$(ls -A "$LLMAP_HOME/manifests" | grep '^\.' || true)"
finish
