#!/usr/bin/env bash
# coldload.sh — load time and time to first token with the page cache cold and warm.
#
# Generates (once, under build/bench-models/) a 1.1B-shape Llama in Q4_0 (~620 MB) and times
# `llmap run MODEL "Hello" --num-predict 1` (the whole process: load + prompt + one token)
#   cold      page cache dropped; llmap reads the file in with two large sequential readers
#   demand    page cache dropped, LLMAP_NO_POPULATE=1: the weights arrive by demand faults
#   warm      everything cached
# next to the disk's read bandwidth measured in the same run with `dd bs=4M` of another file
# (bench/memory.sh's probe), read twice with the cache dropped before each ("first" and
# "again": a virtual disk's host caches what was read recently, ~0.3 against ~2 GB/s here; the
# model is read once before each cold run, so both sides are compared at "again"). Goal: the
# cold load (the read-in reported by --verbose) within 1.1 × file size ÷ disk bandwidth.
# Needs root (drop_caches); REPS (3) repetitions; LLMAP_BIN (./llmap).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LLMAP_BIN:-$ROOT/llmap}
MODELS=$ROOT/build/bench-models
MODEL=$MODELS/llama-1.1b-q4_0.gguf
PROBE=$MODELS/disk-probe.bin
REPS=${REPS:-3}

die() { echo "coldload.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no llmap binary at $BIN (build it, or set LLMAP_BIN)"
[ "$(id -u)" -eq 0 ] || { echo "coldload.sh: SKIP: needs root (drop_caches)" >&2; exit 0; }
mkdir -p "$MODELS"
if [ ! -s "$MODEL" ]; then
    echo "generating $MODEL (1.1B shape, Q4_0; once)"
    "$BIN" synth --shape 1.1b --type q4_0 --quiet "$MODEL" || die "llmap synth failed"
fi
if [ ! -s "$PROBE" ]; then
    echo "writing $PROBE (the disk bandwidth probe; once)"
    { head -c "$(stat -c %s "$MODEL")" /dev/urandom >"$PROBE.tmp" && mv "$PROBE.tmp" "$PROBE"; } || die "cannot write $PROBE"
fi
size=$(stat -c %s "$MODEL")

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
dd_gbs() {
    drop
    dd if="$PROBE" of=/dev/null bs=4M 2>&1 |
        awk '/bytes/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,/) s = $(i - 1); printf "%.3f", $1 / s / 1e9 }'
}
prime() { drop; dd if="$MODEL" of=/dev/null bs=4M status=none; }
# wall seconds of one `llmap run`; its stderr in $tmp/err
ttft() {
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" run "$MODEL" Hello --num-predict 1 --temperature 0 --verbose >/dev/null 2>"$tmp/err" || die "llmap run failed: $(tail -2 "$tmp/err")"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "model  $MODEL ($(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }'))"
for _ in $(seq "$REPS"); do
    first=$(dd_gbs); again=$(dd_gbs)
    # Each cold run starts from the same state: the model read once before (as the probe's
    # "again"), then this machine's cache dropped — so neither variant gets the host's cache
    # warmed by the other.
    prime; drop; cold=$(ttft)
    read_s=$(sed -n 's/.*cold page cache .* in \([0-9.]*\) s.*/\1/p' "$tmp/err")
    prime; drop; demand=$(LLMAP_NO_POPULATE=1 ttft)
    warm=$(ttft)
    awk -v size="$size" -v first="$first" -v again="$again" -v cold="$cold" -v demand="$demand" -v warm="$warm" \
        -v rd="${read_s:-0}" 'BEGIN {
            bw = again
            printf "disk %.2f GB/s (first %.2f, again %.2f) -> size/bw %.3f s | cold read-in %.3f s = %.2f x size/bw | time to first token: cold %.2f s, cold by demand faults %.2f s, warm %.2f s\n",
                bw, first, again, size / bw / 1e9, rd, rd / (size / bw / 1e9), cold, demand, warm
        }'
done
