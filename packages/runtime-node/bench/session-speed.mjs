// Model-level speed of runtime-node (not a test): stories3M float32, prefill and generation tokens/s,
// 'js' (model package's DenseLinear) vs 'wasm' (f32x4 kernels) in the same process, alternating, several
// repetitions; prints medians and the spread (min..max) of tokens/s.
//
//   pnpm build && node packages/runtime-node/bench/session-speed.mjs [reps=5] [prefill=512] [gen=256]
//
// Select kernels in code with NodeSession.fromWeights(weights, { kernels: 'wasm' | 'js' | 'auto' }).
import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { argmax, modelFromLlama2c } from '@ultrasketch/model';
import { NodeSession } from '@ultrasketch/runtime-node';

const file = process.env.MODEL ?? new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url);
const reps = Number(process.argv[2] ?? 5);
const prefillLen = Number(process.argv[3] ?? 512);
const genLen = Number(process.argv[4] ?? 256);
const kinds = (process.env.KERNELS ?? 'js,wasm').split(',');

const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(file), String(file)));
const sessions = Object.fromEntries(kinds.map((k) => [k, NodeSession.fromWeights(model, { kernels: k })]));
// A fixed token stream for prefill (any valid ids; cost does not depend on them).
const tokens = Array.from({ length: prefillLen }, (_, i) => (i === 0 ? 1 : (i * 7919) % model.config.vocabSize));

function prefill(s) {
  s.reset();
  const t0 = performance.now();
  s.forward(tokens, { logits: 'all' });
  return prefillLen / ((performance.now() - t0) / 1000);
}

function generate(s) {
  s.reset();
  let token = 1;
  const t0 = performance.now();
  for (let pos = 0; pos < genLen; pos++) token = argmax(s.forward([token]));
  return genLen / ((performance.now() - t0) / 1000);
}

const results = Object.fromEntries(kinds.map((k) => [k, { prefill: [], generate: [] }]));
for (const k of kinds) {
  prefill(sessions[k]); // warm up (JIT, scratch sizes)
  generate(sessions[k]);
}
for (let r = 0; r < reps; r++) {
  for (const k of kinds) results[k].prefill.push(prefill(sessions[k]));
  for (const k of kinds) results[k].generate.push(generate(sessions[k]));
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const fmt = (a) => `${median(a).toFixed(0)} tok/s (min ${Math.min(...a).toFixed(0)}, max ${Math.max(...a).toFixed(0)})`;
console.log(`stories3M, ${reps} reps, prefill ${prefillLen} tokens (logits: all), generation ${genLen} positions from BOS`);
for (const k of kinds) {
  console.log(`${k.padEnd(5)} prefill ${fmt(results[k].prefill)}   generation ${fmt(results[k].generate)}`);
}
if (results.js && results.wasm) {
  const ratio = (key) => (median(results.wasm[key]) / median(results.js[key])).toFixed(1);
  console.log(`wasm/js  prefill ×${ratio('prefill')}   generation ×${ratio('generate')}`);
}
