import type { GpuProgram } from './program.js';
import { STEP_STRUCT, bindingDecls, bindingKinds, readBinding, rwBinding, uniformBinding } from './wgsl.js';
import type { WgslBinding } from './wgsl.js';

/**
 * Every op binds the shared Step uniform (binding 0), then its own uniform (1), then its f32 buffers: listed once
 * per program and used for both its declarations and its `bindings`.
 */
const opBindings = (uniform: WgslBinding, ...buffers: WgslBinding[]): WgslBinding[] => [
  uniformBinding('step', 'Step'),
  uniform,
  ...buffers,
];

/** A forward op as a `GpuProgram`; its binding kinds come from its binding list. */
const op = (name: string, cacheKey: string, bindings: readonly WgslBinding[], wgsl: string): GpuProgram => ({
  name,
  cacheKey,
  bindings: bindingKinds(bindings),
  wgsl,
});

/** The uniform of the three attention programs: (dim, kvDim, headDim, kvMul, capacity, nHeads, scale bits, 0). */
const ATT_STRUCT = /* wgsl */ `struct Att {
  dim: u32,
  kvDim: u32,
  headDim: u32,
  kvMul: u32,
  capacity: u32,
  nHeads: u32,
  scale: f32,
  pad: u32,
};`;

/** The two RMSNorm programs' bindings; their uniform: (dim, mode, eps bits, 0). */
const NORM_BINDINGS = opBindings(uniformBinding('nrm', 'Norm'), readBinding('x'), readBinding('weight'), rwBinding('out'));
const NORM_HEADER = /* wgsl */ `${STEP_STRUCT}
struct Norm {
  dim: u32,
  mode: u32,
  eps: f32,
  pad: u32,
};
${bindingDecls(NORM_BINDINGS)}`;

/**
 * The three attention programs' bindings: q, k cache and v cache (read), scores (scratch rows) and out; q, the
 * caches and out are f32 or, in the vec4 variant, vec4<f32>.
 */
const attBindings = (vec: string): WgslBinding[] =>
  opBindings(
    uniformBinding('at', 'Att'),
    readBinding('q', vec),
    readBinding('kc', vec),
    readBinding('vc', vec),
    rwBinding('scores'),
    rwBinding('out', vec),
  );
const attHeader = (vec: string): string => /* wgsl */ `${STEP_STRUCT}
${ATT_STRUCT}
${bindingDecls(attBindings(vec))}`;

/** Entry of the two serial attention programs: one invocation per (head h, token t); tokens past n return. */
const SERIAL_HEAD_TOKEN = /* wgsl */ `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.x % at.nHeads;
  let t = gid.x / at.nHeads;
  if (t >= step.n) {
    return;
  }`;

/**
 * The serial attention programs' softmax of their scratch row in place: scores[so + p] for p < len, whose
 * maximum is m, become exp(score − m); inv = 1 / their sum (the values' weights are e · inv).
 */
const SERIAL_SOFTMAX = /* wgsl */ `  var sum = 0.0;
  for (var p = 0u; p < len; p++) {
    let e = exp(scores[so + p] - m);
    scores[so + p] = e;
    sum += e;
  }
  let inv = 1.0 / sum;`;

/**
 * The kernels of the forward pass around the linears, each a program as data. Shapes come from uniforms;
 * per-call values (n, start position, logit rows) from the shared Step uniform. All accumulate in f32.
 */

/**
 * RMSNorm, one workgroup per row: out[t] = w ⊙ x[src] / sqrt(mean(x[src]²) + eps).
 * mode 0: rows t < n, src = t. mode 1 (final norm): rows t < logitRows, src = logitFirst + t.
 * Uniform: (dim, mode, eps bits, 0).
 */
export const RMSNORM: GpuProgram = op(
  'rmsnorm',
  'rmsnorm|v2',
  NORM_BINDINGS,
  /* wgsl */ `
// RMSNorm (llama2.c's rmsnorm): for each row, out = weight * (x / sqrt(mean(x^2) + eps)); one workgroup per row,
// sum of squares over 64 threads.
${NORM_HEADER}
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let rows = select(step.n, step.logitRows, nrm.mode == 1u);
  let t = wid.x;
  if (t >= rows) {
    return;
  }
  let src = select(t, step.logitFirst + t, nrm.mode == 1u) * nrm.dim;
  var ss = 0.0;
  for (var i = tid; i < nrm.dim; i += 64u) {
    let v = x[src + i];
    ss += v * v;
  }
  red[tid] = ss;
  workgroupBarrier();
  // every thread sums the 64 partials itself: one barrier instead of a tree of six
  var total = 0.0;
  for (var i = 0u; i < 64u; i++) {
    total += red[i];
  }
  let inv = 1.0 / sqrt(total / f32(nrm.dim) + nrm.eps);
  let dst = t * nrm.dim;
  for (var i = tid; i < nrm.dim; i += 64u) {
    out[dst + i] = weight[i] * (inv * x[src + i]);
  }
}
`,
);

