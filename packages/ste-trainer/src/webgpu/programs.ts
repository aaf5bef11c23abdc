import { bindingDecls, bindingKinds, readBinding as read, rwBinding as rw, uniformBinding } from '@ultrasketch/runtime-webgpu';
import type { GpuProgram, WgslBinding } from '@ultrasketch/runtime-webgpu';

/**
 * The training programs (runtime-webgpu's `GpuProgram`s: WGSL text, binding kinds, cache key). Shapes, strides
 * and scalars are uniforms (binding 0, a struct of 32-bit words; f32 scalars travel as their bit patterns), so
 * this fixed set is compiled once per device and serves every layer and model. All arithmetic is f32; every
 * reduction (RMSNorm, soft-max rows, losses) is a 64-thread workgroup tree (the CPU trainer sums in float64 —
 * the tests state the resulting tolerances).
 */

/** A program from its binding list (declared in its WGSL, and its binding kinds) and its WGSL text. */
const program = (name: string, bindings: readonly WgslBinding[], wgsl: string, lanes?: number): GpuProgram => ({
  name: lanes === undefined ? name : `${name}/${lanes}`,
  cacheKey: `ste-train/${name}/v1${lanes === undefined ? '' : `/lanes${lanes}`}`,
  bindings: bindingKinds(bindings),
  wgsl,
});

/**
 * Every program but the matmul: binding 0 is the uniform `U` of `struct P { <uniform> }`, the buffers follow
 * from binding 1 in the order listed; `body` is the rest of the WGSL (from a line break on), the program's own.
 */
const prog = (name: string, uniform: string, buffers: WgslBinding[], body: string, lanes?: number): GpuProgram => {
  const bindings = [uniformBinding('U', 'P'), ...buffers];
  return program(name, bindings, `\nstruct P { ${uniform} };\n${bindingDecls(bindings)}${body}`, lanes);
};

/** Workgroup size of the element-wise programs (one invocation per element). */
export const ROW_WG = 64;

/**
 * Invocations per row of the reduction programs: 64 (a workgroup tree; hardware GPUs) or 1 (one invocation per
 * row, no barrier; software adapters, where a workgroup barrier costs a coroutine switch per workgroup — the
 * observation runtime-webgpu's `serial` kernel shape is built on: measured here, a 64 × 64 RMSNorm took 4.5 ms
 * with the tree on SwiftShader).
 */
export type ReductionLanes = 1 | 64;

/**
 * Opens `fn main` of a program (its text closes it) with workgroups of `size` invocations; every program but
 * the matmul lays its workgroups on a 2D grid U.gridX wide (a dispatch's x is limited to 65535 workgroups).
 */
const openMain = (size: number): string => /* wgsl */ `@compute @workgroup_size(${size})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {`;

/** Opens `fn main` of an element-wise program: invocation `v` of the grid is element v; those at or past `bound` return. */
const perElement = (v: string, bound: string): string => /* wgsl */ `${openMain(ROW_WG)}
  let ${v} = (wid.y * U.gridX + wid.x) * ${ROW_WG}u + lid;
  if (${v} >= ${bound}) { return; }`;

/**
 * Opens `fn main` of a reduction program: workgroup `v` of the grid (its `lanes` invocations) reduces row v (a
 * row, column or group); workgroups at or past `bound` return whole, so the reductions' barriers stay uniform.
 */
const perRow = (lanes: number, v: string, bound: string): string => /* wgsl */ `${openMain(lanes)}
  let ${v} = wid.y * U.gridX + wid.x;
  if (${v} >= ${bound}) { return; }`;

/** Workgroup sum, max and min over `lanes` invocations (every invocation must call them: they have barriers). */
function reduce(lanes: number): string {
  return `${KAHAN}${lanesReduce(lanes)}`;
}

/**
 * Compensated (Kahan) accumulation for the long per-invocation sums of the reduction programs: with one lane
 * per row a row of 1024 (or a vocabulary) is one sequential f32 sum, whose rounding showed in the
 * finite-difference checks (3.7e-3 for RMSNorm's x); compensated, it is as accurate as the 64-lane tree.
 */
const KAHAN = /* wgsl */ `
fn kadd(s: ptr<function, f32>, c: ptr<function, f32>, v: f32) {
  let y = v - *c;
  let t = *s + y;
  *c = (t - *s) - y;
  *s = t;
}`;

