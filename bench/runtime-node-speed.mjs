#!/usr/bin/env node
/**
 * runtime-node speed on a real model (default: ../shared/models/stories3M, float32 after dequantization).
 * A benchmark, not a test: run it on a quiet machine, after `pnpm build`.
 *
 *   node bench/runtime-node-speed.mjs [--model FILE] [--runs N] [--gen-tokens N] [--prefill N] [--kernels wasm,js]
 *                                     [--json] [--out FILE]
 *   pnpm bench:runtime-node -- --runs 5
 *
 * For each kernel implementation of the session (--kernels, default both: `wasm` = WebAssembly SIMD, `js` =
 * the reference JS loops, which is the in-run baseline), per run and in this order (after one untimed warm-up
 * round for the JIT):
 *   - generate: greedy generation from BOS through session.generate(), --gen-tokens positions, never stopping
 *     early — the tokens/s a user of `ultrasketch generate` sees;
 *   - prefill (logits all): one forward of a --prefill-token window of real text with logits for every
 *     position (what `eval` does);
 *   - prefill (logits last): the same window, logits for the last position only (a prompt before generation).
 * Reported per figure: median, min and max over the runs of tokens/s; ms per token; effective GFLOP/s counting
 * 2 × (weights of the linear layers and the classifier) per token (attention's own O(position) work is
 * excluded and small here). Results go to stdout; `--json` prints exactly one JSON object.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_MODEL = join(ROOT, '../shared/models/stories3M/stories3M-q80.bin');
const DEFAULT_TEXT = join(ROOT, '../shared/data/tinystories/eval.txt');

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL },
    tokenizer: { type: 'string' },
    text: { type: 'string', default: DEFAULT_TEXT },
    runs: { type: 'string', default: '5' },
    'gen-tokens': { type: 'string', default: '128' },
    prefill: { type: 'string', default: '512' },
    kernels: { type: 'string', default: 'wasm,js' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  const doc = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0];
  process.stdout.write(`${doc.replace(/^#!.*\n\/\*\*\n/, '').replace(/^ \* ?/gm, '')}\n`);
  process.exit(0);
}
const positiveInt = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 1) fail(`--${name} must be a positive integer, got '${args[name]}'`, 2);
  return v;
};
const runs = positiveInt('runs');
const genTokens = positiveInt('gen-tokens');
const prefillTokens = positiveInt('prefill');
const kernelChoices = args.kernels.split(',').map((k) => k.trim());
for (const k of kernelChoices) if (!['wasm', 'js'].includes(k)) fail(`--kernels takes a comma-separated list of wasm, js; got '${k}'`, 2);

function fail(message, code = 1) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

// The built packages (bench/ is outside the workspace packages, so import their dist/ by path).
const dist = (pkg) => join(ROOT, 'packages', pkg, 'dist/index.js');
for (const pkg of ['pipeline', 'runtime-node', 'model']) {
  if (!existsSync(dist(pkg))) fail(`packages/${pkg} is not built (${relative(ROOT, dist(pkg))} is missing); run \`pnpm build\` first`);
}
const { loadModel, documentTokenStream } = await import(dist('pipeline'));
const { NodeSession } = await import(dist('runtime-node'));
const { LINEAR_KINDS, TensorNames, parameterCount } = await import(dist('model'));

if (!existsSync(args.model)) {
  fail(
    args.model === DEFAULT_MODEL
      ? `the default model ${relative(process.cwd(), DEFAULT_MODEL)} is not here; pass a llama2.c checkpoint with --model FILE`
      : `--model ${args.model}: no such file`,
  );
}
const model = loadModel(args.model, args.tokenizer ? { tokenizerPath: args.tokenizer } : {});
const config = model.weights.config;
if (genTokens > config.seqLen) fail(`--gen-tokens ${genTokens} exceeds the model's seq_len ${config.seqLen}`, 2);
if (prefillTokens > config.seqLen) fail(`--prefill ${prefillTokens} exceeds the model's seq_len ${config.seqLen}`, 2);

// A window of real text for prefill (the start of the evaluation stream), or greedy tokens if there is no text.
let window;
if (existsSync(args.text)) {
  const stream = documentTokenStream(model.tokenizer, readFileSync(args.text, 'utf8'), args.text);
  if (stream.length >= prefillTokens) window = stream.slice(0, prefillTokens);
}
if (!window) {
  window = new Int32Array(prefillTokens);
  let i = 0;
  const tmp = NodeSession.fromWeights(model.weights);
  for await (const step of tmp.generate([1], { steps: prefillTokens, temperature: 0, stopToken: -1 })) window[i++] = step.token;
  tmp.dispose();
}

// Weights a token passes through, for the FLOP count.
let linearWeights = 0;
for (let l = 0; l < config.nLayers; l++) {
  for (const kind of LINEAR_KINDS) linearWeights += model.weights.tensors.get(TensorNames.linear(l, kind)).data.length;
}
const classifierWeights = config.vocabSize * config.dim;
const flopsPerToken = 2 * (linearWeights + classifierWeights);
// Prefill with logits for the last position only skips the classifier for every other position.
const flopsPrefillLast = 2 * (linearWeights * prefillTokens + classifierWeights);

// One session per kernel implementation, built once (wasm kernels copy the weights into wasm memory once).
const sessions = {};
for (const kernels of kernelChoices) {
  const session = NodeSession.fromWeights(model.weights, { kernels });
  if (session.kernels !== undefined && session.kernels !== kernels) {
    fail(`asked for kernels '${kernels}' but the session uses '${session.kernels}'`);
  }
  sessions[kernels] = session;
}

// ---------------------------------------------------------------------------------------------- the runs

async function timeGenerate(session) {
  const t0 = performance.now();
  let n = 0;
  for await (const _ of session.generate([1], { steps: genTokens, temperature: 0, stopToken: -1 })) n++;
  const seconds = (performance.now() - t0) / 1000;
  if (n !== genTokens) throw new Error(`generated ${n} positions, expected ${genTokens}`);
  return { tokens: n, seconds, flops: n * flopsPerToken };
}

function timePrefill(session, logits) {
  session.reset();
  const t0 = performance.now();
  session.forward(window, { logits });
  const seconds = (performance.now() - t0) / 1000;
  return { tokens: window.length, seconds, flops: logits === 'all' ? window.length * flopsPerToken : flopsPrefillLast };
}

const FIGURES = [];
for (const kernels of kernelChoices) {
  const session = sessions[kernels];
  FIGURES.push(
    [`${kernels}.generate`, `[${kernels}] generate ${genTokens} tokens from BOS (greedy)`, () => timeGenerate(session)],
    [`${kernels}.prefillAll`, `[${kernels}] prefill ${prefillTokens} tokens, logits all`, () => timePrefill(session, 'all')],
    [`${kernels}.prefillLast`, `[${kernels}] prefill ${prefillTokens} tokens, logits last`, () => timePrefill(session, 'last')],
  );
}

const loadBefore = os.loadavg()[0];
const samples = Object.fromEntries(FIGURES.map(([key]) => [key, []]));
for (const [, , fn] of FIGURES) await fn(); // warm-up, untimed
for (let r = 0; r < runs; r++) {
  for (const [key, , fn] of FIGURES) samples[key].push(await fn());
  if (!args.json) process.stderr.write(`\rrun ${r + 1}/${runs}`);
}
if (!args.json) process.stderr.write('\r\x1b[K');
for (const session of Object.values(sessions)) session.dispose();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
const results = {};
for (const [key, label] of FIGURES) {
  const s = samples[key];
  results[key] = {
    label,
    tokens: s[0].tokens,
    tokensPerSecond: summary(s.map((x) => x.tokens / x.seconds)),
    msPerToken: summary(s.map((x) => (1000 * x.seconds) / x.tokens)),
    gflops: summary(s.map((x) => x.flops / x.seconds / 1e9)),
    seconds: s.map((x) => x.seconds),
  };
}

const cpus = os.cpus();
const machine = {
  cpu: cpus[0]?.model ?? 'unknown',
  cores: cpus.length,
  node: process.version,
  platform: `${os.platform()} ${os.arch()}`,
  memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  // Other processes competing for the cores make every figure slower and noisier: look at min – max.
  loadAverage1m: { before: loadBefore, after: os.loadavg()[0] },
};
const command = ['node bench/runtime-node-speed.mjs', `--runs ${runs}`]
  .concat(genTokens !== 128 ? [`--gen-tokens ${genTokens}`] : [])
  .concat(prefillTokens !== 512 ? [`--prefill ${prefillTokens}`] : [])
  .concat(args.kernels !== 'wasm,js' ? [`--kernels ${args.kernels}`] : [])
  .concat(args.model !== DEFAULT_MODEL ? [`--model ${args.model}`] : [])
  .concat(args.json ? ['--json'] : [])
  .join(' ');
const report = {
  benchmark: 'runtime-node-speed',
  runtime: 'runtime-node NodeSession over float32 weights, one thread; kernels: wasm = WebAssembly SIMD, js = the reference JS loops',
  model: {
    path: relative(ROOT, resolve(args.model)),
    format: model.source.format,
    sha256: model.source.sha256,
    parameters: parameterCount(config),
    config,
    flopsPerToken,
    flopsCounted: '2 × weights of the linear layers and the classifier per token (attention excluded)',
  },
  machine,
  runs,
  warmupRuns: 1,
  prefillText: window.length === prefillTokens && existsSync(args.text) ? relative(ROOT, resolve(args.text)) : 'greedy tokens',
  results,
  ratios: kernelChoices.includes('wasm') && kernelChoices.includes('js')
    ? Object.fromEntries(
        ['generate', 'prefillAll', 'prefillLast'].map((f) => [
          `${f}WasmVsJs`,
          results[`wasm.${f}`].tokensPerSecond.median / results[`js.${f}`].tokensPerSecond.median,
        ]),
      )
    : undefined,
  command,
  date: new Date().toISOString(),
};

if (args.out) writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
if (args.json) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} else {
  const f = (v, d = 1) => v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const rows = FIGURES.map(([key]) => {
    const r = results[key];
    return [
      r.label,
      `${f(r.tokensPerSecond.median)}`,
      `${f(r.tokensPerSecond.min)} – ${f(r.tokensPerSecond.max)}`,
      f(r.msPerToken.median, 3),
      f(r.gflops.median, 2),
    ];
  });
  const header = ['figure', 'tokens/s (median)', 'tokens/s (min – max)', 'ms/token', 'GFLOP/s'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [
    `runtime-node speed: ${report.model.path} (${report.model.format}, ${parameterCount(config).toLocaleString('en-US')} parameters, run in float32)`,
    `machine: ${machine.cpu}, ${machine.cores} cores (one used), ${machine.memoryGiB} GiB, node ${machine.node}, ${machine.platform}`,
    `load average (1 min) ${machine.loadAverage1m.before.toFixed(2)} before, ${machine.loadAverage1m.after.toFixed(2)} after: other processes slow every figure down`,
    `${runs} runs after 1 warm-up; GFLOP/s counts ${(flopsPerToken / 1e6).toFixed(2)} MFLOP per token (2 × weights of linears + classifier)`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    ...(report.ratios
      ? [
          `wasm / js (same run): generate ${report.ratios.generateWasmVsJs.toFixed(2)}×, ` +
            `prefill logits all ${report.ratios.prefillAllWasmVsJs.toFixed(2)}×, prefill logits last ${report.ratios.prefillLastWasmVsJs.toFixed(2)}×`,
        ]
      : []),
    `reproduce: ${command}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
