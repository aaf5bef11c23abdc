import {
  type HashedNetsParams,
  MixedHashFamily,
  RowRunHashFamily,
  type SketchGroup,
  type SketchParams,
  familyKey,
  sketchGroups,
} from '@ultrasketch/sketch-core';
import { WebGpuError } from '../errors.js';
import { BlockedLinear, type GpuLinear, type KernelBuildContext, type WeightCode, blockByteLimit, bytesOf } from '../linear.js';
import { f16Reader } from '../wgsl.js';

/**
 * `sketch` (AbsMaxMin, docs/sketch.md) and `hashednets` kernels: every weight is queried from the stored
 * states on the fly — for each of the d sketch rows the weight's candidate state is located by the hash
 * family, dequantized, and the largest-magnitude candidate kept (strict >, so ties keep the lowest k, as in
 * the codec's query) — never a dense Ŵ.
 *
 * What is on the GPU:
 * - `states` — the stored states as they are (f16 pairs, int8 quads or f32 in 32-bit words);
 * - `scales` — int8 only: the stored f16 scales (one per stored sketch row);
 * - `colInfo` [cols] — each input channel's group and position in it, (g << 24) | c: the stored group map
 *   unpacked (4 bytes per column);
 * - `groupInfo` [G × 8] — per group: state offset, width, depth (0 = exact), scale offset, channels,
 *   segments, run length, and where its hash data starts in `fam`;
 * - `fam` — `rowrun`: the run offsets derived from the seed (d · rows · segments u32 — computed once on the CPU
 *   exactly as runtime-node and the codec do, from the seeded permutations; 4 bytes per run, a few per row);
 *   `mixed`: the d per-(group, sketch row) hash keys; the hash itself (murmur3 finalizer, multiply-shift range
 *   reduction) is evaluated per weight in WGSL.
 *
 * States in workgroup memory: when a matrix's states fit the workgroup-memory budget (`residentBytes`), the
 * `resident` variant loads them ONCE per workgroup into workgroup memory (a coalesced copy) and serves 64
 * rows from there — every candidate read becomes a workgroup-memory read. Larger sketches read candidates
 * from the storage buffer (the `global` variant).
 */

const GROUP_WORDS = 8;
/** signKeys holds SKETCH_MAX_ROWS keys per group: key of (group g, sketch row k) at g · 16 + k. */
const SIGN_KEY_STRIDE = 16;
const SIGN_SALT = 0x7369676e; // sketch-core signmean.ts

type StateFormat = 'f16' | 'int8' | 'f32';

/**
 * Compiled sizes of the resident state array (32-bit words): a few tiers, so that every matrix whose states fit
 * shares one of three pipelines instead of one per size (WGSL zero-fills workgroup memory, so a tier is not
 * chosen much larger than needed).
 */
const RESIDENT_TIERS = [1024, 4096, 8192];

export function residentCapacity(words: number, budgetBytes: number): number {
  for (const tier of RESIDENT_TIERS) if (words <= tier && tier * 4 <= budgetBytes) return tier;
  return 0;
}

/** What changes the sketch kernel's WGSL (compiled in, so that a software adapter runs no dead branch). */
export interface SketchVariant {
  format: StateFormat;
  family: 'rowrun' | 'mixed';
  /** Several channel groups or an exact group: each weight locates its group (the per-weight path). */
  general: boolean;
  /** Resident state words (0: states read from the storage buffer). */
  capacity: number;
  /**
   * Query `signmean` (sketch-core signmean.ts): ŵ = (1/d) Σ_k ξ_k(c) · S_k[h_k] instead of the abs-max, the
   * column signs ξ evaluated per weight from the per-(group, sketch row) keys in the `signKeys` buffer.
   */
  signmean?: boolean;
}

function stateValue(format: StateFormat): string {
  switch (format) {
    case 'f16':
      return 'unpack2x16float(stWord(i >> 1u) >> ((i & 1u) << 4u)).x';
    case 'int8':
      return 'f32(bitcast<i32>(((stWord(i >> 2u) >> ((i & 3u) << 3u)) & 0xffu) << 24u) >> 24u) * f16_scales(si)';
    case 'f32':
      return 'bitcast<f32>(stWord(i))';
  }
}

