#!/usr/bin/env bash
# llmap pull over loopback:
#   1. a plain GGUF file from `"$PY" -m http.server`, checked against sha256sum;
#   2. --sha256 / #sha256= verification: a wrong digest or a corrupted file is rejected and
#      nothing is listed or left behind;
#   3. resume: a rate-limited pull is killed with SIGKILL mid-way, the next pull continues
#      with an HTTP Range request (asserted from the server's own request log);
#   4. a real OCI/Docker registry (Debian's docker-registry): the model pushed through the
#      registry HTTP API with Ollama's media types, pulled back and shown.
# Each part uses its own LLMAP_HOME. Needs python3, curl, sha256sum, docker-registry.
TEST=pull; . "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/tiny-llama-q4_0.gguf

[ -f "$MODEL" ] || skip_all "shared model $MODEL absent"
# The system interpreter directly: version-manager shims cost seconds per start on a busy machine.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || skip_all "python3 missing"

T=$(mktemp -d /tmp/llmap-test-pull-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
sha() { sha256sum "$1" | cut -c1-64; }

mkdir -p "$T/srv"
cp "$MODEL" "$T/srv/tiny.gguf"
SUM=$(sha "$T/srv/tiny.gguf")
SIZE=$(stat -c %s "$T/srv/tiny.gguf")
# A corrupted copy: one byte flipped in the middle (still parses as GGUF: tensor data).
cp "$T/srv/tiny.gguf" "$T/srv/corrupt.gguf"
printf '\xff' | dd of="$T/srv/corrupt.gguf" bs=1 seek=$((SIZE / 2)) conv=notrunc status=none
# A truncated copy: not a valid GGUF any more.
head -c $((SIZE / 3)) "$T/srv/tiny.gguf" > "$T/srv/trunc.gguf"

# ---- 1. plain http.server ------------------------------------------------------------------
P1=$(free_port)
"$PY" -m http.server "$P1" --bind 127.0.0.1 --directory "$T/srv" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$P1/" || bad "http.server did not start"
export LLMAP_HOME=$T/h1
URL=http://127.0.0.1:$P1
check_run "pull plain file" "$BIN" pull "$URL/tiny.gguf" --quiet
check_run "listed as tiny:latest" grep -q '^tiny:latest ' <("$BIN" list)
check_run "blob named by sha256sum's digest" test -f "$LLMAP_HOME/blobs/sha256-$SUM"
check_run "blob content matches" test "$(sha "$LLMAP_HOME/blobs/sha256-$SUM")" = "$SUM"
out=$("$BIN" show tiny)
check_run "show: architecture llama" grep -q 'architecture *llama' <<<"$out"
check_run "show: quantization Q4_0" grep -qi 'quantization *q4_0' <<<"$out"
check_run "pull with the right --sha256" "$BIN" pull "$URL/tiny.gguf" good --sha256 "$SUM" --quiet
check_run "pull with the right #sha256=" "$BIN" pull "$URL/tiny.gguf#sha256=$SUM" good2 --quiet

# ---- 2. verification failures -----------------------------------------------------------------
WRONG=$(printf '%064d' 0)
err=$("$BIN" pull "$URL/tiny.gguf" wrong --sha256 "$WRONG" --quiet 2>&1); rc=$?
check_run "wrong --sha256 fails" test "$rc" -ne 0
check_run "wrong --sha256 message" grep -q "sha256 mismatch" <<<"$err"
err=$("$BIN" pull "$URL/corrupt.gguf#sha256=$SUM" corrupt --quiet 2>&1); rc=$?
check_run "corrupted file fails" test "$rc" -ne 0
check_run "corrupted file message" grep -q "sha256 mismatch" <<<"$err"
err=$("$BIN" pull "$URL/trunc.gguf" trunc --quiet 2>&1); rc=$?
check_run "truncated GGUF fails" test "$rc" -ne 0
check_run "truncated GGUF message" grep -q "rejected" <<<"$err"
err=$("$BIN" pull "$URL/absent.gguf" absent --quiet 2>&1); rc=$?
check_run "404 fails" test "$rc" -ne 0
check_run "404 message" grep -q "HTTP 404" <<<"$err"
# A registry whose blob does not match the digest its manifest names (static files served by
# http.server in the registry's URL layout): the download is rejected.
CSUM=$(sha "$T/srv/corrupt.gguf")
mkdir -p "$T/srv/v2/library/liar/manifests" "$T/srv/v2/library/liar/blobs"
cp "$T/srv/tiny.gguf" "$T/srv/v2/library/liar/blobs/sha256:$CSUM"
printf '{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s","size":%d}]}' \
    "$CSUM" "$SIZE" > "$T/srv/v2/library/liar/manifests/latest"
err=$("$BIN" pull "$URL/library/liar" --quiet 2>&1); rc=$?
check_run "registry blob with the wrong digest fails" test "$rc" -ne 0
check_run "registry digest mismatch message ($err)" grep -q "sha256 mismatch" <<<"$err"
printf '{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s","size":%d}]}' \
    "$CSUM" $((SIZE + 1)) > "$T/srv/v2/library/liar/manifests/big"
err=$("$BIN" pull "$URL/library/liar:big" --quiet 2>&1); rc=$?
check_run "registry blob of the wrong size fails ($err)" test "$rc" -ne 0
printf '{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s","size":%d}]}' \
    "$CSUM" $((SIZE - 1)) > "$T/srv/v2/library/liar/manifests/small"
err=$("$BIN" pull "$URL/library/liar:small" --quiet 2>&1); rc=$?
check_run "registry blob longer than announced is cut off" test "$rc" -ne 0
check_run "cut-off message ($err)" grep -q "more than the expected" <<<"$err"
# Progress: without a terminal, plain lines; the last one reports the whole file.
err=$("$BIN" pull "$URL/tiny.gguf" progress 2>&1 >/dev/null)
check_run "plain progress line with the total ($err)" grep -qE "^progress:latest: 11.7 MB/11.7 MB \(100%\)" <<<"$err"
"$BIN" rm progress >/dev/null
names=$("$BIN" list | awk 'NR > 1 {print $1}' | sort | tr '\n' ' ' | sed 's/ $//')
check_run "only verified models listed ($names)" test "$names" = "good2:latest good:latest tiny:latest"
check_run "no partial files left after rejections" test -z "$(ls -A "$LLMAP_HOME/tmp")"
check_run "store check clean" "$BIN" store check

# ---- 3. resume after SIGKILL ---------------------------------------------------------------
# A small Range-capable server that logs "<Range header> <start> <bytes sent>" per request.
cat > "$T/rangesrv.py" <<'EOF'
import http.server, os, sys
root, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        path = os.path.join(root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404); return
        st = os.stat(path)
        size = st.st_size
        etag = '"%d-%d"' % (st.st_mtime_ns, size)
        rng = self.headers.get('Range')
        ifr = self.headers.get('If-Range')
        start = 0
        if rng and ifr and ifr != etag:
            rng = None  # the file changed since the partial copy: send all of it (RFC 9110 If-Range)
        if rng and rng.startswith('bytes='):
            start = int(rng[6:].split('-')[0])
            if start >= size:
                self.send_response(416); self.send_header('Content-Range', 'bytes */%d' % size); self.end_headers(); return
            self.send_response(206); self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, size - 1, size))
        else:
            self.send_response(200)
        self.send_header('ETag', etag)
        self.send_header('Content-Length', str(size - start)); self.end_headers()
        sent = 0
        try:
            with open(path, 'rb') as f:
                f.seek(start)
                while True:
                    b = f.read(65536)
                    if not b: break
                    self.wfile.write(b); sent += len(b)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with open(log, 'a') as L: L.write('%s %d %d %s\n' % (rng.replace(' ', '') if rng else '-', start, sent, 'if-range' if ifr else '-'))
