// llmap chat page: keeps the conversation in memory, sends it to /api/chat and renders the
// streamed NDJSON answer piece by piece. Everything goes to this same server.
'use strict';

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

// Sampling options may be given in the page's query string, e.g. /?num_predict=64&temperature=0.
function optionsFromQuery() {
  const options = {};
  for (const [k, v] of new URLSearchParams(location.search)) {
    if (['num_predict', 'num_ctx', 'temperature', 'top_k', 'top_p', 'min_p', 'seed'].includes(k) && v !== '' && !isNaN(v)) {
      options[k] = Number(v);
    }
  }
  return options;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.append(who, body);
  $('log').append(div);
  $('log').scrollTop = $('log').scrollHeight;
  return body;
}

async function loadModels() {
  try {
    const res = await fetch('/api/tags');
    const { models } = await res.json();
    $('model').replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    const wanted = new URLSearchParams(location.search).get('model');
    if (wanted && models.some((m) => m.name === wanted)) $('model').value = wanted;
    $('status').textContent = models.length ? '' : 'No models found in the models directory.';
  } catch (e) {
    $('status').textContent = 'Cannot list models: ' + e.message;
  }
}

function setBusy(busy) {
  $('send').hidden = busy;
  $('stop').hidden = !busy;
  $('input').disabled = busy;
}

async function send(text) {
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const out = addMessage('assistant', '');
  out.parentElement.dataset.state = 'streaming';
  controller = new AbortController();
  setBusy(true);
  let answer = '';
  try {
    const res = await fetch('/api/chat', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: $('model').value, messages: history, stream: true, options: optionsFromQuery() }),
      signal: controller.signal,
    });
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.error) throw new Error(msg.error);
        if (msg.message) answer += msg.message.content;
        out.textContent = answer;
        if (msg.done) {
          const tps = msg.eval_duration ? (msg.eval_count / (msg.eval_duration / 1e9)).toFixed(1) : '?';
          $('status').textContent = `${msg.eval_count} tokens, ${tps} tokens/s (${msg.done_reason})`;
        }
      }
      $('log').scrollTop = $('log').scrollHeight;
    }
    history.push({ role: 'assistant', content: answer });
  } catch (e) {
    if (e.name !== 'AbortError') {
      out.parentElement.classList.add('error');
      out.textContent = answer + (answer ? '\n' : '') + 'Error: ' + e.message;
    } else {
      history.push({ role: 'assistant', content: answer });
    }
  } finally {
    out.parentElement.dataset.state = 'done';
    controller = null;
    setBusy(false);
    $('input').focus();
  }
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('input').value.trim();
  if (!text || controller) return;
  $('input').value = '';
  send(text);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('form').requestSubmit();
  }
});
$('stop').addEventListener('click', () => controller && controller.abort());
$('clear').addEventListener('click', () => {
  if (controller) controller.abort();
  history.length = 0;
  $('log').replaceChildren();
  $('status').textContent = '';
});
loadModels();