/**
 * The sketch decode, specialised at compile time by state format, hash family, one group vs several, and
 * resident states (software adapters execute both sides of every branch, so nothing is left to a runtime
 * switch). c0 = (state words, family rows (the matrix's rows), 0, 0).
 *
 * One group (the common case): the four columns of a chunk are four consecutive channels, and everything is
 * computed as vec4s — per sketch row, four candidate indices (rowrun: the runs' stored offsets + position in
 * the run, cyclic; mixed: the murmur3-finalizer hash of (key_k, row, column) and a multiply-shift range
 * reduction), four dequantized states, and an element-wise strict max of |·| (ties keep the lowest k).
 * Several groups: each weight finds its group and position (colInfo) and is queried on its own.
 */
export function sketchCode(v: SketchVariant): WeightCode {
  const resident = v.capacity > 0;
  const rowrun = v.family === 'rowrun';
  const candidates = rowrun
    ? /* wgsl */ `
// rowrun: run s = c / L of the row starts at a stored offset; the weight is at offset + (c - s L), cyclic.
fn cand4(gb: u32, k: u32, r: u32, c: vec4<u32>, width: u32) -> vec4<u32> {
  let L = groupInfo[gb + 6u];
  let base = groupInfo[gb + 7u] + (k * lin.c0.y + r) * groupInfo[gb + 5u];
  let s = c / vec4<u32>(L);
  let o = vec4<u32>(fam[base + s.x], fam[base + s.y], fam[base + s.z], fam[base + s.w]);
  let x = o + c - s * L;
  return select(x, x - vec4<u32>(width), x >= vec4<u32>(width));
}`
    : /* wgsl */ `
fn fmix4(h0: vec4<u32>) -> vec4<u32> {
  var h = h0;
  h = h ^ (h >> vec4<u32>(16u));
  h = h * 0x85ebca6bu;
  h = h ^ (h >> vec4<u32>(13u));
  h = h * 0xc2b2ae35u;
  return h ^ (h >> vec4<u32>(16u));
}
// floor(a * b / 2^32) element-wise: the codec's multiply-shift range reduction, in 16-bit halves.
fn mulhi4(a: vec4<u32>, b: u32) -> vec4<u32> {
  let a0 = a & vec4<u32>(0xffffu);
  let a1 = a >> vec4<u32>(16u);
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = ((a0 * b0) >> vec4<u32>(16u)) + (p01 & vec4<u32>(0xffffu)) + (p10 & vec4<u32>(0xffffu));
  return a1 * b1 + (p01 >> vec4<u32>(16u)) + (p10 >> vec4<u32>(16u)) + (mid >> vec4<u32>(16u));
}
// mixed: h = fmix32(fmix32(key_k ^ r * c1) ^ c * c2), index = floor(h * width / 2^32).
fn cand4(gb: u32, k: u32, r: u32, c: vec4<u32>, width: u32) -> vec4<u32> {
  let rk = fmix4(vec4<u32>(fam[groupInfo[gb + 7u] + k] ^ (r * 0xcc9e2d51u))).x;
  return mulhi4(fmix4(vec4<u32>(rk) ^ (c * 0x1b873593u)), width);
}`;
  const query = v.signmean
    ? /* wgsl */ `
fn sfmix4(h0: vec4<u32>) -> vec4<u32> {
  var h = h0;
  h = h ^ (h >> vec4<u32>(16u));
  h = h * 0x85ebca6bu;
  h = h ^ (h >> vec4<u32>(13u));
  h = h * 0xc2b2ae35u;
  return h ^ (h >> vec4<u32>(16u));
}
// The signmean query of channels c (vec4) of group gb in row r: (1/d) Σ_k ξ_k(c) S_k[h_k], with
// ξ_k(c) = −1 where the top bit of fmix32(key_gk ^ c · 0x1b873593) is set (columnSigns in sketch-core).
fn query4(gb: u32, r: u32, c: vec4<u32>) -> vec4<f32> {
  let so = groupInfo[gb];
  let width = groupInfo[gb + 1u];
  let depth = groupInfo[gb + 2u];
  let sc = groupInfo[gb + 3u];
  let g = gb / ${GROUP_WORDS}u;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < depth; k++) {
    let i = vec4<u32>(so + k * width) + cand4(gb, k, r, c, width);
    let si = sc + k;
    let v = vec4<f32>(stv(i.x, si), stv(i.y, si), stv(i.z, si), stv(i.w, si));
    let neg = (sfmix4(vec4<u32>(signKeys[g * ${SIGN_KEY_STRIDE}u + k]) ^ (c * 0x1b873593u)) >> vec4<u32>(31u)) == vec4<u32>(1u);
    acc = acc + select(v, -v, neg);
  }
  return acc / f32(depth);
}`
    : /* wgsl */ `
// The AbsMaxMin query of channels c (vec4) of group gb in row r: per sketch row the candidates, strict max of |·|.
fn query4(gb: u32, r: u32, c: vec4<u32>) -> vec4<f32> {
  let so = groupInfo[gb];
  let width = groupInfo[gb + 1u];
  let depth = groupInfo[gb + 2u];
  let sc = groupInfo[gb + 3u];
  var best = vec4<f32>(0.0);
  var bestAbs = vec4<f32>(-1.0);
  for (var k = 0u; k < depth; k++) {
    let i = vec4<u32>(so + k * width) + cand4(gb, k, r, c, width);
    let si = sc + k;
    let v = vec4<f32>(stv(i.x, si), stv(i.y, si), stv(i.z, si), stv(i.w, si));
    let take = abs(v) > bestAbs;
    best = select(best, v, take);
    bestAbs = select(bestAbs, abs(v), take);
  }
  return best;
}`;
  const decode = v.general
    ? /* wgsl */ `
// One weight of any group: exact groups store it (depth 0), sketch groups are queried.
fn weightAt(r: u32, j: u32) -> f32 {
  let ci = colInfo[min(j, lin.cols - 1u)];
  let gb = (ci >> 24u) * ${GROUP_WORDS}u;
  let c = ci & 0xffffffu;
  if (groupInfo[gb + 2u] == 0u) {
    return stv(groupInfo[gb] + r * groupInfo[gb + 4u] + c, groupInfo[gb + 3u]);
  }
  return query4(gb, r, vec4<u32>(c)).x;
}
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  var w = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    w = vec4<f32>(w.y, w.z, w.w, weightAt(row, j0 + e));
  }
  return w;
}`
    : /* wgsl */ `
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  return query4(0u, row, min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(lin.cols - 1u)));
}`;
  return {
    key: `sketch-${v.format}-${v.family}${v.general ? '-general' : ''}${resident ? `-res${v.capacity}` : ''}${v.signmean ? '-signmean' : ''}`,
    buffers: [
      { name: 'states' },
      { name: 'scales' },
      { name: 'colInfo' },
      { name: 'groupInfo' },
      { name: 'fam' },
      ...(v.signmean ? [{ name: 'signKeys' }] : []),
    ],
    ...(resident ? { prologue: true } : {}),
    wgsl: /* wgsl */ `
${resident ? `var<workgroup> sh: array<u32, ${v.capacity}>;` : ''}
fn stWord(i: u32) -> u32 {
  return ${resident ? 'sh[i]' : 'states[i]'};
}
${
  resident
    ? `fn prologue(tid: u32) {
  for (var i = tid; i < lin.c0.x; i += 64u) {
    sh[i] = states[i];
  }
}`
    : ''
}
${v.format === 'int8' ? f16Reader('scales') : ''}
// State i dequantized (${v.format}; si: its stored sketch row's int8 scale).
fn stv(i: u32, si: u32) -> f32 {
  return ${stateValue(v.format)};
}
${candidates}
${query}
${decode}
fn rowScale(row: u32) -> f32 {
  return 1.0;
}`,
  };
}