http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
EOF
# kill_pull_at PID BYTES: SIGKILLs the pull once its partial file holds BYTES (or after 10 s);
# sets $partial to that file.
kill_pull_at() {
    partial=
    for _ in $(seq 1 200); do
        partial=$(ls "$LLMAP_HOME"/tmp/pull-*.partial 2>/dev/null | head -1)
        [ -n "$partial" ] && [ "$(stat -c %s "$partial")" -ge "$2" ] && break
        sleep 0.05
    done
    kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}
P2=$(free_port)
LOG=$T/range.log
: > "$LOG"
"$PY" "$T/rangesrv.py" "$T/srv" "$P2" "$LOG" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$P2/none" || true
export LLMAP_HOME=$T/h2
# 2 MB/s for an 11.7 MB file: about 6 s in total; kill once 3 MB are down.
LLMAP_PULL_RATE_LIMIT=2m "$BIN" pull "http://127.0.0.1:$P2/tiny.gguf#sha256=$SUM" resumed --quiet &
kill_pull_at $! 3000000
have=$(stat -c %s "$partial" 2>/dev/null || echo 0)
check_run "partial file kept after SIGKILL ($have bytes)" test "$have" -ge 3000000 -a "$have" -lt "$SIZE"
check_run "nothing listed after SIGKILL" test -z "$("$BIN" list | awk 'NR > 1')"
check_run "store check passes with a partial download" "$BIN" store check
sleep 0.3 # let the server log the broken transfer
check_run "resumed pull succeeds" "$BIN" pull "http://127.0.0.1:$P2/tiny.gguf#sha256=$SUM" resumed --quiet
last=$(tail -1 "$LOG")
read -r rng start sent ifr <<<"$last"
check_run "second request asked for bytes=$have- (log: $last)" test "$rng" = "bytes=$have-"
check_run "second request sent only the rest ($sent = $SIZE - $have)" test "$sent" -eq $((SIZE - have))
check_run "resumed blob verified" test "$(sha "$LLMAP_HOME/blobs/sha256-$SUM")" = "$SUM"
check_run "resumed model listed" grep -q '^resumed:latest ' <("$BIN" list)
check_run "partial file consumed" test -z "$(ls -A "$LLMAP_HOME/tmp")"
check_run "resume sent If-Range with the ETag the server gave" test "$ifr" = if-range

