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

const FORMAT_CODE: Record<StateFormat, number> = { f16: 0, int8: 1, f32: 2 };
const FAMILY_CODE = { rowrun: 0, mixed: 1 } as const;

/**
 * The sketch decode. State format and hash family are uniforms (c0.z: 0 f16 / 1 int8 / 2 f32; c0.w: 0 rowrun /
 * 1 mixed) — uniform branches, one pipeline for every sketch — and c0 = (state words, family rows (the matrix's
 * rows), format, family). `capacity` > 0 compiles the resident variant with a workgroup array of that many words.
 */
export function sketchCode(capacity: number): WeightCode {
  const resident = capacity > 0;
  return {
    key: `sketch${resident ? `-res${capacity}` : ''}`,
    buffers: [{ name: 'states' }, { name: 'scales' }, { name: 'colInfo' }, { name: 'groupInfo' }, { name: 'fam' }],
    ...(resident ? { prologue: true } : {}),
    wgsl: /* wgsl */ `
${resident ? `var<workgroup> sh: array<u32, ${capacity}>;` : ''}
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
${f16Reader('scales')}
// State i dequantized (si: its stored sketch row's int8 scale).
fn stv(i: u32, si: u32) -> f32 {
  if (lin.c0.z == 0u) {
    return unpack2x16float(stWord(i >> 1u) >> ((i & 1u) << 4u)).x;
  }
  if (lin.c0.z == 1u) {
    let b = (stWord(i >> 2u) >> ((i & 3u) << 3u)) & 0xffu;
    return f32(bitcast<i32>(b << 24u) >> 24u) * f16_scales(si);
  }
  return bitcast<f32>(stWord(i));
}
fn fmix32(h0: u32) -> u32 {
  var h = h0;
  h = h ^ (h >> 16u);
  h = h * 0x85ebca6bu;
  h = h ^ (h >> 13u);
  h = h * 0xc2b2ae35u;
  return h ^ (h >> 16u);
}
// floor(a * b / 2^32): the codec's multiply-shift range reduction, in 16-bit halves.
fn mulhi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = ((a0 * b0) >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}
// Index of weight (r, c) of group gb in sketch row k: rowrun (a stored run offset + position in the run,
// cyclic) or mixed (hash of (key_k, r, c)).
fn candidate(gb: u32, k: u32, r: u32, c: u32, width: u32) -> u32 {
  if (lin.c0.w == 0u) {
    let segs = groupInfo[gb + 5u];
    let L = groupInfo[gb + 6u];
    let s = c / L;
    let x = fam[groupInfo[gb + 7u] + (k * lin.c0.y + r) * segs + s] + c - s * L;
    return select(x, x - width, x >= width);
  }
  let rk = fmix32(fam[groupInfo[gb + 7u] + k] ^ (r * 0xcc9e2d51u));
  return mulhi(fmix32(rk ^ (c * 0x1b873593u)), width);
}
// The AbsMaxMin query of weight (r, j): the largest-magnitude candidate over the group's sketch rows
// (strict >: ties keep the lowest k); an exact group stores the weight itself.
fn weightAt(r: u32, j: u32) -> f32 {
  let ci = colInfo[min(j, lin.cols - 1u)];
  let gb = (ci >> 24u) * ${GROUP_WORDS}u;
  let c = ci & 0xffffffu;
  let so = groupInfo[gb];
  let width = groupInfo[gb + 1u];
  let depth = groupInfo[gb + 2u];
  let sc = groupInfo[gb + 3u];
  if (depth == 0u) {
    return stv(so + r * groupInfo[gb + 4u] + c, sc);
  }
  var best = 0.0;
  var bestAbs = -1.0;
  for (var k = 0u; k < depth; k++) {
    let v = stv(so + k * width + candidate(gb, k, r, c, width), sc + k);
    if (abs(v) > bestAbs) {
      best = v;
      bestAbs = abs(v);
    }
  }
  return best;
}
// Four consecutive columns. Fast path (the common case: the four are consecutive channels of one group — always
// so with one group — and, for rowrun, in one run): the group's parameters are read once, and per sketch row
// one candidate index is computed and the other three follow it (+1 each, cyclic). Otherwise weight by weight.
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let ci0 = colInfo[j0];
  let ci3 = colInfo[min(j0 + 3u, lin.cols - 1u)];
  if (j0 + 3u >= lin.cols || (ci3 >> 24u) != (ci0 >> 24u) || (ci3 & 0xffffffu) != (ci0 & 0xffffffu) + 3u) {
    var w: vec4<f32>;
    for (var e = 0u; e < 4u; e++) {
      w[e] = weightAt(row, j0 + e);
    }
    return w;
  }
  let gb = (ci0 >> 24u) * ${GROUP_WORDS}u;
  let c = ci0 & 0xffffffu;
  let so = groupInfo[gb];
  let width = groupInfo[gb + 1u];
  let depth = groupInfo[gb + 2u];
  let sc = groupInfo[gb + 3u];
  if (depth == 0u) {
    let b = so + row * groupInfo[gb + 4u] + c;
    var w: vec4<f32>;
    for (var e = 0u; e < 4u; e++) {
      w[e] = stv(b + e, sc);
    }
    return w;
  }
  let L = groupInfo[gb + 6u];
  let oneRun = lin.c0.w == 0u && c / L == (c + 3u) / L;
  var best = vec4<f32>(0.0);
  var bestAbs = vec4<f32>(-1.0);
  for (var k = 0u; k < depth; k++) {
    let base = so + k * width;
    var idx: vec4<u32>;
    if (oneRun) {
      let i0 = candidate(gb, k, row, c, width);
      let i = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
      idx = select(i, i - vec4<u32>(width), i >= vec4<u32>(width));
    } else {
      for (var e = 0u; e < 4u; e++) {
        idx[e] = candidate(gb, k, row, c + e, width);
      }
    }
    var v: vec4<f32>;
    for (var e = 0u; e < 4u; e++) {
      v[e] = stv(base + idx[e], sc + k);
    }
    let take = abs(v) > bestAbs;
    best = select(best, v, take);
    bestAbs = select(bestAbs, abs(v), take);
  }
  return best;
}
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
  const code = sketchCode(capacity);
  // Resident: 64 rows per workgroup share one load of the states.
  const withIterations: WeightCode = capacity > 0 ? { ...code, iterations: b.lanes } : code;
  const buffers = [
    b.gpu.upload(stateBytes, `${b.name}.states`),
    b.gpu.upload(L.scales ?? new Uint16Array(2), `${b.name}.scales`),
    b.gpu.upload(L.colInfo, `${b.name}.colInfo`),
    b.gpu.upload(L.groupInfo, `${b.name}.groupInfo`),
    b.gpu.upload(L.fam.length > 0 ? L.fam : new Uint32Array(1), `${b.name}.fam`),
  ];
  return new BlockedLinear(
    codec,
    L.rows,
    L.cols,
    withIterations,
    [{ rows: L.rows, rowBase: 0, words: [words, L.rows, FORMAT_CODE[L.format], FAMILY_CODE[L.family]], buffers }],
    b,
    sketchCode(0),
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
  };
  return buildLinear('hashednets', layout, b);
}