interface SketchLayout {
  rows: number;
  cols: number;
  format: StateFormat;
  family: 'rowrun' | 'mixed';
  states: Uint16Array | Int8Array | Float32Array;
  scales: Uint16Array | null;
  colInfo: Uint32Array;
  groupInfo: Uint32Array;
  fam: Uint32Array;
  /** Several groups, or an exact group. */
  general: boolean;
  /** Query signmean: the column-sign keys [G · 16] (null for absmaxmin). */
  signKeys?: Uint32Array | null;
}

function buildLinear(codec: string, L: SketchLayout, b: KernelBuildContext): GpuLinear {
  const stateBytes = bytesOf(L.states);
  const words = Math.ceil(stateBytes.byteLength / 4);
  const limit = blockByteLimit(b.gpu);
  for (const [what, bytes] of [
    ['states', stateBytes.byteLength],
    ['hash offsets', L.fam.byteLength],
  ] as const) {
    if (bytes + 8 > limit) {
      throw new WebGpuError('limits', `${b.name}: the ${codec} ${what} (${bytes} bytes) exceed the binding limit of ${limit}`, {
        hint: `a ${codec} matrix's states are shared by all its rows and are not split; this matrix is too large for this device`,
      });
    }
  }
  const capacity = residentCapacity(words, b.residentBytes);
  const variant: Omit<SketchVariant, 'capacity'> = {
    format: L.format,
    family: L.family,
    general: L.general,
    ...(L.signKeys ? { signmean: true } : {}),
  };
  const code = sketchCode({ ...variant, capacity });
  // Resident: 64 rows per workgroup share one load of the states.
  const withIterations: WeightCode = capacity > 0 ? { ...code, iterations: b.lanes } : code;
  const buffers = [
    b.gpu.upload(stateBytes, `${b.name}.states`),
    b.gpu.upload(L.scales ?? new Uint16Array(2), `${b.name}.scales`),
    b.gpu.upload(L.colInfo, `${b.name}.colInfo`),
    b.gpu.upload(L.groupInfo, `${b.name}.groupInfo`),
    b.gpu.upload(L.fam.length > 0 ? L.fam : new Uint32Array(1), `${b.name}.fam`),
    ...(L.signKeys ? [b.gpu.upload(L.signKeys, `${b.name}.signKeys`)] : []),
  ];
  return new BlockedLinear(
    codec,
    L.rows,
    L.cols,
    withIterations,
    [{ rows: L.rows, rowBase: 0, words: [words, L.rows, 0, 0], buffers }],
    b,
    sketchCode({ ...variant, capacity: 0 }),
  );
}

