#!/usr/bin/env bash
# llmap against llama.cpp, side by side in one run (issue #5: the speed evidence).
#
# Absolute speeds on this shared 2-core machine move by 2x from one minute to the next, so the
# comparison only means something when both runtimes are measured in the same run, alternately,
# on the same files. llama.cpp comes from npm: node-llama-cpp 3.22.1 with its prebuilt linux-x64
# CPU binaries (real llama.cpp code: libllama + one ggml CPU backend per CPU generation, picked
# at run time), pinned by bench/llamacpp/package-lock.json and installed into build/llamacpp.
# A second tree, build/llamacpp-avx2, holds only the AVX2 ("haswell") ggml CPU variant, which
# forces llama.cpp onto the AVX2 code path the project targets even where the CPU reports AVX-512.
#
#   bench/vs-llamacpp.sh [TYPES...]      default: q4_0 q8_0 q4_k_m
#   env: LLMAP_BIN (./llmap)
#        VS_ROUNDS (3 alternations), VS_REPS (1 rep per process, after a warm-up), VS_THREADS (2),
#        VS_PP / VS_TG (512 / 128)
#        VS_VARIANTS ("auto avx2": llama.cpp with ggml's own CPU variant choice, and forced AVX2)
#        VS_FIRST_TOKEN (1: warm load + first token on q4_0), VS_FIRST_ROUNDS (VS_ROUNDS);
#          VS_ROUNDS=0 measures only that
#        VS_QUIET_WAIT (120: at most that many seconds of waiting for a quiet machine before each
#          run), VS_QUIET_MAX (30: quiet = at most 0.30 CPUs busy with other processes)
#
# Each round runs `llmap bench MODEL --json` and bench/llamacpp.mjs on the same model, in an
# order that flips every round. The table gives the median over rounds with the range, ratios
# llmap / llama.cpp, and generation as a share of the read bandwidth llmap measured in this run
# (median of the rounds; bytes of weights one token reads x tokens/s / bandwidth). Raw JSON
# lines are kept under build/vs-llamacpp/<time>/. Skips (exit 0) without node, npm or registry.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${LLMAP_BIN:-./llmap}
ROUNDS=${VS_ROUNDS:-3}
REPS=${VS_REPS:-1}
THREADS=${VS_THREADS:-2}
PP=${VS_PP:-512}
TG=${VS_TG:-128}
read -r -a want_variants <<<"${VS_VARIANTS:-auto avx2}"
WANT_FIRST=${VS_FIRST_TOKEN:-1}
MODELS=build/bench-models
NLC=${VS_LLAMACPP_DIR:-build/llamacpp}
NLC_AVX2=$NLC-avx2
NLC_VERSION=3.22.1
VARIANT_DIR=node_modules/@node-llama-cpp/linux-x64/bins/linux-x64

skip() {
    echo "vs-llamacpp: SKIP: $*"
    exit 0
}
note() { echo "vs-llamacpp: $*" >&2; }

# --- table ---------------------------------------------------------------------------------
# Everything it needs is in the results directory, so an old run can be shown again:
#   bench/vs-llamacpp.sh --table build/vs-llamacpp/<time>
print_table() {
    node - "$1" <<'JS'
const fs = require("fs"), path = require("path");
const dir = process.argv[2];
const files = fs.readdirSync(dir);
const order = (t) => ["q4_0", "q8_0", "q4_k_m"].indexOf(t) >>> 0; // the usual order first, then the rest
const types = [...new Set(files.map((f) => /^(.+)\.(llmap|llamacpp-\w+)\.jsonl$/.exec(f)).filter(Boolean).map((m) => m[1]))]
    .filter((t) => t !== "first").sort((x, y) => order(x) - order(y) || x.localeCompare(y));
const variants = [...new Set(files.map((f) => /\.llamacpp-(\w+)\.jsonl$/.exec(f)).filter(Boolean).map((m) => m[1]))]
    .sort((x, y) => (x === "auto" ? -1 : y === "auto" ? 1 : x.localeCompare(y)));
const read = (f) => {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) return [];
    return fs.readFileSync(p, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
};
const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b), n = s.length;
    return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const stat = (xs, d = 1) => xs.length === 0 ? "—" : xs.length === 1 ? f(xs[0], d) :
    `${f(median(xs), d)} (${f(Math.min(...xs), d)}–${f(Math.max(...xs), d)})`;
