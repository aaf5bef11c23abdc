#!/usr/bin/env node
/**
 * Kernel-level speed at Llama-3.2-1B shapes (the protocol of ../shared/docs/evaluation.md, "Speed and memory"):
 * every codec's fused kernel at its target bpw against the dense float32 kernels of the same runtime
 * (runtime-node), in the same process, alternating, several repetitions. A benchmark, not a test: run it
 * after `pnpm build` (it imports the built packages) on as quiet a machine as you have.
 *
 *   node bench/kernels-1b.mjs [--shapes 2048x2048,512x2048,8192x2048,2048x8192] [--codecs LIST] [--n 1,8]
 *                             [--reps 7] [--min-sample-ms 40] [--variants js,wasm] [--seed 1]
 *                             [--dist laplace|normal] [--no-cache] [--json] [--out FILE] [--markdown]
 *   node bench/kernels-1b.mjs --from FILE.json --markdown      (render a saved report's tables, no run)
 *
 * --codecs takes a comma-separated list of the configurations below, or `all` (default):
 *   binary                        1 sign bit per weight + an f16 scale per row
 *   rtn2, rtn4                    round-to-nearest 2 / 4 bits, groups of 64 (f16 scale + offset per group)
 *   sketch-rowrun-0.5|0.75|1.0    AbsMaxMin sketch, d = 3, f16 states, rowrun (structured) hash family
 *   sketch-mixed-0.5|0.75|1.0     the same with the well-mixed (random) hash family
 *   sketch-signmean-d1-int8-0.3|0.5|0.75|1.0, sketch-signmean-d1-f16-0.5, sketch-signmean-d3-int8-0.5,
 *   sketch-signmean-d1-int8-g8-0.5 (8 channel groups)
 *                                 the sketch with query signmean, one sketch row (issue 16; only when named)
 *   hashednets-0.5                HashedNets baseline, f16 states
 *   littlebit-0.1|0.3|0.55        LittleBit with the residual path (two paths), ranks from the bpw formula
 *
 * Weights are synthetic: seeded Laplace (default; scale 0.02) or normal (std 0.02) matrices, one per shape,
 * the same matrix for every codec. Encoded parameters are cached under bench/results/cache/ (gitignored),
 * keyed by (codec, options, shape, distribution, seed): LittleBit needs truncated SVDs (~20 s CPU for
 * 2048×8192 at rank 256, twice with the residual path), so the first run is slow and says what it encodes.
 *
 * For every (shape, codec, n) the contenders are: dense f32 wasm (WasmDenseLinear, SIMD), dense f32 JS
 * (DenseLinear), and each kernel variant of the codec the build exports (--variants: `js` = the registry's
 * historical JS kernel, e.g. sketchKernel; `wasm` = its WebAssembly SIMD version, e.g. wasmSketchKernel).
 * They are timed round-robin: one sample of each, then the next round, `--reps` rounds after one warm-up
 * round; a sample runs the product enough times to last ≥ --min-sample-ms and records the mean per call.
 * Reported per contender: median, min and max ms per call of PROCESS CPU TIME (process.cpuUsage: on a shared,
 * oversubscribed machine wall time mostly measures the other jobs; CPU time of this single-threaded process
 * is the time the product actually ran — the wall-clock medians are printed and kept in the JSON too);
 * decoded weights/s (rows·cols·n / CPU time); bytes of weight read per token (stored bytes ÷ n: every stored
 * byte is read once per call); the ratio to each dense kernel (dense time ÷ kernel time: > 1 is faster than
 * dense; from CPU time, wall-time ratios in the JSON). `--json` prints exactly one JSON object.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, cpuMs, dist, fail, loadParams, log, median, printHelp, requireBuilt, saveParams, syntheticWeights } from './lib.mjs';

const CACHE = join(ROOT, 'bench/results/cache');

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: '2048x2048,512x2048,8192x2048,2048x8192' },
    codecs: { type: 'string', default: 'all' },
    n: { type: 'string', default: '1,8' },
    reps: { type: 'string', default: '7' },
    'min-sample-ms': { type: 'string', default: '40' },
    variants: { type: 'string', default: 'js,wasm' },
    seed: { type: 'string', default: '1' },
    dist: { type: 'string', default: 'laplace' },
    'no-cache': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    markdown: { type: 'boolean', default: false },
    from: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  printHelp(import.meta.url);
}
const intList = (name, s) =>
  s.split(',').map((v) => {
    const x = Number(v.trim());
    if (!Number.isInteger(x) || x < 1) fail(`--${name}: '${v}' is not a positive integer`, 2);
    return x;
  });
const shapes = args.shapes.split(',').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) fail(`--shapes: '${s}' is not ROWSxCOLS (out×in)`, 2);
  return [Number(m[1]), Number(m[2])];
});
const ns = intList('n', args.n);
const [reps] = intList('reps', args.reps);
const minSampleMs = Number(args['min-sample-ms']);
if (!(minSampleMs >= 0)) fail('--min-sample-ms must be ≥ 0', 2);
const [seed] = intList('seed', args.seed);
if (!['laplace', 'normal'].includes(args.dist)) fail(`--dist takes laplace or normal, got '${args.dist}'`, 2);
const variantNames = args.variants.split(',').map((v) => v.trim());
for (const v of variantNames) if (!['js', 'wasm'].includes(v)) fail(`--variants takes js, wasm; got '${v}'`, 2);

/** Markdown tables of a report: per n, one row per (codec, shape) with every contender's CPU ms and ratios. */
function markdown(report) {
  const lines = [];
  const f = (v, d = 3) => (v === null || v === undefined ? '—' : v.toFixed(d));
  const bytes = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${Math.round(b)} B`);
  const ns = [...new Set(report.results.filter((r) => r.n).map((r) => r.n))];
  for (const n of ns) {
    lines.push(`\n**n = ${n}** (ms of CPU per call, median of ${report.settings.reps}; ratio = dense wasm time ÷ kernel time, > 1 is faster than dense)\n`);
    lines.push('| shape | codec | bpw | weight bytes/token | dense wasm ms | dense JS ms | JS kernel ms | wasm kernel ms | wasm Gweights/s | wasm vs dense wasm | wasm vs dense JS | JS vs dense wasm |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of report.results.filter((x) => x.n === n)) {
      const by = (v) => r.contenders.find((c) => c.variant === v);
      const dw = by('dense-wasm');
      const dj = by('dense-js');
      const js = by('js');
      const wa = by('wasm');
      const rank = r.rank !== undefined ? ` (r ${r.rank}×${r.paths})` : '';
      lines.push(
        `| ${r.shape[0]}×${r.shape[1]} | ${r.codec}${rank} | ${r.bpw.toFixed(3)} | ${bytes(r.storedBytes / n)} (dense ${bytes((r.shape[0] * r.shape[1] * 4) / n)}) | ${f(dw?.cpuMs.median)} | ${f(dj?.cpuMs.median, 2)} | ${f(js?.cpuMs.median)} | ${f(wa?.cpuMs.median)} | ${f(wa ? wa.weightsPerSecond / 1e9 : null, 2)} | ${f(wa?.speedupVsDenseWasm, 2)} | ${f(wa?.speedupVsDenseJs, 1)} | ${f(js?.speedupVsDenseWasm, 2)} |`,
      );
    }
  }
  return lines.join('\n');
}
if (args.from) {
  process.stdout.write(`${markdown(JSON.parse(readFileSync(args.from, 'utf8')))}\n`);
  process.exit(0);
}

requireBuilt(['core', 'model', 'baselines', 'sketch-core', 'littlebit', 'runtime-node']);
const core = await import(dist('core'));
const { DenseLinear } = await import(dist('model'));
const baselines = await import(dist('baselines'));
const sketchCore = await import(dist('sketch-core'));
const littlebit = await import(dist('littlebit'));
const rt = await import(dist('runtime-node'));

// ------------------------------------------------------------------------------------------ configurations

const CODECS = [
  { key: 'binary', codec: baselines.binaryCodec, raw: {}, js: 'binaryKernel', wasm: 'wasmBinaryKernel', target: 1 },
  { key: 'rtn2', codec: baselines.rtnCodec, raw: { bits: 2, groupSize: 64 }, js: 'rtnKernel', wasm: 'wasmRtnKernel', target: 2 },
  { key: 'rtn4', codec: baselines.rtnCodec, raw: { bits: 4, groupSize: 64 }, js: 'rtnKernel', wasm: 'wasmRtnKernel', target: 4 },
  ...['rowrun', 'mixed'].flatMap((hash) =>
    [0.5, 0.75, 1.0].map((bpw) => ({
      key: `sketch-${hash}-${bpw === 1 ? '1.0' : bpw}`,
      codec: sketchCore.sketchCodec,
      raw: { bpw, hash, state: 'f16', rows: 3 },
      js: 'sketchKernel',
      wasm: 'wasmSketchKernel',
      target: bpw,
    })),
  ),
  { key: 'hashednets-0.5', codec: sketchCore.hashedNetsCodec, raw: { bpw: 0.5, state: 'f16' }, js: 'hashednetsKernel', wasm: 'wasmHashednetsKernel', target: 0.5 },
  // issue 16: the sketch's signmean query (rowrun, one sketch row); only when --codecs names them (not in `all`)
  ...[
    ['int8', 0.3],
    ['int8', 0.5],
    ['int8', 0.75],
    ['int8', 1.0],
    ['f16', 0.5],
  ].map(([state, bpw]) => ({
    key: `sketch-signmean-d1-${state}-${bpw === 1 ? '1.0' : bpw}`,
    codec: sketchCore.sketchCodec,
    raw: { bpw, state, rows: 1, query: 'signmean' },
    js: 'sketchKernel',
    wasm: 'wasmSketchKernel',
    target: bpw,
    extra: true,
  })),
  ...[
    ['sketch-signmean-d3-int8-0.5', { bpw: 0.5, state: 'int8', rows: 3, query: 'signmean' }],
    ['sketch-signmean-d1-int8-g8-0.5', { bpw: 0.5, state: 'int8', rows: 1, groups: 8, query: 'signmean' }],
  ].map(([key, raw]) => ({ key, codec: sketchCore.sketchCodec, raw, js: 'sketchKernel', wasm: 'wasmSketchKernel', target: 0.5, extra: true })),
  ...[0.1, 0.3, 0.55].map((bpw) => ({
    key: `littlebit-${bpw}`,
    codec: littlebit.littlebitCodec,
    raw: { bpw, residual: true },
    js: 'littlebitKernel',
    wasm: 'wasmLittlebitKernel',
    target: bpw,
  })),
];
const selected = args.codecs === 'all' ? CODECS.filter((c) => !c.extra) : args.codecs.split(',').map((k) => CODECS.find((c) => c.key === k.trim()) ?? fail(`--codecs: unknown '${k}' (known: ${CODECS.map((c) => c.key).join(', ')})`, 2));

// ------------------------------------------------------------------------------------------------ weights

const syntheticWeights_ = (rows, cols) => syntheticWeights(core.Rng, seed, rows, cols, args.dist);

// ----------------------------------------------------------------------------------- encode (with a cache)

function encoded(cfg, rows, cols, weights) {
  const options = cfg.codec.resolveOptions(cfg.raw);
  const id = createHash('sha256')
    .update(JSON.stringify([cfg.codec.id, cfg.codec.version, options, rows, cols, args.dist, seed]))
    .digest('hex')
    .slice(0, 16);
  const file = join(CACHE, `${cfg.key}-${rows}x${cols}-${args.dist}-s${seed}-${id}.bin`);
  if (!args['no-cache'] && existsSync(file)) {
    try {
      return { params: cfg.codec.fromTensors(loadParams(file), rows, cols, options, file), encodeSeconds: null, cached: true };
    } catch (e) {
      log(`  cache ${relative(ROOT, file)} unreadable (${e.message}); re-encoding`);
    }
  }
  log(`  encoding ${cfg.key} ${rows}×${cols} ...`);
  const t0 = performance.now();
  const params = cfg.codec.encode(weights(), rows, cols, options, { name: `${cfg.key}-${rows}x${cols}`, seed });
  const encodeSeconds = (performance.now() - t0) / 1000;
  log(`  encoded ${cfg.key} ${rows}×${cols} in ${encodeSeconds.toFixed(1)} s`);
  if (!args['no-cache']) saveParams(file, cfg.codec.toTensors(params));
  return { params, encodeSeconds, cached: false };
}

// ------------------------------------------------------------------------------------------------ timing

/** One sample: run `iters` calls; ms per call of wall time and of this process's CPU time. */
function sample(lin, x, y, n, iters) {
  const c0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) lin.apply(x, y, n);
  const wall = (performance.now() - t0) / iters;
  return { wall, cpu: (cpuMs() - c0) / iters };
}

/** Time contenders round-robin; returns ms-per-call samples per contender. */
function timeAlternating(contenders, x, y, n) {
  // warm-up round (JIT, wasm tier-up, caches) and calibration: iterations for ≥ minSampleMs per sample
  const iters = contenders.map((c) => {
    c.lin.apply(x, y, n);
    let it = 1;
    for (;;) {
      const ms = sample(c.lin, x, y, n, it).wall * it;
      if (ms >= minSampleMs || it >= 1 << 16) break;
      it = Math.min(1 << 16, Math.max(it * 2, Math.ceil((it * minSampleMs) / Math.max(ms, 1e-3))));
    }
    return it;
  });
  const samples = contenders.map(() => []);
  for (let r = 0; r < reps; r++) contenders.forEach((c, i) => samples[i].push(sample(c.lin, x, y, n, iters[i])));
  return samples;
}

// ------------------------------------------------------------------------------------------------- run

rt.registerAllKernels?.();
const haveWasm = typeof rt.WasmArena === 'function' && (rt.wasmSimdSupported?.() ?? true);
const loadBefore = os.loadavg();
const rows_ = [];
const t0all = performance.now();
for (const [rows, cols] of shapes) {
  let W = null;
  const weights = () => (W ??= syntheticWeights_(rows, cols));
  const denseWasm = haveWasm ? new rt.WasmDenseLinear(new rt.WasmArena({ initialBytes: rows * cols * 4 + (8 << 20) }), weights(), rows, cols) : null;
  const denseJs = new DenseLinear(weights(), rows, cols);
  for (const cfg of selected) {
    let enc;
    try {
      enc = encoded(cfg, rows, cols, weights);
    } catch (e) {
      log(`  ${cfg.key} ${rows}×${cols}: cannot encode (${e.code ?? ''} ${e.message})`);
      rows_.push({ codec: cfg.key, shape: [rows, cols], error: e.message });
      continue;
    }
    const { params } = enc;
    const bits = cfg.codec.bits(params).total;
    const storedBytes = bits / 8;
    const extra = params.rank !== undefined ? { rank: params.rank, paths: params.paths.length } : {};
    const variants = [];
    for (const v of variantNames) {
      const factory = rt[cfg[v]];
      if (typeof factory !== 'function') continue;
      variants.push({ name: `${cfg.key} [${v}: ${cfg[v]}]`, variant: v, lin: factory(params) });
    }
    if (variants.length === 0) {
      log(`  ${cfg.key}: this build exports none of ${variantNames.map((v) => cfg[v]).join(', ')}`);
      continue;
    }
    for (const n of ns) {
      const rng = new core.Rng(seed + 17 * n);
      const x = rng.normalArray(n * cols);
      const y = new Float32Array(n * rows);
      const contenders = [
        ...(denseWasm ? [{ name: 'dense f32 [wasm]', variant: 'dense-wasm', lin: denseWasm, bytes: rows * cols * 4 }] : []),
        { name: 'dense f32 [js]', variant: 'dense-js', lin: denseJs, bytes: rows * cols * 4 },
        ...variants.map((v) => ({ ...v, bytes: storedBytes })),
      ];
      const samples = timeAlternating(contenders, x, y, n);
      const wallS = samples.map((ss) => ss.map((v) => v.wall));
      const cpuS = samples.map((ss) => ss.map((v) => v.cpu));
      const med = cpuS.map(median);
      const medWall = wallS.map(median);
      const dW = denseWasm ? med[0] : null;
      const dJ = med[denseWasm ? 1 : 0];
      const entry = {
        codec: cfg.key,
        options: cfg.codec.resolveOptions(cfg.raw),
        shape: [rows, cols],
        n,
        bpw: bits / (rows * cols),
        storedBytes,
        ...extra,
        encodeSeconds: enc.encodeSeconds,
        contenders: contenders.map((c, i) => ({
          name: c.name,
          variant: c.variant,
          cpuMs: { median: med[i], min: Math.min(...cpuS[i]), max: Math.max(...cpuS[i]) },
          wallMs: { median: medWall[i], min: Math.min(...wallS[i]), max: Math.max(...wallS[i]) },
          samples: samples[i],
          weightsPerSecond: (rows * cols * n) / (med[i] / 1000),
          bytesPerToken: c.bytes / n,
          speedupVsDenseWasm: dW === null ? null : dW / med[i],
          speedupVsDenseJs: dJ / med[i],
          wallSpeedupVsDenseWasm: denseWasm ? medWall[0] / medWall[i] : null,
          wallSpeedupVsDenseJs: medWall[denseWasm ? 1 : 0] / medWall[i],
        })),
      };
      rows_.push(entry);
      if (!args.json) printEntry(entry);
      else log(`  ${cfg.key} ${rows}×${cols} n=${n}: ${contenders.map((c, i) => `${c.variant} ${med[i].toFixed(3)}`).join(', ')} ms CPU`);
    }
  }
}

function fmtBytes(b) {
  return b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b.toFixed(0)} B`;
}
function printEntry(e) {
  const head = `${e.codec}  ${e.shape[0]}×${e.shape[1]}  n=${e.n}  ${e.bpw.toFixed(4)} bpw${e.rank !== undefined ? `  rank ${e.rank}×${e.paths}` : ''}`;
  process.stdout.write(`\n${head}\n`);
  for (const c of e.contenders) {
    const ms = `${c.cpuMs.median.toFixed(3)} ms [${c.cpuMs.min.toFixed(3)}–${c.cpuMs.max.toFixed(3)}] (wall ${c.wallMs.median.toFixed(3)})`;
    const gw = `${(c.weightsPerSecond / 1e9).toFixed(2)} Gw/s`;
    const ratio = `${c.speedupVsDenseWasm === null ? '' : `vs dense wasm ${c.speedupVsDenseWasm.toFixed(2)}×  `}vs dense js ${c.speedupVsDenseJs.toFixed(2)}×`;
    process.stdout.write(`  ${c.name.padEnd(44)} ${ms.padEnd(46)} ${gw.padEnd(12)} ${fmtBytes(c.bytesPerToken).padEnd(11)}/token  ${ratio}\n`);
  }
}