function lanesReduce(lanes: number): string {
  if (lanes === 1) {
    return /* wgsl */ `
fn wsum(v: f32, lid: u32) -> f32 { return v; }
fn wmax(v: f32, lid: u32) -> f32 { return v; }
fn wmin(v: f32, lid: u32) -> f32 { return v; }`;
  }
  const tree = (name: string, op: (a: string, b: string) => string) => /* wgsl */ `
fn ${name}(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${lanes / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = ${op('red[lid]', 'red[lid + s]')}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
  return `
var<workgroup> red: array<f32, ${lanes}>;${tree('wsum', (a, b) => `${a} + ${b}`)}${tree('wmax', (a, b) => `max(${a}, ${b})`)}${tree('wmin', (a, b) => `min(${a}, ${b})`)}`;
}

// ---------------------------------------------------------------------------------------------- matmul

/** Output block edge and k-tile of the tiled matmul (a 16×16 workgroup, 4×4 outputs per invocation). */
export const MM_TILE = 64;
export const MM_KTILE = 16;
/** Words of the matmul uniform. */
export const MM_WORDS = 32;

/**
 * C[i, j] (+)= Σ_p op(A)[i, p] · op(B)[p, j] for a batch of z problems, every operand addressed by strides:
 *   op(A)[i, p] = A[a.off + zo(A) + i·a.row + p·a.col],  op(B)[p, j] = B[b.off + zo(B) + p·b.row + j·b.col],
 *   C[i, j] = C[c.off + zo(C) + i·c.row + j·c.col],  zo(X) = (z / zInner)·X.outer + ((z % zInner) / X.group)·X.inner.
 * So transposes are stride swaps (no transposed copies, no variants), and attention's per-(sequence, head)
 * products with grouped KV heads are one batched dispatch (K's `group` = heads per KV head). 64×64 output
 * blocks; A and B go through workgroup-memory tiles of 64×16 — each tile element is loaded once per workgroup
 * and read 64 times from workgroup memory. Loads are laid out so consecutive invocations read consecutive
 * addresses whichever operand stride is 1. Out-of-range elements load as 0 (any m, n, k).
 */
const MATMUL_BINDINGS = [uniformBinding('U', 'MM'), read('A'), read('B'), rw('C')];
const MATMUL = program(
  'matmul',
  MATMUL_BINDINGS,
  /* wgsl */ `
struct Operand { off: u32, row: u32, col: u32, outer: u32, inner: u32, group: u32, p0: u32, p1: u32 };
struct MM { m: u32, n: u32, k: u32, flags: u32, zInner: u32, q0: u32, q1: u32, q2: u32, a: Operand, b: Operand, c: Operand };
${bindingDecls(MATMUL_BINDINGS)}
var<workgroup> As: array<f32, 1024>; // [16 k][64 i]
var<workgroup> Bs: array<f32, 1024>; // [16 k][64 j]

fn zoff(o: Operand, z: u32) -> u32 {
  return o.off + (z / U.zInner) * o.outer + ((z % U.zInner) / o.group) * o.inner;
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * 16u + tx;
  let i0 = wid.y * 64u;
  let j0 = wid.x * 64u;
  let z = wid.z;
  let aBase = zoff(U.a, z);
  let bBase = zoff(U.b, z);
  let cBase = zoff(U.c, z);
  // which index runs fastest across invocations while loading: the one whose stride is 1 (coalesced reads)
  let aKFast = U.a.col == 1u;
  let bKFast = U.b.row == 1u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < U.k; k0 = k0 + 16u) {
    for (var q = 0u; q < 4u; q = q + 1u) {
      let e = lid + q * 256u;
      // A tile: 64 rows (i) × 16 k; e → (ii, kk)
      let ai = select(e % 64u, e / 16u, aKFast);
      let ak = select(e / 64u, e % 16u, aKFast);
      let gi = i0 + ai;
      let gk = k0 + ak;
      var av = 0.0;
      if (gi < U.m && gk < U.k) { av = A[aBase + gi * U.a.row + gk * U.a.col]; }
      As[ak * 64u + ai] = av;
      // B tile: 16 k × 64 columns (j)
      let bj = select(e % 64u, e / 16u, bKFast);
      let bk = select(e / 64u, e % 16u, bKFast);
      let gj = j0 + bj;
      let gk2 = k0 + bk;
      var bv = 0.0;
      if (gj < U.n && gk2 < U.k) { bv = B[bBase + gk2 * U.b.row + gj * U.b.col]; }
      Bs[bk * 64u + bj] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk = kk + 1u) {
      let o = kk * 64u;
      let bv = vec4<f32>(Bs[o + tx], Bs[o + tx + 16u], Bs[o + tx + 32u], Bs[o + tx + 48u]);
      acc0 = acc0 + As[o + ty] * bv;
      acc1 = acc1 + As[o + ty + 16u] * bv;
      acc2 = acc2 + As[o + ty + 32u] * bv;
      acc3 = acc3 + As[o + ty + 48u] * bv;
    }
    workgroupBarrier();
  }
  let accumulate = (U.flags & 1u) != 0u;
  ${[0, 1, 2, 3]
    .map((r) =>
      [0, 1, 2, 3]
        .map(
          (c) => `store(cBase, i0 + ty + ${16 * r}u, j0 + tx + ${16 * c}u, acc${r}.${'xyzw'[c]}, accumulate);`,
        )
        .join('\n  '),
    )
    .join('\n  ')}
}

