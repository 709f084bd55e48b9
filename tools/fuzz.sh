#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan, and runs them.
#   tools/fuzz.sh TOTAL_SECONDS [targets...]
# The time budget is shared by all targets. Seeds come from tests/fuzz/seeds/<target>/ (committed)
# and a fresh work corpus in build-fuzz/corpus/<target>/. Exits non-zero on any crash.
set -eu
cd "$(dirname "$0")/.."
TOTAL=${1:-60}; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tests/fuzz/fuzz_*.c)
[ -e "${targets[0]}" ] || { echo "fuzz: no targets"; exit 0; }
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
make --no-print-directory BUILD=build-fuzz CC=clang OPT="-O1" \
    SANFLAGS="$SAN -fsanitize=fuzzer-no-link" build-fuzz/libllmap.a >/dev/null
per=$(( TOTAL / ${#targets[@]} )); [ "$per" -lt 1 ] && per=1
status=0
for src in "${targets[@]}"; do
    name=$(basename "$src" .c)
    bin=build-fuzz/$name
    clang -std=c11 -D_GNU_SOURCE -g -O1 $SAN -fsanitize=fuzzer -Isrc -Iinclude \
        $(pkg-config --cflags libcjson libpcre2-8 libutf8proc) "$src" build-fuzz/libllmap.a \
        $(pkg-config --libs libmicrohttpd libcjson libcurl libpcre2-8 libutf8proc libedit libcrypto) \
        -lpthread -lm -o "$bin"
    mkdir -p "build-fuzz/corpus/$name"
    seeds=tests/fuzz/seeds/${name#fuzz_}
    [ -d "$seeds" ] || seeds=
    log=build-fuzz/$name.log
    if "$bin" -max_total_time="$per" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build-fuzz/ \
        "build-fuzz/corpus/$name" $seeds >"$log" 2>&1; then
        runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo '?')
        echo "fuzz $name: $runs runs in ${per}s, clean"
    else
        echo "fuzz $name: FAILED (see $log)"; tail -30 "$log"; status=1
    fi
done
exit $status
