#!/usr/bin/env node
// Training throughput (tokens/s) of the STE trainer, per weight provider and thread count, optionally side by
// side with a PyTorch run of the same model, shapes, loss and optimizer (bench/torch-train.py) in the same
// process run, rounds interleaved so that the machine's load hits every configuration alike.
// `node bench/trainer-throughput.mjs --help` for the options (run `pnpm build` first: the
// script imports the built packages).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, requireBuilt } from './lib.mjs';

// The built packages (bench/ is not a workspace package: see lib.mjs).
requireBuilt(['baselines', 'format', 'littlebit', 'model', 'runtime-node', 'sketch-core', 'ste-trainer']);
const { registerAll } = await import(dist('baselines'));
const { readLlama2cCheckpoint, readLlama2cTokenizer } = await import(dist('format'));
const { registerAll: registerLittleBitCodec } = await import(dist('littlebit'));
const { Tokenizer, kvDim, modelFromLlama2c } = await import(dist('model'));
const { FmaGemmKernels, WasmArena } = await import(dist('runtime-node'));
const { registerAll: registerSketchCodecs } = await import(dist('sketch-core'));
const { Trainer, makeProviders, registerLittleBitProviders, registerSketchProviders } = await import(dist('ste-trainer'));
const { teacherCacheDir, wasmFmaActive, workerThreads } = await import(join(ROOT, 'packages/ste-trainer/dist/node.js'));

const HELP = `Training throughput of the STE trainer (tokens/s), optionally against PyTorch in the same run.

  node bench/trainer-throughput.mjs [options]

  --model PATH        llama2.c checkpoint (default ../shared/models/stories3M/stories3M-q80.bin)
  --calib PATH        calibration text (default ../shared/data/tinystories/calib.txt)
  --batch N           sequences per step (default 4)
  --seq N             tokens per sequence (default 128)
  --steps N           timed steps per round (default 3)
  --warmup N          untimed steps before the first round (default 1)
  --rounds N          rounds; every configuration runs once per round, in turn (default 3)
  --providers LIST    comma list of: dense, littlebit, littlebit-w, sketch, sketch-absmax, hashednets, binary,
                      rtn2, sketch-ste, frozen (default dense,littlebit,sketch). dense trains every linear;
                      littlebit = 0.55 bpw on every linear but K/V (frozen), in its low-rank form (littlebit-w:
                      the same through its dense Ŵ, the path before); sketch/sketch-absmax/hashednets
                      = 0.5 bpw state training on every linear but O (frozen), where sketch is the product's
                      default --codec sketch (signmean query, 1 row, int8 states, 8 saliency groups; here the
                      groups come from the weights, no calibration saliency) and sketch-absmax the paper's
                      AbsMax query (the codec's own defaults); binary/rtn2 = STE with O dense — as compress
                      --finetune-steps. A name ending in +embedding (littlebit+embedding) trains the embedding
                      and classifier too (compress --train-embedding)
  --loss kd|ce        kd: KL + 10·Σ hidden MSE against the float teacher (default); ce: next-token CE only
  --threads LIST      comma list of thread counts (default 1,2)
  --profile           also print where one thread's step time goes, per op (CPU ms/step and share)
  --teacher-cache DIR keep the teacher's outputs per window in DIR (teacherCacheDir; exact float32, so the
                      training is byte-identical) and fill it first with one pass over every step's windows:
                      the rounds then measure a warm cache, as from a sweep's second configuration on
                      (trainer's shard only: at T threads the workers still compute their teacher)
  --compare-torch     also run bench/torch-train.py (same shapes, loss, AdamW, clipping) each round with
                      1 thread, when python3 can import torch; prints every ratio to it
  --torch-threads L   thread counts for the PyTorch runs (default 1)
  --python CMD        python interpreter (default /usr/bin/python3, where apt's python3-torch lives)
  --openblas DIR      directory with OpenBLAS's libblas.so.3 for PyTorch (default
                      /tmp/ob/usr/lib/x86_64-linux-gnu/openblas-pthread when it exists)
  --json PATH         also write the results as JSON
  --help              this text

Figures: per round, tokens/s = timed tokens / wall time of the timed steps; the table gives the median over
rounds, CPU ms per step of this process (all its threads), and the load average when each round started.
A ratio is taken between figures of the same round, then the median over rounds is reported.`;

