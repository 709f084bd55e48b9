#!/usr/bin/env bash
# memory.sh — a model twice the size of the memory it may use: plain mmap against streaming.
#
# Generates (once, cached under build/bench-models/) a 1.1B-shape Llama in Q8_0 (~1.17 GB),
# creates a memory cgroup for its own runs with a 600 MiB limit (v1 memory.limit_in_bytes, or
# v2 memory.max), drops the page cache, and times `llmap run --num-predict 16` inside it:
#   mmap    the shared mapping paged on demand (--mmap: the kernel's LRU decides what stays);
#   stream  what llmap chooses by itself (`fit` sees the cgroup limit and streams: leading
#           layers + embeddings stay resident, the rest is read ahead and dropped behind);
#   reader  the streaming reader alone, in the same cgroup with the same weights budget, no
#           compute (bench/stream-reader.c, built here against the libllmap.a next to the
#           binary): what the disk and the read path give, so that the stream run's tokens/s
#           can be split into the reader's speed and what running next to compute costs it.
# The stream run prints its per-token timeline (LLMAP_STREAM_TRACE=1): the medians of compute,
# waiting for a layer and the disk's busy time per token are summarised after each run.
# Around every run the disk's sequential read bandwidth is measured with `dd bs=4M` of another
# file of the same size, page cache dropped (twice: see dd_gbs), so each tokens/s sits next to
# the bound of the same moment: disk bandwidth ÷ bytes that must come from disk per token when
# the rest stays resident (weights − (limit − runtime overhead)). Both answers must equal the
# resident run's (greedy decoding: same tokens).
#
# Run by hand or by `make bench`, never by `make test` (minutes, and it drops the page cache).
# Needs root for the cgroup and drop_caches; skips loudly otherwise.
# Environment: LLMAP_BIN (default ./llmap), LLMAP_LIB (libllmap.a for the reader tool; default
# next to LLMAP_BIN, or build/), LIMIT_MIB (600), NPREDICT (16), OVERHEAD_MIB (75:
# what a runtime needs besides weights inside the limit, so 600 MiB keeps ~550 MB of weights,
# as in ../shared/machine.md), REPS (1), LLMAP_BENCH_DROP=file (drop only this benchmark's
# files from the page cache instead of all of it).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LLMAP_BIN:-$ROOT/llmap}
MODELS=$ROOT/build/bench-models
LIMIT_MIB=${LIMIT_MIB:-600}
NPREDICT=${NPREDICT:-16}
OVERHEAD_MIB=${OVERHEAD_MIB:-75}
REPS=${REPS:-1}
PROMPT="Once upon a time"
MODEL=$MODELS/memory-bench-1.1b-q8_0.gguf # (a name of its own: others use build/bench-models too)
PROBE=$MODELS/disk-probe.bin

say() { printf '%s\n' "$*"; }
die() { say "memory.sh: $*" >&2; exit 1; }
skip() { say "memory.sh: SKIP: $*" >&2; exit 0; }

[ -x "$BIN" ] || die "no llmap binary at $BIN (build it, or set LLMAP_BIN)"
[ "$(id -u)" -eq 0 ] || skip "needs root (memory cgroup and drop_caches)"
mkdir -p "$MODELS"

# ---- inputs (generated once) -----------------------------------------------------------------
if [ ! -s "$MODEL" ]; then
    say "generating $MODEL (1.1B shape, Q8_0; a minute or two, once)"
    "$BIN" synth --shape 1.1b --type q8_0 --quiet "$MODEL" || die "llmap synth failed"
fi
size=$(stat -c %s "$MODEL")
if [ "$(stat -c %s "$PROBE" 2>/dev/null || echo 0)" -ne "$size" ]; then
    say "writing $PROBE ($size random bytes, the disk bandwidth probe; once)"
    { head -c "$size" /dev/urandom >"$PROBE.tmp" && mv "$PROBE.tmp" "$PROBE"; } || die "cannot write $PROBE"