# The file changes on the server between the two attempts: If-Range makes the server send
# all of the new file (200) instead of splicing its tail onto the old beginning.
QWEN=$SHARED/models/tiny-qwen2-q4_0.gguf
cp "$T/srv/tiny.gguf" "$T/srv/swap.gguf"
LLMAP_PULL_RATE_LIMIT=2m "$BIN" pull "http://127.0.0.1:$P2/swap.gguf" swapped --quiet &
kill_pull_at $! 2000000
cp "$QWEN" "$T/srv/swap.gguf.new" && mv -f "$T/srv/swap.gguf.new" "$T/srv/swap.gguf"
sleep 0.3
check_run "pull of the changed file succeeds" "$BIN" pull "http://127.0.0.1:$P2/swap.gguf" swapped --quiet
read -r rng start sent ifr <<<"$(tail -1 "$LOG")"
check_run "changed file: If-Range sent, whole new file received ($rng $start $sent $ifr)" \
    test "$ifr" = if-range -a "$start" = 0 -a "$sent" = "$(stat -c %s "$QWEN")"
check_run "changed file: the blob is exactly the new file" test -f "$LLMAP_HOME/blobs/sha256-$(sha "$QWEN")"

# ---- 4. an OCI/Docker registry in Ollama's layout -------------------------------------------
if ! command -v docker-registry >/dev/null; then
    skip_all "docker-registry missing (apt-get install docker-registry)"
