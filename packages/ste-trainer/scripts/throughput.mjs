#!/usr/bin/env node
// Training throughput (tokens/s) of the STE trainer on a llama2.c checkpoint, per weight provider.
// Usage (after `cd packages/ste-trainer && npx tsup`):
//   node packages/ste-trainer/scripts/throughput.mjs [--model PATH] [--batch 8] [--seq 256] [--steps 6]
//        [--warmup 2] [--providers dense,binary,rtn2,frozen,sketch,sketch-ste,hashednets,littlebit]
//        [--loss kd|ce] [--threads 1,2]
// Reports the median step time over `steps` timed steps after `warmup` untimed ones, in one process.
// `sketch`, `sketch-ste`, `hashednets` (0.5 bpw) and `littlebit` (0.55 bpw, residual) train what
// `ultrasketch compress --finetune-steps` trains: sketch/hashednets every linear but O, LittleBit every linear
// but K and V (too small for 0.55 bpw on stories3M, kept dense); those left out are frozen.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { registerAll } from '@ultrasketch/baselines';
import { registerAll as registerSketchCodecs } from '@ultrasketch/sketch-core';
import { registerAll as registerLittleBitCodec } from '@ultrasketch/littlebit';
import { readLlama2cCheckpoint, readLlama2cTokenizer } from '@ultrasketch/format';
import { Tokenizer, modelFromLlama2c } from '@ultrasketch/model';
import { Trainer, makeProviders, registerLittleBitProviders, registerSketchProviders } from '@ultrasketch/ste-trainer';
import { workerThreads } from '@ultrasketch/ste-trainer/node';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: '/work/shared/models/stories3M/stories3M-q80.bin' },
    tokenizer: { type: 'string' },
    calib: { type: 'string', default: '/work/shared/data/tinystories/calib.txt' },
    batch: { type: 'string', default: '8' },
    seq: { type: 'string', default: '256' },
    steps: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
    providers: { type: 'string', default: 'dense,binary' },
    loss: { type: 'string', default: 'kd' },
    threads: { type: 'string', default: '1' },
  },
});
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

const B = Number(a.batch);
const L = Number(a.seq);
const steps = Number(a.steps);
const warm = Number(a.warmup);
const PLANS = {
  frozen: () => undefined, // norms only: forward + backward with no weight gradients
  dense: () => ({ kind: 'dense' }),
  binary: (kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'binary' } }),
  rtn2: (kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2 } } }),
  sketch: (kind) => (kind === 'o' ? undefined : { kind: 'sketch-states', options: { codecOptions: { bpw: 0.5 } } }),
  'sketch-ste': (kind) => (kind === 'o' ? undefined : { kind: 'ste', options: { codec: 'sketch', codecOptions: { bpw: 0.5 } } }),
  hashednets: (kind) => (kind === 'o' ? undefined : { kind: 'hashednets-states', options: { codecOptions: { bpw: 0.5 } } }),
  littlebit: (kind) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw: 0.55 } } }),
};
const c = weights.config;
console.log(`model ${a.model}: dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads}/${c.nKvHeads}, vocab ${c.vocabSize}`);
console.log(`${cpus().length} CPUs (${cpus()[0]?.model}), load average at start ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`batch ${B} × seq ${L} = ${B * L} tokens/step, loss ${a.loss}, ${warm} warm-up + ${steps} timed steps, node ${process.version}`);
for (const threads of a.threads.split(',').map(Number))
for (const name of a.providers.split(',')) {
  const plan = PLANS[name];
  if (!plan) throw new Error(`unknown provider plan ${name}`);
  const providers = makeProviders(weights, (_l, kind) => plan(kind));
  const t = new Trainer({
    teacher: weights,
    providers,
    calibTokens: calib,
    batch: B,
    seqLen: L,
    steps: steps + warm,
    trainNorms: name === 'frozen',
    loss: a.loss === 'ce' ? { kl: 0, mse: 0, ce: 1 } : {},
    seed: 1,
    ...(threads > 1 ? { parallel: workerThreads(threads) } : {}),
  });
  const times = [];
  let cpu0;
  for (let s = 0; s < steps + warm; s++) {
    if (s === warm) cpu0 = process.cpuUsage();
    const r = t.step();
    if (s >= warm) times.push(r.ms);
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuMsPerStep = (cpu.user + cpu.system) / 1000 / steps;
  t.dispose();
  times.sort((x, y) => x - y);
  const med = times[Math.floor(times.length / 2)];
  console.log(
    `${name.padEnd(10)} threads ${threads}: median ${med.toFixed(0)} ms/step → ${((B * L * 1000) / med).toFixed(0)} tokens/s wall ` +
      `(min ${times[0].toFixed(0)}, max ${times[times.length - 1].toFixed(0)} ms); CPU ${cpuMsPerStep.toFixed(0)} ms/step → ` +
      `${((B * L * 1000) / cpuMsPerStep).toFixed(0)} tokens per CPU-second; load average ${loadavg()[0].toFixed(1)}`,
  );
}
