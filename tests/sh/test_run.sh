#!/usr/bin/env bash
# test_run — `llmap run` as a user drives it: one-shot with a piped or given prompt (output,
# determinism, options, errors), and the interactive chat in a real terminal (tmux): a message
# and its answer, Ctrl-C in the middle of a long answer returning to a working prompt, Ctrl-C
# at the prompt, /set, /show, /clear, multi-line input, /bye and Ctrl-D.
TEST=run
. "$(dirname "$0")/lib.sh"
MODEL=$SHARED/models/tiny-llama-q8_0.gguf
tmp=$(mktemp -d)
SOCK=llmap-test-$$
cleanup() {
    tmux -L "$SOCK" kill-server 2>/dev/null
    rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SOCK" "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SOCK.lock"
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -f "$MODEL" ]; then skip "shared model $MODEL not found"; finish; fi
# The chat history file lives beside the store: keep it out of the user's home.
export LLMAP_HOME="$tmp/home"
mkdir -p "$LLMAP_HOME"
# A sanitizer build is slow; keep the answers short anyway.
RUN=("$BIN" run "$MODEL" --threads 1)

# ---- one-shot -----------------------------------------------------------------------------------
echo hi | "${RUN[@]}" --temperature 0 --num-predict 12 --verbose >"$tmp/a" 2>"$tmp/v"
check '[ $? -eq 0 ]' "piped one-shot exits 0 ($(tail -3 "$tmp/v"))"
check '[ -s "$tmp/a" ] && [ "$(wc -c <"$tmp/a")" -gt 5 ]' "piped one-shot prints an answer"
"${RUN[@]}" hi --temperature 0 --num-predict 12 >"$tmp/b" </dev/null 2>/dev/null
check 'cmp -s "$tmp/a" "$tmp/b"' "the prompt as an argument answers like the same prompt piped"
echo "something else entirely" | "${RUN[@]}" --temperature 0 --num-predict 12 >"$tmp/c" 2>/dev/null
check '! cmp -s "$tmp/a" "$tmp/c"' "another prompt gives another answer"
echo hi | "${RUN[@]}" --temperature 1 --seed 7 --num-predict 12 >"$tmp/s1" 2>/dev/null
echo hi | "${RUN[@]}" --temperature 1 --seed 7 --num-predict 12 >"$tmp/s2" 2>/dev/null
check 'cmp -s "$tmp/s1" "$tmp/s2"' "same seed, same answer"
echo hi | "${RUN[@]}" --num-predict 0 >"$tmp/z" 2>/dev/null
check '[ "$(cat "$tmp/z")" = "" ]' "--num-predict 0 answers nothing"
echo hi | "${RUN[@]}" --temperature 0 --num-predict 12 --system "You are terse." >"$tmp/sys" 2>/dev/null
check '! cmp -s "$tmp/a" "$tmp/sys"' "--system changes the prompt and so the answer"
check 'grep -q "^generation: *12 tokens .*tokens/s" "$tmp/v"' "--verbose reports generated tokens and tokens/s"
check 'grep -q "^prompt eval: .*tokens/s" "$tmp/v" && grep -q "^page faults: .*major" "$tmp/v" && grep -q "^load time:" "$tmp/v"' \
    "--verbose reports prompt speed, page faults and load time"
# The answer must not contain a stop string given on the command line.
first=$(head -c 3 "$tmp/a")
echo hi | "${RUN[@]}" --temperature 0 --num-predict 12 --stop "$first" >"$tmp/st" 2>/dev/null
check '[ "$(cat "$tmp/st")" = "" ]' "a stop string at the very start leaves an empty answer"

# A model from the store: the manifest's options and system prompt apply, and the command
# line overrides them.
printf 'FROM %s\nPARAMETER temperature 0\nPARAMETER num_predict 12\nSYSTEM You are terse.\n' "$MODEL" >"$tmp/Modelfile"
if "$BIN" create tiny-run-test:latest -f "$tmp/Modelfile" >/dev/null 2>"$tmp/create.err"; then
    echo hi | "$BIN" run tiny-run-test --threads 1 >"$tmp/store" 2>/dev/null
    check 'cmp -s "$tmp/store" "$tmp/sys"' "a store model answers with its manifest's options and system prompt"
    echo hi | "$BIN" run tiny-run-test --threads 1 --num-predict 3 >"$tmp/store3" 2>/dev/null
    check '[ -s "$tmp/store3" ] && [ "$(head -c "$(($(wc -c <"$tmp/store3") - 1))" "$tmp/store3")" = "$(head -c "$(($(wc -c <"$tmp/store3") - 1))" "$tmp/sys")" ] && ! cmp -s "$tmp/store3" "$tmp/sys"' \
        "--num-predict on the command line overrides the manifest"