// ratio of medians, and in brackets the range of the ratios paired round by round
const ratio = (a, b) => {
    const n = Math.min(a.length, b.length), pairs = [];
    for (let i = 0; i < n; i++) pairs.push(a[i] / b[i]);
    if (n === 0) return "—";
    const r = median(a) / median(b);
    return n === 1 ? f(r, 2) : `${f(r, 2)} (${f(Math.min(...pairs), 2)}–${f(Math.max(...pairs), 2)})`;
};
const rows = [], cpuRows = [], notes = new Set(), B = read("busy.jsonl");
let pp = "?", tg = "?";
for (const t of types) {
    const L = read(`${t}.llmap.jsonl`);
    if (L.length) { pp = L[0].pp; tg = L[0].tg; }
    for (const v of variants.length ? variants : ["auto"]) {
        const C = read(`${t}.llamacpp-${v}.jsonl`);
        if (L.length === 0 && C.length === 0) continue;
        const bpt = L.length ? L[0].bytes_per_token : NaN;
        const bw = L.map((x) => x.bandwidth_gbs);
        const lpp = L.map((x) => x.pp_tps), ltg = L.map((x) => x.tg_tps);
        const cpp = C.map((x) => x.pp_tps.best), ctg = C.map((x) => x.tg_tps.best);
        // roofline share against the median bandwidth llmap measured in this model's rounds (one
        // loaded round would otherwise make a share > 1 or a collapse out of a bandwidth dip)
        const bwMed = median(bw);
        const share = (tg) => tg.map((x) => (x * bpt / 1e9) / bwMed);
        const variant = C.length ? `${v === "auto" ? "auto: " : "forced: "}${C[0].ggml_cpu_variant}` : v;
        const busy = B.filter((b) => b.type === t && (b.step === "llmap" || b.step === v)).map((b) => b.busy_cpus);
        rows.push([`${t} / ${variant}`, stat(lpp), stat(cpp), ratio(lpp, cpp), stat(ltg), stat(ctg), ratio(ltg, ctg),
            stat(bw), stat(share(ltg), 2), stat(share(ctg), 2), busy.length ? f(Math.max(...busy), 2) : "—"]);
        // tokens per CPU-second of the whole process: what each side gets out of the CPU time it
        // was given, a view that survives a busy machine better than wall time
        const lppc = L.map((x) => x.pp_tokens_per_cpu_s), ltgc = L.map((x) => x.tg_tokens_per_cpu_s);
        const cppc = C.map((x) => x.pp_tokens_per_cpu_s?.best ?? NaN), ctgc = C.map((x) => x.tg_tokens_per_cpu_s?.best ?? NaN);
        cpuRows.push([`${t} / ${variant}`, stat(lppc), stat(cppc), ratio(lppc, cppc), stat(ltgc), stat(ctgc), ratio(ltgc, ctgc)]);
        for (const c of C) {
            notes.add(`llama.cpp ${c.node_llama_cpp ? "node-llama-cpp " + c.node_llama_cpp : ""}, release ${c.llama_cpp_release?.release}, ` +
                `${c.build_type}, threads ${c.threads_used}, batch ${c.batch_size}, flash_attn ${c.flash_attention}, mmap ${c.mmap}`);
            notes.add(`${t} ${c.ggml_cpu_variant}: ` + c.llama_log.filter((l) => /model buffer size/.test(l))
                .map((l) => l.replace(/^\w+:\s*/, "").replace(/\s+/g, " ")).join("; "));
        }
    }
}
if (rows.length) {
    const head = ["model / llama.cpp CPU variant", `llmap pp${pp}`, `llama.cpp pp${pp}`, "ratio", `llmap tg${tg}`, `llama.cpp tg${tg}`,
        "ratio", "bandwidth GB/s", "llmap tg roofline share", "llama.cpp tg roofline share", "others busy (CPUs, max)"];
    console.log("\n| " + head.join(" | ") + " |\n|" + head.map(() => "---").join("|") + "|");
    for (const r of rows) console.log("| " + r.join(" | ") + " |");
    console.log("\ntokens/s: median over rounds (min–max); ratio = llmap / llama.cpp (medians; in brackets the range of");
    console.log("round-by-round ratios); roofline share = tg tokens/s x weight bytes per token / median bandwidth of the rounds;");
    console.log("others busy = CPUs other processes kept busy in the second before a run (above ~0.3 of a CPU the numbers are noise).");
    const cpuHead = ["model / llama.cpp CPU variant", `llmap pp${pp}`, `llama.cpp pp${pp}`, "ratio", `llmap tg${tg}`, `llama.cpp tg${tg}`, "ratio"];
    console.log("\nthe same runs in tokens per CPU-second (all threads of the process; ggml's barrier spinning counts as CPU time):");
    console.log("\n| " + cpuHead.join(" | ") + " |\n|" + cpuHead.map(() => "---").join("|") + "|");
    for (const r of cpuRows) console.log("| " + r.join(" | ") + " |");
}
const F1 = read("first.llmap.jsonl"), F2 = read("first.llamacpp.jsonl");
if (F1.length || F2.length) {
    const lw = F1.map((x) => x.wall_ms), cw = F2.map((x) => x.wall_ms), ci = F2.map((x) => x.detail.ms_since_process_start.first_token);
    const li = F2.map((x) => x.detail.ms_since_process_start.llama_ready);
    console.log(`\nwarm load + first token (q4_0, "Hello", whole process, ms): llmap ${stat(lw, 0)}, llama.cpp via node ${stat(cw, 0)}` +
        ` (of which node start + node-llama-cpp setup until llama.cpp is ready: ${stat(li, 0)}; process start to first token: ${stat(ci, 0)})`);
}
console.log("\n" + [...notes].map((n) => "- " + n).join("\n"));
if (fs.existsSync(path.join(dir, "errors.log")) && fs.readFileSync(path.join(dir, "errors.log"), "utf8").trim())
    console.log(`\n(stderr of the runs: ${path.join(dir, "errors.log")})`);
