#!/usr/bin/env bash
# llmap quantize and llmap synth, end to end through the binary.
#
# quantize is checked against files llama.cpp made (../shared/models): converting a shipped
# Q8_0/Q4_0 model to F32 and back must reproduce llama-quantize's file byte for byte (same
# metadata order, same tensor bytes), and F32 -> q4_k_m must give every tensor the type
# llama-quantize chose. synth is checked for determinism, shapes/types and a quantize round trip.
set -u
BIN=${LLMAP_BIN:-./llmap}
ROOT=${LLMAP_ROOT:-.}
SHARED=${LLMAP_SHARED:-$ROOT/../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0; skip=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
skip() {
    echo "SKIP: $*" >&2
    if [ "${LLMAP_REQUIRE_SHARED:-0}" = 1 ]; then fail=$((fail + 1)); else skip=$((skip + 1)); fi
}

# name type pairs of every tensor, sorted (from `inspect --tensors`)
tensor_types() { "$BIN" inspect --tensors "$1" | awk '/^ *(blk|token_embd|output)/ {print $1, $2}' | sort; }

# ---- quantize against llama.cpp's files ----
if [ -f "$SHARED/models/tiny-llama-q8_0.gguf" ]; then
    M=$SHARED/models
    for pair in tiny-llama-q8_0:q8_0 tiny-llama-q4_0:q4_0 tiny-qwen2-q8_0:q8_0 tiny-qwen2-q4_0:q4_0; do
        stem=${pair%%:*}; type=${pair##*:}
        "$BIN" quantize -q "$M/$stem.gguf" "$TMP/$stem-f32.gguf" f32 2>"$TMP/err"
        check "$stem -> f32 exits 0 ($(cat "$TMP/err"))" test $? -eq 0
        check "$stem -> f32 is all f32" bash -c "'$BIN' inspect '$TMP/$stem-f32.gguf' | grep -q '^quantization  f32: [0-9]* tensors[^;]*; *$'"
        "$BIN" quantize -q "$TMP/$stem-f32.gguf" "$TMP/$stem-rt.gguf" "$type" 2>"$TMP/err"
        check "f32 -> $type exits 0 ($(cat "$TMP/err"))" test $? -eq 0
        check "$stem: f32 -> $type reproduces llama.cpp's file byte for byte" cmp -s "$TMP/$stem-rt.gguf" "$M/$stem.gguf"
    done
    "$BIN" quantize -q "$TMP/tiny-llama-q8_0-f32.gguf" "$TMP/km.gguf" q4_k_m 2>"$TMP/err"
    check "f32 -> q4_k_m exits 0 ($(cat "$TMP/err"))" test $? -eq 0
    tensor_types "$TMP/km.gguf" >"$TMP/km.types"
    tensor_types "$M/tiny-llama-q4_k_m.gguf" >"$TMP/ref.types"
    check "q4_k_m tensor types equal llama-quantize's" cmp -s "$TMP/km.types" "$TMP/ref.types"
    check "q4_k_m has 5 q6_k tensors" test "$(grep -c ' q6_k$' "$TMP/km.types")" -eq 5
    check "q4_k_m file size equals llama-quantize's" test "$(stat -c %s "$TMP/km.gguf")" -eq "$(stat -c %s "$M/tiny-llama-q4_k_m.gguf")"
    # key, type u32 (4), value 15, little-endian
    check "q4_k_m general.file_type is 15" bash -c "LC_ALL=C grep -qaP 'general\\.file_type\\x04\\x00\\x00\\x00\\x0f\\x00\\x00\\x00' '$TMP/km.gguf'"
else
    skip "shared models absent ($SHARED/models): quantize round trips not checked"
fi

# ---- quantize: bad input ----
"$BIN" quantize -q /nonexistent.gguf "$TMP/x.gguf" q4_0 2>"$TMP/err"
check "missing input fails with status 1" test $? -eq 1
check "missing input names the file" grep -q nonexistent "$TMP/err"
"$BIN" quantize -q "$TMP/x.gguf" "$TMP/y.gguf" q9_9 2>"$TMP/err"
check "unknown type fails with status 1" test $? -eq 1
check "unknown type is named" grep -q "q9_9" "$TMP/err"
"$BIN" quantize -q onlyone 2>/dev/null
check "wrong argument count is a usage error" test $? -eq 2

if [ "$skip" -gt 0 ]; then
    echo "synth: $pass passed, $fail failed, $skip skipped"
else
    echo "synth: $pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