fn store(cBase: u32, i: u32, j: u32, v: f32, accumulate: bool) {
  if (i < U.m && j < U.n) {
    let at = cBase + i * U.c.row + j * U.c.col;
    if (accumulate) { C[at] = C[at] + v; } else { C[at] = v; }
  }
}`,
);

// --------------------------------------------------------------------------------------------- RMSNorm

/** y = w ⊙ x · r, r = 1/√(mean(x²) + eps), r saved; one workgroup per row. */
const RMSNORM_FWD = (lanes: number): GpuProgram =>
  prog(
    'rmsnorm_fwd',
    'n: u32, dim: u32, gridX: u32, eps: f32',
    [read('x'), read('w'), rw('y'), rw('r')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'row', 'U.n')}
  let o = row * U.dim;
  var ss = 0.0;
  var ssC = 0.0;
  for (var i = lid; i < U.dim; i = i + ${lanes}u) { kadd(&ss, &ssC, x[o + i] * x[o + i]); }
  let inv = 1.0 / sqrt(wsum(ss, lid) / f32(U.dim) + U.eps);
  if (lid == 0u) { r[row] = inv; }
  for (var i = lid; i < U.dim; i = i + ${lanes}u) { y[o + i] = w[i] * (inv * x[o + i]); }
}`,
    lanes,
  );

/** dx (+)= r·(w ⊙ dy) − x·r³/dim·Σ dy⊙w⊙x, one workgroup per row. */
const RMSNORM_BWD_X = (lanes: number): GpuProgram =>
  prog(
    'rmsnorm_bwd_x',
    'n: u32, dim: u32, gridX: u32, flags: u32',
    [read('dy'), read('x'), read('w'), read('r'), rw('dx')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'row', 'U.n')}
  let o = row * U.dim;
  let inv = r[row];
  var dot = 0.0;
  var dotC = 0.0;
  for (var i = lid; i < U.dim; i = i + ${lanes}u) { kadd(&dot, &dotC, dy[o + i] * w[i] * x[o + i]); }
  let c = inv * inv * inv * wsum(dot, lid) / f32(U.dim);
  let accumulate = (U.flags & 1u) != 0u;
  for (var i = lid; i < U.dim; i = i + ${lanes}u) {
    let g = inv * w[i] * dy[o + i] - c * x[o + i];
    if (accumulate) { dx[o + i] = dx[o + i] + g; } else { dx[o + i] = g; }
  }
}`,
    lanes,
  );

/** dw[i] += Σ_t dy[t, i]·x[t, i]·r[t]: one workgroup per column (a deterministic tree over the rows). */
const RMSNORM_BWD_W = (lanes: number): GpuProgram =>
  prog(
    'rmsnorm_bwd_w',
    'n: u32, dim: u32, gridX: u32, p0: u32',
    [read('dy'), read('x'), read('r'), rw('dw')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'col', 'U.dim')}
  var s = 0.0;
  var sC = 0.0;
  for (var t = lid; t < U.n; t = t + ${lanes}u) { kadd(&s, &sC, dy[t * U.dim + col] * x[t * U.dim + col] * r[t]); }
  let total = wsum(s, lid);
  if (lid == 0u) { dw[col] = dw[col] + total; }
}`,
    lanes,
  );

// ------------------------------------------------------------------------------------------------ RoPE

/**
 * Rotate every head of every row in place (row t at position t mod seqLen); `sign` −1 rotates by −θ (the
 * backward: a rotation's transpose). pairs: (2i, 2i+1) (llama2.c); halves: (i, i + hs/2). One invocation per pair.
 */
const ROPE = prog(
  'rope',
  'n: u32, width: u32, seqLen: u32, headSize: u32, pairs: u32, gridX: u32, sign: f32, p0: u32',
  [read('cosT'), read('sinT'), rw('v')],
  /* wgsl */ `
${openMain(ROW_WG)}
  let idx = (wid.y * U.gridX + wid.x) * 64u + lid;
  let halfW = U.width / 2u;
  if (idx >= U.n * halfW) { return; }
  let half = U.headSize / 2u;
  let t = idx / halfW;
  let rem = idx % halfW;
  let h = (rem / half) * U.headSize;
  let i = rem % half;
  let base = t * U.width + h;
  let a = select(base + i, base + 2u * i, U.pairs != 0u);
  let b = select(a + half, a + 1u, U.pairs != 0u);
  let tab = (t % U.seqLen) * half + i;
  let fc = cosT[tab];
  let fs = U.sign * sinT[tab];
  let v0 = v[a];
  let v1 = v[b];
  v[a] = v0 * fc - v1 * fs;
  v[b] = v0 * fs + v1 * fc;
}`,
);

// ---------------------------------------------------------------------------------------------- SwiGLU

/** h = silu(g) ⊙ u with σ(g) saved (as the CPU op writes it: d = 1 + e^−g, σ = 1/d, h = g/d · u). */
const SWIGLU_FWD = prog(
  'swiglu_fwd',
  'count: u32, gridX: u32, p0: u32, p1: u32',
  [read('g'), read('u'), rw('h'), rw('sig')],
  /* wgsl */ `
${perElement('i', 'U.count')}
  let x = g[i];
  let d = 1.0 + exp(-x);
  sig[i] = 1.0 / d;
  h[i] = (x / d) * u[i];
}`,
);

