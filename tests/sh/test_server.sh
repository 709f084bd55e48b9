#!/usr/bin/env bash
# test_server — `llmap serve` end to end: the real ollama and openai npm clients against the
# shared tiny models (tests/node/api.mjs), then bad input (malformed JSON, wrong types,
# missing fields, huge bodies, unknown and path-like model names, wrong methods), slow
# clients, a client that disconnects mid-stream, keep_alive unloading, a bounded load run
# with RSS before/after, and a clean SIGTERM shutdown (exit 0; leak-free under ASan).
# Environment: LLMAP_BIN, LLMAP_ROOT, LLMAP_BUILD (tools/run-tests.sh), LLMAP_SHARED.
TEST=server; . "$(dirname "$0")/lib.sh"
NODE_DIR=$ROOT/tests/node
MODEL=tiny-llama-q8_0

[ -f "$SHARED/models/$MODEL.gguf" ] || skip_all "shared models not found in $SHARED/models"

command -v curl >/dev/null || skip_all "curl (the command) missing: apt-get install curl"

# ---- node + the pinned client libraries ----------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends nodejs npm >/dev/null 2>&1; }
    fi
    command -v node >/dev/null || skip_all "node/npm missing (tools/deps.sh installs them)"
fi
if [ ! -d "$NODE_DIR/node_modules/ollama" ] || [ ! -d "$NODE_DIR/node_modules/openai" ] ||
   [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
        skip_all "npm ci failed in tests/node (network?)"
fi

# ---- server --------------------------------------------------------------------------------
WORK=$(mktemp -d)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

start_server() { # extra flags...
    "$BIN" serve --port 0 --models "$SHARED/models" "$@" >"$WORK/server.log" 2>&1 &
    SRV_PID=$!
    PORT=$(listen_port "$WORK/server.log")
    [ -n "$PORT" ] || { cat "$WORK/server.log" >&2; bad "server did not start"; finish; }
    URL=http://127.0.0.1:$PORT
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SRV_PID/status"; }

start_server --parallel 2

# status CODE of a request: req METHOD PATH [BODY-FILE-OR-STRING]
req() {
    local m=$1 p=$2
    shift 2
    # (-X HEAD would make curl wait for a body that never comes: -I is curl's HEAD)
    if [ "$m" = HEAD ]; then curl -s -I -o "$WORK/body" -w '%{http_code}' "$URL$p" "$@"
    else curl -s -o "$WORK/body" -w '%{http_code}' -X "$m" "$URL$p" "$@"; fi
}
# Ollama routes: {"error":"..."}; /v1 routes: {"error":{"message":"...",...}}.
is_json_error() { grep -qE '^\{"error":("|\{"message":")' "$WORK/body"; }

# ---- the real clients ------------------------------------------------------------------------
(cd "$NODE_DIR" && LLMAP_URL=$URL LLMAP_SHARED=$SHARED timeout 120 node api.mjs) >"$WORK/api.out" 2>&1
grep '^FAIL' "$WORK/api.out" | sed 's/^/  node: /' >&2
np=$(grep -c '^PASS' "$WORK/api.out"); nf=$(grep -c '^FAIL' "$WORK/api.out")
pass=$((pass + np)); fail=$((fail + nf))
grep -q ' passed, ' "$WORK/api.out" || { bad "node api.mjs did not finish"; tail -5 "$WORK/api.out" >&2; }
echo "node api.mjs: $np passed, $nf failed"

# ---- bad input: right status, JSON error body, server stays up --------------------------------
expect() { # name expected-status method path [curl args...]
    local name=$1 want=$2
    shift 2
    local got
    got=$(req "$@")
    if [ "$got" = "$want" ] && { [ "$want" -lt 300 ] || is_json_error; }; then ok "$name ($got)"
    else bad "$name: status $got, want $want: $(head -c 200 "$WORK/body")"; fi
}
G=/api/generate
expect "malformed JSON" 400 POST $G -d '{"model":'
expect "truncated JSON" 400 POST $G -d '{"model":"x","prompt":"a"'
expect "body not an object" 400 POST $G -d '[1,2]'
expect "empty body" 400 POST $G
expect "model wrong type" 400 POST $G -d '{"model":5,"prompt":"a"}'
expect "prompt wrong type" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":[1]}"
expect "stream wrong type" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"a\",\"stream\":\"yes\"}"
expect "options wrong type" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"a\",\"options\":[]}"
expect "num_predict wrong type" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"a\",\"options\":{\"num_predict\":\"8\"}}"
expect "top_p out of range" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"a\",\"options\":{\"top_p\":7}}"
expect "temperature NaN-ish" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"a\",\"options\":{\"temperature\":1e999}}"
expect "bad keep_alive" 400 POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"\",\"keep_alive\":\"soon\"}"
expect "missing model" 400 POST $G -d '{"prompt":"a"}'
expect "chat missing messages" 400 POST /api/chat -d "{\"model\":\"$MODEL\"}"
expect "chat message not object" 400 POST /api/chat -d "{\"model\":\"$MODEL\",\"messages\":[1]}"
expect "chat bad role" 400 POST /api/chat -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}"
expect "chat content wrong type" 400 POST /api/chat -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":{}}]}"
expect "openai missing messages" 400 POST /v1/chat/completions -d "{\"model\":\"$MODEL\"}"
expect "openai max_tokens wrong type" 400 POST /v1/chat/completions -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":\"5\"}"
expect "completions prompt missing" 400 POST /v1/completions -d "{\"model\":\"$MODEL\"}"
expect "unknown model" 404 POST $G -d '{"model":"no-such-model","prompt":"a"}'
expect "unknown model (openai)" 404 POST /v1/chat/completions -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}'
expect "show unknown" 404 POST /api/show -d '{"model":"nope"}'
for name in ../../etc/passwd /etc/passwd "$SHARED/models/$MODEL.gguf" "..%2f$MODEL" "a/../../$MODEL" ".hidden" "$MODEL:../x" 'x\\y'; do
    st=$(req POST $G -d "{\"model\":\"$name\",\"prompt\":\"a\"}")
    check '[ "$st" = 400 ] || [ "$st" = 404 ]' "path-like model name '$name' refused: status $st"
