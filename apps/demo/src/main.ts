/**
 * The demo page: open a `.usk` bundle (the embedded default, a picked file or a dropped one), run it on WebGPU or
 * the CPU fallback, stream the text, and show what it costs (bits, memory, speed). Plain DOM, no framework: the
 * page is one form and three read-outs.
 *
 * For the end-to-end test (test/demo.e2e.test.ts) the page states what it did in attributes, not only in words:
 * `#status[data-state]` (loading | ready | running | done | error), `#output[data-tokens]` (the generated ids),
 * `[data-backend]` and the bit figures' `data-value`s.
 */
import { type OpenedBundle, openModel } from '@ultrasketch/pipeline/browser';
// The embedded default: Vite copies the file into dist/assets at build time and gives its same-origin URL (never
// a CDN, never inlined), so the built page works offline.
import defaultBundleUrl from '../../../models/stories3M-littlebit-0.55.usk?url';
import { type BackendChoice, DemoError, type RunningSession, startSession } from './backend.js';
import { layerBits, renderLayerPlot } from './plot.js';

const DEFAULT_NAME = 'stories3M-littlebit-0.55.usk';
/** KV cache positions a session reserves (at most the model's seq_len). */
const CONTEXT_CAP = 1024;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  drop: $('drop'),
  file: $<HTMLInputElement>('file'),
  openDefault: $<HTMLButtonElement>('default'),
  modelInfo: $('model-info'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  tokens: $<HTMLInputElement>('tokens'),
  temperature: $<HTMLInputElement>('temperature'),
  backend: $<HTMLSelectElement>('backend'),
  generate: $<HTMLButtonElement>('generate'),
  stop: $<HTMLButtonElement>('stop'),
  status: $('status'),
  error: $('error'),
  output: $('output'),
  runInfo: $('run-info'),
  plot: $('plot'),
};

let model: OpenedBundle | undefined;
let session: { key: string; running: RunningSession } | undefined;
let stopRequested = false;

