// ref.mjs — what llama.cpp computes for a model: prompt token ids, the top-K raw logits at
// every prompt position, and a greedy continuation with the winning logit and its margin over
// the runner-up at each step. Written in the field layout of ../shared/reference/*/prompt-*.json
// (and of `llmap logits --json`), so tests compare llmap against it field by field.
//
// Why node-llama-cpp: it ships llama.cpp as prebuilt CPU shared libraries on npm, the one
// registry reachable here, so the reference is computed by llama.cpp's own code, not ours.
// Install (pinned, CPU only, never builds from source):
//   mkdir -p build/llamacpp-ref && cp tools/llamacpp-ref/package*.json build/llamacpp-ref/
//   (cd build/llamacpp-ref && npm install --ignore-scripts --omit=optional)
// Run:
//   node tools/llamacpp-ref/ref.mjs MODEL.gguf "TEXT" [--greedy N] [--top K] [--threads N]
//
// Greedy decoding is done here, not by a sampler: every step asks for the full raw logits and
// takes the arg-max (lowest id on ties, as llmap does), so no sampler setting can interfere.
import {readFileSync} from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const installDir = process.env.LLAMACPP_REF_DIR ?? path.join(here, "..", "..", "build", "llamacpp-ref");
const require = createRequire(path.join(installDir, "package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

function parseArgs(argv) {
    const a = {greedy: 16, top: 20, threads: 1, model: null, text: null};
    for (let i = 0; i < argv.length; i++) {
        const s = argv[i];
        if (s === "--greedy") a.greedy = Number(argv[++i]);
        else if (s === "--top") a.top = Number(argv[++i]);
        else if (s === "--threads") a.threads = Number(argv[++i]);
        else if (a.model === null) a.model = s;
        else if (a.text === null) a.text = s;
        else throw new Error(`unexpected argument '${s}'`);
    }
    if (!a.model || a.text === null || !(a.greedy >= 0) || !(a.top >= 2))
        throw new Error("usage: ref.mjs MODEL.gguf TEXT [--greedy N] [--top K] [--threads N]");
    return a;
}

// Map<token, logit> -> sorted [[id, logit], ...] by logit descending, ties by lower id.
function ranked(logits) {
    return [...logits.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
}

const round9 = (v) => Number(v.toPrecision(9));

const args = parseArgs(process.argv.slice(2));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: args.threads});
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0, useMmap: true});
const tokens = model.tokenize(args.text, false);
if (model.tokens.bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
const context = await model.createContext({
    contextSize: Math.max(256, tokens.length + args.greedy + 8),
    batchSize: Math.max(tokens.length, 1),
    threads: args.threads,
    flashAttention: false,
    // llmap's default KV cache is F32 (llama.cpp's is F16): compare like with like
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
});
const seq = context.getSequence();
const want = {generateNext: {logits: true}};

// Prompt: one batch, logits at every position.
const out = await seq.controlledEvaluate(tokens.map((t) => [t, want]));
const top = [];
for (let i = 0; i < tokens.length; i++) {
    const r = ranked(out[i].next.logits);
    top.push(r.slice(0, args.top).map(([id, l]) => [id, round9(l)]));
}

// Greedy continuation, one token at a time.
const greedy = {tokens: [], logits: [], margins: []};
let r = ranked(out[tokens.length - 1].next.logits);
for (let step = 0; step < args.greedy; step++) {
    const [id, l] = r[0];
    greedy.tokens.push(id);
    greedy.logits.push(round9(l));
    greedy.margins.push(round9(l - r[1][1]));
    if (step + 1 === args.greedy) break;
    const o = await seq.controlledEvaluate([[id, want]]);
    r = ranked(o[0].next.logits);
}

const result = {
    compute: "llama.cpp via node-llama-cpp (prebuilt CPU backend), weights as stored",
    llama_cpp_release: llama.llamaCppRelease?.release ?? null,
    node_llama_cpp: JSON.parse(readFileSync(path.join(installDir, "node_modules/node-llama-cpp/package.json"))).version,
    n_threads: args.threads,
    prompt: args.text,
    add_bos: tokens.length > 0 && tokens[0] === model.tokens.bos,
    n_tokens: tokens.length,
    tokens,
    top_k: args.top,
    top,
    greedy_n: args.greedy,
    greedy_tokens: greedy.tokens,
    greedy_logits: greedy.logits,
    greedy_margins: greedy.margins,
};
process.stdout.write(JSON.stringify(result) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