const ROPE_BINDINGS = opBindings(
  uniformBinding('rp', 'Rope'),
  rwBinding('q'),
  readBinding('k'),
  readBinding('v'),
  rwBinding('kc'),
  rwBinding('vc'),
  readBinding('cs'),
);

/**
 * RoPE on q (in place) and k, and the KV-cache write: for token t at position start + t, rotate every pair of
 * every head (layout 'pairs': (2i, 2i+1); 'halves': (i, i + headDim/2)) by the angle of (position, i) from a
 * cos/sin table computed on the CPU exactly as the reference does; write the rotated k and the v of the token
 * into the layer's cache rows. Uniform: (dim, kvDim, headDim, pairs).
 */
export const ROPE_KV: GpuProgram = op(
  'rope_kv',
  'rope_kv|v1',
  ROPE_BINDINGS,
  /* wgsl */ `
// RoPE + KV-cache store: q[t] rotated in place; k[t] rotated into kcache[start + t]; v[t] copied into
// vcache[start + t]. One thread per rotated pair; cos/sin come from a table (cs[2 * (pos * half + i) + {0, 1}]).
${STEP_STRUCT}
struct Rope {
  dim: u32,
  kvDim: u32,
  headDim: u32,
  pairs: u32,
};
${bindingDecls(ROPE_BINDINGS)}

fn pairOf(i: u32) -> vec3<u32> {
  let half = rp.headDim / 2u;
  let h = i / half;
  let ii = i % half;
  var a = h * rp.headDim + ii;
  var b = a + half;
  if (rp.pairs == 1u) {
    a = h * rp.headDim + 2u * ii;
    b = a + 1u;
  }
  return vec3<u32>(a, b, ii);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y;
  let i = gid.x;
  if (t >= step.n) {
    return;
  }
  let pos = step.start + t;
  let half = rp.headDim / 2u;
  if (i < rp.dim / 2u) {
    let p = pairOf(i);
    let c = cs[2u * (pos * half + p.z)];
    let s = cs[2u * (pos * half + p.z) + 1u];
    let o = t * rp.dim;
    let v0 = q[o + p.x];
    let v1 = q[o + p.y];
    q[o + p.x] = v0 * c - v1 * s;
    q[o + p.y] = v0 * s + v1 * c;
  }
  if (i < rp.kvDim / 2u) {
    let p = pairOf(i);
    let c = cs[2u * (pos * half + p.z)];
    let s = cs[2u * (pos * half + p.z) + 1u];
    let o = t * rp.kvDim;
    let d = pos * rp.kvDim;
    let v0 = k[o + p.x];
    let v1 = k[o + p.y];
    kc[d + p.x] = v0 * c - v1 * s;
    kc[d + p.y] = v0 * s + v1 * c;
    vc[d + 2u * i] = v[o + 2u * i];
    vc[d + 2u * i + 1u] = v[o + 2u * i + 1u];
  }
}
`,
);

/**
 * Causal attention with grouped KV heads over the cache: one workgroup per (head, token). Scores of
 * positions 0..start+t go to a scratch row, softmax (max-subtracted), then the weighted sum of values.
 * Uniform: (dim, kvDim, headDim, kvMul, capacity, nHeads, scale bits, 0).
 */
export const ATTENTION: GpuProgram = op(
  'attention',
  'attention|v2',
  attBindings('f32'),
  /* wgsl */ `
// Multi-head attention with grouped KV heads (head h reads KV head h / kvMul) for token t at position
// start + t: s_p = q·k_p / sqrt(headDim) for p <= pos, softmax, out = sum_p softmax_p v_p.
${attHeader('f32')}
var<workgroup> redMax: array<f32, 64>;
var<workgroup> redSum: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= step.n) {
    return;
  }
  let hs = at.headDim;
  let len = step.start + t + 1u;
  let qo = t * at.dim + h * hs;
  let kvo = (h / at.kvMul) * hs;
  let so = (t * at.nHeads + h) * at.capacity;
  var mx = -3.0e38;
  for (var p = tid; p < len; p += 64u) {
    let ko = p * at.kvDim + kvo;
    var d = 0.0;
    for (var i = 0u; i < hs; i++) {
      d += q[qo + i] * kc[ko + i];
    }
    let sc = d * at.scale;
    scores[so + p] = sc;
    mx = max(mx, sc);
  }
  redMax[tid] = mx;
  workgroupBarrier();
  var m = -3.0e38;
  for (var i = 0u; i < 64u; i++) {
    m = max(m, redMax[i]);
  }
  var sum = 0.0;
  for (var p = tid; p < len; p += 64u) {
    let e = exp(scores[so + p] - m);
    scores[so + p] = e;
    sum += e;
  }
  redSum[tid] = sum;
  storageBarrier();
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < 64u; i++) {
    total += redSum[i];
  }
  let inv = 1.0 / total;
  for (var i = tid; i < hs; i += 64u) {
    var acc = 0.0;
    for (var p = 0u; p < len; p++) {
      acc += scores[so + p] * vc[p * at.kvDim + kvo + i];
    }
    out[qo + i] = acc * inv;
  }
}
`,
);

const SWIGLU_BINDINGS = opBindings(uniformBinding('gl', 'Glu'), rwBinding('h1'), readBinding('h3'));

