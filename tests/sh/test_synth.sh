#!/usr/bin/env bash
# llmap quantize and llmap synth, end to end through the binary.
#
# quantize is checked against files llama.cpp made (../shared/models): converting a shipped
# Q8_0/Q4_0 model to F32 and back must reproduce llama-quantize's file byte for byte (same
# metadata order, same tensor bytes), and F32 -> q4_k_m must give every tensor the type
# llama-quantize chose. synth is checked for determinism, shapes/types and a quantize round trip.
TEST=synth; . "$(dirname "$0")/lib.sh"
# tmpfs when available: the test writes ~0.5 GB of model files and fsyncs each one
TMP=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
trap 'rm -rf "$TMP"' EXIT

# name type pairs of every tensor, sorted (from `inspect --tensors`)
tensor_types() { "$BIN" inspect --tensors "$1" | awk '/^ *(blk|token_embd|output)/ {print $1, $2}' | sort; }

# ---- quantize against llama.cpp's files ----
if [ -f "$SHARED/models/tiny-llama-q8_0.gguf" ]; then
    M=$SHARED/models
    pairs="tiny-llama-q8_0:q8_0 tiny-llama-q4_0:q4_0 tiny-qwen2-q8_0:q8_0"
    # Under the sanitizers (3-5x slower) one round trip exercises the same code paths.
    [ "${LLMAP_SANITIZED:-0}" = 1 ] && pairs="tiny-qwen2-q8_0:q8_0"
    for pair in $pairs; do
        stem=${pair%%:*}; type=${pair##*:}
        "$BIN" quantize -q "$M/$stem.gguf" "$TMP/$stem-f32.gguf" f32 2>"$TMP/err"
        check_run "$stem -> f32 exits 0 ($(cat "$TMP/err"))" test $? -eq 0
        check_run "$stem -> f32 is all f32" bash -c "'$BIN' inspect '$TMP/$stem-f32.gguf' | grep -q '^quantization  f32: [0-9]* tensors[^;]*; *$'"
        "$BIN" quantize -q "$TMP/$stem-f32.gguf" "$TMP/$stem-rt.gguf" "$type" 2>"$TMP/err"
        check_run "f32 -> $type exits 0 ($(cat "$TMP/err"))" test $? -eq 0
        check_run "$stem: f32 -> $type reproduces llama.cpp's file byte for byte" cmp -s "$TMP/$stem-rt.gguf" "$M/$stem.gguf"
    done
    # q4_k_m of a q4_k_m file: every tensor already has the type the mix gives it, so it is copied
    # and the file comes out identical; a wrong rule would re-quantize some tensor and differ.
    "$BIN" quantize -q "$M/tiny-llama-q4_k_m.gguf" "$TMP/km.gguf" q4_k_m 2>"$TMP/err"
    check_run "q4_k_m -> q4_k_m exits 0 ($(cat "$TMP/err"))" test $? -eq 0
    tensor_types "$TMP/km.gguf" >"$TMP/km.types"
    tensor_types "$M/tiny-llama-q4_k_m.gguf" >"$TMP/ref.types"
    check_run "q4_k_m tensor types equal llama-quantize's" cmp -s "$TMP/km.types" "$TMP/ref.types"
    check_run "q4_k_m has 5 q6_k tensors" test "$(grep -c ' q6_k$' "$TMP/km.types")" -eq 5
    check_run "q4_k_m of llama-quantize's q4_k_m is byte-identical" cmp -s "$TMP/km.gguf" "$M/tiny-llama-q4_k_m.gguf"
    # key, type u32 (4), value 15, little-endian
    check_run "q4_k_m general.file_type is 15" bash -c "LC_ALL=C grep -qaP 'general\\.file_type\\x04\\x00\\x00\\x00\\x0f\\x00\\x00\\x00' '$TMP/km.gguf'"
else
    skip "shared models absent ($SHARED/models): quantize round trips not checked"
fi

# ---- quantize: bad input ----
"$BIN" quantize -q /nonexistent.gguf "$TMP/x.gguf" q4_0 2>"$TMP/err"
check_run "missing input fails with status 1" test $? -eq 1
check_run "missing input names the file" grep -q nonexistent "$TMP/err"
"$BIN" quantize -q "$TMP/x.gguf" "$TMP/y.gguf" q9_9 2>"$TMP/err"
check_run "unknown type fails with status 1" test $? -eq 1
check_run "unknown type is named" grep -q "q9_9" "$TMP/err"
"$BIN" quantize -q onlyone 2>/dev/null
check_run "wrong argument count is a usage error" test $? -eq 2

# ---- synth ----
VOCAB_LLAMA=$SHARED/models/vocab/ggml-vocab-llama-spm.gguf
VOCAB_GPT2=$SHARED/models/vocab/ggml-vocab-gpt-2.gguf
# name and shape of every tensor, sorted
tensor_shapes() { "$BIN" inspect --tensors "$1" | grep -E '^ *(blk|token_embd|output)' | sed -E 's/^ *([^ ]+) +[^ ]+ +(\[[^]]*\]).*/\1 \2/' | sort; }
if [ -f "$VOCAB_LLAMA" ] && [ -f "$VOCAB_GPT2" ]; then
    S="$BIN synth -q"
    # determinism on a cheaper shape (one layer, tied embeddings: the vocabulary dominates the cost)
    small="--tied --n-layer 1"
    $S --vocab "$VOCAB_LLAMA" $small --seed 7 -t 1 "$TMP/d1.gguf" 2>"$TMP/err"
    check_run "synth exits 0 ($(cat "$TMP/err"))" test $? -eq 0
    $S --vocab "$VOCAB_LLAMA" $small --seed 7 -t 2 "$TMP/d2.gguf"
    check_run "same seed, 1 vs 2 threads: byte-identical" cmp -s "$TMP/d1.gguf" "$TMP/d2.gguf"
    $S --vocab "$VOCAB_LLAMA" $small --seed 8 "$TMP/d3.gguf"
    check_run "different seed: different file" bash -c "! cmp -s '$TMP/d1.gguf' '$TMP/d3.gguf'"
    check_run "different seed: same size" test "$(stat -c %s "$TMP/d1.gguf")" -eq "$(stat -c %s "$TMP/d3.gguf")"
    check_run "--tied: no output.weight" bash -c "! '$BIN' inspect --tensors '$TMP/d1.gguf' | grep -q '^output.weight'"
    # the tiny preset against the shared tiny models
    $S --vocab "$VOCAB_LLAMA" --seed 7 -t 1 "$TMP/s1.gguf"
    check_run "synth file passes inspect" "$BIN" inspect "$TMP/s1.gguf" >/dev/null
    check_run "tiny llama shape line" bash -c "'$BIN' inspect '$TMP/s1.gguf' | grep -q 'context 2048, embedding 256, layers 4, heads 8 (kv 4), feed-forward 768'"
    check_run "tokenizer copied (32000 tokens)" bash -c "'$BIN' inspect '$TMP/s1.gguf' | grep -q 'llama / default, 32000 tokens'"
    check_run "chat template present" bash -c "'$BIN' inspect '$TMP/s1.gguf' | grep -q 'chat template yes'"
    if [ -f "$SHARED/models/tiny-llama-q8_0.gguf" ]; then
        check_run "tiny llama tensors: same names and shapes as the shared tiny-llama" \
            cmp -s <(tensor_shapes "$TMP/s1.gguf") <(tensor_shapes "$SHARED/models/tiny-llama-q8_0.gguf")
        check_run "tiny llama f32: same file size as llama.cpp's tiny-llama f32 (header + data layout)" \
            test "$(stat -c %s "$TMP/s1.gguf")" -eq 78855232
        $S --arch qwen2 --vocab "$VOCAB_GPT2" --type q8_0 "$TMP/q.gguf"
        check_run "tiny qwen2 tensors (biases, tied output): same as the shared tiny-qwen2" \
            cmp -s <(tensor_shapes "$TMP/q.gguf") <(tensor_shapes "$SHARED/models/tiny-qwen2-q8_0.gguf")
        check_run "tiny qwen2 kv heads 2" bash -c "'$BIN' inspect '$TMP/q.gguf' | grep -q 'heads 8 (kv 2)'"
    else
        skip "shared tiny models absent: synth shapes not compared"
    fi
    # quantize round trip: generating Q8_0 directly (2 threads) equals generating F32 (1 thread)
    # and quantizing it
    $S --vocab "$VOCAB_LLAMA" --seed 7 -t 2 --type q8_0 "$TMP/s1q.gguf"
    "$BIN" quantize -q "$TMP/s1.gguf" "$TMP/s1q2.gguf" q8_0
    check_run "synth --type q8_0 equals synth f32 + quantize q8_0" cmp -s "$TMP/s1q.gguf" "$TMP/s1q2.gguf"
    # explicit dimensions; rows of 320 do not fit 256-blocks
    $S --vocab "$VOCAB_LLAMA" --tied --n-embd 320 --n-head 10 --n-head-kv 5 --n-layer 2 --n-ff 512 "$TMP/odd.gguf"
    check_run "explicit dims shape line" bash -c "'$BIN' inspect '$TMP/odd.gguf' | grep -q 'embedding 320, layers 2, heads 10 (kv 5), feed-forward 512'"
    "$BIN" quantize -q "$TMP/odd.gguf" "$TMP/odd4k.gguf" q4_k 2>"$TMP/err"
    check_run "quantize q4_k of 320-long rows fails with status 1" test $? -eq 1
    check_run "the error names the tensor and the block size" grep -q "row length 320 is not a multiple of the q4_k block size 256" "$TMP/err"
    check_run "no output file after an error" test ! -e "$TMP/odd4k.gguf"
    # synth's q4_k_m, rows of 320: Q5_0 / Q8_0 fall-backs as llama-quantize; ffn_down rows (512) fit
    $S --vocab "$VOCAB_LLAMA" --n-embd 320 --n-head 10 --n-head-kv 5 --n-layer 2 --n-ff 512 --type q4_k_m "$TMP/oddm.gguf" 2>"$TMP/err"
    tensor_types "$TMP/oddm.gguf" >"$TMP/oddm.types"
    check_run "q4_k_m falls back like llama.cpp for 320-long rows ($(cat "$TMP/err"))" \
        grep -q '^blk.0.attn_q.weight q5_0$' "$TMP/oddm.types"
    check_run "q4_k_m: output falls back to q8_0" grep -q '^output.weight q8_0$' "$TMP/oddm.types"
    check_run "q4_k_m: token_embd falls back to q5_0" grep -q '^token_embd.weight q5_0$' "$TMP/oddm.types"
    check_run "q4_k_m: ffn_down of layer 0 of 2 is q4_k" grep -q '^blk.0.ffn_down.weight q4_k$' "$TMP/oddm.types"
    check_run "q4_k_m: ffn_down of layer 1 of 2 is q6_k (use_more_bits)" grep -q '^blk.1.ffn_down.weight q6_k$' "$TMP/oddm.types"
    check_run "q4_k_m: attn_v of layer 1 falls back from q6_k to q8_0" grep -q '^blk.1.attn_v.weight q8_0$' "$TMP/oddm.types"
    $S --vocab "$VOCAB_LLAMA" --n-embd 320 --n-head 10 --type q4_k "$TMP/bad.gguf" 2>"$TMP/err"
    check_run "synth q4_k with 320-long rows fails" test $? -eq 1
    $S --vocab "$VOCAB_LLAMA" --n-embd 250 --n-head 8 "$TMP/bad.gguf" 2>"$TMP/err"
    check_run "n_embd not a multiple of n_head is rejected" grep -q "not a multiple of n_head" "$TMP/err"
    $S --shape 13b "$TMP/bad.gguf" 2>"$TMP/err"
    check_run "unknown preset is rejected" grep -q "unknown shape preset '13b'" "$TMP/err"
else
    skip "shared vocabularies absent: synth not checked"
fi

# No vocabulary anywhere (a user's fresh clone): the built-in byte-level one makes a model that
# loads, tokenizes any text (non-ASCII through byte tokens) and generates.
LLMAP_SHARED=/nonexistent "$BIN" synth --quiet "$TMP/builtin.gguf" 2>"$TMP/err"
check_run "synth without a vocabulary falls back to the built-in one" grep -q "built-in byte-level" "$TMP/err"
"$BIN" tokenize "$TMP/builtin.gguf" "héllo" --ids >"$TMP/ids" 2>&1
check_run "the built-in vocabulary tokenizes non-ASCII text via byte tokens" grep -q "1 " "$TMP/ids"
"$BIN" run "$TMP/builtin.gguf" "hi" --num-predict 4 --temperature 0 --threads 1 >"$TMP/out" 2>"$TMP/err"
check_run "a model with the built-in vocabulary generates" test -s "$TMP/out"

finish