done
expect "unknown route" 404 GET /api/nothing
expect "unknown /v1 route" 404 POST /v1/embeddings -d '{}'
expect "wrong method on generate" 405 GET $G
expect "wrong method on tags" 405 POST /api/tags -d '{}'
expect "wrong method on /" 405 DELETE /
head -c $((9 << 20)) /dev/zero | tr '\0' ' ' >"$WORK/huge"
expect "huge body (Content-Length)" 413 POST $G --data-binary @"$WORK/huge"
expect "huge body (chunked)" 413 POST $G -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/huge"
expect "health GET /" 200 GET /
check 'grep -q "Ollama is running" "$WORK/body"' "health text"
expect "health HEAD /" 200 HEAD /
expect "chat page for browsers" 200 GET / -H 'Accept: text/html,application/xhtml+xml'
check 'cmp -s "$WORK/body" "$ROOT/src/server/web/index.html"' "chat page is the embedded index.html"
expect "page script" 200 GET /app.js
check '"$ROOT/tools/embed-web.sh" --check' "embedded page up to date (tools/embed-web.sh --check)"

# ---- context limits behave like Ollama: long prompts keep their end, a full cache shifts --------
long_prompt=$(printf 'word %.0s' $(seq 300))
st=$(req POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"$long_prompt\",\"stream\":false,\"options\":{\"num_ctx\":64,\"num_predict\":4}}")
check '[ "$st" = 200 ] && grep -q "\"eval_count\":4" "$WORK/body"' \
    "prompt longer than num_ctx is truncated, not an error: $st $(head -c 200 "$WORK/body")"
st=$(req POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"stream\":false,\"options\":{\"num_ctx\":16,\"num_predict\":30}}")
check '[ "$st" = 200 ] && grep -q "\"eval_count\":30" "$WORK/body"' \
    "num_predict beyond num_ctx shifts the context: $st $(head -c 200 "$WORK/body")"

# ---- slow clients must not block others; idle connections are closed ---------------------------
# A second server with a 1 s idle timeout (the main one keeps the default, so the clients'
# keep-alive connections above are never cut under them).
"$BIN" serve --port 0 --models "$SHARED/models" --timeout 1 >"$WORK/slow.log" 2>&1 &
SLOW_PID=$!
SPORT=$(listen_port "$WORK/slow.log")
exec 3<>"/dev/tcp/127.0.0.1/$SPORT"
printf 'POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Le' >&3 # and then nothing
for _ in $(seq 10); do exec {fd}<>"/dev/tcp/127.0.0.1/$SPORT"; printf 'GET /api/ver' >&"$fd"; done
t0=$EPOCHREALTIME
st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SPORT/api/version")
dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')
check '[ "$st" = 200 ] && awk "BEGIN{exit !($dt < 1.5)}"' \
    "request served while 11 clients dribble headers: status $st in ${dt}s"
sleep 1.5 # --timeout 1
check 'timeout 3 cat <&3 >/dev/null' \
    "idle half-sent connection closed by the server (EOF, not still open): still open"
exec 3<&-
kill -TERM "$SLOW_PID"; wait "$SLOW_PID"
check '[ $? = 0 ]' "slow-client server: exit 0"

