#!/usr/bin/env bash
# Model benchmark: generates (once, cached under build/bench-models/) the TinyLlama-1.1B-shape
# models llama.cpp was measured with in ../shared/machine.md — Q4_0, Q8_0, Q4_K_M — and runs
# `llmap bench` (pp512, tg128) on each with 2 threads. Each line reports generation as bytes of
# weights per token against the memory bandwidth measured in the same run.
#   bench/models.sh [TYPES...]     default: q4_0 q8_0 q4_k_m
set -eu
cd "$(dirname "$0")/.."
BIN=${LLMAP_BIN:-./llmap}
DIR=build/bench-models
mkdir -p "$DIR"
types=("$@")
[ ${#types[@]} -eq 0 ] && types=(q4_0 q8_0 q4_k_m)
for t in "${types[@]}"; do
    model=$DIR/llama-1.1b-$t.gguf
    if [ ! -f "$model" ]; then
        echo "generating $model (synthetic 1.1B Llama, $t) ..."
        "$BIN" synth --arch llama --shape 1.1b --type "$t" --seed 1234 --quiet "$model"
    fi
    echo "== 1.1B $t, 2 threads"
    "$BIN" bench "$model" -t 2 --reps 3
done