/** dg = dh ⊙ u ⊙ σ(1 + g(1 − σ)), du = dh ⊙ g ⊙ σ (overwrites dg, du). */
const SWIGLU_BWD = prog(
  'swiglu_bwd',
  'count: u32, gridX: u32, p0: u32, p1: u32',
  [read('dh'), read('g'), read('u'), read('sig'), rw('dg'), rw('du')],
  /* wgsl */ `
${perElement('i', 'U.count')}
  let x = g[i];
  let s = sig[i];
  let d = dh[i];
  dg[i] = d * u[i] * s * (1.0 + x * (1.0 - s));
  du[i] = d * x * s;
}`,
);

/** y[i] += x[i] (residual adds; y may not alias x). */
const ADD = prog(
  'add',
  'count: u32, gridX: u32, p0: u32, p1: u32',
  [read('x'), rw('y')],
  /* wgsl */ `
${perElement('i', 'U.count')}
  y[i] = x[i] + y[i];
}`,
);

/** x[t] = E[token t] (the embedding lookup; tokens as u32). */
const GATHER = prog(
  'gather',
  'n: u32, dim: u32, gridX: u32, p0: u32',
  [read('tokens', 'u32'), read('E'), rw('x')],
  /* wgsl */ `
${perElement('i', 'U.n * U.dim')}
  let t = i / U.dim;
  x[i] = E[tokens[t] * U.dim + i % U.dim];
}`,
);

// ------------------------------------------------------------------------------------------- attention

/**
 * In place over [rows, L] score blocks (row r at position t = r mod L): s ← softmax(scale · s[0..t]), 0 after
 * (the causal mask). One workgroup per row; max-subtracted.
 */
const SOFTMAX_CAUSAL = (lanes: number): GpuProgram =>
  prog(
    'softmax_causal',
    'rows: u32, L: u32, gridX: u32, scale: f32',
    [rw('s')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'row', 'U.rows')}
  let t = row % U.L;
  let o = row * U.L;
  var mx = -3.0e38;
  for (var p = lid; p <= t; p = p + ${lanes}u) { mx = max(mx, s[o + p] * U.scale); }
  let m = wmax(mx, lid);
  var sum = 0.0;
  var sumC = 0.0;
  for (var p = lid; p <= t; p = p + ${lanes}u) {
    let e = exp(s[o + p] * U.scale - m);
    s[o + p] = e;
    kadd(&sum, &sumC, e);
  }
  let inv = 1.0 / wsum(sum, lid);
  for (var p = lid; p < U.L; p = p + ${lanes}u) {
    if (p <= t) { s[o + p] = s[o + p] * inv; } else { s[o + p] = 0.0; }
  }
}`,
    lanes,
  );

/** In place: d ← scale · P ⊙ (d − Σ_j P_j d_j) over the causal part, 0 after. */
const SOFTMAX_BWD = (lanes: number): GpuProgram =>
  prog(
    'softmax_bwd',
    'rows: u32, L: u32, gridX: u32, scale: f32',
    [read('pr'), rw('d')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'row', 'U.rows')}
  let t = row % U.L;
  let o = row * U.L;
  var c = 0.0;
  var cC = 0.0;
  for (var p = lid; p <= t; p = p + ${lanes}u) { kadd(&c, &cC, pr[o + p] * d[o + p]); }
  let corr = wsum(c, lid);
  for (var p = lid; p < U.L; p = p + ${lanes}u) {
    if (p <= t) { d[o + p] = pr[o + p] * (d[o + p] - corr) * U.scale; } else { d[o + p] = 0.0; }
  }
}`,
    lanes,
  );

// ---------------------------------------------------------------------------------------------- losses

/** Floats of per-row statistics the distillation loss writes: KL, CE, top-1 agreement, Σz, Σx. */
export const DISTILL_STATS = 5;

/**
 * The KD loss on one row of raw logits (student z, teacher x; distillLosses in ops.ts, same formulas):
 *   KL = Σ e_t(x − z)/Σ e_t − lse_t + lse_s,  CE = lse_s − z_y,  top-1: first arg-max of each equal,
 *   dz = (a + c)·p_s − a·p_t − c·[j = y]   (a = wKl/denom, c = wCe/denom).
 * Σz and Σx are written so the caller can check finiteness (WGSL has no isnan). flags bit 0: a teacher is
 * bound (else KL and top-1 are not computed); bit 1: write dz. One workgroup per row.
 */
