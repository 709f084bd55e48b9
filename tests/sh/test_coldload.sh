#!/usr/bin/env bash
# test_coldload — loading a model whose file is not in the page cache.
#
# A private copy of a shared model is evicted from the page cache (posix_fadvise DONTNEED, via
# `dd iflag=nocache count=0`; the copy is ours alone, so no other process keeps its pages), then
# `llmap run` loads it: the answer equals the warm run's (greedy), the load reports that it found
# the cache cold and read the file in on a helper thread (started while loading, ended when the
# model closed), and afterwards the file is in the page cache (fincore) but for the untied
# embedding table the read-in skips. A warm load maps the file on the same helper thread
# instead. With LLMAP_NO_POPULATE=1 the same runs still answer the same. Timing is not checked here
# (a shared machine is too noisy for a test; bench/memory.sh and the report measure it).
TEST=coldload
. "$(dirname "$0")/lib.sh"

SRC=$SHARED/models/tiny-llama-q8_0.gguf
[ -f "$SRC" ] || skip_all "$SRC not found (set LLMAP_SHARED)"
command -v fincore >/dev/null || skip_all "fincore (util-linux) not installed"
dd if=/dev/null iflag=nocache count=0 status=none 2>/dev/null || skip_all "dd has no iflag=nocache (not GNU coreutils)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MODEL=$tmp/m.gguf
# Written through to disk (conv=fsync): dirty pages cannot be evicted.
dd if="$SRC" of="$MODEL" bs=1M conv=fsync status=none
size=$(stat -c %s "$MODEL")
pages_bytes=$(((size + 4095) / 4096 * 4096)) # fincore counts whole pages

resident() { fincore -b -n -o RES "$MODEL" | tr -d ' '; }
evict() { dd if="$MODEL" iflag=nocache count=0 status=none; }
run() { "$BIN" run "$MODEL" "Hello" --num-predict 4 --temperature 0 --verbose "$@"; }

# ---- warm: the reference answer -----------------------------------------------------------------
run >"$tmp/warm.out" 2>"$tmp/warm.err"
check '[ $? -eq 0 ] && [ -s "$tmp/warm.out" ]' "warm run answers ($(tail -2 "$tmp/warm.err"))"
check '! grep -q "cold page cache" "$tmp/warm.err"' "a warm load does not read the file again"
# ... but maps it on the helper thread, ahead of the first forward pass, and ends that by the close.
check 'grep -q "warm page cache (.*resident): mapping .* in the background" "$tmp/warm.err" &&
       grep -q "warm page cache: mapped .* of .* MiB" "$tmp/warm.err"' \
    "a warm load maps the file in the background ($(grep "page cache" "$tmp/warm.err" | tr '\n' '|'))"
# A one-shot run with --num-predict and no --ctx gets a context just large enough for its prompt
# and answer (cmd_run.c): the answer equals the one in a full default-sized context.
run --ctx 2048 >"$tmp/ctx.out" 2>"$tmp/ctx.err"
check 'cmp -s "$tmp/warm.out" "$tmp/ctx.out"' "the one-shot context sized to the prompt answers as a 2048-token one does"
LLMAP_NO_POPULATE=1 run >"$tmp/warm2.out" 2>"$tmp/warm2.err"
check 'cmp -s "$tmp/warm.out" "$tmp/warm2.out" && ! grep -q "page cache" "$tmp/warm2.err"' \
    "LLMAP_NO_POPULATE=1 turns the warm map-in off, same answer"

# ---- cold, populated ----------------------------------------------------------------------------
evict
before=$(resident)
check '[ "$before" -lt $((size / 10)) ]' "the copy was evicted before the cold run ($before of $size bytes resident)"
run >"$tmp/cold.out" 2>"$tmp/cold.err"
check '[ $? -eq 0 ] && cmp -s "$tmp/warm.out" "$tmp/cold.out"' \
    "cold run gives the warm run's answer ($(head -c 200 "$tmp/cold.out") vs $(head -c 200 "$tmp/warm.out"))"