JS
}

if [ "${1:-}" = --table ]; then
    [ -d "${2:-}" ] || { echo "usage: bench/vs-llamacpp.sh --table build/vs-llamacpp/<time>" >&2; exit 2; }
    command -v node >/dev/null || skip "node is not installed"
    print_table "$2"
    exit 0
fi

types=("$@")
[ ${#types[@]} -eq 0 ] && types=(q4_0 q8_0 q4_k_m)

# --- prerequisites ------------------------------------------------------------------------
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || skip "node-llama-cpp's prebuilt CPU binaries used here are linux-x64 only"
command -v node >/dev/null || skip "node is not installed (llama.cpp runs through node-llama-cpp)"
command -v npm >/dev/null || skip "npm is not installed (needed once, to install node-llama-cpp $NLC_VERSION)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || skip "node-llama-cpp $NLC_VERSION needs node >= 20, this is $(node --version)"
[ -x "$BIN" ] || { echo "vs-llamacpp: $BIN: not built (make first, or set LLMAP_BIN)" >&2; exit 1; }

installed_version() {
    node -p "require(require('path').resolve(process.argv[1], 'node_modules', process.argv[2], 'package.json')).version" \
        "$1" "$2" 2>/dev/null
}

# Installs node-llama-cpp from the pinned lock file. Not `npm ci`: the registry this machine
# reaches has no 3.22.1 builds for other platforms (win/mac/riscv64), so npm writes a lock file
# without them and then `npm ci` refuses it as "out of sync". `npm install` with the lock file
# present installs exactly the locked versions; that the lock file is unchanged afterwards is
# checked. --omit=optional skips the CUDA/Vulkan builds (hundreds of MB; the linux-x64 CPU build
# is a direct dependency so it stays); --ignore-scripts skips node-llama-cpp's postinstall, which
# could try to download or compile llama.cpp.
install_llamacpp() {
    if [ -f "$NLC/.installed-lock.json" ] && cmp -s bench/llamacpp/package-lock.json "$NLC/.installed-lock.json" &&
        [ "$(installed_version "$NLC" node-llama-cpp)" = "$NLC_VERSION" ]; then
        return 0
    fi
    note "installing node-llama-cpp $NLC_VERSION (CPU prebuilt only) into $NLC ..."
    rm -rf "$NLC/node_modules" "$NLC/.installed-lock.json" "$NLC_AVX2"
    mkdir -p "$NLC"
    cp bench/llamacpp/package.json bench/llamacpp/package-lock.json "$NLC/"
    if ! (cd "$NLC" && timeout 900 npm install --omit=optional --ignore-scripts --no-audit --no-fund \
        --loglevel=error >npm-install.log 2>&1); then
        tail -5 "$NLC/npm-install.log" >&2
        skip "npm could not install node-llama-cpp $NLC_VERSION (registry unreachable?); log: $NLC/npm-install.log"
    fi
    cmp -s bench/llamacpp/package-lock.json "$NLC/package-lock.json" ||
        note "WARNING: npm changed the lock file (diff bench/llamacpp/package-lock.json $NLC/package-lock.json)"
    for p in node-llama-cpp @node-llama-cpp/linux-x64; do
        v=$(installed_version "$NLC" $p)
        [ "$v" = "$NLC_VERSION" ] || skip "installed $p is '$v', not $NLC_VERSION"
    done
    cp bench/llamacpp/package-lock.json "$NLC/.installed-lock.json"
}

# The same tree with every ggml CPU variant except haswell (AVX2+FMA+F16C+BMI2) removed, so that
# ggml's run-time choice can only land on AVX2. Hard links: no second copy of the 85 MB.
make_avx2_tree() {
    [ -f "$NLC_AVX2/$VARIANT_DIR/libggml-cpu-haswell.so" ] && return 0
    [ -f "$NLC/$VARIANT_DIR/libggml-cpu-haswell.so" ] || { note "no haswell variant in the prebuilt: AVX2 runs skipped"; return 1; }
    rm -rf "$NLC_AVX2" && mkdir -p "$NLC_AVX2" && cp -al "$NLC/node_modules" "$NLC_AVX2/" || return 1
    for f in "$NLC_AVX2/$VARIANT_DIR"/libggml-cpu-*.so; do
        [ "$(basename "$f")" = libggml-cpu-haswell.so ] || rm -f "$f"
    done
}

install_llamacpp
variants=()
for v in "${want_variants[@]}"; do
    case $v in
    auto) variants+=(auto) ;;
    avx2) if make_avx2_tree; then variants+=(avx2); fi ;;
    *) echo "vs-llamacpp: VS_VARIANTS: unknown '$v' (auto, avx2)" >&2; exit 2 ;;
    esac
