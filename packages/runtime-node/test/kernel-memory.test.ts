import { binaryCodec, floatCodec, rtnCodec, vqCodec } from '@ultrasketch/baselines';
import { type Codec, type CodecParams, Rng } from '@ultrasketch/core';
import { littlebitCodec } from '@ultrasketch/littlebit';
import { hashedNetsCodec, sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { getKernel, registerAllKernels } from '../src/kernels/index.js';
import { onesVector, storeBytes } from '../src/kernels/wasm-common.js';
import { signTableFunctions } from '../src/kernels/wasm-littlebit.js';
import { WasmArena } from '../src/index.js';

/**
 * Issue 12, done-when 4 at the kernel level: the bytes a kernel holds for its weights are the bytes the bundle
 * holds for that tensor (±10%), for every registered codec's wasm kernel at stories3M's shapes (the 4096×192
 * classifier for the codecs a bundle uses there: float, rtn, binary, vq — vq is an embedding storage only). A
 * whole stories3M bundle is dominated by its 1.5 MB f16 embedding, which hides a per-codec excess (LittleBit
 * layers were held at 1.26–1.84× their stored bytes: f16 scales widened to f32 in the arena, 16-byte padding and
 * alignment per array); this test looks at each tensor alone.
 *
 * Stored bytes = the bytes of the codec's tensors (`toTensors`), which is what `bundleWeightBytes` counts for a
 * bundle (the file's tensor data under each weight's name). Held bytes = `arena.weightBytes` after building the
 * kernel in a fresh shared arena minus before (scratch and lent bytes are not weights). The arena's ones vector
 * (float32 ones the sign-table kernels multiply by) is one per arena, shared by every kernel, so it is allocated
 * before the measurement.
 *
 * Also: nothing the size of the matrix is held in JS — the typed arrays reachable from the kernel object that are
 * not views of the arena's memory (a decoded matrix, or the codec params themselves) are per-row / per-column
 * metadata at most: ≤ 8 bytes per row and column.
 *
 * Measured held / stored (192×192, 64×192, 512×192, 192×512, 4096×192):
 *   float f16 / f32          1.000–1.001        rtn 2 / 4 / 8 bit   1.000–1.021
 *   binary                   1.000 (was 1.03–1.10: f32 scales)
 *   littlebit 0.55           1.052 1.086 1.049 1.019 (was 1.42 1.84 1.29 1.26)
 *   littlebit 1.0 residual   1.023 1.013 1.043 1.017 (was 1.43 1.84 1.30 1.28)
 *     (what is left: U's sign rows re-packed to whole bytes when the rank is not a multiple of 8)
 *   vq 6 / 8 bit (4096×192)  1.004 / 1.010 (the codebook held transposed as float32: +0.5 / +2 KB)
 * NOT within 10% (KNOWN below; issue 12 done-when 4 is not met for these codecs at stories3M's shapes): the sketch
 * and hashednets kernels hold tables DERIVED from the seed that the bundle does not store —
 *   sketch CLI default (signmean int8 g8)  2.44 3.20 2.30 1.62: per group a Uint16 run offset per row (8 groups ×
 *     rows × 2 B = 3 KB at 192 rows, vs 2.5 KB of states at 0.55 bpw) and a 2-byte gather entry per column;
 *   sketch AbsMaxMin rowrun                2.55 4.74 2.15 1.96: Int32 run offsets (rows × d = 3), an Int32 gather
 *     and a float32 factor per column;
 *   hashednets                             1.52 2.22 1.30 1.40: a Uint32 row key per row, the gather and factor
 *     per column.
 *   Computing those hashes per call in wasm instead would bring them to their stored bytes; until then the test
 *   bounds them at their measured ratios (+5%), so they cannot grow unnoticed.
 */
registerAllKernels();

interface Case {
  label: string;
  codec: Codec<any, any>;
  raw: Record<string, unknown>;
  shapes: Array<[number, number]>;
  /** Known excess: the largest held / stored allowed per shape (in `shapes` order), with the reason above. */
  known?: number[];
}

const LINEARS: Array<[number, number]> = [
  [192, 192],
  [64, 192],
  [512, 192],
  [192, 512],
];
const WITH_CLASSIFIER: Array<[number, number]> = [...LINEARS, [4096, 192]];
/** The CLI's default sketch (docs/cli.md: signmean, one sketch row, int8 states, 8 saliency groups, rowrun). */
const CLI_SKETCH = { query: 'signmean', rows: 1, state: 'int8', groups: 8, alloc: 'saliency', hash: 'rowrun' };
const known = (...ratios: number[]) => ratios.map((r) => Math.round(r * 1.05 * 100) / 100);

const CASES: Case[] = [
  { label: 'float f16', codec: floatCodec, raw: { dtype: 'f16' }, shapes: WITH_CLASSIFIER },
  { label: 'float f32', codec: floatCodec, raw: { dtype: 'f32' }, shapes: WITH_CLASSIFIER },
  { label: 'rtn 2 bit', codec: rtnCodec, raw: { bits: 2 }, shapes: WITH_CLASSIFIER },
  { label: 'rtn 4 bit', codec: rtnCodec, raw: { bits: 4 }, shapes: WITH_CLASSIFIER },
  { label: 'rtn 8 bit', codec: rtnCodec, raw: { bits: 8 }, shapes: WITH_CLASSIFIER },
  { label: 'binary', codec: binaryCodec, raw: {}, shapes: WITH_CLASSIFIER },
  { label: 'littlebit 0.55 bpw', codec: littlebitCodec, raw: { bpw: 0.55, residual: false }, shapes: LINEARS },
  { label: 'littlebit 1.0 bpw residual', codec: littlebitCodec, raw: { bpw: 1.0, residual: true }, shapes: LINEARS },
  // the embedding storages vq6 and vq8 (pipeline defaults: 4-value sub-vectors)
  { label: 'vq 6 bit', codec: vqCodec, raw: { dim: 4, bits: 6, iterations: 1 }, shapes: [[4096, 192]] },
  { label: 'vq 8 bit', codec: vqCodec, raw: { dim: 4, bits: 8, iterations: 1 }, shapes: [[4096, 192]] },
  {
    label: 'sketch CLI default (signmean int8 g8), KNOWN excess',
    codec: sketchCodec,
    raw: { bpw: 0.55, ...CLI_SKETCH },
    shapes: LINEARS,
    known: known(2.44, 3.2, 2.3, 1.62),
  },
  {
    label: 'sketch AbsMaxMin rowrun, KNOWN excess',
    codec: sketchCodec,
    raw: { bpw: 0.55, query: 'absmaxmin', hash: 'rowrun' },
    shapes: LINEARS,
    known: known(2.55, 4.74, 2.15, 1.96),
  },
  { label: 'hashednets, KNOWN excess', codec: hashedNetsCodec, raw: { bpw: 1 }, shapes: LINEARS, known: known(1.52, 2.22, 1.3, 1.4) },
];

/** The bytes a bundle stores for these params: its codec's tensors (what bundleWeightBytes counts). */
function storedBytes(codec: Codec<any, any>, params: CodecParams): number {
  return Object.values(codec.toTensors(params)).reduce((s, t) => s + t.data.byteLength, 0);
}

/** Bytes of the typed arrays reachable from `root` through object properties that do NOT view `memory`. */
function jsTypedBytes(root: object, arena: WasmArena): number {
  const seen = new Set<unknown>([arena]); // the arena's own views and bookkeeping are not the kernel's
  const buffers = new Set<ArrayBufferLike>();
  let bytes = 0;
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      if (v.buffer !== arena.memory.buffer && !buffers.has(v.buffer)) {
        buffers.add(v.buffer);
        bytes += v.buffer.byteLength;
      }
      return;
    }
    if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer)) {
      if (v !== arena.memory.buffer && !buffers.has(v)) {
        buffers.add(v);
        bytes += v.byteLength;
      }
      return;
    }
    if (v instanceof Map) for (const [k, x] of v) (walk(k), walk(x));
    else if (v instanceof Set) for (const x of v) walk(x);
    else for (const key of Object.keys(v)) walk((v as Record<string, unknown>)[key]);
  };
  walk(root);
  return bytes;
}