const DISTILL = (lanes: number): GpuProgram =>
  prog(
    'distill',
    'n: u32, V: u32, gridX: u32, flags: u32, a: f32, c: f32, p0: u32, p1: u32',
    [read('z'), read('x'), read('targets', 'u32'), rw('dz'), rw('stats')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'row', 'U.n')}
  let o = row * U.V;
  let teacher = (U.flags & 1u) != 0u;
  var mz = -3.0e38;
  var cz = 0.0;
  for (var j = lid; j < U.V; j = j + ${lanes}u) { mz = max(mz, z[o + j]); cz = cz + z[o + j]; }
  let maxS = wmax(mz, lid);
  let checkS = wsum(cz, lid);
  var es = 0.0;
  var esC = 0.0;
  for (var j = lid; j < U.V; j = j + ${lanes}u) { kadd(&es, &esC, exp(z[o + j] - maxS)); }
  let sumS = wsum(es, lid);
  let lse = maxS + log(sumS);
  let y = targets[row];
  var maxT = 0.0;
  var sumT = 1.0;
  var kl = 0.0;
  var agree = 0.0;
  var checkT = 0.0;
  if (teacher) {
    var mx = -3.0e38;
    var cx = 0.0;
    for (var j = lid; j < U.V; j = j + ${lanes}u) { mx = max(mx, x[o + j]); cx = cx + x[o + j]; }
    maxT = wmax(mx, lid);
    checkT = wsum(cx, lid);
    var et = 0.0;
    var etC = 0.0;
    var cross = 0.0;
    var crossC = 0.0;
    // first arg-max of each (the CPU's strict '>' keeps the first)
    var argS = 3.0e38;
    var argT = 3.0e38;
    for (var j = lid; j < U.V; j = j + ${lanes}u) {
      let e = exp(x[o + j] - maxT);
      kadd(&et, &etC, e);
      kadd(&cross, &crossC, e * (x[o + j] - z[o + j]));
      if (z[o + j] == maxS) { argS = min(argS, f32(j)); }
      if (x[o + j] == maxT) { argT = min(argT, f32(j)); }
    }
    sumT = wsum(et, lid);
    let crossAll = wsum(cross, lid);
    kl = crossAll / sumT - (maxT + log(sumT)) + lse;
    agree = select(0.0, 1.0, wmin(argS, lid) == wmin(argT, lid));
  }
  if (lid == 0u) {
    let so = row * ${DISTILL_STATS}u;
    stats[so] = kl;
    stats[so + 1u] = lse - z[o + y];
    stats[so + 2u] = agree;
    stats[so + 3u] = checkS;
    stats[so + 4u] = checkT;
  }
  if ((U.flags & 2u) != 0u) {
    let invS = 1.0 / sumS;
    let invT = 1.0 / sumT;
    for (var j = lid; j < U.V; j = j + ${lanes}u) {
      var d = (U.a + U.c) * exp(z[o + j] - maxS) * invS;
      if (teacher) { d = d - U.a * exp(x[o + j] - maxT) * invT; }
      if (j == y) { d = d - U.c; }
      dz[o + j] = d;
    }
  }
}`,
    lanes,
  );

/** Elements per workgroup of the partial-sum programs (one partial sum each), whatever the lanes. */
export const PARTIAL_BLOCK = 1024;

/**
 * The body of a partial-sum program (MSE, SUMSQ; prog's `body`): workgroup wg visits its PARTIAL_BLOCK
 * elements i (`lanes` apart, so consecutive invocations read consecutive addresses), `element` adding each one's
 * term to the compensated sum (s, sC) — i may be past U.count, the statement checks — and partial[U.off + wg]
 * gets the workgroup's total.
 */
const partialSum = (lanes: number, element: string): string => /* wgsl */ `
${reduce(lanes)}
${openMain(lanes)}
  let wg = wid.y * U.gridX + wid.x;
  let base = wg * ${PARTIAL_BLOCK}u;
  var s = 0.0;
  var sC = 0.0;
  for (var q = 0u; q < ${PARTIAL_BLOCK / lanes}u; q = q + 1u) {
    let i = base + q * ${lanes}u + lid;
    ${element}
  }
  let total = wsum(s, lid);
  if (lid == 0u) { partial[U.off + wg] = total; }
}`;

/**
 * Hidden-state MSE: partial[p.off + wg] = Σ (x − target)² over the workgroup's PARTIAL_BLOCK elements, and (flags bit 0)
 * dx += g·(x − target), g = 2·weight/denom.
 */
const MSE = (lanes: number): GpuProgram =>
  prog(
    'mse',
    'count: u32, gridX: u32, flags: u32, off: u32, g: f32, p0: u32, p1: u32, p2: u32',
    [read('x'), read('tgt'), rw('dx'), rw('partial')],
    partialSum(
      lanes,
      /* wgsl */ `if (i < U.count) {
      let d = x[i] - tgt[i];
      kadd(&s, &sC, d * d);
      if ((U.flags & 1u) != 0u) { dx[i] = dx[i] + U.g * d; }
    }`,
    ),
    lanes,
  );

/** partial[off + wg] = Σ g² over the workgroup's elements (the global gradient norm, summed on the CPU). */
const SUMSQ = (lanes: number): GpuProgram =>
  prog(
    'sumsq',
    'count: u32, gridX: u32, off: u32, p0: u32',
    [read('g'), rw('partial')],
    partialSum(lanes, /* wgsl */ `if (i < U.count) { kadd(&s, &sC, g[i] * g[i]); }`),
    lanes,
  );

// ----------------------------------------------------------------------------------------------- AdamW

/**
 * AdamW in PyTorch's order (optim.ts): p ← p·decay; m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
 * p ← p − lr·(m/bc1)/(√(v/bc2) + eps), g = grad·gradScale; the gradient is zeroed. 1 − β1 and 1 − β2 come
 * computed in float64 (omb1, omb2): 1 − f32(0.999) is 1.3e-5 off 0.001, which the moments would inherit.
 */
const ADAMW = prog(
  'adamw',
  'count: u32, gridX: u32, p0: u32, p1: u32, lr: f32, gradScale: f32, beta1: f32, beta2: f32, eps: f32, decay: f32, bc1: f32, bc2: f32, omb1: f32, omb2: f32, p2: u32, p3: u32',
  [rw('p'), rw('grad'), rw('m'), rw('v')],
  /* wgsl */ `