const root = ROOT;
const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(root, '../shared/models/stories3M/stories3M-q80.bin') },
    tokenizer: { type: 'string' },
    calib: { type: 'string', default: resolve(root, '../shared/data/tinystories/calib.txt') },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    providers: { type: 'string', default: 'dense,littlebit,sketch' },
    loss: { type: 'string', default: 'kd' },
    threads: { type: 'string', default: '1,2' },
    profile: { type: 'boolean', default: false },
    'compare-torch': { type: 'boolean', default: false },
    'torch-threads': { type: 'string', default: '1' },
    // Debian's python3-torch installs for the system interpreter (a pyenv shim's python3 would not see it).
    python: { type: 'string', default: existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3' },
    openblas: { type: 'string' },
    json: { type: 'string' },
    'teacher-cache': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) {
  console.log(HELP);
  process.exit(0);
}
const int = (name, min = 1) => {
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < min) {
    console.error(`--${name} ${a[name]}: expected an integer ≥ ${min}`);
    process.exit(2);
  }
  return v;
};
const B = int('batch');
const L = int('seq');
const steps = int('steps');
const warm = int('warmup', 0);
const rounds = int('rounds');
const threadList = a.threads.split(',').map(Number);
if (!threadList.every((t) => Number.isInteger(t) && t >= 1)) throw new Error(`--threads ${a.threads}: expected a comma list of integers ≥ 1`);
if (!['kd', 'ce'].includes(a.loss)) throw new Error(`--loss ${a.loss}: kd or ce`);

registerAll();
registerSketchCodecs();
registerLittleBitCodec();
registerSketchProviders();
registerLittleBitProviders();
const ckpt = readLlama2cCheckpoint(readFileSync(a.model), a.model);
const weights = modelFromLlama2c(ckpt, a.model);
const tokPath = a.tokenizer ?? join(dirname(a.model), weights.config.vocabSize === 512 ? 'tok512.bin' : 'tok4096.bin');
const tokenizer = Tokenizer.fromLlama2c(readLlama2cTokenizer(readFileSync(tokPath), weights.config.vocabSize, tokPath));
const docs = readFileSync(a.calib, 'utf8').split('\n\n').map((d) => d.replace(/^[ \n]+|[ \n]+$/g, '')).filter((d) => d.length > 0);
const calib = Int32Array.from(docs.flatMap((d) => Array.from(tokenizer.encode(d, { bos: true, eos: false }))));

const PLANS = {
  frozen: () => undefined, // norms only: forward + backward with no weight gradients
  dense: () => ({ kind: 'dense' }),
  binary: (kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'binary' } }),
  rtn2: (kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2 } } }),
  // sketch = the product's default `--codec sketch` (apps/cli codec-flags.ts SKETCH_DEFAULT_VARIANT: signmean
  // query, 1 row, int8 states, 8 channel groups, saliency allocation; the bench has no calibration saliency,
  // so the groups come from the weights alone); sketch-absmax = the paper's AbsMax query (the codec's defaults)
  sketch: (kind) =>
    kind === 'o'
      ? undefined
      : { kind: 'sketch-states', options: { codecOptions: { bpw: 0.5, query: 'signmean', rows: 1, state: 'int8', groups: 8, alloc: 'saliency' } } },
  'sketch-absmax': (kind) => (kind === 'o' ? undefined : { kind: 'sketch-states', options: { codecOptions: { bpw: 0.5 } } }),
  'sketch-ste': (kind) => (kind === 'o' ? undefined : { kind: 'ste', options: { codec: 'sketch', codecOptions: { bpw: 0.5 } } }),
  hashednets: (kind) => (kind === 'o' ? undefined : { kind: 'hashednets-states', options: { codecOptions: { bpw: 0.5 } } }),
  littlebit: (kind) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw: 0.55 } } }),
  // the same LittleBit through its dense Ŵ (build Ŵ = hA·Bᵀ, products with Ŵ, chain rule from ∂L/∂Ŵ): the path
  // before the low-rank form (docs/ste-trainer.md §8 "Fourth pass"), for a before/after in one run
  'littlebit-w': (kind) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw: 0.55 }, lowRank: false } }),
};
const providerNames = a.providers.split(',');
/** A configuration's provider plan: its name without the +embedding suffix (which trains the embedding too). */
const planOf = (name) => name.replace(/\+embedding$/, '');
for (const p of providerNames) if (!PLANS[planOf(p)]) throw new Error(`unknown provider plan ${p} (one of ${Object.keys(PLANS).join(', ')}, each optionally +embedding)`);
const c = weights.config;
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');
console.log(`model ${a.model}: dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads}/${c.nKvHeads}, vocab ${c.vocabSize}`);
console.log(`${cpus().length} CPUs (${cpus()[0]?.model}), node ${process.version}, load average at start ${load()}`);
console.log(`batch ${B} × seq ${L} = ${B * L} tokens/step, loss ${a.loss}, ${warm} warm-up step(s), then ${rounds} round(s) of ${steps} timed step(s)`);