# ---- a client that disconnects mid-stream stops its generation ------------------------------------
long="{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"options\":{\"num_predict\":1800,\"num_ctx\":2048}}"
curl -sN --max-time 1 "$URL$G" -d "$long" >"$WORK/partial" 2>/dev/null
curl -sN --max-time 1 "$URL/v1/completions" -d "{\"model\":\"$MODEL\",\"prompt\":\"x\",\"max_tokens\":1800,\"stream\":true}" >/dev/null 2>&1
curl -s --max-time 1 "$URL/v1/chat/completions" -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1800}" >/dev/null 2>&1
check '[ "$(grep -c "\"done\":false" "$WORK/partial")" -ge 1 ]' "stream delivered chunks before the disconnect"
# The slots (--parallel 2) would stay busy for ~1800 tokens each if the generations went on
# (two streams noticed on their next write, one non-stream noticed by peeking at its socket).
busy=1
for _ in $(seq 50); do
    curl -s "$URL/api/ps" >"$WORK/ps"
    busy=$(grep -oE '"(busy_slots|active_requests)":[1-9]' "$WORK/ps" | wc -l)
    [ "$busy" = 0 ] && break
    sleep 0.1
done
check '[ "$busy" = 0 ]' "disconnected streams freed their slots: busy=$busy"
st=$(req POST $G -d "{\"model\":\"$MODEL\",\"prompt\":\"Hi\",\"stream\":false,\"options\":{\"num_predict\":2}}" --max-time 10)
check '[ "$st" = 200 ]' "server still answers after disconnects: status $st"

# ---- keep_alive: 0 unloads, a short duration expires, empty prompt loads ------------------------
Q=tiny-llama-q4_0
in_ps() { curl -s "$URL/api/ps" | grep -q "\"name\":\"$1:latest\""; }
st=$(req POST $G -d "{\"model\":\"$Q\",\"prompt\":\"\"}")
check '[ "$st" = 200 ] && grep -q "\"done_reason\":\"load\"" "$WORK/body" && in_ps $Q' "empty prompt loads (done_reason load)"
st=$(req POST $G -d "{\"model\":\"$Q\",\"prompt\":\"\",\"keep_alive\":0}")
check '[ "$st" = 200 ] && grep -q "\"done_reason\":\"unload\"" "$WORK/body" && ! in_ps $Q' "keep_alive 0 with empty prompt unloads"
req POST $G -d "{\"model\":\"$Q\",\"prompt\":\"Hi\",\"stream\":false,\"keep_alive\":\"1s\",\"options\":{\"num_predict\":1}}" >/dev/null
check 'in_ps $Q' "loaded after a request"
sleep 2.5
check '! in_ps $Q' "keep_alive \"1s\" expired: reaper unloaded it"

# ---- load: cheap endpoint + small generations, RSS flat ----------------------------------------
# 500 GETs, 8 in flight (curl --parallel: one process, so the client is not the bottleneck).
cheap_load() {
    for _ in $(seq "$1"); do printf 'url = "%s/api/version"\noutput = "/dev/null"\n' "$URL"; done >"$WORK/urls"
    local t0=$EPOCHREALTIME
    curl -s --parallel --parallel-max 8 -w '%{http_code}\n' -K "$WORK/urls" >"$WORK/codes" 2>/dev/null
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$1" '{c[$1]++} END {printf "{\"ok\":%d,\"errors\":%d,\"seconds\":%.3f}\n", c[200], n - c[200], b - a}' "$WORK/codes"
}
# Warm-up round first: thread stacks, malloc arenas of new connection threads, sessions.
cheap_load 200 >/dev/null
node "$NODE_DIR/load.mjs" "$URL" generate 8 4 >/dev/null
rss0=$(rss_kb)
cheap_load 500 >"$WORK/load1"
node "$NODE_DIR/load.mjs" "$URL" generate 16 4 >"$WORK/load2"
rss1=$(rss_kb)
echo "load: /api/version $(cat "$WORK/load1"); generate $(cat "$WORK/load2"); VmRSS ${rss0} kB -> ${rss1} kB"
check 'grep -q "\"ok\":500,\"errors\":0" "$WORK/load1"' \
    "500 requests at 8 concurrent, 0 errors: $(cat "$WORK/load1")"
check 'grep -q "\"ok\":16,\"errors\":0" "$WORK/load2"' \
    "16 generations at 4 concurrent, 0 errors: $(cat "$WORK/load2")"
# ASan keeps freed memory in quarantine (256 MiB by default), so RSS grows there by design.
rss_limit=$([ "${LLMAP_SANITIZED:-0}" = 1 ] && echo 131072 || echo 16384)
check '[ $((rss1 - rss0)) -lt $rss_limit ]' \
    "RSS flat after load (< +$((rss_limit / 1024)) MiB): $rss0 -> $rss1 kB"

