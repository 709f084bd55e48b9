// Drives a running `llmap serve` with the real client libraries (ollama, openai) and checks
// what they get back against independent expectations: file sizes and metadata from the
// shared models' documentation, llama.cpp's reference greedy tokens, the API contracts.
//   LLMAP_URL=http://127.0.0.1:PORT LLMAP_SHARED=../shared node api.mjs
// Prints "PASS name" / "FAIL name: why" lines and "N passed, N failed" at the end.
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { readFileSync, statSync } from 'node:fs';
import { readTokens, detokenizeSpm } from './gguf-vocab.mjs';

const URL_ = process.env.LLMAP_URL;
const SHARED = process.env.LLMAP_SHARED;
const MODEL = 'tiny-llama-q8_0';
const MODEL_FILE = `${SHARED}/models/${MODEL}.gguf`;
const ollama = new Ollama({ host: URL_ });
const openai = new OpenAI({ baseURL: `${URL_}/v1`, apiKey: 'unused', maxRetries: 0 });

let passed = 0, failed = 0;
function check(name, cond, why = '') {
  if (cond) { passed++; console.log(`PASS ${name}`); }
  else { failed++; console.log(`FAIL ${name}${why ? ': ' + why : ''}`); }
}
async function test(name, fn) {
  try { await fn(); } catch (e) { failed++; console.log(`FAIL ${name}: threw ${e.stack || e}`); }
}
const isPosInt = (x) => Number.isInteger(x) && x > 0;
const recent = (t) => Math.abs(Date.parse(t) - Date.now()) < 120e3;
const greedy = { temperature: 0, seed: 1 };

// Independent expectation: llama.cpp's greedy continuation of prompt 0, as text.
const ref = JSON.parse(readFileSync(`${SHARED}/reference/${MODEL}/prompt-0.json`, 'utf8'));
const vocab = readTokens(MODEL_FILE);
const N = 8; // reference margins of the first 8 greedy tokens are all > 0.18: no near-ties
const refText = detokenizeSpm(vocab, ref.greedy_tokens.slice(0, N));

await test('version', async () => {
  const v = await ollama.version();
  check('version: semver string', /^\d+\.\d+\.\d+/.test(v.version), JSON.stringify(v));
});

await test('list', async () => {
  const { models } = await ollama.list();
  const m = models.find((x) => x.name === `${MODEL}:latest`);
  check('list: model present', !!m, JSON.stringify(models.map((x) => x.name)));
  if (!m) return;
  check('list: size is the file size', m.size === statSync(MODEL_FILE).size, `${m.size}`);
  check('list: details', m.details.format === 'gguf' && m.details.family === 'llama' &&
        m.details.quantization_level === 'Q8_0', JSON.stringify(m.details));
  check('list: every shared model', ['tiny-llama-q4_0', 'tiny-llama-q4_k_m', 'tiny-qwen2-q8_0']
    .every((n) => models.some((x) => x.name === `${n}:latest`)));
});

await test('show', async () => {
  const s = await ollama.show({ model: MODEL });
  const mi = s.model_info;
  // Values from the shared README's table of the synthetic models.
  check('show: architecture', mi['general.architecture'] === 'llama');
  check('show: shape', mi['llama.context_length'] === 2048 && mi['llama.embedding_length'] === 256 &&
        mi['llama.block_count'] === 4 && mi['llama.attention.head_count'] === 8 &&
        mi['llama.attention.head_count_kv'] === 4, JSON.stringify(mi));
  check('show: details', s.details.family === 'llama' && s.details.quantization_level === 'Q8_0');
  check('show: template is the GGUF chat template', typeof s.template === 'string' && s.template.includes('<<SYS>>'));
});