done
[ ${#variants[@]} -gt 0 ] || skip "no llama.cpp variant to run"

# --- models --------------------------------------------------------------------------------
mkdir -p "$MODELS"
for t in "${types[@]}"; do
    model=$MODELS/llama-1.1b-$t.gguf
    [ -f "$model" ] && continue
    note "generating $model (synthetic 1.1B Llama, $t) ..."
    tmp=$MODELS/.llama-1.1b-$t.$$.tmp.gguf # renamed when complete: a concurrent run never sees half a file
    if ! "$BIN" synth --arch llama --shape 1.1b --type "$t" --seed 1234 --quiet "$tmp" || ! mv -f "$tmp" "$model"; then
        rm -f "$tmp"
        echo "vs-llamacpp: could not generate $model" >&2
        exit 1
    fi
done

# --- runs ----------------------------------------------------------------------------------
OUT=build/vs-llamacpp/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
echo "vs-llamacpp: pp$PP tg$TG, $ROUNDS rounds x $REPS rep(s), $THREADS threads, llama.cpp variants: ${variants[*]}; raw results in $OUT"
echo "vs-llamacpp: $(uptime)"

# CPUs busy with other processes, over one second (from /proc/stat; this script is idle then).
# ggml's thread pool in this prebuilt (no OpenMP) spins at its barriers without yielding, so with
# another process on the cores its 2-thread speed collapses far more than llmap's: a round is
# held back (up to VS_QUIET_WAIT seconds, default 120) until the machine is quiet.
busy_cpus() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(((total - idle) * $(nproc) * 100 / (total > 0 ? total : 1)))
}
wait_quiet() { # prints the busy CPUs (x100) when it starts
    local waited=0 busy
    busy=$(busy_cpus)
    while [ "$busy" -gt "${VS_QUIET_MAX:-30}" ] && [ "$waited" -lt "${VS_QUIET_WAIT:-120}" ]; do
        sleep 4
        waited=$((waited + 5))
        busy=$(busy_cpus)
    done
    echo "$busy"
}

run_llmap() { # model type
    "$BIN" bench "$1" -t "$THREADS" --pp "$PP" --tg "$TG" --reps "$REPS" --json >>"$OUT/$2.llmap.jsonl" 2>>"$OUT/errors.log" ||
        echo "llmap bench $1 failed (exit $?)" | tee -a "$OUT/errors.log" >&2
}
run_llamacpp() { # model type variant
    local mods=$NLC/node_modules
    [ "$3" = avx2 ] && mods=$NLC_AVX2/node_modules
    node bench/llamacpp.mjs "$1" -t "$THREADS" --pp "$PP" --tg "$TG" --reps "$REPS" --modules "$mods" \
        >>"$OUT/$2.llamacpp-$3.jsonl" 2>>"$OUT/errors.log" ||
        echo "llama.cpp ($3) on $1 failed (exit $?)" | tee -a "$OUT/errors.log" >&2
}

for t in "${types[@]}"; do
    model=$MODELS/llama-1.1b-$t.gguf
    for r in $(seq 1 "$ROUNDS"); do
        steps=(llmap "${variants[@]}")
        if [ $((r % 2)) = 0 ]; then # reversed order every other round: neither side always goes first
            rev=()
            for ((i = ${#steps[@]} - 1; i >= 0; i--)); do rev+=("${steps[i]}"); done
            steps=("${rev[@]}")
        fi
        for s in "${steps[@]}"; do
            busy=$(wait_quiet)
            busy=$((busy / 100)).$(printf %02d $((busy % 100)))
            note "$t round $r/$ROUNDS: $s   (other processes busy on $busy CPUs just before)"
            echo "{\"type\": \"$t\", \"round\": $r, \"step\": \"$s\", \"busy_cpus\": $busy}" >>"$OUT/busy.jsonl"
            if [ "$s" = llmap ]; then run_llmap "$model" "$t"; else run_llamacpp "$model" "$t" "$s"; fi
        done
    done
done

# Warm load + first token of "Hello" (whole process, wall time), as llama-simple in
# ../shared/machine.md: one untimed run of each first so the page cache holds the file.
now_ms() { date +%s%3N; }
if [ "$WANT_FIRST" = 1 ] && [ -f "$MODELS/llama-1.1b-q4_0.gguf" ]; then
    model=$MODELS/llama-1.1b-q4_0.gguf
    "$BIN" run "$model" Hello --num-predict 1 --temperature 0 --threads "$THREADS" </dev/null >/dev/null 2>&1
    node bench/llamacpp.mjs "$model" --first-token -t "$THREADS" >/dev/null 2>&1
    for r in $(seq 1 "${VS_FIRST_ROUNDS:-$ROUNDS}"); do
        t0=$(now_ms)
        if "$BIN" run "$model" Hello --num-predict 1 --temperature 0 --threads "$THREADS" </dev/null >/dev/null 2>>"$OUT/errors.log"; then
            echo "{\"round\": $r, \"wall_ms\": $(($(now_ms) - t0))}" >>"$OUT/first.llmap.jsonl"
        fi
        t0=$(now_ms)
        if line=$(node bench/llamacpp.mjs "$model" --first-token -t "$THREADS" 2>>"$OUT/errors.log"); then
            echo "{\"round\": $r, \"wall_ms\": $(($(now_ms) - t0)), \"detail\": $line}" >>"$OUT/first.llamacpp.jsonl"
        fi
    done
fi
echo "vs-llamacpp: $(uptime)"

print_table "$OUT"