# ---- clean shutdown ------------------------------------------------------------------------------
curl -sN "$URL$G" -d "$long" >/dev/null 2>&1 &
CURL_PID=$!
sleep 0.5
t0=$EPOCHREALTIME
kill -TERM "$SRV_PID"
wait "$SRV_PID"
rc=$?
dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')
SRV_PID=
wait "$CURL_PID" 2>/dev/null
check '[ "$rc" = 0 ]' \
    "SIGTERM during a stream: exit 0 (leak-free under ASan): exit $rc; $(tail -5 "$WORK/server.log")"
check 'awk "BEGIN{exit !($dt < 5)}"' "shutdown is prompt (< 5 s): ${dt}s"

# ---- the model store (no --models): names from manifests, Modelfile defaults applied ------------
export LLMAP_HOME=$WORK/store
cat >"$WORK/Modelfile" <<EOF
FROM $SHARED/models/$MODEL.gguf
PARAMETER num_predict 3
PARAMETER temperature 0
SYSTEM You are terse.
EOF
if "$BIN" create terse -f "$WORK/Modelfile" >/dev/null 2>"$WORK/create.err"; then
    "$BIN" serve --port 0 >"$WORK/server.log" 2>&1 &
    SRV_PID=$!
    PORT=$(listen_port "$WORK/server.log")
    URL=http://127.0.0.1:$PORT
    digest=$(sha256sum "$SHARED/models/$MODEL.gguf" | cut -d' ' -f1)
    req GET /api/tags >/dev/null
    check 'grep -q "\"name\":\"terse:latest\"" "$WORK/body" && grep -q "\"digest\":\"$digest\"" "$WORK/body"' \
        "store: /api/tags lists the manifest name with the blob's sha256: $(head -c 300 "$WORK/body")"
    req POST /api/chat -d '{"model":"terse","messages":[{"role":"user","content":"Hi"}],"stream":false}' >/dev/null
    cp "$WORK/body" "$WORK/default"
    check 'grep -q "\"eval_count\":3," "$WORK/default"' \
        "store: Modelfile num_predict applies: $(cat "$WORK/default")"
    req POST /api/chat -d '{"model":"terse","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi"}],"stream":false}' >/dev/null
    pe() { grep -o '"prompt_eval_count":[0-9]*' "$1"; }
    check '[ -n "$(pe "$WORK/default")" ] && [ "$(pe "$WORK/default")" = "$(pe "$WORK/body")" ]' \
        "store: Modelfile SYSTEM is the default system prompt (same prompt tokens as explicit): $(pe "$WORK/default") vs $(pe "$WORK/body")"
    req POST /api/generate -d '{"model":"terse:latest","prompt":"Hi","stream":false,"options":{"num_predict":5}}' >/dev/null
    check 'grep -q "\"eval_count\":5," "$WORK/body"' "store: request options override the Modelfile"
    for name in "../x" "/etc/passwd" "$SHARED/models/$MODEL.gguf" "Terse" "terse:../../x"; do
        st=$(req POST $G -d "{\"model\":\"$name\",\"prompt\":\"a\"}")
        check '[ "$st" = 400 ] || [ "$st" = 404 ]' "store: path-like name '$name' refused: status $st"
    done
    kill -TERM "$SRV_PID"; wait "$SRV_PID"; rc=$?; SRV_PID=
    check '[ "$rc" = 0 ]' "store server: exit 0: exit $rc"
else
    bad "llmap create failed: $(cat "$WORK/create.err")"
fi
# ---- addresses: LLMAP_HOST, a warning for non-loopback binds ---------------------------------------
wait_listen() { for _ in $(seq 100); do grep -q 'listening on' "$1" && return 0; sleep 0.1; done; return 1; }
LLMAP_HOST=127.0.0.1:0 "$BIN" serve --models "$SHARED/models" >"$WORK/h1.log" 2>&1 &
H1=$!
"$BIN" serve --host 0.0.0.0 --port 0 --models "$SHARED/models" >"$WORK/h2.log" 2>&1 &
H2=$!
wait_listen "$WORK/h1.log"; wait_listen "$WORK/h2.log"
check 'grep -q "listening on http://127.0.0.1:[1-9]" "$WORK/h1.log" && ! grep -q WARNING "$WORK/h1.log"' \
    "LLMAP_HOST=127.0.0.1:0 is used: $(cat "$WORK/h1.log")"
check 'grep -q "WARNING: listening on 0.0.0.0" "$WORK/h2.log"' "binding 0.0.0.0 warns: $(cat "$WORK/h2.log")"
kill -TERM "$H1" "$H2"; wait "$H1"; r1=$?; wait "$H2"; r2=$?
check '[ "$r1" = 0 ] && [ "$r2" = 0 ]' "both exit 0: $r1 $r2"
finish