check 'grep -q "cold page cache.*reading .* in the background" "$tmp/cold.err"' \
    "the cold load is detected and read in ($(grep -m1 llmap: "$tmp/cold.err"))"
# In the background: started before loading finished, reported when the model is closed.
check '[ "$(grep -n "in the background" "$tmp/cold.err" | head -1 | cut -d: -f1)" -lt "$(grep -n "llmap: loaded" "$tmp/cold.err" | cut -d: -f1)" ] &&
       [ "$(grep -n "llmap: loaded" "$tmp/cold.err" | cut -d: -f1)" -lt "$(grep -n "cold page cache: read" "$tmp/cold.err" | cut -d: -f1)" ]' \
    "the read-in starts during loading and ends after it ($(grep llmap: "$tmp/cold.err" | tr '\n' '|'))"
after=$(resident)
# The reader stops when the model is closed. On a tiny model it has normally finished by then
# (read N of N MiB), and then the whole file is in the page cache but for the untied embedding
# table it skips (read a row per token; the kernel's read-ahead past its start and the rows
# used bring in some of it); a reader starved of CPU on a busy machine may have been stopped
# first, and then at least what it read is.
embd=0
if "$BIN" inspect "$MODEL" --tensors | grep -q '^output\.weight '; then
    embd=$("$BIN" inspect "$MODEL" --tensors | awk '$1 == "token_embd.weight" { print $NF }')
fi
read_of=$(sed -n 's/.*cold page cache: read \([0-9.]*\) of \([0-9.]*\) MiB.*/\1 \2/p' "$tmp/cold.err")
check '[ -n "$read_of" ]' "the read-in reports what it read ($(tail -1 "$tmp/cold.err"))"
if [ -n "$read_of" ] && [ "${read_of% *}" = "${read_of#* }" ]; then
    check '[ "$after" -ge $((size - embd)) ] && [ "$after" -le "$pages_bytes" ]' \
        "after a cold load the file less its untied embedding table ($embd bytes) is in the page cache ($after of $size bytes)"
else
    echo "coldload: note: the reader was stopped at $read_of MiB (busy machine): whole-file check replaced" >&2
    check 'awk -v a="$after" -v r="${read_of% *}" "BEGIN { exit !(a >= r * 1048576) }"' \
        "after a stopped read-in, what it read is in the page cache ($after bytes, read $read_of MiB)"
fi

# ---- cold, demand faults only -------------------------------------------------------------------
evict
LLMAP_NO_POPULATE=1 run >"$tmp/demand.out" 2>"$tmp/demand.err"
echo "coldload: resident after a cold run: $after bytes populated, $(resident) by demand faults (of $size)"
check '[ $? -eq 0 ] && cmp -s "$tmp/warm.out" "$tmp/demand.out"' "cold run by demand faults answers the same"
check '! grep -q "cold page cache" "$tmp/demand.err"' "LLMAP_NO_POPULATE=1 turns the read-in off"

# ---- --no-mmap and streaming do not populate the mapping ----------------------------------------
evict
run --no-mmap >"$tmp/read.out" 2>"$tmp/read.err"
check '[ $? -eq 0 ] && cmp -s "$tmp/warm.out" "$tmp/read.out" && ! grep -q "cold page cache" "$tmp/read.err"' \
    "--no-mmap reads the file itself (same answer, no populate)"
evict
LLMAP_STREAM_BUDGET=1 run >"$tmp/stream.out" 2>"$tmp/stream.err"
check '[ $? -eq 0 ] && cmp -s "$tmp/warm.out" "$tmp/stream.out" && ! grep -q "cold page cache" "$tmp/stream.err"' \
    "streaming reads its own way (same answer, no populate): $(grep -m1 streaming "$tmp/stream.err")"
finish