let nonStreamText;
await test('generate non-stream', async () => {
  const r = await ollama.generate({ model: MODEL, prompt: ref.prompt, raw: true, stream: false,
                                    options: { ...greedy, num_predict: N } });
  nonStreamText = r.response;
  check('generate: matches llama.cpp greedy reference', r.response === refText,
        `${JSON.stringify(r.response)} vs ${JSON.stringify(refText)}`);
  check('generate: done', r.done === true && r.done_reason === 'length', `${r.done} ${r.done_reason}`);
  check('generate: prompt_eval_count = reference prompt tokens', r.prompt_eval_count === ref.n_tokens,
        `${r.prompt_eval_count} vs ${ref.n_tokens}`);
  check('generate: eval_count = num_predict', r.eval_count === N, `${r.eval_count}`);
  check('generate: durations > 0', [r.total_duration, r.load_duration, r.prompt_eval_duration, r.eval_duration]
    .every(isPosInt), JSON.stringify(r));
  check('generate: total >= prompt + eval', r.total_duration >= r.prompt_eval_duration + r.eval_duration);
  check('generate: model and created_at', r.model === MODEL && recent(r.created_at), `${r.model} ${r.created_at}`);
});

await test('generate stream', async () => {
  const parts = [];
  for await (const p of await ollama.generate({ model: MODEL, prompt: ref.prompt, raw: true, stream: true,
                                                options: { ...greedy, num_predict: N } })) parts.push(p);
  const last = parts.at(-1);
  const text = parts.map((p) => p.response).join('');
  check('generate stream: several chunks then done', parts.length >= 2 && last.done &&
        parts.slice(0, -1).every((p) => !p.done), `${parts.length}`);
  check('generate stream: same text as non-stream', text === refText, JSON.stringify(text));
  check('generate stream: final stats', last.eval_count === N && last.done_reason === 'length' &&
        isPosInt(last.eval_duration) && isPosInt(last.total_duration));
});

await test('generate stop string', async () => {
  // Stop at a piece of the known answer: the output must be exactly what precedes it.
  const cut = refText.indexOf(' ', 3) > 0 ? refText.indexOf(' ', 3) : 3;
  const stop = refText.slice(cut, cut + 3);
  const r = await ollama.generate({ model: MODEL, prompt: ref.prompt, raw: true, stream: false,
                                    options: { ...greedy, num_predict: N, stop: [stop] } });
  check('generate stop: text cut before the stop string', r.response === refText.slice(0, refText.indexOf(stop)),
        `${JSON.stringify(r.response)} stop ${JSON.stringify(stop)}`);
  check('generate stop: done_reason stop', r.done_reason === 'stop', r.done_reason);
});

await test('concurrent generates', async () => {
  // Several requests at once share the model (and queue for its sessions): each must still
  // get exactly the single-request answer, so no state leaks between them.
  const rs = await Promise.all([0, 1, 2, 3].map(() => ollama.generate({
    model: MODEL, prompt: ref.prompt, raw: true, stream: false, options: { ...greedy, num_predict: N } })));
  check('concurrent: all 4 answers equal the reference', rs.every((r) => r.response === refText),
        JSON.stringify(rs.map((r) => r.response)));
});

await test('chat', async () => {
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hi.' }];
  const r = await ollama.chat({ model: MODEL, messages, stream: false, options: { ...greedy, num_predict: 6 } });
  check('chat: assistant message', r.message.role === 'assistant' && r.message.content.length > 0,
        JSON.stringify(r.message));
  check('chat: stats', r.done && r.eval_count === 6 && r.prompt_eval_count > 10 && isPosInt(r.eval_duration));
  const parts = [];
  for await (const p of await ollama.chat({ model: MODEL, messages, stream: true,
                                            options: { ...greedy, num_predict: 6 } })) parts.push(p);
  const text = parts.map((p) => p.message.content).join('');
  check('chat stream: same answer as non-stream', text === r.message.content, `${JSON.stringify(text)}`);
  check('chat stream: final', parts.at(-1).done && parts.at(-1).done_reason === 'length');
});

