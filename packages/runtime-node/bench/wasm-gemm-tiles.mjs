// Kernel-level benchmark of register tilings (not a test). Measures GMAC/s of the wasm f32x4 kernels for
// several tile plans on the linear shapes of stories3M, at n = 1 (generation) and n = 64 (prefill block),
// against the JS DenseLinear of the model package, in the same process.
//
//   cd packages/runtime-node && npx tsup && node bench/wasm-gemm-tiles.mjs
import { DenseLinear } from '@ultrasketch/model';
import { WasmArena, WasmDenseLinear } from '@ultrasketch/runtime-node';

const SHAPES = [
  [192, 192],
  [64, 192],
  [512, 192],
  [192, 512],
  [4096, 192],
];
// tiles[T-1] = { r: weight rows, u: column unroll } for blocks of T input rows
const plan = (...tiles) => ({ tiles: tiles.map(([r, u]) => ({ r, u })) });
const PLANS = {
  'default': undefined,
  't1 r4u2, t4 r2u2': plan([4, 2], [4, 2], [3, 2], [2, 2]),
  't1 r4u1, t4 r2u1': plan([4, 1], [4, 1], [3, 1], [2, 1]),
  't1 r2u4': plan([2, 4], [4, 1], [3, 1], [2, 1]),
  't1 r6u2': plan([6, 2], [4, 1], [3, 1], [2, 1]),
  't4 r3u1': plan([4, 2], [4, 1], [3, 1], [3, 1]),
  't4 r1u2': plan([4, 2], [4, 1], [3, 1], [1, 2]),
  't4 r1u1': plan([4, 2], [4, 1], [3, 1], [1, 1]),
  't6 r2u1': plan([4, 2], [4, 1], [3, 1], [2, 1], [2, 1], [2, 1]),
  't5 r2u1': plan([4, 2], [4, 1], [3, 1], [2, 1], [2, 1]),
  't8 r1u1': plan([4, 2], [4, 1], [3, 1], [2, 1], [1, 1], [1, 1], [1, 1], [1, 1]),
};

function rand(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** Seconds per apply(): the fastest of `rounds` timings (other processes only ever slow a run down). */
function secondsPerApply(lin, x, y, n, macs) {
  const reps = Math.max(3, Math.ceil(1e7 / macs));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) lin.apply(x, y, n);
  return Number(process.hrtime.bigint() - t0) / 1e9 / reps;
}

const ns = [1, 64];
const cases = []; // one per (implementation, shape, n)
const addImpl = (name, make) => {
  for (const [rows, cols] of SHAPES) {
    const w = rand(rows * cols, rows + cols);
    const lin = make(w, rows, cols);
    for (const n of ns) {
      cases.push({ name, rows, cols, n, lin, x: rand(n * cols, n), y: new Float32Array(n * rows), best: Infinity });
    }
  }
};
addImpl('js DenseLinear', (w, r, c) => new DenseLinear(w, r, c));
for (const [name, plan] of Object.entries(PLANS)) {
  const arena = new WasmArena(plan ? { plan } : {});
  addImpl(name, (w, r, c) => new WasmDenseLinear(arena, w, r, c));
}
const rounds = Number(process.argv[2] ?? 7);
for (let round = 0; round < rounds; round++) {
  for (const c of cases) {
    const macs = c.n * c.rows * c.cols;
    c.best = Math.min(c.best, secondsPerApply(c.lin, c.x, c.y, c.n, macs));
  }
}
console.log(['GMAC/s (best of ' + rounds + ')', ...SHAPES.flatMap(([r, c]) => ns.map((n) => `${r}x${c} n=${n}`))].join('\t'));
const names = [...new Set(cases.map((c) => c.name))];
for (const name of names) {
  const cells = cases.filter((c) => c.name === name).map((c) => ((c.n * c.rows * c.cols) / c.best / 1e9).toFixed(2));
  console.log([name.padEnd(24), ...cells].join('\t'));
}
