// Loads the chat page of a running `llmap serve` in headless chromium (playwright-core, the
// system's /usr/bin/chromium), types a message, sends it, waits for the streamed answer and
// takes a screenshot. Checks: the answer appears in the DOM and equals what
// /api/chat returns for the same conversation (greedy), and the page fetched nothing from
// any other origin.   node web.mjs URL SCREENSHOT.png
import { chromium } from 'playwright-core';

const [url, shot] = [process.argv[2], process.argv[3]];
const MODEL = 'tiny-llama-q8_0:latest';
const opts = { num_predict: 12, temperature: 0, seed: 1 };
let passed = 0, failed = 0;
const check = (name, cond, why = '') => {
  if (cond) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name}${why ? ': ' + why : ''}`); }
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const q = new URLSearchParams({ model: MODEL, ...opts });
  await page.goto(`${url}/?${q}`);
  await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, null, { timeout: 10000 });
  check('model list filled from /api/tags', (await page.inputValue('#model')) === MODEL, await page.inputValue('#model'));
  await page.fill('#input', 'Hello there');
  await page.click('#send');
  await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: 60000 });
  const answer = await page.textContent('.msg.assistant .text');
  const user = await page.textContent('.msg.user .text');
  await page.screenshot({ path: shot });
  // The same conversation through the API directly: the page must show exactly this text.
  const r = await fetch(`${url}/api/chat`, { method: 'POST', body: JSON.stringify({
    model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], stream: false, options: opts }) });
  const expected = (await r.json()).message.content;
  check('user message shown', user === 'Hello there', user);
  check('streamed answer in the DOM equals /api/chat answer', answer === expected && answer.length > 0,
        `${JSON.stringify(answer)} vs ${JSON.stringify(expected)}`);
  check('no error shown', (await page.$$('.msg.error')).length === 0);
  check('status line shows token stats', /12 tokens/.test(await page.textContent('#status')), await page.textContent('#status'));
  check('no requests to other origins', foreign.length === 0, foreign.join(' '));
  check('no page errors', pageErrors.length === 0, pageErrors.join('; '));
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
