#!/usr/bin/env bash
# make-refs.sh — regenerates tests/reference/<arch>.json and <arch>-q8_0.json: for each
# architecture, a tiny F32 model (three prompts) and the same shape in Q8_0 (one prompt: the
# quantized kernels and the fused views over quantized rows) made by `llmap synth` (command
# line stored), its sha256 (so a change in the generator shows up as a mismatch instead of a
# silently different model), and what llama.cpp computes (ref.mjs). The outputs are
# llama.cpp's, never llmap's: llmap only makes the model.
#   tools/llamacpp-ref/make-refs.sh [LLMAP_BIN] [arch ...]
# Needs node and the pinned install (see ref.mjs); tests/sh/test_archs.sh needs neither.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/build/llmap}
shift || true
ARCHS=${*:-qwen3 gemma phi3}
SHARED=${LLMAP_SHARED:-$ROOT/../shared}
VOCABS=$SHARED/models/vocab
GREEDY=16
TOP=10
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The prompts: plain English, non-ASCII text (byte fallback / multi-byte tokens), code.
printf '%s' "Hello, my name is" >"$tmp/p0"
printf '%s' "Grüße aus Köln! Café, naïve façade — 日本語のテキスト" >"$tmp/p1"
printf 'def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n' >"$tmp/p2"

vocab_of() {
    case $1 in
    qwen3) echo ggml-vocab-gpt-2.gguf ;;
    phi3) echo ggml-vocab-phi-3.gguf ;;
    *) echo ggml-vocab-llama-spm.gguf ;;
    esac
}

for arch in $ARCHS; do
  for type in f32 q8_0; do
    vocab=$(vocab_of "$arch")
    name=$arch
    prompts="0 1 2"
    if [ "$type" != f32 ]; then name=$arch-$type; prompts=1; fi
    args="--arch $arch --shape tiny --n-embd 128 --n-ff 384 --type $type --seed 5 --threads 1"
    # shellcheck disable=SC2086
    "$BIN" synth $args --vocab "$VOCABS/$vocab" "$tmp/$name.gguf"
    sha=$(sha256sum "$tmp/$name.gguf" | cut -d' ' -f1)
    n=0
    for i in $prompts; do
        node "$ROOT/tools/llamacpp-ref/ref.mjs" "$tmp/$name.gguf" "$(cat "$tmp/p$i")" --greedy $GREEDY --top $TOP \
            --threads 1 >"$tmp/$name-$n.json"
        n=$((n + 1))
    done
    python3 - "$name" "$args" "$vocab" "$sha" "$tmp" "$ROOT/tests/reference/$name.json" "$n" <<'EOF'
import json, sys
arch, args, vocab, sha, tmp, out, n = sys.argv[1:]
prompts = [json.load(open("%s/%s-%d.json" % (tmp, arch, i), encoding="utf-8")) for i in range(int(n))]
doc = {
    "what": "llama.cpp's outputs for a tiny synthetic model (tools/llamacpp-ref/make-refs.sh): %s" % arch,
    "synth_args": args.split(),
    "vocab": vocab,
    "model_sha256": sha,
    "generator": {k: prompts[0][k] for k in ("compute", "node_llama_cpp", "llama_cpp_release", "n_threads")},
    "kv_cache": "f32",
    "prompts": [{k: v for k, v in p.items() if k not in ("compute", "node_llama_cpp", "llama_cpp_release", "n_threads")}
                for p in prompts],
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, indent=1)
    f.write("\n")
print("wrote", out)
EOF
  done
done
