/**
 * The demo page: open a `.usk` bundle (the embedded default, a picked file or a dropped one), optionally a second
 * one to compare (the float model as a bundle), run them on WebGPU or the CPU fallback, stream the text, and show
 * what each costs (bits, memory, speed). Plain DOM, no framework: the page is one form and a few read-outs.
 *
 * For the end-to-end test (test/demo.e2e.test.ts) the page states what it did in attributes, not only in words:
 * `#status[data-state]` (loading | ready | running | done | error), `#output[data-tokens]` and
 * `#compare-output[data-tokens]` (the generated ids), `[data-backend]`, and the figures' `data-value`s.
 */
import { type OpenedBundle, openModel, readQualitySection, readTrainingSection } from '@ultrasketch/pipeline/browser';
// The embedded default: Vite copies the file into dist/assets at build time and gives its same-origin URL (never
// a CDN, never inlined), so the built page works offline.
import defaultBundleUrl from '../../../models/stories3M-littlebit-0.55.usk?url';
import { type BackendChoice, DemoError, type RunningSession, startSession } from './backend.js';
import { parseSweepReport, renderPareto } from './pareto.js';
import { renderOccupancy, sketchWeights, stateOccupancy } from './occupancy.js';
import { type PlotSeries, layerBits, renderLayerPlot } from './plot.js';

const DEFAULT_NAME = 'stories3M-littlebit-0.55.usk';
/** KV cache positions a session reserves (at most the model's seq_len). */
const CONTEXT_CAP = 1024;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  drop: $('drop'),
  file: $<HTMLInputElement>('file'),
  openDefault: $<HTMLButtonElement>('default'),
  modelInfo: $('model-info'),
  compareFile: $<HTMLInputElement>('compare-file'),
  compareClear: $<HTMLButtonElement>('compare-clear'),
  compareInfo: $('compare-info'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  tokens: $<HTMLInputElement>('tokens'),
  temperature: $<HTMLInputElement>('temperature'),
  backend: $<HTMLSelectElement>('backend'),
  generate: $<HTMLButtonElement>('generate'),
  stop: $<HTMLButtonElement>('stop'),
  status: $('status'),
  error: $('error'),
  outputs: $('outputs'),
  output: $('output'),
  outputTitle: $('output-title'),
  compareColumn: $('compare-column'),
  compareTitle: $('compare-title'),
  compareOutput: $('compare-output'),
  agreement: $('agreement'),
  runInfo: $('run-info'),
  plot: $('plot'),
  occupancyNone: $('occupancy-none'),
  occupancyPick: $('occupancy-pick'),
  occupancyWeight: $<HTMLSelectElement>('occupancy-weight'),
  occupancy: $('occupancy'),
  sweepFile: $<HTMLInputElement>('sweep-file'),
  pareto: $('pareto'),
};

/** An open bundle and the session last built for it (kept while the backend choice stays the same). */
interface Slot {
  model: OpenedBundle | undefined;
  /** The file's bytes (a CPU worker opens its own copy of the bundle from them). */
  bytes: Uint8Array | undefined;
  session: { choice: BackendChoice; running: RunningSession } | undefined;
}
const main: Slot = { model: undefined, bytes: undefined, session: undefined };
const compare: Slot = { model: undefined, bytes: undefined, session: undefined };
let busy = false;
let stopRequested = false;

