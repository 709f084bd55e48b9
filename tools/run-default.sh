#!/usr/bin/env bash
# What `make run` executes: start a chat with the best model at hand.
#   1. the first model of the user's store (`llmap list`), when there is one;
#   2. else the shared test model ../shared/models/tiny-llama-q8_0.gguf;
#   3. else a demo model generated here with `llmap synth` into build/demo.gguf.
# Models 2 and 3 are synthetic (random weights): they answer gibberish, which is said plainly,
# together with how to get a real model.
#   tools/run-default.sh [extra `llmap run` options]
set -u
cd "$(dirname "$0")/.."
LLMAP=${LLMAP_BIN:-./llmap}
SHARED=${LLMAP_SHARED:-../shared}

if [ ! -x "$LLMAP" ]; then
    echo "run-default: $LLMAP is missing; build it first with 'make'" >&2
    exit 1
fi

synthetic_note() {
    cat <<EOF

  $1 is a SYNTHETIC model: its weights are random numbers, so its answers are
  gibberish. It shows that loading, the chat loop and generation work, nothing more.
  For a real model:
      ./llmap pull <url-of-a-gguf-file>          (e.g. a small Qwen2 or Llama GGUF)
      ./llmap run <name>            or           ./llmap run path/to/model.gguf

EOF
}

model=""
synthetic=""
# 1. A model the user already has in the store (skipped while `llmap list` does not exist).
if "$LLMAP" list >/dev/null 2>&1; then
    model=$("$LLMAP" list 2>/dev/null | awk 'NR == 2 { print $1; exit }')
fi
# 2. The shared tiny test model.
if [ -z "$model" ] && [ -f "$SHARED/models/tiny-llama-q8_0.gguf" ]; then
    model="$SHARED/models/tiny-llama-q8_0.gguf"
    synthetic=1
fi
# 3. A demo model made on the spot.
if [ -z "$model" ]; then
    mkdir -p build
    if [ ! -f build/demo.gguf ]; then
        echo "run-default: no model found; generating a small demo model (build/demo.gguf)..."
        if ! "$LLMAP" synth --shape tiny --type q8_0 build/demo.gguf; then
            echo "run-default: could not generate a demo model (llmap synth needs a tokenizer:" >&2
            echo "  pass one with --vocab, or get a real model: ./llmap pull <url-of-a-gguf>)" >&2
            exit 1
        fi
    fi
    model=build/demo.gguf
    synthetic=1
fi

if [ -n "$synthetic" ]; then
    synthetic_note "$model"
    # Random weights rarely produce an end-of-sequence token: keep answers short.
    set -- --num-predict 200 "$@"
fi

# Before the forward pass existed, `run` was not a command yet: show the file instead.
if ! "$LLMAP" run --help >/dev/null 2>&1; then
    echo "run-default: 'llmap run' is not available in this build; showing the model instead:"
    exec "$LLMAP" inspect "$model"
fi
echo "Chatting with $model — /? for help, /bye or Ctrl-D to leave, Ctrl-C stops an answer."
exec "$LLMAP" run "$model" "$@"
