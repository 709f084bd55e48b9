#!/usr/bin/env node
// bench/llamacpp.mjs — llama.cpp's speed on a GGUF model, measured the way llama-bench does, so
// that bench/vs-llamacpp.sh can put it side by side with `llmap bench` in the same run.
//
// Why through node-llama-cpp: this machine has no GitHub access and no compiler-friendly way to
// fetch llama.cpp, but npm works, and node-llama-cpp ships prebuilt llama.cpp shared libraries
// (libllama + ggml CPU backends, one per CPU generation) plus a thin N-API addon. The compute is
// llama.cpp's own; the JavaScript only schedules calls, and its per-call overhead is measured too
// (llama.cpp's internal perf counters are reported next to the wall times).
//
//   node bench/llamacpp.mjs MODEL.gguf [-t THREADS] [--pp N] [--tg N] [--reps N]
//                           [--modules DIR] [--first-token] [--verbose]
//
// pp N: N tokens evaluated in one batch (batch = ubatch = N) into an empty KV cache.
// tg N: N tokens generated one at a time (greedy, end-of-generation ignored) from an empty cache.
// A warm-up (a 32-token batch + 1 generated token) precedes the reps; every rep reports, plus
// best and median. --first-token instead measures what llama-simple did in
// ../shared/machine.md: load, prompt "Hello" (BOS added), one token, times since process start.
// --modules points at the node_modules directory to use (default: build/llamacpp/node_modules);
// bench/vs-llamacpp.sh uses a second tree holding only the AVX2 ("haswell") CPU variant to force
// the AVX2 code path. Output: one JSON object on stdout; llama.cpp's log goes to stderr with
// --verbose. (One line of JSON: pipe it through `jq .` to read it.)
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";

const USAGE =
    "usage: node bench/llamacpp.mjs MODEL.gguf [-t THREADS] [--pp N] [--tg N] [--reps N] " +
    "[--modules DIR] [--first-token] [--verbose]";