type State = 'loading' | 'ready' | 'running' | 'done' | 'error';
function setStatus(state: State, text: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

/** Show a failure: the typed errors of the workspace (UltraSketchError, WebGpuError, DemoError) carry a hint. */
function showError(err: unknown, pageHint?: string): void {
  const e = err as { message?: string; code?: string; hint?: string; problem?: string; source?: string };
  const message = e.problem !== undefined ? `${e.source ? `${e.source}: ` : ''}${e.problem}` : (e.message ?? String(err));
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
  if (pageHint) {
    const hint = document.createElement('div');
    hint.className = 'hint';
    hint.textContent = `In this page: ${pageHint}`;
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

/** The bundle's figures; `prefix` names the second bundle's data attributes (compareBpwLinears, …). */
function showModel(list: HTMLElement, m: OpenedBundle, prefix = ''): void {
  const a = m.loaded.accounting;
  const c = m.config;
  const key = (name: string) => (prefix ? prefix + name[0]!.toUpperCase() + name.slice(1) : name);
  list.replaceChildren();
  figure(list, 'Bundle', `${m.source.path} (${mb(a.fileBytes)})`);
  figure(list, 'Model', `${c.nLayers} layers, dim ${c.dim}, vocabulary ${c.vocabSize}, ${(a.params / 1e6).toFixed(2)} M parameters`);
  figure(list, 'Codecs', Object.entries(a.linearCodecs).map(([k, n]) => `${k} × ${n}`).join(', ') || 'none (float)');
  figure(list, 'bpwLinears', `${a.bpwLinears.toFixed(4)} bits per linear weight`, { figure: key('bpwLinears'), value: String(a.bpwLinears) }, true);
  figure(list, 'bitsPerParam', `${a.bitsPerParam.toFixed(3)} bits per parameter (whole file: embedding, tokenizer, header included)`, { figure: key('bitsPerParam'), value: String(a.bitsPerParam) }, true);
  const quality = readQualitySection(m.loaded.quality);
  if (quality) {
    const text = quality.textSource.split(/[\\/]/).pop();
    const ratio = quality.perplexity / quality.referencePerplexity;
    figure(
      list,
      'Quality',
      `perplexity ${quality.perplexity.toFixed(2)}, the float model's ${quality.referencePerplexity.toFixed(2)} (${ratio.toFixed(2)}×) on ${quality.windows} windows of ${text}, measured when the bundle was made`,
      { figure: key('perplexity'), value: String(quality.perplexity) },
    );
  }
  const trained = readTrainingSection(m.loaded.training);
  if (trained && trained.tokens > 0) {
    figure(list, 'Training', `${trained.tokens.toLocaleString('en-US')} tokens of distillation${trained.recipe.name ? ` (recipe ${trained.recipe.name})` : ''}`);
  }
}

function showPlot(): void {
  const series: PlotSeries[] = [];
  for (const slot of [main, compare]) if (slot.model) series.push({ name: slot.model.source.path, rows: layerBits(slot.model.loaded.accounting) });
  renderLayerPlot(ui.plot, series);
  showOccupancyChoices();
}

/** The sketch matrices of the open bundles, in a select; the first one's histogram at once. */
function showOccupancyChoices(): void {
  ui.occupancyWeight.replaceChildren();
  [main, compare].forEach((slot, i) => {
    if (!slot.model) return;
    for (const name of sketchWeights(slot.model)) {
      const option = document.createElement('option');
      option.value = `${i}|${name}`;
      option.textContent = `${slot.model.source.path}: ${name}`;
      ui.occupancyWeight.append(option);
    }
  });
  const any = ui.occupancyWeight.options.length > 0;
  ui.occupancyNone.hidden = any;
  ui.occupancyPick.hidden = !any;
  ui.occupancy.replaceChildren();
  if (any) showOccupancy();
}

function showOccupancy(): void {
  const [slotIndex, name] = ui.occupancyWeight.value.split(/\|(.*)/s) as [string, string];
  const model = (slotIndex === '0' ? main : compare).model;
  if (!model) return;
  try {
    renderOccupancy(ui.occupancy, stateOccupancy(model, name));
  } catch (err) {
    showError(err);
  }
}

function closeSlot(slot: Slot): void {
  slot.session?.running.dispose();
  slot.session = undefined;
  slot.model = undefined;
  slot.bytes = undefined;
}

function refreshButtons(): void {
  ui.generate.disabled = busy || main.model === undefined;
  ui.stop.disabled = !busy;
  ui.compareClear.disabled = busy || compare.model === undefined;
}

async function openInto(slot: Slot, bytes: Uint8Array, name: string): Promise<void> {
  setStatus('loading', `Opening ${name}…`);
  ui.error.hidden = true;
  closeSlot(slot);
  const list = slot === main ? ui.modelInfo : ui.compareInfo;
  list.replaceChildren();
  try {
    slot.model = openModel(bytes, { name });
    slot.bytes = bytes;
    showModel(list, slot.model, slot === main ? '' : 'compare');
    if (slot === compare) ($('compare-panel') as HTMLDetailsElement).open = true;
    setStatus('ready', `Opened ${name}. Press Generate.`);
  } catch (err) {
    // A float checkpoint (or any other file) is not a bundle: say how to make one for the page.
    const notBundle = (err as { code?: string }).code === 'E_BAD_MAGIC';
    showError(err, notBundle ? 'a float model opens here as a float bundle: ultrasketch compress <model> --codec float -o model-float.usk' : undefined);
  } finally {
    showPlot();
    refreshButtons();
  }
}

async function openDefault(): Promise<void> {
  setStatus('loading', `Opening the default bundle ${DEFAULT_NAME}…`);
  try {
    const response = await fetch(defaultBundleUrl);
    if (!response.ok) throw new DemoError('E_FILE_NOT_FOUND', `the default bundle could not be read (HTTP ${response.status})`, 'serve the whole dist/ folder, assets/ included');
    await openInto(main, new Uint8Array(await response.arrayBuffer()), DEFAULT_NAME);
  } catch (err) {
    showError(err);
  }
}

async function openFile(slot: Slot, file: File): Promise<void> {
  if (busy) return;
  await openInto(slot, new Uint8Array(await file.arrayBuffer()), file.name);
}

async function sessionFor(slot: Slot, choice: BackendChoice): Promise<RunningSession> {
  const m = slot.model!;
  if (slot.session?.choice === choice) return slot.session.running;
  slot.session?.running.dispose();
  slot.session = undefined;
  setStatus('running', `Preparing ${m.source.path} (${choice === 'cpu' ? 'CPU' : 'WebGPU: compiling the kernels'})…`);
  const running = await startSession(m, slot.bytes!, choice, Math.min(m.config.seqLen, CONTEXT_CAP));
  slot.session = { choice, running };
  return running;
}

interface StreamResult {
  ids: number[];
  promptTokens: number;
  start: number;
  firstAt: number;
  end: number;
}

/** Generate into `out`, showing the text as it comes and the ids in `data-tokens`. */
async function stream(m: OpenedBundle, running: RunningSession, out: HTMLElement, text: string, wanted: number, temperature: number): Promise<StreamResult> {
  const prompt = m.tokenizer.encode(text, { bos: true, eos: false });
  if (prompt.length >= running.contextLength) {
    throw new DemoError('E_BAD_ARGUMENT', `the prompt has ${prompt.length} tokens; the context holds ${running.contextLength}`, 'shorten the prompt');
  }
  // llama2.c's steps count every position, prompt included: the last prompt position yields the first new token.
  const steps = Math.min(running.contextLength, prompt.length - 1 + wanted);
  const stopIds = new Set(m.tokenizerInfo.stopIds);
  const decoder = m.tokenizer.createStreamDecoder();
  const ids: number[] = [];
  let shown = text;
  out.textContent = shown;
  const start = performance.now();
  let firstAt = start;
  for await (const step of running.generate(prompt, { steps, temperature, seed: 42 })) {
    if (step.pos + 1 < prompt.length) continue; // still reading the prompt
    if (stopIds.has(step.next) || stopRequested) break;
    if (ids.length === 0) firstAt = performance.now();
    ids.push(step.next);
    shown += decoder.push(step.next);
    out.textContent = shown;
    out.dataset.tokens = JSON.stringify(ids);
  }
  out.textContent = shown + decoder.flush();
  return { ids, promptTokens: prompt.length, start, firstAt, end: performance.now() };
}

async function generate(): Promise<void> {
  if (!main.model || busy) return;
  busy = true;
  stopRequested = false;
  refreshButtons();
  ui.error.hidden = true;
  for (const out of [ui.output, ui.compareOutput]) {
    out.textContent = '';
    out.dataset.tokens = '[]';
  }
  ui.runInfo.replaceChildren();
  ui.agreement.hidden = true;
  const two = compare.model !== undefined;
  ui.outputs.classList.toggle('two', two);
  ui.compareColumn.hidden = !two;
  ui.outputTitle.hidden = !two;
  try {
    const choice = ui.backend.value as BackendChoice;
    const text = ui.prompt.value;
    const wanted = Math.max(1, Math.floor(Number(ui.tokens.value) || 1));
    const temperature = Math.max(0, Number(ui.temperature.value) || 0);
    const runs: { slot: Slot; out: HTMLElement; title: HTMLElement; prefix: string }[] = [{ slot: main, out: ui.output, title: ui.outputTitle, prefix: '' }];
    if (two) runs.push({ slot: compare, out: ui.compareOutput, title: ui.compareTitle, prefix: 'compare' });
    const results: number[][] = [];
    for (const run of runs) {
      const m = run.slot.model!;
      run.title.textContent = `${m.source.path}: ${m.loaded.accounting.bpwLinears.toFixed(3)} bpwLinears`;
      const running = await sessionFor(run.slot, choice);
      setStatus('running', `Generating with ${m.source.path}…`);
      const r = await stream(m, running, run.out, text, wanted, temperature);
      showRun(running, r, run.prefix, two ? m.source.path : '');
      results.push(r.ids);
    }
    if (two) showAgreement(results[0]!, results[1]!);
    setStatus('done', `Generated ${results.map((ids) => ids.length).join(' and ')} tokens${stopRequested ? ' (stopped)' : ''}.`);
  } catch (err) {
    showError(err);
  } finally {
    busy = false;
    refreshButtons();
  }
}

function showAgreement(a: number[], b: number[]): void {
  const n = Math.min(a.length, b.length);
  let first = 0;
  while (first < n && a[first] === b[first]) first++;
  ui.agreement.dataset.sameTokens = String(first);
  ui.agreement.textContent =
    first === n && a.length === b.length
      ? `The two bundles generated the same ${n} tokens.`
      : `The two bundles generated the same first ${first} tokens, then parted (token ${first + 1}).`;
  ui.agreement.hidden = false;
}

function showRun(running: RunningSession, r: StreamResult, prefix: string, label: string): void {
  const list = ui.runInfo;
  const key = (name: string) => (prefix ? prefix + name[0]!.toUpperCase() + name.slice(1) : name);
  const of = label ? ` (${label})` : '';
  const name = running.backend === 'webgpu' ? 'WebGPU' : 'CPU (WebAssembly)';
  figure(list, `Backend${of}`, `${name}: ${running.detail}`, prefix ? {} : { backend: running.backend }, true);
  if (running.fallbackReason) figure(list, 'Why not WebGPU', running.fallbackReason, prefix ? {} : { fallback: 'true' });
  // Decode speed excludes reading the prompt (its positions run one by one too, but are not output).
  const generated = r.ids.length;
  const decodeSeconds = (r.end - r.firstAt) / 1000;
  const rate = generated > 1 && decodeSeconds > 0 ? (generated - 1) / decodeSeconds : Number.NaN;
  figure(list, `Speed${of}`, `${Number.isFinite(rate) ? rate.toFixed(1) : '–'} tokens/s generating (${generated} tokens after a ${r.promptTokens}-token prompt, ${((r.end - r.start) / 1000).toFixed(2)} s in all)`, { figure: key('tokensPerSecond'), value: String(rate) }, true);
  const mem = running.memory();
  const parts = Object.entries(mem.parts).map(([k, v]) => `${k} ${mb(v)}`).join(', ');
  figure(list, `Memory held${of}`, `${mb(mem.total)} (${parts}; ${running.backend === 'webgpu' ? 'GPU buffers' : 'WebAssembly and JS arrays'}, context of ${running.contextLength} positions)`, { figure: key('memory'), value: String(mem.total) }, true);
}

ui.generate.addEventListener('click', () => void generate());
ui.occupancyWeight.addEventListener('change', showOccupancy);
ui.stop.addEventListener('click', () => {
  stopRequested = true;
});
ui.openDefault.addEventListener('click', () => {
  if (!busy) void openDefault();
});
ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  if (file) void openFile(main, file);
  ui.file.value = '';
});
ui.compareFile.addEventListener('change', () => {
  const file = ui.compareFile.files?.[0];
  if (file) void openFile(compare, file);
  ui.compareFile.value = '';
});
ui.compareClear.addEventListener('click', () => {
  closeSlot(compare);
  ui.compareInfo.replaceChildren();
  showPlot();
  refreshButtons();
});
async function openSweep(file: File): Promise<void> {
  ui.error.hidden = true;
  try {
    renderPareto(ui.pareto, parseSweepReport(await file.text(), file.name), file.name);
  } catch (err) {
    ui.pareto.replaceChildren();
    showError(err);
  }
}
ui.sweepFile.addEventListener('change', () => {
  const file = ui.sweepFile.files?.[0];
  if (file) void openSweep(file);
  ui.sweepFile.value = '';
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
  if (file?.name.endsWith('.json')) void openSweep(file);
  else if (file) void openFile(main, file);
});

// ?backend=cpu|webgpu|auto preselects the backend (links, tests); the default bundle opens at once.
const wanted = new URLSearchParams(location.search).get('backend');
if (wanted === 'cpu' || wanted === 'webgpu' || wanted === 'auto') ui.backend.value = wanted;
void openDefault();