type State = 'loading' | 'ready' | 'running' | 'done' | 'error';
function setStatus(state: State, text: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

/** Show a failure: the typed errors of the workspace (UltraSketchError, WebGpuError, DemoError) carry a hint. */
function showError(err: unknown): void {
  const e = err as { message?: string; code?: string; hint?: string; problem?: string };
  const message = e.problem ?? e.message ?? String(err);
  ui.error.replaceChildren();
  const head = document.createElement('div');
  head.textContent = `${e.code ? `[${e.code}] ` : ''}${message}`;
  ui.error.append(head);
  if (e.hint) {
    const hint = document.createElement('div');
    hint.className = 'hint';
    hint.textContent = `What to do: ${e.hint}`;
    ui.error.append(hint);
  }
  ui.error.hidden = false;
  setStatus('error', 'Failed (see below).');
  console.error(err);
}

function figure(list: HTMLElement, label: string, value: string, attrs: Record<string, string> = {}, big = false): void {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.textContent = value;
  if (big) dd.className = 'big';
  Object.assign(dd.dataset, attrs);
  list.append(dt, dd);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

function showModel(m: OpenedBundle): void {
  const a = m.loaded.accounting;
  const c = m.config;
  ui.modelInfo.replaceChildren();
  figure(ui.modelInfo, 'Bundle', `${m.source.path} (${mb(a.fileBytes)})`);
  figure(ui.modelInfo, 'Model', `${c.nLayers} layers, dim ${c.dim}, vocabulary ${c.vocabSize}, ${(a.params / 1e6).toFixed(2)} M parameters`);
  figure(ui.modelInfo, 'Codecs', Object.entries(a.linearCodecs).map(([k, n]) => `${k} × ${n}`).join(', ') || 'none (float)');
  figure(ui.modelInfo, 'bpwLinears', `${a.bpwLinears.toFixed(4)} bits per linear weight`, { figure: 'bpwLinears', value: String(a.bpwLinears) }, true);
  figure(ui.modelInfo, 'bitsPerParam', `${a.bitsPerParam.toFixed(3)} bits per parameter (whole file: embedding, tokenizer, header included)`, { figure: 'bitsPerParam', value: String(a.bitsPerParam) }, true);
  renderLayerPlot(ui.plot, layerBits(a));
}

async function openBytes(bytes: Uint8Array, name: string): Promise<void> {
  setStatus('loading', `Opening ${name}…`);
  ui.error.hidden = true;
  ui.generate.disabled = true;
  session?.running.dispose();
  session = undefined;
  model = undefined;
  try {
    model = openModel(bytes, { name });
    showModel(model);
    ui.generate.disabled = false;
    setStatus('ready', `Opened ${name}. Press Generate.`);
  } catch (err) {
    ui.modelInfo.replaceChildren();
    showError(err);
  }
}

async function openDefault(): Promise<void> {
  setStatus('loading', `Opening the default bundle ${DEFAULT_NAME}…`);
  try {
    const response = await fetch(defaultBundleUrl);
    if (!response.ok) throw new DemoError('E_FILE_NOT_FOUND', `the default bundle could not be read (HTTP ${response.status})`, 'serve the whole dist/ folder, assets/ included');
    await openBytes(new Uint8Array(await response.arrayBuffer()), DEFAULT_NAME);
  } catch (err) {
    showError(err);
  }
}

async function openFile(file: File): Promise<void> {
  await openBytes(new Uint8Array(await file.arrayBuffer()), file.name);
}

async function sessionFor(m: OpenedBundle, choice: BackendChoice): Promise<RunningSession> {
  const key = `${m.source.path}|${choice}`;
  if (session?.key === key) return session.running;
  session?.running.dispose();
  session = undefined;
  setStatus('running', choice === 'cpu' ? 'Preparing the CPU session…' : 'Preparing the session (WebGPU: compiling the kernels)…');
  const running = await startSession(m, choice, Math.min(m.config.seqLen, CONTEXT_CAP));
  session = { key, running };
  return running;
}

async function generate(): Promise<void> {
  if (!model) return;
  const m = model;
  ui.error.hidden = true;
  ui.generate.disabled = true;
  ui.stop.disabled = false;
  stopRequested = false;
  ui.output.textContent = '';
  ui.output.dataset.tokens = '[]';
  ui.runInfo.replaceChildren();
  try {
    const running = await sessionFor(m, ui.backend.value as BackendChoice);
    const text = ui.prompt.value;
    const prompt = m.tokenizer.encode(text, { bos: true, eos: false });
    const wanted = Math.max(1, Math.floor(Number(ui.tokens.value) || 1));
    if (prompt.length >= running.contextLength) {
      throw new DemoError('E_BAD_ARGUMENT', `the prompt has ${prompt.length} tokens; the context holds ${running.contextLength}`, 'shorten the prompt');
    }
    // llama2.c's steps count every position, prompt included: the last prompt position yields the first new token.
    const steps = Math.min(running.contextLength, prompt.length - 1 + wanted);
    const temperature = Math.max(0, Number(ui.temperature.value) || 0);
    const stopIds = new Set(m.tokenizerInfo.stopIds);
    const decoder = m.tokenizer.createStreamDecoder();
    const ids: number[] = [];
    let shown = text;
    ui.output.textContent = shown;
    setStatus('running', 'Generating…');
    const start = performance.now();
    let firstAt = 0;
    for await (const step of running.generate(prompt, { steps, temperature, seed: 42 })) {
      if (step.pos + 1 < prompt.length) continue; // still reading the prompt
      if (stopIds.has(step.next) || stopRequested) break;
      if (ids.length === 0) firstAt = performance.now();
      ids.push(step.next);
      shown += decoder.push(step.next);
      ui.output.textContent = shown;
      ui.output.dataset.tokens = JSON.stringify(ids);
    }
    ui.output.textContent = shown + decoder.flush();
    const end = performance.now();
    showRun(running, ids.length, prompt.length, start, firstAt, end);
    setStatus('done', `Generated ${ids.length} tokens${stopRequested ? ' (stopped)' : ''}.`);
  } catch (err) {
    showError(err);
  } finally {
    ui.generate.disabled = model === undefined;
    ui.stop.disabled = true;
  }
}

function showRun(running: RunningSession, generated: number, promptTokens: number, start: number, firstAt: number, end: number): void {
  const list = ui.runInfo;
  list.replaceChildren();
  const name = running.backend === 'webgpu' ? 'WebGPU' : 'CPU (WebAssembly)';
  figure(list, 'Backend', `${name}: ${running.detail}`, { backend: running.backend }, true);
  if (running.fallbackReason) figure(list, 'Why not WebGPU', running.fallbackReason, { fallback: 'true' });
  // Decode speed excludes reading the prompt (its positions run one by one too, but are not output).
  const decodeSeconds = (end - firstAt) / 1000;
  const rate = generated > 1 && decodeSeconds > 0 ? (generated - 1) / decodeSeconds : Number.NaN;
  figure(list, 'Speed', `${Number.isFinite(rate) ? rate.toFixed(1) : '–'} tokens/s generating (${generated} tokens after a ${promptTokens}-token prompt, ${((end - start) / 1000).toFixed(2)} s in all)`, { figure: 'tokensPerSecond', value: String(rate) }, true);
  const mem = running.memory();
  const parts = Object.entries(mem.parts).map(([k, v]) => `${k} ${mb(v)}`).join(', ');
  figure(list, 'Memory held', `${mb(mem.total)} (${parts}; ${running.backend === 'webgpu' ? 'GPU buffers' : 'WebAssembly and JS arrays'}, context of ${running.contextLength} positions)`, { figure: 'memory', value: String(mem.total) }, true);
}

ui.generate.addEventListener('click', () => void generate());
ui.stop.addEventListener('click', () => {
  stopRequested = true;
});
ui.openDefault.addEventListener('click', () => void openDefault());
ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  if (file) void openFile(file);
});
ui.drop.addEventListener('dragover', (ev) => {
  ev.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  ui.drop.classList.remove('over');
  const file = ev.dataTransfer?.files[0];
  if (file) void openFile(file);
});

// ?backend=cpu|webgpu|auto preselects the backend (links, tests); the default bundle opens at once.
const wanted = new URLSearchParams(location.search).get('backend');
if (wanted === 'cpu' || wanted === 'webgpu' || wanted === 'auto') ui.backend.value = wanted;
void openDefault();
