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
TEST=reference
. "$(dirname "$0")/lib.sh"
[ -f "$SHARED/README.md" ] || skip_all "shared data not found at $SHARED"
command -v python3 >/dev/null || skip_all "python3 is needed to compare JSON outputs"
[ -x "$BIN" ] || skip_all "binary $BIN not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Python starts slowly on a busy machine: one call writes every prompt text, one compares all.
python3 - "$SHARED/reference" "$tmp" <<'EOF'
import json, os, sys
ref, tmp = sys.argv[1], sys.argv[2]
for stem in sorted(os.listdir(ref)):
    for i in range(4):
        p = os.path.join(ref, stem, "prompt-%d.json" % i)
        if os.path.isfile(p):
            with open(os.path.join(tmp, "%s-%d.txt" % (stem, i)), "wb") as f:
                f.write(json.load(open(p, encoding="utf-8"))["prompt"].encode("utf-8"))
EOF

# compare.py REF_DIR TMP: for every <stem>-<i>.json/.f32 in TMP, "ok" or "FAIL <what>" lines
cat >"$tmp/compare.py" <<'EOF'
import json, os, struct, sys
refdir, tmp = sys.argv[1], sys.argv[2]
TOL, TOL_MEAN, GAP = 0.25, 0.05, 0.5
def check(cond, label, msg):
    print("ok" if cond else "FAIL %s: %s" % (label, msg))
for stem in sorted(os.listdir(refdir)):
    for i in range(4):
        label = "%s prompt %d" % (stem, i)
        out_json = os.path.join(tmp, "%s-%d.json" % (stem, i))
        if not os.path.isfile(out_json):
            continue
        ref = json.load(open(os.path.join(refdir, stem, "prompt-%d.json" % i), encoding="utf-8"))
        ref_l = open(os.path.join(refdir, stem, "prompt-%d.logits.f32" % i), "rb").read()
        out = json.load(open(out_json, encoding="utf-8"))
        out_l = open(os.path.join(tmp, "%s-%d.f32" % (stem, i)), "rb").read()
        check(out["tokens"] == ref["tokens"], label, "tokens %s vs reference %s" % (out["tokens"][:12], ref["tokens"][:12]))
        n = ref["n_vocab"]
        ok = len(out_l) == 4 * n and len(ref_l) == 4 * n
        check(ok, label, "logits file sizes %d / %d" % (len(out_l), len(ref_l)))
        if ok:
            a = struct.unpack("<%df" % n, out_l); b = struct.unpack("<%df" % n, ref_l)
            d = [abs(x - y) for x, y in zip(a, b)]
            check(max(d) <= TOL and sum(d) / n <= TOL_MEAN, label, "last logits max %.3g mean %.3g" % (max(d), sum(d) / n))
        if out["tokens"] != ref["tokens"]:
            continue
        for p, (rt, ot) in enumerate(zip(ref["top"], out["top"])):
            if rt[0][1] - rt[1][1] > GAP:
                check(ot[0][0] == rt[0][0], label, "position %d: top-1 %d vs reference %d" % (p, ot[0][0], rt[0][0]))
        for s, (want, got) in enumerate(zip(ref["greedy_tokens"], out["greedy_tokens"])):
            if ref["greedy_margins"][s] <= GAP:
                break
            check(got == want, label, "greedy step %d: %d vs reference %d" % (s, got, want))
            if got != want:
                break
EOF

tally() { # reads "ok" / "FAIL ..." lines
    while read -r line; do
        if [ "$line" = ok ]; then ok; else bad "${line#FAIL }"; fi
    done
}

n_runs=0
for dir in "$SHARED"/reference/*/; do
    stem=$(basename "$dir")
    model="$SHARED/models/$stem.gguf"
    [ -f "$model" ] || { bad "$model missing"; continue; }
    for i in 0 1 2 3; do
        text=$(cat "$tmp/$stem-$i.txt"; printf x); text=${text%x}
        if "$BIN" logits "$model" "$text" --json --greedy 32 --threads 1 \
            --logits-out "$tmp/$stem-$i.f32" >"$tmp/$stem-$i.json" 2>"$tmp/err"; then
            n_runs=$((n_runs + 1))
        else
            bad "$stem prompt $i: llmap logits failed: $(head -c 300 "$tmp/err")"; rm -f "$tmp/$stem-$i.json"
        fi
    done
done
[ "$n_runs" -eq 20 ] && ok || bad "only $n_runs of 20 model/prompt runs succeeded"
tally < <(python3 "$tmp/compare.py" "$SHARED/reference" "$tmp")

# invariance on one model: threads and read mode bit-identical, scalar kernels within tolerance
model="$SHARED/models/tiny-llama-q4_k_m.gguf"
text=$(cat "$tmp/tiny-llama-q4_k_m-3.txt"; printf x); text=${text%x}
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
tally < <(python3 "$tmp/scalar.py" "$tmp/a.f32" "$tmp/d.f32")

# bad input is an error, not a crash
"$BIN" logits "$model" --tokens 1,99999 >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "outside the vocabulary" "$tmp/err"; then ok; else bad "out-of-range token: rc $rc"; fi
"$BIN" logits "$tmp/missing.gguf" --tokens 1 >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "missing.gguf" "$tmp/err"; then ok; else bad "missing model: rc $rc"; fi
finish
