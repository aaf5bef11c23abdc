#!/usr/bin/env node
/**
 * The STE trainer on WebGPU (issue 15): which adapter Dawn finds, training throughput of `GpuKdTrainer` and,
 * with --compare-cpu, the CPU `Trainer` on the same windows (per-step loss difference and the tokens/s ratio).
 * The script issue 15 asks to run once on a lent GPU (one NVIDIA H200, 15 minutes of device time for the whole
 * issue): `--probe` first (seconds), then a throughput run, then the long LittleBit run with `--out`.
 *
 *   node bench/trainer-webgpu.mjs [options]          (run `pnpm build` first: it imports the built packages)
 *
 *   --probe             print the adapter Dawn finds (vendor, architecture, device, description, software or not,
 *                       limits) and what is missing when there is none, then exit
 *   --model PATH        llama2.c checkpoint (default ../shared/models/stories3M/stories3M-q80.bin)
 *   --calib PATH        calibration text (default ../shared/data/tinystories/calib.txt)
 *   --provider NAME     dense (every linear), littlebit (--bpw, residual, every linear but K/V), binary or
 *                       rtn2 (STE, O dense) — the plans of bench/trainer-throughput.mjs (default littlebit)
 *   --bpw X             LittleBit bits per weight (default 0.55)
 *   --batch N           sequences per step (default 4)
 *   --seq N             tokens per sequence (default 128)
 *   --steps N           steps (the schedule's length; default 10)
 *   --lr X              peak learning rate (default 1e-3)
 *   --seed N            data seed (default 1)
 *   --compare-cpu       also train on the CPU (1 thread, the same windows and providers' initialisation) and
 *                       print each step's relative loss difference and the GPU / CPU tokens-per-second ratio
 *   --json PATH         write the results (adapter, per-step losses, tokens/s) as JSON
 *   --out DIR           instead of the above: the LONG RUN, through the pipeline exactly as
 *                       `ultrasketch compress MODEL --codec littlebit --bpw X --residual --finetune-steps N
 *                       --device webgpu --train-norms` runs it (compress's layers, KD on --calib, its bundle
 *                       writer), in segments of --segment steps: after each, a bundle
 *                       DIR/littlebit-<bpw>-step<N>.usk (never overwritten: a finished segment is skipped) and
 *                       DIR/run.json (adapter, per-step losses, tokens/s); checkpoints in DIR/ck. A run stopped
 *                       by a time limit (SIGTERM/SIGINT: the checkpoint is saved) keeps its finished segments'
 *                       bundles; the same command continues it. Evaluate a bundle (here, on the CPU) with
 *                       node apps/cli/dist/cli.js eval DIR/<bundle> --text ../shared/data/tinystories/eval.txt
 *   --segment N         steps per segment with --out (default: --steps, one segment)
 *   --help              this text
 *
 * Tokens/s counts every step after the first (the first compiles nothing — GpuTrainContext.create does — but
 * allocates uniforms and bind groups). On a software adapter (SwiftShader) the figures are correctness runs, not
 * GPU speed: the output says so.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, printHelp, requireBuilt } from './lib.mjs';

const { values: a } = parseArgs({
  options: {
    probe: { type: 'boolean', default: false },
    model: { type: 'string', default: resolve(ROOT, '../shared/models/stories3M/stories3M-q80.bin') },
    tokenizer: { type: 'string' },
    calib: { type: 'string', default: resolve(ROOT, '../shared/data/tinystories/calib.txt') },
    provider: { type: 'string', default: 'littlebit' },
    bpw: { type: 'string', default: '0.55' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' },
    steps: { type: 'string', default: '10' },
    lr: { type: 'string', default: '1e-3' },
    seed: { type: 'string', default: '1' },
    'compare-cpu': { type: 'boolean', default: false },
    json: { type: 'string' },
    out: { type: 'string' },
    segment: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) {
  printHelp(import.meta.url);
}

requireBuilt(['core', 'format', 'model', 'baselines', 'littlebit', 'runtime-webgpu', 'ste-trainer', 'pipeline']);
const { GpuContext, describeAdapter } = await import(dist('runtime-webgpu'));
const { nodeGpu } = await import(join(ROOT, 'packages/runtime-webgpu/dist/node.js'));

// ------------------------------------------------------------------------------------------------- probe
let gpu;
try {
  gpu = await GpuContext.create(await nodeGpu());
} catch (err) {
  console.log(`no WebGPU adapter: ${err.message}`);
  console.log(`VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? '(unset)'}`);
  console.log('Dawn needs the Vulkan loader (libvulkan.so.1: apt-get install libvulkan1, or carry it and set LD_LIBRARY_PATH)');
  console.log('and a Vulkan driver: on an NVIDIA machine the driver ships nvidia_icd.json (/usr/share/vulkan/icd.d or /etc/vulkan/icd.d)');
  process.exit(a.probe ? 0 : 1);
}
const adapter = gpu.adapter;
console.log(`adapter: ${describeAdapter(adapter)}`);
console.log(`limits: binding ${gpu.limits.bindingBytes} bytes, workgroup memory ${gpu.limits.workgroupBytes} bytes, ${gpu.limits.workgroupsPerDimension} workgroups per dimension`);
if (a.probe) process.exit(0);
if (adapter.software) console.log('NOTE: a software adapter — these are correctness figures, not GPU speed');

// ------------------------------------------------------------------------------------------------- setup
const int = (name, min = 1) => {
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < min) fail(`--${name} ${a[name]}: expected an integer ≥ ${min}`, 2);
  return v;
};
const B = int('batch');
const L = int('seq');
const steps = int('steps');
const seed = int('seed', 0);
const lr = Number(a.lr);
const bpw = Number(a.bpw);
const PLANS = {
  dense: () => ({ kind: 'dense' }),
  littlebit: (_l, kind) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw, residual: true } } }),
  binary: (_l, kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'binary' } }),
  rtn2: (_l, kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2 } } }),
};
if (!PLANS[a.provider]) fail(`--provider ${a.provider}: one of ${Object.keys(PLANS).join(', ')}`, 2);

const { registerAll } = await import(dist('baselines'));
const { readLlama2cCheckpoint, readLlama2cTokenizer } = await import(dist('format'));
const { Tokenizer, modelFromLlama2c } = await import(dist('model'));
const { CalibrationBatches, Trainer, makeProviders, registerLittleBitProviders } = await import(dist('ste-trainer'));
const { GpuKdTrainer, GpuTrainContext } = await import(join(ROOT, 'packages/ste-trainer/dist/webgpu/index.js'));
registerAll();
registerLittleBitProviders();

const weights = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(a.model), a.model), a.model);
const c = weights.config;
const tokPath = a.tokenizer ?? join(dirname(a.model), c.vocabSize === 512 ? 'tok512.bin' : 'tok4096.bin');
const tokenizer = Tokenizer.fromLlama2c(readLlama2cTokenizer(readFileSync(tokPath), c.vocabSize, tokPath));
const docs = readFileSync(a.calib, 'utf8').split('\n\n').map((d) => d.trim()).filter((d) => d.length > 0);
const calib = Int32Array.from(docs.flatMap((d) => Array.from(tokenizer.encode(d, { bos: true, eos: false }))));
const plan = PLANS[a.provider];
const providers = () => makeProviders(weights, plan, { seed });
const recipe = { batch: B, seqLen: L, steps, lr, trainNorms: true };
console.log(`model ${a.model}: dim ${c.dim}, layers ${c.nLayers}, vocab ${c.vocabSize}; ${a.provider}${a.provider === 'littlebit' ? ` ${bpw} bpw` : ''}; batch ${B} × ${L}, ${steps} steps, lr ${lr}`);

const batches = new CalibrationBatches(calib, L, seed);
const windows = (s) => {
  const w = new Int32Array(B * (L + 1));
  batches.fill(s, w, 0, B);
  return w;
};

// ------------------------------------------------------------------------------------- the long run (--out)
if (a.out !== undefined) {
  const segment = a.segment === undefined ? steps : int('segment');
  const { compress, loadModel } = await import(dist('pipeline'));
  mkdirSync(join(a.out, 'ck'), { recursive: true });
  const runFile = join(a.out, 'run.json');
  const run = existsSync(runFile)
    ? JSON.parse(readFileSync(runFile, 'utf8'))
    : { adapter, model: a.model, codec: 'littlebit', bpw, residual: true, recipe: { steps, batch: B, seq: L, lr, trainNorms: true, seed }, segments: [], steps: [] };
  const model = loadModel(a.model, a.tokenizer === undefined ? {} : { tokenizerPath: a.tokenizer });
  const calibText = readFileSync(a.calib, 'utf8');
  const ckpt = join(a.out, 'ck', 'finetune.ckpt');
  for (let until = Math.min(segment, steps); ; until = Math.min(until + segment, steps)) {
    const bundle = join(a.out, `littlebit-${bpw}-step${until}.usk`);
    if (existsSync(bundle)) {
      console.log(`${bundle}: already written (segment done)`);
    } else {
      const t = performance.now();
      let stoppedBySignal = false;
      let r;
      try {
        r = await compress({
          model,
          codec: 'littlebit',
          codecOptions: { bpw, residual: true },
          seed,
          output: bundle,
          finetune: {
            steps,
            batch: B,
            seq: L,
            lr,
            trainNorms: true,
            calibText,
            calibSource: a.calib,
            device: 'webgpu',
            checkpointDir: join(a.out, 'ck'),
            checkpointEvery: segment,
            resume: existsSync(ckpt),
            stopAfterSteps: until,
            onStep: (s) => {
              run.steps[s.step - 1] = { step: s.step, loss: s.loss, kl: s.kl, mse: s.mse, gradNorm: s.gradNorm, ms: s.ms };
              if (s.step % 10 === 0 || s.step === until) console.log(`step ${s.step}/${steps}: loss ${s.loss.toFixed(5)} (KL ${s.kl.toFixed(5)}), ${s.ms.toFixed(0)} ms`);
            },
          },
        });
      } catch (err) {
        // SIGTERM/SIGINT mid-segment: the trainer saved its checkpoint and the pipeline reports the interruption
        if (/interrupted/.test(String(err?.message))) stoppedBySignal = true;
        else throw err;
      }
      writeFileSync(runFile, `${JSON.stringify(run, null, 1)}\n`);
      if (stoppedBySignal) {
        console.log(`stopped by a signal during the segment to step ${until}; the checkpoint is saved — run the same command to continue`);
        process.exit(1);
      }
      const tr = r.report.training;
      const segSteps = tr.cost.steps - (run.segments.at(-1)?.steps ?? 0);
      run.segments.push({ steps: tr.cost.steps, bundle, bytes: r.bytes.length, bpwLinears: r.report.bpwLinears, final: tr.final, trainingSeconds: tr.cost.wallSeconds, wallSeconds: (performance.now() - t) / 1000, adapter: tr.cost.adapter });
      writeFileSync(runFile, `${JSON.stringify(run, null, 1)}\n`);
      console.log(`wrote ${bundle} (${r.bytes.length} bytes, ${r.report.bpwLinears.toFixed(4)} bpw linears): ${segSteps} steps, training ${tr.cost.wallSeconds.toFixed(1)} s in all, ${((tr.cost.tokens) / tr.cost.wallSeconds).toFixed(1)} tokens/s over the run`);
    }
    if (until >= steps) break;
  }
  console.log(`evaluate here: node apps/cli/dist/cli.js eval ${join(a.out, `littlebit-${bpw}-step${steps}.usk`)} --text ../shared/data/tinystories/eval.txt`);
  gpu.destroy();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------------- runs
const ctx = await GpuTrainContext.create(gpu);
const g = await GpuKdTrainer.create(ctx, { ...recipe, teacher: weights, providers: providers() });
const gpuSteps = [];
let t0 = 0;
for (let s = 0; s < steps; s++) {
  if (s === 1) t0 = performance.now();
  const r = await g.step(windows(s));
  gpuSteps.push(r);
  console.log(`webgpu step ${r.step}: loss ${r.loss.toFixed(6)} (KL ${r.kl.toFixed(5)}, MSE ${r.mse.toFixed(5)}), grad norm ${r.gradNorm.toFixed(4)}, ${r.ms.toFixed(0)} ms`);
}
const timed = (steps - 1) * B * L;
const gpuTps = steps > 1 ? (timed * 1000) / (performance.now() - t0) : NaN;
console.log(`webgpu: ${gpuTps.toFixed(1)} tokens/s (steps 2..${steps})`);

let cpuTps = NaN;
const cpuSteps = [];
if (a['compare-cpu']) {
  const t = new Trainer({ ...recipe, teacher: weights, calibTokens: calib, seed, providers: providers() });
  let c0 = 0;
  for (let s = 0; s < steps; s++) {
    if (s === 1) c0 = performance.now();
    const r = t.step();
    cpuSteps.push(r);
    const d = Math.abs(gpuSteps[s].loss - r.loss) / Math.abs(r.loss);
    console.log(`cpu    step ${r.step}: loss ${r.loss.toFixed(6)}; webgpu − cpu: ${d.toExponential(2)} relative`);
  }
  cpuTps = steps > 1 ? (timed * 1000) / (performance.now() - c0) : NaN;
  console.log(`cpu (1 thread): ${cpuTps.toFixed(1)} tokens/s; webgpu / cpu = ${(gpuTps / cpuTps).toFixed(2)}${adapter.software ? ' (software adapter: not GPU speed)' : ''}`);
}
if (a.json) {
  const out = {
    adapter,
    model: a.model,
    provider: a.provider,
    bpw: a.provider === 'littlebit' ? bpw : null,
    recipe,
    seed,
    webgpu: { tokensPerSec: gpuTps, steps: gpuSteps },
    cpu: a['compare-cpu'] ? { tokensPerSec: cpuTps, steps: cpuSteps } : null,
  };
  writeFileSync(a.json, `${JSON.stringify(out, null, 1)}\n`);
  console.log(`wrote ${a.json}`);
}
ctx.dispose();
gpu.destroy();