/** The GPU layout of a sketch's groups: column table, group table, hash data. */
export function sketchLayout(p: SketchParams): SketchLayout {
  const groups: SketchGroup[] = sketchGroups(p);
  const colInfo = new Uint32Array(p.cols);
  const groupInfo = new Uint32Array(groups.length * GROUP_WORDS);
  const famParts: Uint32Array[] = [];
  let famAt = 0;
  const family = p.options.hash;
  for (const g of groups) {
    g.channels.forEach((j, c) => {
      colInfo[j] = ((g.index << 24) | c) >>> 0;
    });
    const f = g.family;
    let segments = 0;
    let runLength = 0;
    let famBase = 0;
    if (f instanceof RowRunHashFamily) {
      segments = f.segments;
      runLength = f.runLength;
      famBase = famAt;
      famParts.push(new Uint32Array(f.offsets.buffer, f.offsets.byteOffset, f.offsets.length));
      famAt += f.offsets.length;
    } else if (f instanceof MixedHashFamily) {
      famBase = famAt;
      const keys = Uint32Array.from({ length: f.depth }, (_, k) => familyKey(p.seed, g.index, k, 0x6d697864));
      famParts.push(keys);
      famAt += keys.length;
    }
    groupInfo.set(
      [g.stateOffset, g.alloc.width, f ? g.alloc.depth : 0, g.scaleOffset, g.channels.length, segments, runLength, famBase],
      g.index * GROUP_WORDS,
    );
  }
  const fam = new Uint32Array(famAt);
  let at = 0;
  for (const part of famParts) {
    fam.set(part, at);
    at += part.length;
  }
  return {
    rows: p.rows,
    cols: p.cols,
    format: p.options.state,
    family,
    states: p.states,
    scales: p.scales,
    colInfo,
    groupInfo,
    fam,
    general: groups.length > 1 || groups.some((g) => g.family === null),
    signKeys:
      p.options.query === 'signmean'
        ? Uint32Array.from({ length: groups.length * SIGN_KEY_STRIDE }, (_, i) =>
            familyKey(p.seed, Math.floor(i / SIGN_KEY_STRIDE), i % SIGN_KEY_STRIDE, SIGN_SALT),
          )
        : null,
  };
}

export function sketchKernel(p: SketchParams, b: KernelBuildContext): GpuLinear {
  return buildLinear('sketch', sketchLayout(p), b);
}

/** hashednets = one group, one sketch row of the `mixed` family (stream 0), bucket means as states. */
export function hashednetsKernel(p: HashedNetsParams, b: KernelBuildContext): GpuLinear {
  const width = p.states.length;
  const layout: SketchLayout = {
    rows: p.rows,
    cols: p.cols,
    format: p.options.state,
    family: 'mixed',
    states: p.states,
    scales: null,
    colInfo: Uint32Array.from({ length: p.cols }, (_, j) => j),
    groupInfo: Uint32Array.of(0, width, 1, 0, p.cols, 0, 0, 0),
    fam: Uint32Array.of(familyKey(p.seed, 0, 0, 0x6d697864)),
    general: false,
  };
  return buildLinear('hashednets', layout, b);
}