// ---------------------------------------------------------------------------------------------- PyTorch peer
let torch = null;
if (a['compare-torch']) {
  const script = resolve(root, 'bench/torch-train.py');
  const ob = a.openblas ?? '/tmp/ob/usr/lib/x86_64-linux-gnu/openblas-pthread';
  const probe = spawnSync(a.python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log(`--compare-torch: ${a.python} cannot import torch (apt-get install python3-torch); PyTorch rows skipped`);
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'torch-train-'));
    const tokens = join(dir, 'calib.i32');
    writeFileSync(tokens, new Uint8Array(calib.buffer, calib.byteOffset, calib.byteLength));
    const env = { ...process.env };
    if (existsSync(join(ob, 'libblas.so.3'))) env.LD_LIBRARY_PATH = [ob, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
    else console.log(`--compare-torch: no OpenBLAS in ${ob}: PyTorch uses the system BLAS (Debian's reference BLAS is ~50× slower)`);
    torch = { script, dir, tokens, env, version: probe.stdout.trim(), blas: env.LD_LIBRARY_PATH ?? 'system' };
    console.log(`PyTorch ${torch.version} (${a.python}), BLAS ${torch.blas}`);
  }
}
function runTorch(threads) {
  const env = { ...torch.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  const args = [
    torch.script,
    '--dim', c.dim, '--hidden', c.hiddenDim, '--layers', c.nLayers, '--heads', c.nHeads, '--kv-heads', kvDim(c) / (c.dim / c.nHeads),
    '--vocab', c.vocabSize, '--batch', B, '--seq', L, '--steps', steps, '--warmup', warm, '--loss', a.loss,
    '--threads', threads, '--tokens', torch.tokens, '--rope-theta', c.ropeTheta, '--norm-eps', c.normEps,
  ].map(String);
  const r = spawnSync(a.python, args, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`bench/torch-train.py failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

// ------------------------------------------------------------------------------------------------- trainers
const teacherCache = a['teacher-cache'] ? teacherCacheDir(a['teacher-cache']) : null;
if (teacherCache) {
  // The windows are a function of (seed, step, batch, seq) only: one pass fills the cache for every plan.
  const t0 = performance.now();
  const fill = new Trainer({
    teacher: weights,
    providers: makeProviders(weights, () => undefined),
    calibTokens: calib,
    batch: B,
    seqLen: L,
    steps: warm + rounds * steps + 1,
    trainNorms: true,
    loss: a.loss === 'ce' ? { kl: 0, mse: 0, ce: 1 } : {},
    seed: 1,
    teacherCache,
  });
  for (let s = 0; s < warm + rounds * steps; s++) fill.step();
  console.log(
    `teacher cache ${a['teacher-cache']}: ${fill.teacherCacheHits} windows read, ${fill.teacherCacheMisses} computed and stored ` +
      `(${(teacherCache.bytes / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  fill.dispose();
}
const configs = [];
for (const threads of threadList) {
  for (const name of providerNames) {
    const t0 = performance.now();
    const trainer = new Trainer({
      teacher: weights,
      providers: makeProviders(weights, (_l, kind) => PLANS[planOf(name)](kind)),
      trainEmbedding: name.endsWith('+embedding'),
      calibTokens: calib,
      batch: B,
      seqLen: L,
      steps: warm + rounds * steps + 1,
      trainNorms: name === 'frozen',
      loss: a.loss === 'ce' ? { kl: 0, mse: 0, ce: 1 } : {},
      seed: 1,
      ...(threads > 1 ? { parallel: workerThreads(threads) } : {}),
      ...(teacherCache ? { teacherCache } : {}),
    });
    for (let s = 0; s < warm; s++) trainer.step();
    configs.push({ name, threads, trainer, rounds: [], setupMs: performance.now() - t0 });
  }
}
if (torch) for (const threads of a['torch-threads'].split(',').map(Number)) configs.push({ name: 'pytorch', threads, torch: true, rounds: [] });

// CPU ms of this process's main thread and of all its other threads (Linux /proc, 10 ms ticks; null elsewhere).
// The main thread runs shard 0 plus every serial part of a step (publishing Ŵ, adding the workers' gradients,
// the optimizer); on an idle machine a data-parallel step cannot be shorter than its CPU time.
function threadCpu() {
  try {
    let main = 0;
    let other = 0;
    for (const tid of readdirSync('/proc/self/task')) {
      const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(v[11]) + Number(v[12])) * 1000) / 100; // utime + stime, in USER_HZ = 100 ticks
      if (Number(tid) === process.pid) main += ms;
      else other += ms;
    }
    return { main, other };
  } catch {
    return null;
  }
}

const profiles = new Map();
for (let r = 0; r < rounds; r++) {
  for (const cfg of configs) {
    const la = loadavg()[0];
    if (cfg.torch) {
      const res = runTorch(cfg.threads);
      cfg.rounds.push({ tps: res.tokens_per_s, cpuMsPerStep: res.cpu_ms_per_step, load: la });
      continue;
    }
    const profiling = a.profile && cfg.threads === 1;
    // CPU time of this process (one thread when profiling): other jobs on the machine do not inflate it.
    cfg.trainer.setProfiling(profiling, () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    });
    const cpu0 = process.cpuUsage();
    const th0 = threadCpu();
    const w0 = performance.now();
    for (let s = 0; s < steps; s++) cfg.trainer.step();
    const wall = performance.now() - w0;
    const cpu = process.cpuUsage(cpu0);
    const th1 = threadCpu();
    if (profiling) {
      const acc = profiles.get(cfg.name) ?? new Map();
      for (const [k, v] of cfg.trainer.profile()) acc.set(k, (acc.get(k) ?? 0) + v);
      profiles.set(cfg.name, acc);
      cfg.trainer.setProfiling(false);
    }
    cfg.rounds.push({
      tps: (B * L * steps * 1000) / wall,
      cpuMsPerStep: (cpu.user + cpu.system) / 1000 / steps,
      mainCpuMsPerStep: th0 && th1 ? (th1.main - th0.main) / steps : NaN,
      load: la,
    });
  }
  console.log(`round ${r + 1}/${rounds} done, load average ${load()}`);
}
for (const cfg of configs) cfg.trainer?.dispose();

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const torch1 = configs.find((x) => x.torch && x.threads === 1);
const base1 = new Map(configs.filter((x) => !x.torch && x.threads === 1).map((x) => [x.name, x]));
console.log('');
console.log(
  `| configuration | threads | tokens/s (median of ${rounds}) | min–max | CPU ms/step | main-thread CPU ms/step | × PyTorch 1 thread | × own 1 thread | ` +
    `× own 1 thread, idle projection | load average per round |`,
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const out = [];
const json = { batch: B, seq: L, steps, rounds, loss: a.loss, load: loadavg() };
for (const cfg of configs) {
  const tps = cfg.rounds.map((x) => x.tps);
  const ratio = (other) => (other ? median(cfg.rounds.map((x, i) => x.tps / other.rounds[i].tps)) : NaN);
  const vsTorch = torch1 && cfg !== torch1 ? ratio(torch1) : NaN;
  const vsOne = !cfg.torch && cfg.threads > 1 ? ratio(base1.get(cfg.name)) : NaN;
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  const label = cfg.torch ? `PyTorch ${torch.version}, dense linears` : cfg.name;
  const cpuStep = median(cfg.rounds.map((x) => x.cpuMsPerStep));
  const mainStep = cfg.torch ? NaN : median(cfg.rounds.map((x) => x.mainCpuMsPerStep));
  // Idle-machine projection for T > 1 threads: one thread's CPU per step over the critical path, the larger of
  // the main thread's CPU per step and a worker's (the rest of the process's CPU, shared by T − 1 workers).
  const one = base1.get(cfg.name);
  const projected =
    !cfg.torch && cfg.threads > 1 && one
      ? median(one.rounds.map((x) => x.cpuMsPerStep)) / Math.max(mainStep, (cpuStep - mainStep) / (cfg.threads - 1))
      : NaN;
  console.log(
    `| ${label} | ${cfg.threads} | ${median(tps).toFixed(0)} | ${Math.min(...tps).toFixed(0)}–${Math.max(...tps).toFixed(0)} | ` +
      `${cpuStep.toFixed(0)} | ${f(mainStep, 0)} | ${f(vsTorch)} | ${f(vsOne)} | ${f(projected)} | ${cfg.rounds.map((x) => x.load.toFixed(1)).join(', ')} |`,
  );
  out.push({ name: cfg.name, threads: cfg.threads, tokensPerSec: tps, median: median(tps), vsTorch1: vsTorch, vsOwn1: vsOne, idleProjectionVsOwn1: projected, rounds: cfg.rounds });
}
// Multiply-adds per step of each product op (all linears trainable and dense, as in `dense`; other plans skip
// ∂L/∂Ŵ of frozen linears and LittleBit's linears are low-rank products, so their student linear rates are not shown). Attention: the stacked-head products over the
// full L × L square (what the gemm computes, upper triangle included).
const n = B * L;
const hs = c.dim / c.nHeads;
const kv = kvDim(c);
const lin = n * c.dim * (c.dim + 2 * kv + c.dim + 3 * c.hiddenDim) * c.nLayers;
const attn = 2 * c.nHeads * L * L * hs * B * c.nLayers; // QKᵀ and PV
const MACS = {
  'fwd.linear qkv': n * c.dim * (c.dim + 2 * kv) * c.nLayers,
  'fwd.linear o': n * c.dim * c.dim * c.nLayers,
  'fwd.linear gate/up': 2 * n * c.dim * c.hiddenDim * c.nLayers,
  'fwd.linear down': n * c.hiddenDim * c.dim * c.nLayers,
  'fwd.classifier': n * c.vocabSize * c.dim,
  'bwd.linear dX': lin - n * c.dim * (c.dim + 2 * kv), // layer 0's q/k/v ∂X is skipped
  'bwd.linear dW': lin,
  'bwd.classifier dX': n * c.vocabSize * c.dim,
};
function gemmPeak() {
  // The wasm gemm alone, operands already in its memory (no copies, no transposes): the classifier's shape,
  // with the tile kernels the trainer uses (fused multiply-adds when wasmFmaActive()).
  const arena = new WasmArena({ initialBytes: 16 << 20 });
  const kernels = wasmFmaActive() ? new FmaGemmKernels(arena.memory) : arena.kernels;
  const [m, nn, k] = [n, c.vocabSize, c.dim];
  const x = arena.storeF32(new Float32Array(m * k).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5));
  const w = arena.storeF32(new Float32Array(nn * k).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5));
  const y = arena.alloc(4 * m * nn);
  const chunk = Math.max(12, Math.floor(131072 / (4 * k) / 12) * 12);
  const run = () => {
    for (let r0 = 0; r0 < nn; r0 += chunk) kernels.gemm(w, x, y, m, k, nn, r0, Math.min(nn, r0 + chunk));
  };
  run();
  const u0 = process.cpuUsage();
  for (let i = 0; i < 5; i++) run();
  const u = process.cpuUsage(u0);
  return (5 * m * nn * k) / ((u.user + u.system) / 1000) / 1e6; // G multiply-adds per CPU-second
}
if (profiles.size > 0) {
  const peak = gemmPeak();
  console.log(
    `\nwasm gemm peak (this run, ${wasmFmaActive() ? 'fused multiply-add' : 'plain SIMD'} tiles, ${n}×${c.vocabSize}×${c.dim}, operands in wasm memory): ` +
      `${peak.toFixed(1)} G multiply-adds per CPU-second`,
  );
  for (const [name, prof] of profiles) {
    const total = [...prof.values()].reduce((x, y) => x + y, 0);
    const per = rounds * steps;
    console.log(`\nprofile: ${name}, 1 thread, ${(total / per).toFixed(0)} CPU ms/step (${per} steps)`);
    console.log('| op | CPU ms/step | share | G multiply-adds/s (× gemm peak) |');
    console.log('| --- | --- | --- | --- |');
    for (const [k, v] of [...prof].sort((x, y) => y[1] - x[1])) {
      const op = k.replace(/^(student|teacher) /, '');
      // The dense shapes hold for every linear only in `dense` (elsewhere frozen linears skip ∂L/∂Ŵ and
      // LittleBit's linears run in their low-rank form): other plans get the rate of the teacher and classifier only.
      const macs = MACS[op] && (name === 'dense' || k.startsWith('teacher ') || op.includes('classifier')) ? MACS[op] : 0;
      const rate = macs ? (macs * per) / v / 1e6 : 0;
      console.log(`| ${k} | ${(v / per).toFixed(1)} | ${((100 * v) / total).toFixed(1)}% | ${macs ? `${rate.toFixed(1)} (${(rate / peak).toFixed(2)})` : ''} |`);
    }
  }
  if (a.json) json.gemmPeak = peak;
}
if (a.json) {
  json.results = out;
  json.profiles = Object.fromEntries([...profiles].map(([k, v]) => [k, Object.fromEntries(v)]));
  writeFileSync(a.json, JSON.stringify(json, null, 1));
}
if (torch) rmSync(torch.dir, { recursive: true, force: true });