fi

# ---- page cache and disk bandwidth ----------------------------------------------------------
drop_cache() {
    sync
    if [ "${LLMAP_BENCH_DROP:-all}" = file ]; then
        for f in "$MODEL" "$PROBE"; do dd if="$f" iflag=nocache count=0 status=none; done
    else
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# GB/s of cold sequential reads of the probe file (dd bs=4M, as in ../shared/machine.md), with
# this machine's page cache dropped before each: "first" is the first read after a while, "again"
# an immediate second one. On a virtual disk the host may cache what was read recently, and the
# model's bytes are re-read every token, so the runs see the second kind: the bound uses it.
dd_gbs() {
    dd if="$PROBE" iflag=nocache count=0 status=none
    dd if="$PROBE" of=/dev/null bs=4M 2>&1 |
        awk '/bytes/ { for (i = 1; i <= NF; i++) if ($i == "s," || $i ~ /^s,/) s = $(i - 1); printf "%.3f\n", $1 / s / 1e9 }'
}
disk_bw() { echo "$(dd_gbs) $(dd_gbs)"; }

# ---- the cgroup ------------------------------------------------------------------------------
CG=
cleanup() {
    [ -n "$CG" ] && [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
    return 0
}
trap cleanup EXIT

cgroup_setup() {
    local name=llmap-bench-$$ bytes=$((LIMIT_MIB << 20)) parent rel
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then # v2: a child of our own group
        rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        parent=/sys/fs/cgroup${rel%/}
        grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null ||
            echo +memory >"$parent/cgroup.subtree_control" 2>/dev/null ||
            skip "cgroup v2: cannot enable the memory controller under $parent"
        CG=$parent/$name
        mkdir "$CG" || skip "cannot create $CG"
        echo "$bytes" >"$CG/memory.max" || skip "cannot set $CG/memory.max"
        echo 0 >"$CG/memory.swap.max" 2>/dev/null
    else # v1: a child of our own memory group
        rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
        [ -d /sys/fs/cgroup/memory ] || skip "no memory cgroup controller mounted"
        parent=/sys/fs/cgroup/memory${rel%/}
        CG=$parent/$name
        mkdir "$CG" || skip "cannot create $CG"
        echo "$bytes" >"$CG/memory.limit_in_bytes" || skip "cannot set $CG/memory.limit_in_bytes"
    fi
}

# Runs a command inside the cgroup (the shell moves itself in, then becomes the command).
in_cgroup() { sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }

# ---- one measured run ------------------------------------------------------------------------
# run_llmap OUT_PREFIX LAUNCHER [llmap run options...]: answer in OUT.txt, stderr in OUT.err;
# LAUNCHER is "direct" or "in_cgroup".
run_llmap() {
    local out=$1 launch=$2
    shift 2
    [ "$launch" = direct ] && launch=
    $launch "$BIN" run "$MODEL" "$PROMPT" --num-predict "$NPREDICT" --temperature 0 --ctx 128 --verbose "$@" \
        >"$out.txt" 2>"$out.err"
}
# (N tokens take N forward passes — the prompt's yields the first — so bytes per token are the
# run's bytes ÷ N; LLMAP_STREAM_TRACE counts the walks. Before 2026-11-26 this divided by N + 1.)
field() { # field FILE: tokens/s of generation, MiB read, major faults, resident MiB when streaming
    # (tokens ÷ seconds from "generation: N tokens in T s": the rounded tokens/s llmap prints has
    # one decimal, too coarse below 1 token/s)
    awk '/^generation:/ { for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i + 2) + 0 > 0) g = $(i - 1) / $(i + 2) }
         /^page faults:/ { maj = $3; for (i = 1; i <= NF; i++) if ($i == "MiB") r = $(i - 1) }
         /streaming .* MiB resident/ { for (i = 1; i <= NF; i++) if ($i == "MiB") res = $(i - 1) }
         END { printf "%s %s %s %s\n", g + 0, r + 0, maj + 0, res + 0 }' "$1"
}

tmp=$(mktemp -d)
trap 'cleanup; rm -rf "$tmp"' EXIT

# The reader alone (bench/stream-reader.c) links the library the binary was built from.
LIB=${LLMAP_LIB:-$(dirname "$BIN")/libllmap.a}
[ -f "$LIB" ] || LIB=$ROOT/build/libllmap.a
READER=
if [ -f "$LIB" ] && ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT/src" -I"$ROOT/include" -o "$tmp/stream-reader" \
    "$ROOT/bench/stream-reader.c" "$LIB" -lpthread -lm 2>"$tmp/cc.err"; then
    READER=$tmp/stream-reader
else
    say "reader    not measured: cannot build bench/stream-reader.c against $LIB: $(head -3 "$tmp/cc.err" 2>/dev/null)"
fi

# timeline FILE: medians over the generated tokens (walks 1..) of the stream run's trace lines:
# per token ms, compute ms, waiting ms, disk reading ms, disk GB/s while reading.
timeline() {
    awk '/stream walk/ && $4 + 0 >= 1 {
            n++; tok[n] = $5; comp[n] = $9; wait[n] = $15; rd[n] = $26; gbs[n] = substr($28, 2)
         }
         function med(a,   i, j, t, b) { for (i = 1; i <= n; i++) b[i] = a[i]
             for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
             return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
         END { if (n) printf "per token (median of %d): %.1f ms = compute %.1f + waiting for a layer %.1f (+ rest); disk reading %.1f ms at %.2f GB/s\n",
                  n, med(tok), med(comp), med(wait), med(rd), med(gbs) }' "$1"
}

say "model     $MODEL ($(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }'))"
say "limit     $LIMIT_MIB MiB memory cgroup; $NPREDICT tokens, greedy, prompt \"$PROMPT\""
say "when      $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The reference: resident (no limit, warm), the tokens every other run must reproduce.
drop_cache
run_llmap "$tmp/ref" direct --mmap || die "resident run failed: $(tail -3 "$tmp/ref.err")"
read -r ref_tps _ <<<"$(field "$tmp/ref.err")"
say "resident  $ref_tps tokens/s (no limit; the answer every limited run must reproduce)"
# The same resident run again before each pair: on a shared machine the compute speed of the
# moment says whether a limited run could be disk-bound at all (streaming overlaps the read
# with compute, but not with more compute than the resident run needs).
resident_now() {
    run_llmap "$tmp/res" direct --mmap && field "$tmp/res.err" | awk '{ print $1 }'
}

cgroup_setup
say "cgroup    $CG"
fails=0
for _ in $(seq "$REPS"); do
    res_tps=$(resident_now)
    say "resident  ${res_tps:-?} tokens/s now (load $(cut -d' ' -f1 /proc/loadavg))"
    for mode in mmap stream; do
        drop_cache
        read -r first1 bw1 <<<"$(disk_bw)"
        drop_cache
        # Pages another process maps survive the drop (and stay charged to its cgroup): then
        # this run measures nothing. Say so instead of printing a fantasy.
        cached=$(fincore -b -n -o RES "$MODEL" 2>/dev/null | tr -d ' ')
        if [ "${cached:-0}" -gt $((size / 20)) ]; then
            say "$mode: SKIPPED — $cached bytes of the model stay cached after the drop (another process maps it)"
            continue
        fi
        if [ "$mode" = mmap ]; then flag=--mmap; else flag=; fi
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086 # flag is empty or one word
        LLMAP_STREAM_TRACE=1 run_llmap "$tmp/$mode" in_cgroup $flag
        rc=$?
        t1=$(date +%s.%N)
        peak=$(cat "$CG/memory.max_usage_in_bytes" 2>/dev/null || cat "$CG/memory.peak" 2>/dev/null || echo 0)
        echo 0 >"$CG/memory.max_usage_in_bytes" 2>/dev/null # (v1: reset the peak for the next run)
        read -r first2 bw2 <<<"$(disk_bw)"
        read -r tps mib maj res <<<"$(field "$tmp/$mode.err")"
        waited=$(sed -n 's/.*compute waited \([0-9.]*\) s.*/\1/p' "$tmp/$mode.err")
        reader=$(sed -n 's/.*(\([0-9.]* GB\/s\), reader at nice \(-*[0-9]*\); O_DIRECT in \([0-9]* of [0-9]*\) walks).*/reader \1 while reading, nice \2, O_DIRECT in \3 walks/p' "$tmp/$mode.err")
        if [ $rc -ne 0 ]; then
            say "$mode: llmap failed (rc $rc): $(tail -3 "$tmp/$mode.err")"
            fails=$((fails + 1))
            continue
        fi
        same=identical
        cmp -s "$tmp/ref.txt" "$tmp/$mode.txt" || { same="DIFFERENT from the resident run"; fails=$((fails + 1)); }
        if [ "$mode" = stream ] && [ "$res" = 0 ]; then
            same="$same; but llmap did not choose streaming"
            fails=$((fails + 1))
        fi
        awk -v m="$mode" -v tps="$tps" -v mib="$mib" -v maj="$maj" -v res="$res" -v bw1="$bw1" -v bw2="$bw2" \
            -v size="$size" -v lim="$LIMIT_MIB" -v ovh="$OVERHEAD_MIB" -v n="$NPREDICT" -v wall="$(echo "$t1 - $t0" | bc)" \
            -v same="$same" -v peak="$peak" -v f1="$first1" -v f2="$first2" -v waited="${waited:-}" -v reader="${reader:-}" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
                bw = (bw1 + bw2) / 2
                keep = (lim - ovh) * 1048576; from_disk = size - keep
                bound = bw * 1e9 / from_disk; reread = bw * 1e9 / size
                printf "%-7s %5.3f tokens/s = %.2f of bound %.2f | disk %.2f GB/s re-read (%.2f, %.2f; first reads %.2f, %.2f) | %.0f MB from disk per token at the bound; re-read-all bound %.2f | %.0f MiB read (%.0f per token), %d major faults%s, wall %.1f s, cgroup peak %.0f MiB%s | load %s | %s\n",
                    m, tps, tps / bound, bound, bw, bw1, bw2, f1, f2, from_disk / 1e6, reread, mib, mib / n, maj,
                    (waited != "" ? sprintf(", compute waited %.1f s, %s", waited, reader) : ""), wall, peak / 1048576,
                    (res > 0 ? sprintf(", %d MiB resident", res) : ""), load, same
            }'
        cp "$tmp/$mode.err" "$MODELS/last-$mode.err" 2>/dev/null
        [ "$mode" = stream ] && say "        $(timeline "$tmp/$mode.err")"
        # The reader alone, right after the stream run, in the same cgroup with the same budget.
        budget=$(sed -n 's/.*budget \([0-9]*\) MiB.*/\1/p' "$tmp/$mode.err")
        if [ "$mode" = stream ] && [ -n "$READER" ] && [ -n "$budget" ]; then
            drop_cache
            line=$(in_cgroup "$READER" "$MODEL" "$budget" "$NPREDICT" 2>&1 | tail -1)
            wps=$(echo "$line" | sed -n 's/^reader alone: \([0-9.]*\) walks\/s.*/\1/p')
            say "reader  ${line#reader alone: }${wps:+ | the stream run made $(awk -v t="$tps" -v w="$wps" 'BEGIN { printf "%.2f", t / w }') of the walks/s of the reader alone} | load $(cut -d' ' -f1 /proc/loadavg)"
        fi
    done
done
[ "$fails" -eq 0 ] || die "$fails run(s) failed or differed (stderr of the last runs: $MODELS/last-*.err)"