/** SwiGLU in place: h1 = silu(h1) ⊙ h3 over n · hidden values. Uniform: (hidden, gridX, 0, 0). */
export const SWIGLU: GpuProgram = op(
  'swiglu',
  'swiglu|v1',
  SWIGLU_BINDINGS,
  /* wgsl */ `
// SwiGLU: h1 = h1 * sigmoid(h1) * h3, element-wise over the batch.
${STEP_STRUCT}
struct Glu {
  hidden: u32,
  gridX: u32,
  pad0: u32,
  pad1: u32,
};
${bindingDecls(SWIGLU_BINDINGS)}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * gl.gridX * 64u;
  if (i >= step.n * gl.hidden) {
    return;
  }
  let g = h1[i];
  h1[i] = (g / (1.0 + exp(-g))) * h3[i];
}
`,
);

/**
 * RMSNorm for software adapters: one thread per row, no workgroup barrier (SwiftShader runs a workgroup that
 * has a barrier as coroutines, several times slower than plain loops). Same uniform and bindings as RMSNORM.
 */
export const RMSNORM_SERIAL: GpuProgram = op(
  'rmsnorm_serial',
  'rmsnorm_serial|v1',
  NORM_BINDINGS,
  /* wgsl */ `
// RMSNorm, one thread per row: out = weight * (x / sqrt(mean(x^2) + eps)).
${NORM_HEADER}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let rows = select(step.n, step.logitRows, nrm.mode == 1u);
  let t = gid.x;
  if (t >= rows) {
    return;
  }
  let src = select(t, step.logitFirst + t, nrm.mode == 1u) * nrm.dim;
  var ss = 0.0;
  for (var i = 0u; i < nrm.dim; i++) {
    let v = x[src + i];
    ss += v * v;
  }
  let inv = 1.0 / sqrt(ss / f32(nrm.dim) + nrm.eps);
  let dst = t * nrm.dim;
  for (var i = 0u; i < nrm.dim; i++) {
    out[dst + i] = weight[i] * (inv * x[src + i]);
  }
}
`,
);

/**
 * Attention for software adapters: one thread per (head, token), no barrier; scores in the same scratch
 * rows as ATTENTION. Same uniform and bindings as ATTENTION.
 */
export const ATTENTION_SERIAL: GpuProgram = op(
  'attention_serial',
  'attention_serial|v1',
  attBindings('f32'),
  /* wgsl */ `
// Multi-head attention with grouped KV heads, one thread per (head, token): scores, softmax, weighted values.
${attHeader('f32')}

${SERIAL_HEAD_TOKEN}
  let hs = at.headDim;
  let len = step.start + t + 1u;
  let qo = t * at.dim + h * hs;
  let kvo = (h / at.kvMul) * hs;
  let so = (t * at.nHeads + h) * at.capacity;
  var m = -3.0e38;
  for (var p = 0u; p < len; p++) {
    let ko = p * at.kvDim + kvo;
    var d = 0.0;
    for (var i = 0u; i < hs; i++) {
      d += q[qo + i] * kc[ko + i];
    }
    let sc = d * at.scale;
    scores[so + p] = sc;
    m = max(m, sc);
  }
${SERIAL_SOFTMAX}
  for (var i = 0u; i < hs; i++) {
    var acc = 0.0;
    for (var p = 0u; p < len; p++) {
      acc += scores[so + p] * vc[p * at.kvDim + kvo + i];
    }
    out[qo + i] = acc * inv;
  }
}
`,
);

/**
 * ATTENTION_SERIAL for head sizes that are a multiple of 4: q, k, v and the output read and written as vec4s
 * (a quarter of the loads), the weighted sum of values accumulated four dimensions at a time.
 */
export const ATTENTION_SERIAL_VEC4: GpuProgram = op(
  'attention_serial_vec4',
  'attention_serial_vec4|v1',
  attBindings('vec4<f32>'),
  /* wgsl */ `
// Multi-head attention with grouped KV heads, one thread per (head, token), head size a multiple of 4.
${attHeader('vec4<f32>')}

${SERIAL_HEAD_TOKEN}
  let h4 = at.headDim / 4u;
  let kv4 = at.kvDim / 4u;
  let len = step.start + t + 1u;
  let qo = (t * at.dim + h * at.headDim) / 4u;
  let kvo = (h / at.kvMul) * h4;
  let so = (t * at.nHeads + h) * at.capacity;
  var m = -3.0e38;
  for (var p = 0u; p < len; p++) {
    let ko = p * kv4 + kvo;
    var d = 0.0;
    for (var i = 0u; i < h4; i++) {
      d += dot(q[qo + i], kc[ko + i]);
    }
    let sc = d * at.scale;
    scores[so + p] = sc;
    m = max(m, sc);
  }
${SERIAL_SOFTMAX}
  for (var i = 0u; i < h4; i++) {
    var acc = vec4<f32>(0.0);
    for (var p = 0u; p < len; p++) {
      acc += scores[so + p] * vc[p * kv4 + kvo + i];
    }
    out[qo + i] = acc * inv;
  }
}
`,
);