interface Measure {
  stored: number;
  held: number;
  js: number;
}

function measure(c: Case, rows: number, cols: number): Measure {
  const rng = new Rng(rows * 7919 + cols); // per shape: a case's numbers do not depend on which cases ran before
  const w = rng.normalArray(rows * cols);
  const saliency = Float64Array.from({ length: cols }, () => rng.next() * 4);
  const params = c.codec.encode(w, rows, cols, c.codec.resolveOptions(c.raw), { name: 't', seed: 1, saliency });
  const arena = new WasmArena({ shared: true });
  onesVector(arena, 1024); // one per arena, shared by every sign-table kernel (not a tensor's)
  const before = arena.weightBytes;
  const kernel = getKernel(c.codec.id)(params, { arena });
  const held = arena.weightBytes - before;
  return { stored: storedBytes(c.codec, params), held, js: jsTypedBytes(kernel, arena) };
}

describe('kernel memory: the bytes held for weights are the stored bytes (±10%)', () => {
  it.each(CASES.map((c) => [c.label, c] as const))('%s', (_, c) => {
    c.shapes.forEach(([rows, cols], i) => {
      const m = measure(c, rows, cols);
      const what = `${c.label} ${rows}×${cols}: held ${m.held} B for ${m.stored} B stored`;
      // KERNEL_MEMORY_REPORT=1 prints every case's ratio (the table above)
      if (process.env.KERNEL_MEMORY_REPORT) console.log(`${what}: ${(m.held / m.stored).toFixed(3)}, ${m.js} B in JS`);
      expect(m.held / m.stored, what).toBeGreaterThanOrEqual(0.9);
      expect(m.held / m.stored, what).toBeLessThanOrEqual(c.known?.[i] ?? 1.1);
      expect(m.js, `${c.label} ${rows}×${cols}: typed arrays held in JS`).toBeLessThanOrEqual(8 * (rows + cols));
    });
  });
});

describe('the scales widened per call', () => {
  it('f16tof32_finite (the sign-table kernels\' widening of finite scales) gives f16tof32\'s bits for every finite half', () => {
    const arena = new WasmArena({ shared: true });
    const fn = signTableFunctions(arena);
    const finite = Uint16Array.from({ length: 65536 }, (_, h) => h).filter((h) => (h & 0x7c00) !== 0x7c00);
    const src = storeBytes(arena, finite, 32);
    const a = arena.scratch(8 * finite.length + 64);
    const b = a + 4 * finite.length + 32;
    fn.f16tof32!(src, a, finite.length);
    fn.f16tof32_finite!(src, b, finite.length);
    const bits = (at: number) => Buffer.from(arena.memory.buffer.slice(at, at + 4 * finite.length));
    expect(bits(b).equals(bits(a))).toBe(true);
    // and they are the numbers the halves stand for (spot checks: ±0, the smallest subnormal, 1, the largest)
    const f32 = new Float32Array(arena.memory.buffer, b, finite.length);
    const at = (h: number) => f32[finite.indexOf(h)];
    expect([at(0x0000), at(0x8000), at(0x0001), at(0x3c00), at(0x7bff)]).toEqual([0, -0, 2 ** -24, 1, 65504]);
  });
});
