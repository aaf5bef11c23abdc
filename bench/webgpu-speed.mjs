#!/usr/bin/env node
/**
 * runtime-webgpu speed: every codec's WebGPU kernel at Llama-3.2-1B shapes against the dense f32 WebGPU
 * kernel of the same runtime, and end-to-end tokens/s on a real model. A benchmark, not a test: run it after
 * `pnpm build` (it imports the built packages), in Node through the `webgpu` package (Dawn).
 *
 *   node bench/webgpu-speed.mjs [--shapes 2048x2048,512x2048,8192x2048,2048x8192] [--codecs LIST] [--n 1,8]
 *                               [--reps 5] [--min-sample-ms 200] [--e2e | --no-kernels] [--model FILE]
 *                               [--gen-tokens 32] [--prefill 128] [--lanes N] [--kernel-shape parallel|serial]
 *                               [--seed 1] [--no-cache] [--json] [--out FILE]
 *
 * On a machine without a GPU, Dawn needs a Vulkan driver: SwiftShader from Debian's chromium package,
 *   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node bench/webgpu-speed.mjs ...
 * SwiftShader is a CPU implementation of Vulkan: its figures are CORRECTNESS RUNS ONLY — they say nothing about
 * GPU speed, and every report made on it says so. Wherever a real GPU is available, run the same command there
 * (without VK_ICD_FILENAMES) and record the figures with the GPU's name (the report prints adapter.info).
 *
 * Kernels (--codecs, comma-separated, or `all`, the default):
 *   float-f32 (the dense baseline, always run), float-f16, rtn4, rtn2 (groups of 64), binary,
 *   sketch-0.5, sketch-1.0 (AbsMaxMin, d = 3, f16 states, rowrun), sketch-mixed-0.5, hashednets-0.5,
 *   littlebit-0.1, littlebit-0.55 (with the residual path)
 * Weights are synthetic (seeded Laplace, scale 0.02), one matrix per shape shared by every codec; encodings are
 * cached under bench/results/cache-webgpu/ (gitignored; LittleBit's SVDs take tens of seconds at 2048×8192).
 * For each (shape, n) the kernels are timed round-robin, --reps rounds after a warm-up: a sample queues enough
 * applications of the kernel to a batch of n vectors in ONE command buffer to last ≥ --min-sample-ms, and is
 * timed between two waits for the queue (so per-submit latency is amortized). Reported: median wall ms per
 * application (and process CPU ms, which on a software adapter is the work done), weights decoded per second,
 * bytes of parameters read per token, and the ratio dense time ÷ kernel time (> 1: faster than dense f32).
 *
 * End-to-end (--e2e; default on): the model (default ../shared/models/stories3M) as float f32 weights and as
 * bundles compressed here (pipeline.compress) with each codec — greedy generation of --gen-tokens positions
 * from BOS (tokens/s a user sees) and a prefill of --prefill tokens of real text (logits for the last one).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ROOT, cpuMs, dist, fail, loadParams, log, median, now, printHelp, requireBuilt, saveParams, syntheticWeights } from './lib.mjs';

const DEFAULT_MODEL = join(ROOT, '../shared/models/stories3M/stories3M-q80.bin');
const DEFAULT_TEXT = join(ROOT, '../shared/data/tinystories/eval.txt');
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: '2048x2048,512x2048,8192x2048,2048x8192' },
    codecs: { type: 'string', default: 'all' },
    n: { type: 'string', default: '1,8' },
    reps: { type: 'string', default: '5' },
    'min-sample-ms': { type: 'string', default: '200' },
    e2e: { type: 'boolean', default: true },
    'no-e2e': { type: 'boolean', default: false },
    'no-kernels': { type: 'boolean', default: false },
    model: { type: 'string', default: DEFAULT_MODEL },
    text: { type: 'string', default: DEFAULT_TEXT },
    'gen-tokens': { type: 'string', default: '32' },
    prefill: { type: 'string', default: '128' },
    lanes: { type: 'string' },
    'kernel-shape': { type: 'string' },
    seed: { type: 'string', default: '1' },
    'no-cache': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  printHelp(import.meta.url);
}
const positiveInt = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 1) fail(`--${name} must be a positive integer, got '${args[name]}'`, 2);
  return v;
};
const reps = positiveInt('reps');
const minSampleMs = Number(args['min-sample-ms']);
if (!(minSampleMs >= 0)) fail(`--min-sample-ms must be ≥ 0`, 2);
const genTokens = positiveInt('gen-tokens');
const prefillTokens = positiveInt('prefill');
const seed = positiveInt('seed');
const ns = args.n.split(',').map((s) => Number(s.trim()));
if (ns.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) fail(`--n takes batch sizes in 1..64, got '${args.n}'`, 2);
const shapes = args.shapes.split(',').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) fail(`--shapes takes ROWSxCOLS items, got '${s}'`, 2);
  return [Number(m[1]), Number(m[2])];
});
const runKernels = !args['no-kernels'];
const runE2e = args.e2e && !args['no-e2e'];
requireBuilt(['core', 'model', 'baselines', 'sketch-core', 'littlebit', 'runtime-webgpu', 'pipeline', 'format']);
const core = await import(dist('core'));
const baselines = await import(dist('baselines'));
const sketchCore = await import(dist('sketch-core'));
const littlebit = await import(dist('littlebit'));
const gpuRt = await import(dist('runtime-webgpu'));
baselines.registerAll();
sketchCore.registerAll();
littlebit.registerAll();

// The Node glue: `webgpu` is a devDependency of packages/runtime-webgpu (resolved from there).
const requireFromPkg = createRequire(join(ROOT, 'packages/runtime-webgpu/package.json'));
const { create } = await import(pathToFileURL(requireFromPkg.resolve('webgpu')).href);
const gpu = create([]);
let ctx;
try {
  ctx = await gpuRt.GpuContext.create(gpu);
} catch (err) {
  const hint = existsSync(SWIFTSHADER_ICD) && !process.env.VK_ICD_FILENAMES ? `; without a GPU, run with VK_ICD_FILENAMES=${SWIFTSHADER_ICD}` : '';
  fail(`${err.message}${hint}`);
}
const adapter = ctx.adapter;
const adapterText = gpuRt.describeAdapter(adapter);
const NOTE = adapter.software
  ? `${adapter.architecture || adapter.description || 'software adapter'} is a CPU implementation of WebGPU/Vulkan: these figures are CORRECTNESS RUNS ONLY, not GPU speed`
  : null;
log(`adapter: ${adapterText}`);
if (NOTE) log(`NOTE: ${NOTE}`);
const sessionOptions = {
  ...(args.lanes ? { lanes: Number(args.lanes) } : {}),
  ...(args['kernel-shape'] ? { kernelShape: args['kernel-shape'] } : {}),
};
const lanes = args.lanes ? Number(args.lanes) : gpuRt.defaultLanes(args['kernel-shape'] ? args['kernel-shape'] === 'serial' : adapter.software);

// ------------------------------------------------------------------------------------------------ kernels

const CODECS = [
  { key: 'float-f32', codec: baselines.floatCodec, raw: { dtype: 'f32' } },
  { key: 'float-f16', codec: baselines.floatCodec, raw: { dtype: 'f16' } },
  { key: 'rtn4', codec: baselines.rtnCodec, raw: { bits: 4, groupSize: 64 } },
  { key: 'rtn2', codec: baselines.rtnCodec, raw: { bits: 2, groupSize: 64 } },
  { key: 'binary', codec: baselines.binaryCodec, raw: {} },
  { key: 'sketch-0.5', codec: sketchCore.sketchCodec, raw: { bpw: 0.5, rows: 3, state: 'f16', hash: 'rowrun' } },
  { key: 'sketch-1.0', codec: sketchCore.sketchCodec, raw: { bpw: 1.0, rows: 3, state: 'f16', hash: 'rowrun' } },
  { key: 'sketch-mixed-0.5', codec: sketchCore.sketchCodec, raw: { bpw: 0.5, rows: 3, state: 'f16', hash: 'mixed' } },
  { key: 'hashednets-0.5', codec: sketchCore.hashedNetsCodec, raw: { bpw: 0.5, state: 'f16' } },
  { key: 'littlebit-0.1', codec: littlebit.littlebitCodec, raw: { bpw: 0.1, residual: true } },
  { key: 'littlebit-0.55', codec: littlebit.littlebitCodec, raw: { bpw: 0.55, residual: true } },
];
const selected =
  args.codecs === 'all'
    ? CODECS
    : [CODECS[0], ...args.codecs.split(',').map((k) => CODECS.find((c) => c.key === k.trim()) ?? fail(`--codecs: unknown '${k}' (known: ${CODECS.map((c) => c.key).join(', ')})`, 2))].filter(
        (c, i, all) => all.indexOf(c) === i,
      );

const CACHE = join(ROOT, 'bench/results/cache-webgpu');
function encodeCached(c, rows, cols, weights) {
  const options = c.codec.resolveOptions(c.raw);
  const file = join(CACHE, `${c.key}-${rows}x${cols}-s${seed}-v${c.codec.version}.bin`);
  if (!args['no-cache'] && existsSync(file)) return c.codec.fromTensors(loadParams(file), rows, cols, options, file);
  const t0 = now();
  log(`encoding ${c.key} ${rows}×${cols} ...`);
  const params = c.codec.encode(weights(), rows, cols, options, { name: `${c.key}-${rows}x${cols}`, seed });
  log(`  ${((now() - t0) / 1000).toFixed(1)} s`);
  saveParams(file, c.codec.toTensors(params));
  return params;
}

async function sample(runner, n, inner) {
  const c0 = cpuMs();
  const ms = await runner.time(n, inner, now);
  return { wall: ms, cpu: (cpuMs() - c0) / inner };
}

const kernelResults = [];
if (runKernels) {
  for (const [rows, cols] of shapes) {
    let dense = null;
    const weights = () => (dense ??= syntheticWeights(core.Rng, seed, rows, cols));
    const contenders = selected.map((c) => {
      const params = encodeCached(c, rows, cols, weights);
      const bits = c.codec.bits(params).total;
      return { c, params, bits };
    });
    dense = null;
    for (const n of ns) {
      const runners = [];
      for (const k of contenders) runners.push({ ...k, runner: await gpuRt.LinearRunner.create(ctx, k.c.codec.id, k.params, { maxBatch: n, lanes }) });
      // warm-up and calibration: how many applications make one sample last ≥ min-sample-ms
      for (const r of runners) {
        const first = await sample(r.runner, n, 1);
        r.inner = Math.max(1, Math.min(1000, Math.ceil(minSampleMs / Math.max(first.wall, 0.01))));
        r.samples = [];
      }
      for (let rep = 0; rep < reps; rep++) for (const r of runners) r.samples.push(await sample(r.runner, n, r.inner));
      const denseWall = median(runners[0].samples.map((s) => s.wall));
      const denseCpu = median(runners[0].samples.map((s) => s.cpu));
      for (const r of runners) {
        const wall = median(r.samples.map((s) => s.wall));
        const cpu = median(r.samples.map((s) => s.cpu));
        const result = {
          shape: [rows, cols],
          n,
          codec: r.c.key,
          bpw: r.bits / (rows * cols),
          storedBytes: r.bits / 8,
          gpuParamBytes: r.runner.linear.paramBytes,
          dispatches: r.runner.dispatchCount,
          applicationsPerSample: r.inner,
          wallMs: { median: wall, min: Math.min(...r.samples.map((s) => s.wall)), max: Math.max(...r.samples.map((s) => s.wall)) },
          cpuMs: { median: cpu },
          weightsPerSecond: (rows * cols * n) / (wall / 1000),
          speedupVsDense: denseWall / wall,
          cpuSpeedupVsDense: denseCpu / cpu,
        };
        kernelResults.push(result);
        log(
          `${rows}×${cols} n=${n} ${r.c.key.padEnd(17)} bpw ${result.bpw.toFixed(3).padStart(6)}  ${wall.toFixed(3).padStart(9)} ms wall  ${cpu.toFixed(3).padStart(9)} ms cpu  ×${result.speedupVsDense.toFixed(2)} vs dense f32`,
        );
        r.runner.dispose();
      }
    }
  }
}

// --------------------------------------------------------------------------------------------- end to end

const e2eResults = [];
if (runE2e) {
  if (!existsSync(args.model)) fail(`--model ${args.model} not found (the default lives in ../shared)`);
  const pipeline = await import(dist('pipeline'));
  const format = await import(dist('format'));
  const model = pipeline.loadModel(args.model);
  const stream = pipeline.documentTokenStream(model.tokenizer, readFileSync(args.text, 'utf8'), args.text);
  const prompt = Array.from(stream.subarray(0, prefillTokens));
  const configs = [
    { key: 'float-f32 (weights)', make: () => gpuRt.WebGpuSession.fromWeights(model.weights, { context: ctx, ...sessionOptions }) },
    ...[
      ['float-f16', 'float', { dtype: 'f16' }],
      ['rtn4', 'rtn', { bits: 4, groupSize: 64 }],
      ['binary', 'binary', {}],
      ['sketch-0.8', 'sketch', { bpw: 0.8 }],
      ['hashednets-1.0', 'hashednets', { bpw: 1 }],
      ['littlebit-0.55', 'littlebit', { bpw: 0.55, residual: false }],
    ]
      .filter(([key]) => args.codecs === 'all' || selected.some((c) => c.key.startsWith(key.split('-')[0])))
      .map(([key, codec, codecOptions]) => ({
        key,
        make: async () => {
          log(`compressing ${relative(ROOT, args.model)} with ${key} ...`);
          const { bytes } = await pipeline.compress({ model, codec, codecOptions });
          const bundle = format.readBundle(bytes, key);
          return gpuRt.WebGpuSession.fromBundle(bundle, { context: ctx, ...sessionOptions });
        },
      })),
  ];
  const sessions = [];
  for (const c of configs) sessions.push({ ...c, session: await c.make(), gen: [], prefill: [] });
  const rounds = Math.max(1, Math.min(reps, 3));
  for (let round = 0; round <= rounds; round++) {
    for (const s of sessions) {
      let t0 = now();
      let count = 0;
      for await (const _ of s.session.generate([1], { steps: genTokens, temperature: 0, stopToken: -1 })) count++;
      const gen = count / ((now() - t0) / 1000);
      s.session.reset();
      t0 = now();
      await s.session.forward(prompt, { logits: 'last' });
      const pre = prompt.length / ((now() - t0) / 1000);
      if (round > 0) {
        s.gen.push(gen);
        s.prefill.push(pre);
      }
    }
  }
  const dense = sessions[0];
  for (const s of sessions) {
    const r = {
      model: relative(ROOT, args.model),
      config: s.key,
      gpuParamBytes: s.session.memory().parameters,
      generateTokensPerSecond: median(s.gen),
      prefillTokensPerSecond: median(s.prefill),
      generateVsDense: median(s.gen) / median(dense.gen),
      prefillVsDense: median(s.prefill) / median(dense.prefill),
    };
    e2eResults.push(r);
    log(
      `e2e ${s.key.padEnd(20)} generate ${r.generateTokensPerSecond.toFixed(1).padStart(7)} tok/s (×${r.generateVsDense.toFixed(2)})  prefill ${r.prefillTokensPerSecond.toFixed(1).padStart(7)} tok/s (×${r.prefillVsDense.toFixed(2)})  params on GPU ${(r.gpuParamBytes / 1e6).toFixed(2)} MB`,
    );
    s.session.dispose();
  }
}

// ------------------------------------------------------------------------------------------------- report

const report = {
  benchmark: 'webgpu-speed',
  adapter,
  note: NOTE,
  command: `node ${relative(process.cwd(), fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim(),
  env: { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? null },
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadavg: os.loadavg() },
  settings: { reps, minSampleMs, ns, lanes, kernelShape: args['kernel-shape'] ?? (adapter.software ? 'serial' : 'parallel'), seed, genTokens, prefillTokens },
  kernels: kernelResults,
  e2e: e2eResults,
};
ctx.destroy();

function table() {
  const lines = [`runtime-webgpu speed on ${adapterText}`];
  if (NOTE) lines.push(`NOTE: ${NOTE}.`);
  lines.push(`command: ${report.command}`, `machine: ${report.machine.cpu} × ${report.machine.cores}, Node ${report.machine.node}, load ${report.machine.loadavg.map((l) => l.toFixed(2)).join(' ')}`);
  if (kernelResults.length) {
    lines.push('', '| shape | n | codec | bpw | ms/app (wall, median) | ms/app (CPU) | Gweights/s | vs dense f32 (wall) | vs dense f32 (CPU) |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of kernelResults) {
      lines.push(
        `| ${r.shape[0]}×${r.shape[1]} | ${r.n} | ${r.codec} | ${r.bpw.toFixed(3)} | ${r.wallMs.median.toFixed(3)} | ${r.cpuMs.median.toFixed(3)} | ${(r.weightsPerSecond / 1e9).toFixed(3)} | ${r.speedupVsDense.toFixed(2)} | ${r.cpuSpeedupVsDense.toFixed(2)} |`,
      );
    }
  }
  if (e2eResults.length) {
    lines.push('', `| model | weights | generate tok/s | vs f32 | prefill ${prefillTokens} tok/s | vs f32 | parameters on the GPU |`, '| --- | --- | --- | --- | --- | --- | --- |');
    for (const r of e2eResults) {
      lines.push(
        `| ${r.model} | ${r.config} | ${r.generateTokensPerSecond.toFixed(1)} | ${r.generateVsDense.toFixed(2)} | ${r.prefillTokensPerSecond.toFixed(1)} | ${r.prefillVsDense.toFixed(2)} | ${(r.gpuParamBytes / 1e6).toFixed(2)} MB |`,
      );
    }
  }
  return lines.join('\n');
}

const text = args.json ? JSON.stringify(report, null, 2) : table();
if (args.out) writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`${text}\n`);
