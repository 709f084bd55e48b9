// Bounded load for `llmap serve`: `count` requests with `conc` in flight at a time, each a GET
// of `path` or (path "generate") a small greedy /api/generate. Prints one JSON line:
// {"ok":N,"errors":N,"seconds":S,"rps":R}.  node load.mjs URL PATH COUNT CONC
const [url, path, count, conc] = [process.argv[2], process.argv[3], +process.argv[4], +process.argv[5]];
let next = 0, ok = 0, errors = 0;
async function one() {
  if (path === 'generate') {
    const r = await fetch(`${url}/api/generate`, { method: 'POST', body: JSON.stringify({
      model: 'tiny-llama-q8_0', prompt: 'Hello', stream: false, options: { num_predict: 4, temperature: 0 } }) });
    const j = await r.json();
    return r.ok && j.done && j.eval_count === 4;
  }
  const r = await fetch(url + path);
  await r.arrayBuffer();
  return r.ok;
}
async function worker() {
  while (next < count) {
    next++;
    try { (await one()) ? ok++ : errors++; } catch { errors++; }
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: conc }, worker));
const s = (performance.now() - t0) / 1e3;
console.log(JSON.stringify({ ok, errors, seconds: +s.toFixed(3), rps: +(ok / s).toFixed(1) }));
