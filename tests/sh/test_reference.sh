#!/usr/bin/env bash
# test_reference — `llmap logits` end to end against llama.cpp's reference outputs
# (../shared/reference): the prompt text goes through the tokenizer and the forward pass of the
# binary under test, for every model and prompt:
#   - tokens identical to the reference;
#   - last-position logits (--logits-out) within the native tolerance of prompt-<i>.logits.f32
#     (0.25 max, 0.05 mean abs: see tests/test_model.c for why);
#   - top-1 at every prompt position equal wherever the reference top-1/top-2 gap exceeds 0.5;
#   - greedy continuation identical up to the first step whose reference margin is below 0.5
#     (free-running, as a user would see it; test_model.c checks every step teacher-forced).
# Then, on one model, the output must not change with --threads 2 or --no-mmap (bit-identical
# JSON) and stay within the native tolerance with LLMAP_NO_SIMD=1.
set -u
BIN=${LLMAP_BIN:-./llmap}
ROOT=${LLMAP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SHARED=${LLMAP_SHARED:-$ROOT/../shared}
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_reference: $*" >&2; }
finish() {
    if [ "$skip" -gt 0 ]; then echo "reference: $pass passed, $fail failed, $skip skipped"
    else echo "reference: $pass passed, $fail failed"; fi
    [ "$fail" -eq 0 ]; exit
}
skip_all() {
    echo "SKIP test_reference: $*" >&2
    if [ "${LLMAP_REQUIRE_SHARED:-0}" = 1 ]; then fail=$((fail + 1)); else skip=$((skip + 1)); fi
    finish
}
[ -f "$SHARED/README.md" ] || skip_all "shared data not found at $SHARED"
command -v python3 >/dev/null || skip_all "python3 is needed to compare JSON outputs"
[ -x "$BIN" ] || skip_all "binary $BIN not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# compare.py REF_JSON REF_LOGITS OUT_JSON OUT_LOGITS -> prints "ok" lines or "FAIL ..." lines
cat >"$tmp/compare.py" <<'EOF'
import json, struct, sys
ref = json.load(open(sys.argv[1], encoding="utf-8"))
ref_l = open(sys.argv[2], "rb").read()
out = json.load(open(sys.argv[3], encoding="utf-8"))
out_l = open(sys.argv[4], "rb").read()
TOL, TOL_MEAN, GAP = 0.25, 0.05, 0.5
def check(cond, msg):
    print("ok" if cond else "FAIL " + msg)
check(out["tokens"] == ref["tokens"], "tokens %s vs reference %s" % (out["tokens"][:12], ref["tokens"][:12]))
n = ref["n_vocab"]
check(len(out_l) == 4 * n and len(ref_l) == 4 * n, "logits file sizes %d / %d" % (len(out_l), len(ref_l)))
if len(out_l) == 4 * n and len(ref_l) == 4 * n:
    a = struct.unpack("<%df" % n, out_l); b = struct.unpack("<%df" % n, ref_l)
    d = [abs(x - y) for x, y in zip(a, b)]
    check(max(d) <= TOL and sum(d) / n <= TOL_MEAN, "last logits max %.3g mean %.3g" % (max(d), sum(d) / n))
if out["tokens"] == ref["tokens"]:
    for p, (rt, ot) in enumerate(zip(ref["top"], out["top"])):
        if rt[0][1] - rt[1][1] > GAP:
            check(ot[0][0] == rt[0][0], "position %d: top-1 %d vs reference %d" % (p, ot[0][0], rt[0][0]))
    for s, (want, got) in enumerate(zip(ref["greedy_tokens"], out["greedy_tokens"])):
        if ref["greedy_margins"][s] <= GAP:
            break
        check(got == want, "greedy step %d: %d vs reference %d" % (s, got, want))
        if got != want:
            break
EOF

tally() { # reads compare.py output
    while read -r line; do
        if [ "$line" = ok ]; then ok; else bad "$1: ${line#FAIL }"; fi
    done
}

prompt_text() { python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1], encoding="utf-8"))["prompt"])' "$1"; }

for dir in "$SHARED"/reference/*/; do
    stem=$(basename "$dir")
    model="$SHARED/models/$stem.gguf"
    [ -f "$model" ] || { bad "$model missing"; continue; }
    for i in 0 1 2 3; do
        ref="$dir/prompt-$i.json"
        text=$(prompt_text "$ref"; printf x); text=${text%x}
        if ! "$BIN" logits "$model" "$text" --json --greedy 32 --threads 1 \
            --logits-out "$tmp/out.f32" >"$tmp/out.json" 2>"$tmp/err"; then
            bad "$stem prompt $i: llmap logits failed: $(head -c 300 "$tmp/err")"; continue
        fi
        tally "$stem prompt $i" < <(python3 "$tmp/compare.py" "$ref" "$dir/prompt-$i.logits.f32" \
            "$tmp/out.json" "$tmp/out.f32")
    done
done

# invariance on one model: threads and read mode bit-identical, scalar kernels within tolerance
model="$SHARED/models/tiny-llama-q4_k_m.gguf"
ref="$SHARED/reference/tiny-llama-q4_k_m/prompt-3.json"
text=$(prompt_text "$ref"; printf x); text=${text%x}
"$BIN" logits "$model" "$text" --json --greedy 8 --threads 1 --logits-out "$tmp/a.f32" >"$tmp/a.json" || bad "base run"
"$BIN" logits "$model" "$text" --json --greedy 8 --threads 2 --logits-out "$tmp/b.f32" >"$tmp/b.json" || bad "2 threads"
"$BIN" logits "$model" "$text" --json --greedy 8 --no-mmap --logits-out "$tmp/c.f32" >"$tmp/c.json" || bad "no-mmap"
LLMAP_NO_SIMD=1 "$BIN" logits "$model" "$text" --json --greedy 8 --logits-out "$tmp/d.f32" >"$tmp/d.json" \
    || bad "LLMAP_NO_SIMD=1"
if cmp -s "$tmp/a.json" "$tmp/b.json" && cmp -s "$tmp/a.f32" "$tmp/b.f32"; then ok; else bad "--threads 2 output differs"; fi
if cmp -s "$tmp/a.json" "$tmp/c.json" && cmp -s "$tmp/a.f32" "$tmp/c.f32"; then ok; else bad "--no-mmap output differs"; fi
cat >"$tmp/scalar.py" <<'EOF'
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
if len(a) != len(b) or not a:
    print("FAIL logits sizes differ"); sys.exit()
n = len(a) // 4
d = max(abs(x - y) for x, y in zip(struct.unpack("<%df" % n, a), struct.unpack("<%df" % n, b)))
print("ok" if d <= 0.25 else "FAIL scalar vs SIMD last logits differ by %.3g" % d)
EOF
tally "LLMAP_NO_SIMD=1" < <(python3 "$tmp/scalar.py" "$tmp/a.f32" "$tmp/d.f32")

# bad input is an error, not a crash
"$BIN" logits "$model" --tokens 1,99999 >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "outside the vocabulary" "$tmp/err"; then ok; else bad "out-of-range token: rc $rc"; fi
"$BIN" logits "$tmp/missing.gguf" --tokens 1 >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "missing.gguf" "$tmp/err"; then ok; else bad "missing model: rc $rc"; fi
finish