${perElement('i', 'U.count')}
  let g = grad[i] * U.gradScale;
  let mi = U.beta1 * m[i] + U.omb1 * g;
  let vi = U.beta2 * v[i] + U.omb2 * g * g;
  m[i] = mi;
  v[i] = vi;
  p[i] = p[i] * U.decay - (U.lr * (mi / U.bc1)) / (sqrt(vi / U.bc2) + U.eps);
  grad[i] = 0.0;
}`,
);


// ------------------------------------------------------------------------------------ LittleBit provider

/**
 * out[i, k] = sign(x[i, k]) · (rs[i] if flags bit 0) · (cs[k] if flags bit 1), sign(0) = +1 (the codec's
 * packing): LittleBit's A = sign(U) diag(ℓ), diag(h) A and B = diag(g) sign(V).
 */
const SIGN_SCALE = prog(
  'sign_scale',
  'rows: u32, cols: u32, flags: u32, gridX: u32',
  [read('x'), read('rs'), read('cs'), rw('out')],
  /* wgsl */ `
${perElement('idx', 'U.rows * U.cols')}
  var v = select(1.0, -1.0, x[idx] < 0.0);
  if ((U.flags & 2u) != 0u) { v = v * cs[idx % U.cols]; }
  if ((U.flags & 1u) != 0u) { v = v * rs[idx / U.cols]; }
  out[idx] = v;
}`,
);

/**
 * LittleBit backward, per row i of a latent X [rows, r] with M = ∂L/∂(its product side) [rows, r]:
 *   dRow[i] += Σ_k sign(X_ik)·M_ik·(cs_k if flags bit 0)        (dh with cs = ℓ; dg without)
 *   dX[i, k] += M_ik·rowMul_i·(cs_k if bit 0)·K(1 − tanh²(K X_ik))  (SmoothSign′: dU with h, ℓ; dV with g)
 * One workgroup per row.
 */
const LB_ROWS = (lanes: number): GpuProgram =>
  prog(
    'littlebit_rows',
    'rows: u32, r: u32, flags: u32, gridX: u32, K: f32, p0: u32, p1: u32, p2: u32',
    [read('X'), read('M'), read('rowMul'), read('cs'), rw('dX'), rw('dRow')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'i', 'U.rows')}
  let useCs = (U.flags & 1u) != 0u;
  let rm = rowMul[i];
  var s = 0.0;
  var sC = 0.0;
  for (var k = lid; k < U.r; k = k + ${lanes}u) {
    let at = i * U.r + k;
    let x = X[at];
    var m = M[at];
    if (useCs) { m = m * cs[k]; }
    kadd(&s, &sC, select(m, -m, x < 0.0));
    // tanh saturates: clamp the argument (WGSL's tanh of a large f32 may be NaN on some implementations)
    let t = tanh(clamp(U.K * x, -20.0, 20.0));
    dX[at] = dX[at] + m * rm * U.K * (1.0 - t * t);
  }
  let total = wsum(s, lid);
  if (lid == 0u) { dRow[i] = dRow[i] + total; }
}`,
    lanes,
  );

/** dCol[k] += Σ_i sign(X_ik)·rowMul_i·M_ik (LittleBit's dℓ = Σ_i sign(U_ik) h_i (G B)_ik); one workgroup per column. */
const LB_COLS = (lanes: number): GpuProgram =>
  prog(
    'littlebit_cols',
    'rows: u32, r: u32, gridX: u32, p0: u32',
    [read('X'), read('M'), read('rowMul'), rw('dCol')],
    /* wgsl */ `
${reduce(lanes)}
${perRow(lanes, 'k', 'U.r')}
  var s = 0.0;
  var sC = 0.0;
  for (var i = lid; i < U.rows; i = i + ${lanes}u) {
    let at = i * U.r + k;
    let v = rowMul[i] * M[at];
    kadd(&s, &sC, select(v, -v, X[at] < 0.0));
  }
  let total = wsum(s, lid);
  if (lid == 0u) { dCol[k] = dCol[k] + total; }
}`,
    lanes,
  );

