#!/usr/bin/env bash
# test_archs — qwen3, gemma and phi3 against llama.cpp. tests/reference/<arch>.json and
# <arch>-q8_0.json hold what llama.cpp (node-llama-cpp 3.22.1, CPU, F32 KV cache) computed for
# a tiny F32 / Q8_0 model made by `llmap synth` with the stored arguments
# (tools/llamacpp-ref/make-refs.sh). Here, per reference:
#   - the model is regenerated and must have the stored sha256 (else the generator drifted and
#     the reference no longer describes this model: fail loudly, regenerate the references);
#   - for every prompt, `llmap logits --json --threads 1`: tokens identical; each reference
#     top-K logit within TOL of ours; top-1 equal and the top-K sets equal wherever the
#     reference's gaps exceed 2*TOL; greedy continuation identical up to the first reference
#     margin below 2*TOL (a near-tie either side may break differently), its logits within TOL;
#   - on the last prompt, --threads 2 must give bit-identical output, and LLMAP_NO_SIMD=1 the
#     same greedy tokens with logits within TOL.
# TOL = 1e-4 (qwen3, phi3), 4e-3 (gemma): F32 weights, so the only differences are summation
# order (llama.cpp picks its AVX-512 kernels on this machine, llmap follows the AVX2 ones):
# measured max |diff| 6e-6. gemma's GELU rounds its input to F16 (ggml's table) and the tiny
# gemma's 8x block outputs (see synth.c) amplify the rare input that rounds the other way:
# measured 3.4e-4 .. 1.4e-3; llmap with an unrounded GELU is 5x further off (4e-3 on the first
# references). A wrong op (norm, scale, RoPE pairs, split order of a fused tensor) moves logits
# by whole units: swapping phi3's gate/up halves, dropping qwen3's k-norm or gemma's GELU
# fails ~1000 checks.
# TOL = 0.15 for the Q8_0 models: gemma and phi3 match llama.cpp to all 9 printed digits, but
# qwen3 is 0.07 off, at the last prompt position and in the single-token greedy steps only, and
# only because its 50257-row token_embd doubles as the output: the same model untied, or tied
# with the 32000-token vocabulary, matches to 9 digits, and a llama model tied to the same
# table is off the same way, so it is not qwen3's (which llama.cpp path the tied 50257-row Q8_0
# table takes is not pinned down). LLMAP_NO_SIMD=1 (the scalar Q8_0 dot, another summation
# order) is 0.11 off on the amplified gemma.
# No node at test time: only the stored references are read.
TEST=archs
. "$(dirname "$0")/lib.sh"
[ -d "$SHARED/models/vocab" ] || skip_all "shared vocabularies not found at $SHARED/models/vocab"
command -v python3 >/dev/null || skip_all "python3 is needed to compare JSON outputs"
[ -x "$BIN" ] || skip_all "binary $BIN not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One python call turns each reference into shell lines: synth arguments, sha256, prompt files.
NAMES="qwen3 gemma phi3 qwen3-q8_0 gemma-q8_0 phi3-q8_0"
python3 - "$ROOT/tests/reference" "$tmp" $NAMES <<'EOF' >"$tmp/plan" || bad "cannot read tests/reference/*.json"
import json, os, sys
refdir, tmp, NAMES = sys.argv[1], sys.argv[2], sys.argv[3:]
for arch in NAMES:
    d = json.load(open(os.path.join(refdir, arch + ".json"), encoding="utf-8"))
    for i, p in enumerate(d["prompts"]):
        with open(os.path.join(tmp, "%s-%d.txt" % (arch, i)), "wb") as f:
            f.write(p["prompt"].encode("utf-8"))
    print(arch, d["model_sha256"], d["vocab"], len(d["prompts"]), d["prompts"][0]["greedy_n"],
          d["prompts"][0]["top_k"], " ".join(d["synth_args"]))
EOF

