// Minimal GGUF metadata reader for the tests: enough to get tokenizer.ggml.tokens, so a test
// can turn llama.cpp's reference greedy token ids into the text the server must produce.
// Independent of llmap's own C reader on purpose (format: ggml's docs/gguf.md).
import { readFileSync } from 'node:fs';

export function readTokens(path) {
  const buf = readFileSync(path);
  let off = 0;
  const u32 = () => { const v = buf.readUInt32LE(off); off += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(off)); off += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString('utf8', off, off + n); off += n; return s; };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  if (u32() !== 0x46554747) throw new Error(`${path}: not a GGUF file`);
  u32(); // version
  u64(); // tensor count
  const nkv = u64();
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const type = u32();
    if (type === 8) { str(); continue; }
    if (type === 9) {
      const at = u32();
      const n = u64();
      if (at === 8) {
        const arr = [];
        for (let k = 0; k < n; k++) arr.push(str());
        if (key === 'tokenizer.ggml.tokens') return arr;
      } else {
        off += n * SIZES[at];
      }
      continue;
    }
    off += SIZES[type];
  }
  throw new Error(`${path}: no tokenizer.ggml.tokens`);
}

// SentencePiece pieces → text: "▁" is a space, "<0xNN>" a raw byte.
export function detokenizeSpm(tokens, ids) {
  const bytes = [];
  for (const id of ids) {
    const p = tokens[id];
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
    if (m) bytes.push(parseInt(m[1], 16));
    else bytes.push(...Buffer.from(p.replaceAll('\u2581', ' '), 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}