const cpus = os.cpus();
const command = ['node bench/kernels-1b.mjs']
  .concat(args.shapes !== '2048x2048,512x2048,8192x2048,2048x8192' ? [`--shapes ${args.shapes}`] : [])
  .concat(args.codecs !== 'all' ? [`--codecs ${args.codecs}`] : [])
  .concat(args.n !== '1,8' ? [`--n ${args.n}`] : [])
  .concat(args.reps !== '7' ? [`--reps ${args.reps}`] : [])
  .concat(args['min-sample-ms'] !== '40' ? [`--min-sample-ms ${args['min-sample-ms']}`] : [])
  .concat(args.variants !== 'js,wasm' ? [`--variants ${args.variants}`] : [])
  .concat(args.seed !== '1' ? [`--seed ${args.seed}`] : [])
  .concat(args.dist !== 'laplace' ? [`--dist ${args.dist}`] : [])
  .concat(args['no-cache'] ? ['--no-cache'] : [])
  .concat(args.json ? ['--json'] : [])
  .concat(args.markdown ? ['--markdown'] : [])
  .concat(args.out ? [`--out ${args.out}`] : [])
  .join(' ');
const report = {
  benchmark: 'kernels-1b',
  protocol: 'kernel-level products at Llama-3.2-1B shapes, synthetic weights, each codec vs dense f32 (wasm SIMD and JS) of runtime-node, same process, round-robin',
  command,
  machine: {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    // Other processes competing for the cores make every figure slower and noisier: look at min – max.
    loadAverage: { before: loadBefore, after: os.loadavg() },
  },
  settings: { shapes, n: ns, reps, minSampleMs, variants: variantNames, seed, dist: args.dist },
  seconds: (performance.now() - t0all) / 1000,
  results: rows_,
};
if (args.out) writeFileSync(args.out, `${JSON.stringify(report, null, 1)}\n`);
if (args.json) process.stdout.write(`${JSON.stringify(report)}\n`);
else {
  if (args.markdown) process.stdout.write(`${markdown(report)}\n`);
  process.stdout.write(`\ncommand: ${command}\n`);
  process.stdout.write(
    `machine: ${report.machine.cpu}, ${report.machine.cores} cores, node ${report.machine.node}; load average (1/5/15 min) before ${loadBefore.map((v) => v.toFixed(2)).join('/')}, after ${report.machine.loadAverage.after.map((v) => v.toFixed(2)).join('/')}\n`,
  );
}