await test('ps', async () => {
  const { models } = await ollama.ps();
  const m = models.find((x) => x.name === `${MODEL}:latest`);
  check('ps: loaded model listed', !!m, JSON.stringify(models));
  if (!m) return;
  const exp = Date.parse(m.expires_at) - Date.now();
  check('ps: expires in about keep_alive (5 min)', exp > 250e3 && exp <= 301e3, `${exp} ms`);
  check('ps: size and size_vram', m.size === statSync(MODEL_FILE).size && m.size_vram === 0);
  check('ps: residency extras', m.resident_bytes > 0 && m.residency > 0 && m.residency <= 1 &&
        Number.isInteger(m.major_faults), JSON.stringify(m));
});

await test('openai chat', async () => {
  const messages = [{ role: 'user', content: 'Say hi.' }];
  const r = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 5, temperature: 0, seed: 1 });
  const c = r.choices[0];
  check('openai chat: object and message', r.object === 'chat.completion' && c.message.role === 'assistant' &&
        c.message.content.length > 0, JSON.stringify(r));
  check('openai chat: finish_reason length', c.finish_reason === 'length', c.finish_reason);
  check('openai chat: usage', r.usage.completion_tokens === 5 && r.usage.prompt_tokens > 0 &&
        r.usage.total_tokens === r.usage.prompt_tokens + 5, JSON.stringify(r.usage));
  const stream = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 5, temperature: 0,
                                                        seed: 1, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, n = 0;
  for await (const ch of stream) {
    n++;
    if (ch.choices.length) {
      text += ch.choices[0].delta.content ?? '';
      finish = ch.choices[0].finish_reason ?? finish;
    }
    if (ch.usage) usage = ch.usage;
  }
  check('openai chat stream: same text', text === c.message.content, `${JSON.stringify(text)} vs ${JSON.stringify(c.message.content)}`);
  check('openai chat stream: finish_reason and usage chunk', finish === 'length' && usage &&
        usage.completion_tokens === 5 && n >= 5, `${finish} ${JSON.stringify(usage)} ${n}`);
});

await test('openai completions', async () => {
  const r = await openai.completions.create({ model: MODEL, prompt: ref.prompt, max_tokens: N, temperature: 0, seed: 1 });
  check('openai completions: raw prompt gives the reference text', r.choices[0].text === refText,
        JSON.stringify(r.choices[0]));
  check('openai completions: usage', r.usage.prompt_tokens === ref.n_tokens && r.usage.completion_tokens === N,
        JSON.stringify(r.usage));
  const stream = await openai.completions.create({ model: MODEL, prompt: ref.prompt, max_tokens: N, temperature: 0,
                                                   seed: 1, stream: true });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.text ?? '';
  check('openai completions stream: same text', text === refText, JSON.stringify(text));
});

await test('openai models', async () => {
  const list = await openai.models.list();
  const ids = list.data.map((m) => m.id);
  check('openai models: list', ids.includes(`${MODEL}:latest`) && list.data.every((m) => m.object === 'model'),
        JSON.stringify(ids));
  const one = await openai.models.retrieve(`${MODEL}:latest`);
  check('openai models: retrieve', one.id === `${MODEL}:latest`);
});

await test('client errors', async () => {
  try {
    await ollama.generate({ model: 'no-such-model', prompt: 'x', stream: false });
    check('ollama: unknown model rejected', false, 'no error');
  } catch (e) {
    check('ollama: unknown model → 404 with message', e.status_code === 404 && /not found/.test(e.error), `${e.status_code} ${e.error}`);
  }
  try {
    await openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
    check('openai: unknown model rejected', false, 'no error');
  } catch (e) {
    check('openai: unknown model → NotFoundError', e.status === 404 && /not found/.test(e.message), `${e.status} ${e.message}`);
  }
  try {
    await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], n: 2 });
    check('openai: n=2 rejected', false, 'no error');
  } catch (e) {
    check('openai: n=2 → 400', e.status === 400, `${e.status}`);
  }
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