function die(msg) {
    process.stderr.write(`llamacpp.mjs: ${msg}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
    const a = {
        model: null, threads: 2, pp: 512, tg: 128, reps: 3, firstToken: false, verbose: false,
        modules: path.join(root, "build", "llamacpp", "node_modules"),
    };
    const intArg = (name, v) => {
        if (v === undefined || !/^[0-9]+$/.test(v)) die(`${name} needs a non-negative integer, got '${v ?? ""}'`);
        return Number(v);
    };
    for (let i = 0; i < argv.length; i++) {
        const o = argv[i];
        if (o === "-t" || o === "--threads") a.threads = intArg(o, argv[++i]);
        else if (o === "--pp") a.pp = intArg(o, argv[++i]);
        else if (o === "--tg") a.tg = intArg(o, argv[++i]);
        else if (o === "--reps") a.reps = intArg(o, argv[++i]);
        else if (o === "--modules") a.modules = path.resolve(argv[++i] ?? die("--modules needs a directory"));
        else if (o === "--first-token") a.firstToken = true;
        else if (o === "--verbose") a.verbose = true;
        else if (o === "-h" || o === "--help") { process.stdout.write(USAGE + "\n"); process.exit(0); }
        else if (o.startsWith("-") || a.model) die(`unexpected argument '${o}'\n${USAGE}`);
        else a.model = o;
    }
    if (!a.model) die(USAGE);
    if (!fs.existsSync(a.model)) die(`${a.model}: no such file`);
    if (a.threads < 1 || a.reps < 1 || a.pp + a.tg < 1 || a.pp > 65536 || a.tg > 65536)
        die("need THREADS >= 1, REPS >= 1, 1 <= pp + tg, pp and tg <= 65536");
    return a;
}

// Which ggml CPU variant the dynamic loader chose: ggml scores every libggml-cpu-<variant>.so
// against the CPU's features and dlopens the best, so the mapping tells the truth.
function loadedLibraries() {
    const maps = fs.readFileSync("/proc/self/maps", "utf8");
    const libs = new Set();
    for (const line of maps.split("\n")) {
        const m = /\s(\/\S*\/(lib(?:ggml|llama)[^/\s]*\.so[^/\s]*))$/.exec(line);
        if (m) libs.add(m[2]);
    }
    return [...libs].sort();
}

// The lines of llama.cpp's own log that say how the weights were placed (mapped vs repacked)
// and how the context was configured; everything else stays out of the JSON.
const LOG_KEEP = /model buffer size|REPACK|repack|n_threads|n_batch|n_ubatch|flash_attn|type_k|CPU : |KV buffer|compute buffer|load time|eval time|total time|system_info|file type|file size/;

function median(xs) {
    const s = [...xs].sort((x, y) => x - y);
    const n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function summary(tpsList) {
    if (tpsList.length === 0) return null;
    const r = (x) => Math.round(x * 1000) / 1000;
    return { best: r(Math.max(...tpsList)), median: r(median(tpsList)), min: r(Math.min(...tpsList)), reps: tpsList.map(r) };
}

// Seeded token ids, like llama-bench (speed does not depend on which tokens).
function seededTokens(n, nVocab) {
    let s = 0x2545f491n;
    const out = [];
    for (let i = 0; i < n; i++) {
        s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
        out.push(Number((s >> 33n) % BigInt(nVocab)));
    }
    return out;
}

async function loadLlama(a, logLines) {
    const entry = path.join(a.modules, "node-llama-cpp", "dist", "index.js");
    if (!fs.existsSync(entry)) die(`${entry}: not installed (bench/vs-llamacpp.sh installs it)`);
    const nlc = await import(pathToFileURL(entry).href);
    const logger = (level, message) => {
        const text = String(message).trimEnd();
        if (a.verbose) process.stderr.write(`[llama.cpp ${level}] ${text}\n`);
        for (const line of text.split("\n")) if (LOG_KEEP.test(line)) logLines.push(line.trim());
    };
    // gpu:false and build:"never": the prebuilt CPU binaries or nothing (never compile, never
    // download); maxThreads so that the context may use exactly the threads asked for.
    const llama = await nlc.getLlama({
        gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
        maxThreads: a.threads, logLevel: nlc.LlamaLogLevel.info, logger,
    });
    return { nlc, llama };
}

async function generate(seq, first, count) {
    // temperature 0 = greedy; yieldEogToken keeps going past an end-of-generation token so that
    // exactly `count` decode calls happen, like llama-bench's tgN.
    let got = 0;
    const gen = seq.evaluate([first], { temperature: 0, yieldEogToken: true });
    for await (const _ of gen) { // eslint-disable-line no-unused-vars
        if (++got >= count) break;
    }
    return got;
}

async function benchSpeed(a) {
    const logLines = [];
    const { llama } = await loadLlama(a, logLines);
    const model = await llama.loadModel({ modelPath: a.model, gpuLayers: 0, useMmap: true });
    // any valid ids will do; the vocabulary size from the file, or the first 1000 ids
    const nVocab = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length || 1000;
    const n = Math.max(a.pp, a.tg);
    const context = await model.createContext({
        contextSize: n + 16, batchSize: Math.max(a.pp, 1), sequences: 1, threads: a.threads,
        performanceTracking: true,
    });
    const seq = context.getSequence();
    const toks = seededTokens(n + 1, nVocab);

    // warm-up: a short batch and one generated token (the first decodes page weights in and set
    // up buffers; llama.cpp's first decode here takes seconds). llama-bench warms up with a whole
    // ppN batch; on a shared 2-core machine that doubles the cost of a run for no information.
    if (a.pp > 0) await seq.evaluateWithoutGeneratingNewTokens(toks.slice(0, Math.min(a.pp, 32)));
    await seq.clearHistory();
    await generate(seq, toks[1], 1);

    // wall time, and CPU time of the whole process (all threads): on a shared machine wall time
    // includes waiting for a core, CPU time does not (but it does include ggml's spinning at
    // its barriers while the other thread waits for a core)
    const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
    const pp = [], tg = [], ppCpu = [], tgCpu = [];
    for (let rep = 0; rep < a.reps; rep++) {
        if (a.pp > 0) {
            await seq.clearHistory();
            const t0 = performance.now(), c0 = cpuSeconds();
            await seq.evaluateWithoutGeneratingNewTokens(toks.slice(0, a.pp));
            pp.push(a.pp / ((performance.now() - t0) / 1000));
            ppCpu.push(a.pp / (cpuSeconds() - c0));
        }
        if (a.tg > 0) {
            await seq.clearHistory();
            const t0 = performance.now(), c0 = cpuSeconds();
            const got = await generate(seq, toks[0], a.tg);
            const dt = (performance.now() - t0) / 1000;
            if (got !== a.tg) throw new Error(`generated ${got} tokens, wanted ${a.tg}`);
            tg.push(a.tg / dt);
            tgCpu.push(a.tg / (cpuSeconds() - c0));
        }
    }
    // llama.cpp's own counters (cumulative, warm-up included): decode time without the JS
    // scheduling around it, to show how much of the wall time above is node-llama-cpp's
    await context.printTimings();
    await new Promise((resolve) => setImmediate(resolve)); // the log arrives through a microtask
    const out = {
        runtime: "llama.cpp via node-llama-cpp",
        model: a.model,
        threads_requested: a.threads,
        threads_used: context.currentThreads,
        batch_size: context.batchSize,
        context_size: context.contextSize,
        flash_attention: context.flashAttention,
        mmap: model.useMmap,
        pp: a.pp, tg: a.tg,
        pp_tps: summary(pp),
        tg_tps: summary(tg),
        pp_tokens_per_cpu_s: summary(ppCpu),
        tg_tokens_per_cpu_s: summary(tgCpu),
        ...buildInfo(llama, logLines),
    };
    await context.dispose();
    await model.dispose();
    await llama.dispose();
    return out;
}

function buildInfo(llama, logLines) {
    const libs = loadedLibraries();
    const cpuVariant = libs.map((l) => /^libggml-cpu-([^.]+)\.so/.exec(l)).find(Boolean);
    return {
        node_llama_cpp: readVersion(),
        llama_cpp_release: llama.llamaCppRelease,
        build_type: llama.buildType,
        ggml_cpu_variant: cpuVariant ? cpuVariant[1] : "unknown",
        loaded_libraries: libs,
        system_info: llama.systemInfo,
        llama_log: [...new Set(logLines)],
    };
}

let modulesDir = null;
function readVersion() {
    try {
        const pkg = JSON.parse(fs.readFileSync(path.join(modulesDir, "node-llama-cpp", "package.json"), "utf8"));
        return pkg.version;
    } catch {
        return "unknown";
    }
}

// Load + first token of "Hello", timed from process start (performance.timeOrigin is when this
// node process started), with the phases that make it up.
async function benchFirstToken(a) {
    const logLines = [];
    const ms = () => Math.round(performance.now() * 10) / 10;
    const tImportStart = ms();
    const { llama } = await loadLlama(a, logLines);
    const tLlama = ms();
    const model = await llama.loadModel({ modelPath: a.model, gpuLayers: 0, useMmap: true });
    const tModel = ms();
    const context = await model.createContext({ contextSize: 64, batchSize: 64, sequences: 1, threads: a.threads });
    const seq = context.getSequence();
    const tContext = ms();
    const prompt = model.tokenize("Hello");
    if (model.tokens.bos != null && model.tokens.shouldPrependBosToken !== false) prompt.unshift(model.tokens.bos);
    let token = null;
    for await (const t of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        token = t;
        break;
    }
    const tFirst = ms();
    const out = {
        runtime: "llama.cpp via node-llama-cpp",
        model: a.model,
        threads_used: context.currentThreads,
        prompt_tokens: prompt,
        first_token: token,
        first_token_text: model.detokenize([token]),
        ms_since_process_start: {
            script_started: tImportStart, llama_ready: tLlama, model_loaded: tModel, context_ready: tContext,
            first_token: tFirst,
        },
        ...buildInfo(llama, logLines),
    };
    await context.dispose();
    await model.dispose();
    await llama.dispose();
    return out;
}

const args = parseArgs(process.argv.slice(2));
modulesDir = args.modules;
try {
    const out = args.firstToken ? await benchFirstToken(args) : await benchSpeed(args);
    process.stdout.write(JSON.stringify(out) + "\n");
} catch (e) {
    die(`${args.model}: ${e?.message ?? e}`);
}