else
    bad "llmap create failed: $(cat "$tmp/create.err")"
fi

# Ctrl-C (SIGINT) during a one-shot answer stops it: exit status 130, the partial answer kept.
# The signal goes in once the answer has started streaming. The answer is sampled, so it can
# end by itself (EOS) before that on a loaded machine: such a run does not count, another
# starts (up to 5).
rc=none
for attempt in 1 2 3 4 5; do
    : >"$tmp/int"
    "${RUN[@]}" "Tell me everything" --num-predict 100000 >"$tmp/int" 2>"$tmp/int.err" </dev/null &
    pid=$!
    for _ in $(seq 200); do
        [ -s "$tmp/int" ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
    done
    if kill -INT $pid 2>/dev/null; then
        wait $pid
        rc=$?
        break
    fi
    wait $pid
    rc="ended by itself ($?)"
done
check '[ "$rc" = 130 ] && grep -q "answer stopped" "$tmp/int.err" && [ -s "$tmp/int" ]' \
    "SIGINT stops a one-shot answer with status 130 (got $rc)"

"$BIN" run "$tmp/missing.gguf" hi >/dev/null 2>"$tmp/e1"
check '[ $? -eq 1 ] && grep -q "missing.gguf" "$tmp/e1"' "a missing model is a clear error, exit 1"
printf 'not a model' >"$tmp/bad.gguf"
"$BIN" run "$tmp/bad.gguf" hi >/dev/null 2>"$tmp/e2"
check '[ $? -eq 1 ] && grep -q "bad.gguf" "$tmp/e2" && grep -qi "gguf" "$tmp/e2"' "a non-GGUF file is a clear error, exit 1"
"$BIN" run "$MODEL" hi --temperature hot >/dev/null 2>"$tmp/e3"
check '[ $? -eq 2 ] && grep -q "temperature" "$tmp/e3"' "a bad option value is a usage error naming the option"

# ---- interactive, in tmux -------------------------------------------------------------------------
if ! command -v tmux >/dev/null; then skip "tmux not installed: interactive tests not run"; finish; fi

T() { tmux -L "$SOCK" "$@"; }
screen() { T capture-pane -p -J -S - -t "$1"; }
# poll SESSION SECONDS WHAT command...: runs the command every 0.1 s until it succeeds; when
# SECONDS pass or the session ends first, shows the screen (waiting for WHAT) and fails.
poll() {
    local session=$1 end=$((SECONDS + $2)) what=$3
    shift 3
    while [ $SECONDS -lt $end ]; do
        "$@" && return 0
        T has-session -t "$session" 2>/dev/null || break
        sleep 0.1
    done
    echo "--- screen of $session while waiting for $what:" >&2
    screen "$session" | tail -15 >&2
    return 1
}
# wait_for SESSION REGEX [seconds]: polls the screen until REGEX matches.
shows() { screen "$1" | grep -qE -- "$2"; }
wait_for() { poll "$1" "${3:-20}" "/$2/" shows "$1" "$2"; }
# Prompts shown so far (each answer ends with a new one); the last line of the screen is
# then an empty prompt again.
prompts() { screen "$1" | grep -cE '^>>>( |$)'; }
idle() { [ "$(screen "$1" | sed 's/ *$//' | grep -v '^$' | tail -1)" = ">>>" ]; }
# wait_prompt SESSION N: until at least N prompts were shown and the chat waits for input.
prompt_ready() { [ "$(prompts "$1")" -ge "$2" ] && idle "$1"; }
wait_prompt() { poll "$1" 20 "prompt $2" prompt_ready "$1" "$2"; }

# say SESSION INPUT PATTERN WHAT: types INPUT and Enter, then checks that PATTERN shows up.
say() {
    T send-keys -t "$1" "$2" Enter
    check_run "$4" wait_for "$1" "$3"
}

# A huge --num-predict so that an answer runs until it is interrupted. The shell wrapper keeps
# the pane alive after exit to show the exit status.
start() {
    T new-session -d -s "$1" -x 160 -y 50 \
        "$(printf '%q ' "${RUN[@]}") --num-predict 100000 --seed 3; echo EXITED rc=\$?; sleep 60"
}
if ! start chat; then
    bad "tmux cannot start a session (is /dev/null a character device? are ptys available?)"
    finish
fi
check 'wait_prompt chat 1' "the interactive prompt appears"

say chat '/set num_predict 8' 'Set parameter .num_predict. to .8.' "/set num_predict is confirmed"
n=$(prompts chat)
T send-keys -t chat 'Hello there' Enter
check 'wait_for chat "^>>> Hello there$" && wait_prompt chat $((n + 1))' "a message gets an answer and the prompt returns"

say chat '/set num_predict 100000' 'to .100000.' "/set num_predict back to unlimited"
n=$(prompts chat)
T send-keys -t chat 'Tell me a very long story' Enter
# Long enough for the answer to be running, short enough to stay inside the 2048-token context:
# the tiny model writes ~1300 tokens/s here, and after 1.5 s the context had shifted, which
# rightly drops the conversation's start from the cache (the reuse check below then fails).
sleep 0.5
T send-keys -t chat C-c
check 'wait_for chat "\(answer stopped\)"' "Ctrl-C stops a long answer"
check 'wait_prompt chat $((n + 1))' "the prompt is back after Ctrl-C"
check '! screen chat | grep -q EXITED' "Ctrl-C during an answer does not exit"

say chat '/set num_predict 4' 'to .4.' "the prompt still works after Ctrl-C"
T send-keys -t chat '/show info' Enter
check 'wait_for chat "architecture +llama" && wait_for chat "tiny-llama"' "/show info describes the model"
say chat '/set temperature 0.7' 'Set parameter .temperature. to .0.7.' "/set temperature"
say chat '/show parameters' 'temperature +0.7' "/show parameters shows the new temperature"
say chat '/set temperature warm' 'temperature wants a number' "a bad /set value is refused with a reason"
say chat '/set verbose' 'Set .verbose. mode' "/set verbose"
n=$(prompts chat)
T send-keys -t chat 'And another thing' Enter
check 'wait_prompt chat $((n + 1)) && wait_for chat "^prompt eval: +[0-9]+ tokens \([1-9][0-9]+ cached\)"' \
    "the next turn reuses the conversation cached from the earlier turns"
check 'wait_for chat "^generation: +4 tokens"' "/set num_predict applies to the next answer"
say chat '/set quiet' 'Set .quiet. mode' "/set quiet"
say chat '/frobnicate' 'Unknown command ./frobnicate.' "an unknown command is reported"
say chat '/clear' 'Cleared session context' "/clear"

# Multi-line: a continued line and a """ block, each answered once.
n=$(prompts chat)
say chat 'first line \' '^\.\.\.( |$)' "a line ending in \\ continues"
T send-keys -t chat 'second line' Enter
check 'wait_prompt chat $((n + 1))' "the continued message is answered"
T send-keys -t chat '"""' Enter 'one' Enter 'two"""' Enter
check 'wait_prompt chat $((n + 2))' "a \"\"\" block is answered once"
check '[ "$(prompts chat)" -eq $((n + 2)) ]' "... and only once"

T send-keys -t chat C-c
check 'wait_for chat "Use Ctrl-D or /bye to exit"' "Ctrl-C at the prompt says how to leave"
say chat '/bye' 'EXITED rc=0' "/bye exits with status 0"

check 'grep -q "Hello" "$LLMAP_HOME/history" 2>/dev/null' "the input history is saved in \$LLMAP_HOME/history"

# The next chat recalls the saved history (Up brings back the last line); Ctrl-U clears the
# line again and Ctrl-D on the empty line exits.
start eof
check 'wait_prompt eof 1' "second chat starts"
T send-keys -t eof Up
check 'wait_for eof "^>>> /bye"' "Up recalls the previous chat's last input"
T send-keys -t eof C-u
check 'wait_prompt eof 1' "Ctrl-U clears the recalled line"
T send-keys -t eof C-d
check 'wait_for eof "EXITED rc=0"' "Ctrl-D exits with status 0"
finish