fi
P3=$(free_port)
cat > "$T/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$P3
EOF
docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
PIDS+=($!)
REG=http://127.0.0.1:$P3
wait_http "$REG/v2/" || bad "docker-registry did not start"
# Monolithic blob upload: POST for an upload URL, PUT the bytes with ?digest=.
push_blob() { # repo file -> prints "sha256:<hex> <size>"
    local repo=$1 file=$2 d loc sep
    d=sha256:$(sha "$file")
    loc=$(curl -s -i -X POST "$REG/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
    case "$loc" in http*) ;; *) loc=$REG$loc;; esac
    case "$loc" in *\?*) sep='&';; *) sep='?';; esac
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary @"$file" "$loc${sep}digest=$d")
    [ "$code" = 201 ] || echo "push of $file: HTTP $code" >&2
    echo "$d $(stat -c %s "$file")"
}
printf '%s' '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}' > "$T/template"
printf '%s' '{"temperature":0.25,"stop":["<|end|>"],"num_keep":4}' > "$T/params"
printf '%s' 'You are a tiny test model.' > "$T/system"
printf '%s' '{"model_format":"gguf","model_family":"llama","architecture":"amd64","os":"linux"}' > "$T/config"
read -r dm sm <<<"$(push_blob library/tiny "$T/srv/tiny.gguf")"
read -r dt st <<<"$(push_blob library/tiny "$T/template")"
read -r dp sp <<<"$(push_blob library/tiny "$T/params")"
read -r ds ss <<<"$(push_blob library/tiny "$T/system")"
read -r dc sc <<<"$(push_blob library/tiny "$T/config")"
cat > "$T/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
 "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"$dc","size":$sc},
 "layers":[
  {"mediaType":"application/vnd.ollama.image.model","digest":"$dm","size":$sm},
  {"mediaType":"application/vnd.ollama.image.template","digest":"$dt","size":$st},
  {"mediaType":"application/vnd.ollama.image.params","digest":"$dp","size":$sp},
  {"mediaType":"application/vnd.ollama.image.system; charset=utf-8","digest":"$ds","size":$ss}]}
EOF
code=$(curl -s -o "$T/put.out" -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
    --data-binary @"$T/manifest.json" "$REG/v2/library/tiny/manifests/0.1")
check_run "manifest pushed (HTTP $code $(head -c 200 "$T/put.out"))" test "$code" = 201
export LLMAP_HOME=$T/h3
check_run "pull from the registry" "$BIN" pull "$REG/library/tiny:0.1" --quiet
check_run "registry model listed as tiny:0.1" grep -q '^tiny:0.1 ' <("$BIN" list)
check_run "registry blob verified" test "$(sha "$LLMAP_HOME/blobs/sha256-$SUM")" = "$SUM"
json=$("$BIN" show tiny:0.1 --json)
# One interpreter start for all fields: architecture, template, system, temperature, stop[0].
mapfile -t f < <("$PY" -c 'import json,sys; d=json.load(sys.stdin); o=d.get("options",{})
for v in (d.get("architecture"), d.get("template"), d.get("system"), o.get("temperature"), (o.get("stop") or [None])[0]): print(v)' <<<"$json")
check_run "show: architecture" test "${f[0]:-}" = llama
check_run "show: template from the template layer" test "${f[1]:-}" = "$(cat "$T/template")"
check_run "show: system from the system layer" test "${f[2]:-}" = "You are a tiny test model."
check_run "show: temperature from the params layer" test "${f[3]:-}" = 0.25
check_run "show: stop from the params layer" test "${f[4]:-}" = "<|end|>"
check_run "pull with registry:// style name to another tag fails cleanly" \
    test "$("$BIN" pull "$REG/library/tiny:nope" --quiet 2>&1 | grep -c 'not found')" = 1
check_run "store check after registry pull" "$BIN" store check
finish
