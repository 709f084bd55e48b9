#!/usr/bin/env bash
# test_share — two llmap processes on one model share its pages (the point of mapping weights).
#
# Two long-lived `llmap serve` processes load the same model file and generate once each, so
# both have touched every weight. The kernel's proportional set size splits a shared page's
# cost between the processes that map it: for the model's mapping, Pss ≈ Rss / 2 in each of
# the two, where a lone process has Pss ≈ Rss. Measured per mapping from /proc/PID/smaps (the
# model file's lines only) and, as the brief asks, on the process total from smaps_rollup's
# Pss_File. The model is a private copy of a shared one, so no other process on this machine
# (other tests) maps the same file and moves the figures.
TEST=share
. "$(dirname "$0")/lib.sh"

SRC=$SHARED/models/tiny-llama-q8_0.gguf
[ -f "$SRC" ] || skip_all "$SRC not found (set LLMAP_SHARED)"
[ -r /proc/self/smaps ] || skip_all "no /proc/PID/smaps (not Linux?)"
command -v curl >/dev/null || skip_all "curl not installed"

tmp=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/models"
cp "$SRC" "$tmp/models/m.gguf"
MODEL=$tmp/models/m.gguf
size_kb=$(($(stat -c %s "$MODEL") / 1024))

# start_server NAME: a server on a free port; sets PORT_<NAME> and PID_<NAME>.
start_server() {
    "$BIN" serve --port 0 --models "$tmp/models" --keep-alive -1 >"$tmp/$1.log" 2>&1 &
    local pid=$! port=
    PIDS+=("$pid")
    for _ in $(seq 200); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/$1.log" | sed 's/.*://')
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$tmp/$1.log" >&2; bad "server $1 did not start"; finish; }
    eval "PORT_$1=$port PID_$1=$pid"
}
# generate PORT: one short greedy generation (loads the model and runs every layer).
generate() {
    curl -s -m 60 -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$1/api/generate" \
        -d '{"model": "m", "prompt": "Hello", "stream": false, "options": {"num_predict": 2, "temperature": 0}}'
}
# mapping_kb PID FIELD: FIELD (Rss, Pss) in kB summed over the model file's mappings.
mapping_kb() {
    awk -v f="$MODEL" -v k="$2:" '
        /^[0-9a-f]+-[0-9a-f]+ / { inside = ($NF == f) }
        inside && $1 == k { s += $2 }
        END { print s + 0 }' "/proc/$1/smaps"
}
rollup_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/smaps_rollup"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
within() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }

# ---- one process ------------------------------------------------------------------------------
start_server A
st=$(generate "$PORT_A")
check '[ "$st" = 200 ] && grep -q "\"done\":true" "$tmp/body"' "server A generates (status $st: $(head -c 300 "$tmp/body"))"
rss1=$(mapping_kb "$PID_A" Rss)
pss1=$(mapping_kb "$PID_A" Pss)
file1=$(rollup_kb "$PID_A" Pss_File)
# Every layer ran, so nearly the whole file is mapped in (embedding rows: only the ones looked up).
check 'within "$(ratio "$rss1" "$size_kb")" 0.5 1.01' "A maps most of the model after a generation (Rss $rss1 kB of $size_kb kB)"
check 'within "$(ratio "$pss1" "$rss1")" 0.95 1.0' "alone, A pays for all of its model pages (Pss $pss1 kB, Rss $rss1 kB)"

# ---- two processes ---------------------------------------------------------------------------
start_server B
st=$(generate "$PORT_B")
check '[ "$st" = 200 ] && grep -q "\"done\":true" "$tmp/body"' "server B generates (status $st)"
rss_a=$(mapping_kb "$PID_A" Rss); pss_a=$(mapping_kb "$PID_A" Pss)
rss_b=$(mapping_kb "$PID_B" Rss); pss_b=$(mapping_kb "$PID_B" Pss)
file_a=$(rollup_kb "$PID_A" Pss_File)
echo "share: model mapping Rss/Pss kB — A alone $rss1/$pss1; A $rss_a/$pss_a, B $rss_b/$pss_b" \
    "(Pss/Rss $(ratio "$pss_a" "$rss_a"), $(ratio "$pss_b" "$rss_b")); A Pss_File ${file1:-?} -> ${file_a:-?} kB"
check 'within "$(ratio "$rss_b" "$rss_a")" 0.9 1.1' "both map the same pages (Rss A $rss_a kB, B $rss_b kB)"
check 'within "$(ratio "$pss_a" "$rss_a")" 0.45 0.56' "A's share of the model is half its Rss (Pss $pss_a kB, Rss $rss_a kB)"
check 'within "$(ratio "$pss_b" "$rss_b")" 0.45 0.56' "B's share of the model is half its Rss (Pss $pss_b kB, Rss $rss_b kB)"
if [ -n "$file1" ] && [ -n "$file_a" ]; then
    # A's whole file-backed Pss falls by half the model's Rss, plus at most half of its other
    # file pages (the llmap binary and libraries, which B maps too).
    drop=$((file1 - file_a)) lo=$((rss_a * 45 / 100)) hi=$(((rss_a + file1 - pss1) * 55 / 100))
    check '[ "$drop" -ge "$lo" ] && [ "$drop" -le "$hi" ]' \
        "A's Pss_File falls by half the model when B shares it ($file1 -> $file_a kB, model Rss $rss_a kB)"
fi

# ---- back to one -----------------------------------------------------------------------------
kill "$PID_B"; wait "$PID_B" 2>/dev/null
pss_a2=$(mapping_kb "$PID_A" Pss)
check 'within "$(ratio "$pss_a2" "$(mapping_kb "$PID_A" Rss)")" 0.95 1.0' "after B exits, A pays for its pages again (Pss $pss_a2 kB)"
finish