while read -r arch sha vocab n_prompts greedy top args; do
    model=$tmp/$arch.gguf
    # shellcheck disable=SC2086
    if ! "$BIN" synth $args --vocab "$SHARED/models/vocab/$vocab" "$model" 2>"$tmp/err"; then
        bad "$arch: synth $args failed: $(head -3 "$tmp/err")"
        continue
    fi
    got=$(sha256sum "$model" | cut -d' ' -f1)
    if [ "$got" = "$sha" ]; then ok; else
        bad "$arch: 'llmap synth $args' made a model with sha256 $got, the reference was computed for $sha" \
            "(generator changed: rerun tools/llamacpp-ref/make-refs.sh)"
        continue
    fi
    for ((i = 0; i < n_prompts; i++)); do
        if ! "$BIN" logits "$model" "$(cat "$tmp/$arch-$i.txt")" --json --threads 1 --greedy "$greedy" --top "$top" \
            >"$tmp/$arch-$i.json" 2>"$tmp/err"; then
            bad "$arch prompt $i: llmap logits failed: $(head -3 "$tmp/err")"
            rm -f "$tmp/$arch-$i.json"
        fi
    done
    last=$((n_prompts - 1))
    if "$BIN" logits "$model" "$(cat "$tmp/$arch-$last.txt")" --json --threads 2 --greedy "$greedy" --top "$top" \
        >"$tmp/$arch-t2.json" 2>/dev/null && cmp -s "$tmp/$arch-t2.json" "$tmp/$arch-$last.json"; then ok; else
        bad "$arch: --threads 2 output differs from --threads 1"
    fi
    LLMAP_NO_SIMD=1 "$BIN" logits "$model" "$(cat "$tmp/$arch-$last.txt")" --json --threads 1 --greedy "$greedy" \
        --top "$top" >"$tmp/$arch-scalar.json" 2>/dev/null || bad "$arch: LLMAP_NO_SIMD=1 run failed"
done <"$tmp/plan"

# compare: "ok" or "FAIL <what>" per check
python3 - "$ROOT/tests/reference" "$tmp" $NAMES <<'EOF' >"$tmp/results"
import json, os, sys
refdir, tmp, NAMES = sys.argv[1], sys.argv[2], sys.argv[3:]
TOLS = {"qwen3": 1e-4, "gemma": 4e-3, "phi3": 1e-4}
def check(cond, label, msg):
    print("ok" if cond else "FAIL %s: %s" % (label, msg))

def compare(label, ref, out, TOL, check_tokens=True):
    if check_tokens:
        check(out["tokens"] == ref["tokens"], label,
              "tokens %s vs llama.cpp %s" % (out["tokens"][:12], ref["tokens"][:12]))
    if out["tokens"] != ref["tokens"]:
        return
    worst = 0.0
    for p, (rt, ot) in enumerate(zip(ref["top"], out["top"])):
        mine = dict((i, l) for i, l in ot)
        kth = rt[-1][1]
        for r, (i, l) in enumerate(rt):
            if i in mine:
                worst = max(worst, abs(mine[i] - l))
            elif l > kth + 2 * TOL:  # clearly inside llama.cpp's top-K: must be in ours
                check(False, label, "position %d: token %d (logit %.6g, rank %d) missing from top-%d" % (
                    p, i, l, r, len(rt)))
        if rt[0][1] - rt[1][1] > 2 * TOL:
            check(ot[0][0] == rt[0][0], label, "position %d: top-1 %d vs llama.cpp %d" % (p, ot[0][0], rt[0][0]))
    check(worst <= TOL, label, "top-K logits differ by up to %.3g (tolerance %g)" % (worst, TOL))
    steps = 0
    for s, want in enumerate(ref["greedy_tokens"]):
        if s >= len(out["greedy_tokens"]) or out["greedy_tokens"][s] != want:
            check(False, label, "greedy step %d: %s vs llama.cpp %d (margin %.3g)" % (
                s, out["greedy_tokens"][s] if s < len(out["greedy_tokens"]) else None, want, ref["greedy_margins"][s]))
            break
        d = abs(out["greedy_logits"][s] - ref["greedy_logits"][s])
        check(d <= TOL, label, "greedy step %d: logit %.7g vs llama.cpp %.7g" % (
            s, out["greedy_logits"][s], ref["greedy_logits"][s]))
        steps += 1
        if ref["greedy_margins"][s] <= 2 * TOL:
            break  # near-tie: the continuation may legitimately diverge after it
    check(steps >= 1, label, "no greedy step compared")
    return worst

for arch in NAMES:
    d = json.load(open(os.path.join(refdir, arch + ".json"), encoding="utf-8"))
    tol = 0.15 if arch.endswith("-q8_0") else TOLS[arch]
    n = len(d["prompts"])
    for i, ref in enumerate(d["prompts"]):
        f = os.path.join(tmp, "%s-%d.json" % (arch, i))
        if os.path.isfile(f):
            w = compare("%s prompt %d" % (arch, i), ref, json.load(open(f, encoding="utf-8")), tol)
            if w is not None:
                print("info %s prompt %d: max |top-K logit - llama.cpp| = %.3g" % (arch, i, w))
    f = os.path.join(tmp, "%s-scalar.json" % arch)
    if os.path.isfile(f):
        compare("%s LLMAP_NO_SIMD=1 prompt %d" % (arch, n - 1), d["prompts"][n - 1],
                json.load(open(f, encoding="utf-8")), tol)
EOF
while read -r status rest; do
    case $status in
    ok) ok ;;
    info) echo "  $rest" ;;
    *) bad "$rest" ;;
    esac
done <"$tmp/results"
[ -s "$tmp/results" ] || bad "comparison produced no results"
finish