// ------------------------------------------------------------------------------------------ binary STE

/**
 * f32 → the nearest f16 (round to nearest even, subnormals, ±Inf on overflow) as the f32 it decodes to: the
 * same bit algorithm as @ultrasketch/core's f32ToF16Bits (WGSL leaves pack2x16float's rounding to the
 * implementation), decoded by unpack2x16float (exact for every f16).
 */
const F16_ROUND = /* wgsl */ `
fn f32ToF16Bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let e32 = (b >> 23u) & 0xffu;
  var mant = b & 0x7fffffu;
  if (e32 == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(e32) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    var m = mant >> shift;
    let rest = mant & ((1u << shift) - 1u);
    if (rest > half || (rest == half && (m & 1u) == 1u)) { m = m + 1u; }
    return sign | m;
  }
  var h = sign | (u32(e) << 10u) | (mant >> 13u);
  let rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }
  return h;
}
fn f16round(x: f32) -> f32 { return unpack2x16float(f32ToF16Bits(x)).x; }`;

/**
 * The binary codec's decode(encode(W)) (baselines/binary.ts) per row: Ŵ[r, j] = ±α_r, α_r = f16(mean |W[r, :]|),
 * sign(0) = +1 — the STE provider's rebuild. One workgroup per row.
 */
const BINARY_BUILD = (lanes: number): GpuProgram =>
  prog(
    'binary_build',
    'rows: u32, cols: u32, gridX: u32, p0: u32',
    [read('W'), rw('out')],
    /* wgsl */ `
${reduce(lanes)}
${F16_ROUND}
${perRow(lanes, 'r', 'U.rows')}
  let o = r * U.cols;
  var s = 0.0;
  var sC = 0.0;
  for (var j = lid; j < U.cols; j = j + ${lanes}u) { kadd(&s, &sC, abs(W[o + j])); }
  let a = f16round(wsum(s, lid) / f32(U.cols));
  for (var j = lid; j < U.cols; j = j + ${lanes}u) { out[o + j] = select(a, -a, W[o + j] < 0.0); }
}`,
    lanes,
  );

/**
 * The rtn codec's decode(encode(W)) (baselines/rtn.ts) per group of G weights of a row: offset = f16(min),
 * scale = f16((max − min)/levels), code = clamp(round((w − offset)/scale), 0, levels) with round half up (as
 * Math.round; WGSL's round() is half-to-even), Ŵ = offset + code·scale (code 0 when the scale is 0). One
 * workgroup per (row, group). f32 arithmetic where the codec's is float64: a quotient on a rounding tie may
 * land on the other code (the test counts them).
 */
const RTN_BUILD = (lanes: number): GpuProgram =>
  prog(
    'rtn_build',
    'rows: u32, cols: u32, G: u32, gpr: u32, levels: u32, gridX: u32, p0: u32, p1: u32',
    [read('W'), rw('out')],
    /* wgsl */ `
${reduce(lanes)}
${F16_ROUND}
${perRow(lanes, 'idx', 'U.rows * U.gpr')}
  let r = idx / U.gpr;
  let g = idx % U.gpr;
  let begin = r * U.cols + g * U.G;
  let end = r * U.cols + min((g + 1u) * U.G, U.cols);
  var mn = 3.0e38;
  var mx = -3.0e38;
  for (var i = begin + lid; i < end; i = i + ${lanes}u) { mn = min(mn, W[i]); mx = max(mx, W[i]); }
  let lo = wmin(mn, lid);
  let hi = wmax(mx, lid);
  let levels = f32(U.levels);
  let scale = f16round((hi - lo) / levels);
  let offset = f16round(lo);
  for (var i = begin + lid; i < end; i = i + ${lanes}u) {
    var q = 0.0;
    if (scale != 0.0) { q = clamp(floor((W[i] - offset) / scale + 0.5), 0.0, levels); }
    out[i] = offset + q * scale;
  }
}`,
    lanes,
  );

// ------------------------------------------------------------------------------- sketch / hashednets states

/**
 * The state providers' forward (providers-sketch.ts): per weight i, the candidate of largest |·| among its
 * depth[i] hashed states cand[k·n + i] (strict: ties keep the lowest k, as the sketch codec's query), each state
 * read as its format stores it — mode 0 the f32 value, 1 f16 rounded toward zero and clamped to ±65504 (sketch
 * states: sketch-core's f16BitsTowardZero), 2 f16 rounded to nearest (hashednets states), 3 int8 toward zero under
 * its sketch row's scale (scales[rowOf[s]], from `state_row_scale`; sketch-core's int8TowardZero) — and the pick
 * recorded.
 */
