#!/usr/bin/env bash
# The store commands end to end: import, create (Modelfile, errors with line numbers), list
# (--json), show (metadata from the GGUF, settings from the manifest), cp, rm, ps without a
# server, `store check` (exit status, corruption found, --fix). Expected values come from the
# shared README's description of the tiny models and from sha256sum, not from llmap.
TEST=store; . "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/tiny-qwen2-q8_0.gguf
[ -f "$MODEL" ] || skip_all "shared model $MODEL absent"
T=$(mktemp -d /tmp/llmap-test-storecli-XXXXXX)
trap 'rm -rf "$T"' EXIT
export LLMAP_HOME=$T/home
# A private copy: the store may hard-link it, and this test corrupts a blob later.
cp "$MODEL" "$T/qwen.gguf"
SUM=$(sha256sum "$T/qwen.gguf" | cut -c1-64)

check_run "import" "$BIN" import "$T/qwen.gguf" qwen:tiny
out=$("$BIN" import "$T/qwen.gguf" '../../etc/passwd' 2>&1); rc=$?
check_run "import rejects a hostile name (exit $rc)" test "$rc" -eq 1
check_run "hostile name message" grep -q "invalid model name" <<<"$out"
out=$("$BIN" import /etc/hostname x 2>&1); rc=$?
check_run "import rejects a non-GGUF file" test "$rc" -eq 1
out=$("$BIN" list)
check_run "list shows qwen:tiny with its id" grep -qE "^qwen:tiny +${SUM:0:12} " <<<"$out"
check_run "list --json has the digest" grep -q "\"digest\":[[:space:]]*\"sha256-$SUM\"" <<<"$("$BIN" list --json)"

# show: the README says tiny-qwen2 is a synthetic "qwen2" model, Q8_0.
out=$("$BIN" show qwen:tiny)
check_run "show architecture qwen2" grep -qE "architecture +qwen2" <<<"$out"
check_run "show quantization Q8_0" grep -qiE "quantization +q8_0" <<<"$out"
out2=$("$BIN" show "$T/qwen.gguf")
check_run "show accepts a path" grep -qE "architecture +qwen2" <<<"$out2"
out=$("$BIN" show nothere 2>&1); rc=$?
check_run "show of an unknown name fails" test "$rc" -eq 1
check_run "unknown name message" grep -q "model 'nothere:latest' not found" <<<"$out"

# create: a Modelfile with every kind of line; then errors name the line.
cat > "$T/Modelfile" <<'EOF'
# comment
FROM qwen:tiny
PARAMETER temperature 0.5
PARAMETER top_k 20
PARAMETER stop "<|im_end|>"
SYSTEM """You answer
in two lines."""
TEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""
EOF
check_run "create" "$BIN" create mine -f "$T/Modelfile"
json=$("$BIN" show mine --json)
check_run "created: temperature 0.5" grep -qE '"temperature":[[:space:]]*0.5' <<<"$json"
check_run "created: top_k 20" grep -qE '"top_k":[[:space:]]*20' <<<"$json"
check_run "created: stop" grep -q '"<|im_end|>"' <<<"$json"
check_run "created: multi-line system" grep -q '"system":[[:space:]]*"You answer\\nin two lines."' <<<"$json"
check_run "created: same blob" grep -q "sha256-$SUM" <<<"$json"
printf 'FROM qwen:tiny\nPARAMETER temperature 0.5\nPARAMETER temprature 1\n' > "$T/Bad"
out=$("$BIN" create x -f "$T/Bad" 2>&1); rc=$?
check_run "bad Modelfile fails" test "$rc" -eq 1
check_run "bad Modelfile names line 3" grep -q "Bad:3: unknown parameter 'temprature'" <<<"$out"
printf 'FROM ./qwen.gguf\n' > "$T/FromPath"
check_run "create FROM a path relative to the Modelfile" "$BIN" create frompath -f "$T/FromPath"

# cp, rm and blob sharing.
check_run "cp" "$BIN" cp mine team/copy:v2
check_run "cp listed" grep -q "^team/copy:v2 " <<<"$("$BIN" list)"
check_run "cp from a path imports" "$BIN" cp "$T/qwen.gguf" frompath2
check_run "rm" "$BIN" rm mine frompath frompath2
check_run "blob kept while names use it" test -f "$LLMAP_HOME/blobs/sha256-$SUM"
out=$("$BIN" rm mine 2>&1); rc=$?
check_run "rm of a missing name fails" test "$rc" -eq 1
check_run "store check clean" "$BIN" store check

# Corruption is found and makes check fail; the corrupt model is no longer listed.
# (A fresh file replaces the blob: it may be a hard link to qwen.gguf, which must stay intact.)
blob=$LLMAP_HOME/blobs/sha256-$SUM
cp "$blob" "$T/damaged"
printf 'XXXX' | dd of="$T/damaged" bs=1 seek=1000 conv=notrunc status=none
mv -f "$T/damaged" "$blob"
out=$("$BIN" store check); rc=$?
check_run "check fails on a corrupted blob (exit $rc)" test "$rc" -eq 1
check_run "check names the problem" grep -q "content does not match its digest" <<<"$out"
out=$("$BIN" store check --json)
check_run "check --json counts the problem" grep -qE '"problems":[[:space:]]*1,' <<<"$out"
: > "$LLMAP_HOME/manifests/.tmp-leftover.json.abc123"
out=$("$BIN" store check --fix)
check_run "--fix removes temp files" test ! -e "$LLMAP_HOME/manifests/.tmp-leftover.json.abc123"
check_run "--fix removes the corrupted blob" test ! -e "$blob"
check_run "a model without its blob is not listed" test -z "$("$BIN" list | awk 'NR > 1')"
out=$("$BIN" import "$T/qwen.gguf" qwen:tiny)
check_run "re-import restores the blob ($out)" test "$(sha256sum "$blob" | cut -c1-64)" = "$SUM"
check_run "store check clean after repair" "$BIN" store check
check_run "both names listed again" test "$("$BIN" list | awk 'NR > 1' | wc -l)" -eq 2
"$BIN" rm qwen:tiny team/copy:v2 >/dev/null
check_run "store check clean after removal" "$BIN" store check
check_run "list empty" test -z "$("$BIN" list | awk 'NR > 1')"

# ps with no server: a friendly line, exit 0.
out=$(LLMAP_HOST=127.0.0.1:9 "$BIN" ps 2>&1); rc=$?
check_run "ps without a server exits 0" test "$rc" -eq 0
check_run "ps says no server running" grep -q "no server running" <<<"$out"
# ps against a stand-in server: a static /api/ps in Ollama's response shape.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
mkdir -p "$T/srv/api"
printf '{"models":[{"name":"qwen:tiny","model":"qwen:tiny","size":18658560,"digest":"%s","expires_at":"2026-01-01T00:05:00Z"}]}' \
    "$SUM" > "$T/srv/api/ps"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$PY" -m http.server "$PORT" --bind 127.0.0.1 --directory "$T/srv" >/dev/null 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
out=$(LLMAP_HOST=127.0.0.1:$PORT "$BIN" ps)
check_run "ps lists the loaded model" grep -qE "^qwen:tiny +18.7 MB +2026-01-01T00:05:00Z" <<<"$out"
check_run "ps --json passes the response through" grep -q '"expires_at"' <<<"$(LLMAP_HOST=http://127.0.0.1:$PORT "$BIN" ps --json)"
finish