const STATE_PICK = prog(
  'state_pick',
  'n: u32, d: u32, mode: u32, gridX: u32',
  [read('S'), read('cand', 'i32'), read('depth', 'u32'), rw('out'), rw('pick', 'u32'), read('rowOf', 'u32'), read('scales')],
  /* wgsl */ `
${F16_ROUND}
fn int8TowardZero(v: f32, scale: f32) -> f32 {
  if (scale == 0.0 || v == 0.0) { return 0.0; }
  // trunc of the f32 quotient is never below the exact quotient's; the loop steps an overshoot back, as the
  // codec's does, so q is the codec's: the largest |q| ≤ 127 with |q · scale| ≤ |v| (q · scale is exact in f32)
  var q = clamp(trunc(v / scale), -127.0, 127.0);
  loop {
    if (q == 0.0 || abs(q * scale) <= abs(v)) { break; }
    q = q - sign(q);
  }
  return q * scale;
}
fn f16TowardZero(v: f32) -> f32 {
  var h = f32ToF16Bits(v);
  if ((h & 0x7fffu) > 0x7bffu) { h = (h & 0x8000u) | 0x7bffu; }
  if (abs(unpack2x16float(h).x) > abs(v)) { h = h - 1u; }
  return unpack2x16float(h).x;
}
fn stateAt(s: u32) -> f32 {
  let v = S[s];
  if (U.mode == 1u) { return f16TowardZero(v); }
  if (U.mode == 2u) { return f16round(v); }
  if (U.mode == 3u) { return int8TowardZero(v, scales[rowOf[s]]); }
  return v;
}
${perElement('i', 'U.n')}
  var best = u32(cand[i]);
  var v = stateAt(best);
  var a = abs(v);
  let dd = depth[i];
  for (var k = 1u; k < dd; k = k + 1u) {
    let s = u32(cand[k * U.n + i]);
    let x = stateAt(s);
    if (abs(x) > a) {
      a = abs(x);
      v = x;
      best = s;
    }
  }
  out[i] = v;
  pick[i] = best;
}`,
);

/**
 * int8 states: the scale of each stored sketch row (states [begin[r], begin[r + 1])), one invocation per row:
 * f16(max |S| / 127) rounded to nearest and clamped to the largest finite f16 (sketch-core's int8ScaleBits), as
 * the f32 it decodes to.
 */
const STATE_ROW_SCALE = prog(
  'state_row_scale',
  'rows: u32, gridX: u32, p0: u32, p1: u32',
  [read('S'), read('begin', 'u32'), rw('scales')],
  /* wgsl */ `
${F16_ROUND}
${perElement('r', 'U.rows')}
  var m = 0.0;
  for (var i = begin[r]; i < begin[r + 1u]; i = i + 1u) { m = max(m, abs(S[i])); }
  var h = f32ToF16Bits(m / 127.0);
  if ((h & 0x7fffu) > 0x7bffu) { h = 0x7bffu; }
  scales[r] = unpack2x16float(h).x;
}`,
);

/**
 * The state providers' backward, one invocation per state s: grad[s] += Σ gradW[i] over the weights i listed
 * for s (members[offsets[s] .. offsets[s + 1]), ascending) that picked s in the forward. A segmented sum in a
 * fixed order instead of float atomics: deterministic, and the CPU scatter's order (weights ascending).
 */
const STATE_SCATTER = prog(
  'state_scatter',
  'T: u32, gridX: u32, p0: u32, p1: u32',
  [read('gradW'), read('pick', 'u32'), read('offsets', 'u32'), read('members', 'u32'), rw('grad')],
  /* wgsl */ `
${perElement('s', 'U.T')}
  var g = grad[s];
  let end = offsets[s + 1u];
  for (var j = offsets[s]; j < end; j = j + 1u) {
    let i = members[j];
    if (pick[i] == s) { g = g + gradW[i]; }
  }
  grad[s] = g;
}`,
);

/** The program set of a context: element-wise programs, and the reduction programs for its lanes. */
export function trainingPrograms(lanes: ReductionLanes) {
  return {
    // (a barrier-free one-output-per-invocation product was tried for software adapters: no faster on SwiftShader)
    matmul: MATMUL,
    rmsnormFwd: RMSNORM_FWD(lanes),
    rmsnormBwdX: RMSNORM_BWD_X(lanes),
    rmsnormBwdW: RMSNORM_BWD_W(lanes),
    rope: ROPE,
    swigluFwd: SWIGLU_FWD,
    swigluBwd: SWIGLU_BWD,
    add: ADD,
    gather: GATHER,
    softmaxCausal: SOFTMAX_CAUSAL(lanes),
    softmaxBwd: SOFTMAX_BWD(lanes),
    distill: DISTILL(lanes),
    mse: MSE(lanes),
    sumsq: SUMSQ(lanes),
    adamw: ADAMW,
    signScale: SIGN_SCALE,
    littlebitRows: LB_ROWS(lanes),
    littlebitCols: LB_COLS(lanes),
    binaryBuild: BINARY_BUILD(lanes),
    rtnBuild: RTN_BUILD(lanes),
    statePick: STATE_PICK,
    stateRowScale: STATE_ROW_SCALE,
    stateScatter: STATE_SCATTER,
  } as const;
}

export type TrainingPrograms = ReturnType<typeof trainingPrograms>;
