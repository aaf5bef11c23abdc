import { type BinaryParams, type FloatParams, type RtnParams, rtnGroupLength, rtnGroupsPerRow } from '@ultrasketch/baselines';
import {
  BlockedLinear,
  type GpuLinear,
  type KernelBuildContext,
  type RowBlock,
  type WeightCode,
  blockByteLimit,
  bytesOf,
  planRowBlocks,
  sliceBits,
  sliceHalves,
} from '../linear.js';
import { bitsReader, f16Reader } from '../wgsl.js';

/**
 * Kernels of the `float` (f32, f16), `rtn` and `binary` codecs, each reading the codec's stored tensors as
 * they are in the bundle (f16 as pairs of halves in 32-bit words, packed codes and signs as the bitstream,
 * LSB-first), split into row blocks only when a tensor is larger than the binding limit.
 */

const ROW_SCALE_ONE = /* wgsl */ `
fn rowScale(row: u32) -> f32 {
  return 1.0;
}`;

// ------------------------------------------------------------------------------------------------- float f32

/** f32 weights, read four at a time; the dense baseline every codec is compared against. */
export const F32_CODE: WeightCode = {
  key: 'float-f32',
  buffers: [{ name: 'wt', type: 'f32' }],
  wgsl: /* wgsl */ `
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let b = row * lin.cols + j0;
  return vec4<f32>(wt[b], wt[b + 1u], wt[b + 2u], wt[b + 3u]);
}
${ROW_SCALE_ONE}`,
};

/** f32 weights whose rows start on 16-byte boundaries (cols % 4 == 0): one vec4 load per chunk. */
export const F32_VEC4_CODE: WeightCode = {
  key: 'float-f32-v4',
  buffers: [{ name: 'wt', type: 'vec4<f32>' }],
  wgsl: /* wgsl */ `
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  return wt[(row * lin.cols + j0) / 4u];
}
${ROW_SCALE_ONE}`,
};

/** f16 weights: element i of the block is half (c0.x + i) of the buffer (rows may start at an odd half). */
export const F16_CODE: WeightCode = {
  key: 'float-f16',
  buffers: [{ name: 'wh' }],
  wgsl: /* wgsl */ `
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let i = lin.c0.x + row * lin.cols + j0;
  let w = i >> 1u;
  let a = wh[w];
  let b = wh[w + 1u];
  // even i: halves (a.lo, a.hi, b.lo, b.hi); odd i: (a.hi, b.lo, b.hi, c.lo) — chosen without a branch
  let h = select(vec4<u32>(a, a >> 16u, b, b >> 16u), vec4<u32>(a >> 16u, b, b >> 16u, wh[w + 2u]), (i & 1u) == 1u);
  return vec4<f32>(unpack2x16float(h.x).x, unpack2x16float(h.y).x, unpack2x16float(h.z).x, unpack2x16float(h.w).x);
}
${ROW_SCALE_ONE}`,
};

export function floatKernel(p: FloatParams, b: KernelBuildContext): GpuLinear {
  const { rows, cols } = p;
  const limit = blockByteLimit(b.gpu);
  if (p.data instanceof Float32Array) {
    const data = p.data;
    const blocks: RowBlock[] = planRowBlocks(rows, [cols * 4], limit, b.name).map(({ row0, rows: n }, i) => ({
      rows: n,
      rowBase: row0,
      words: [],
      buffers: [b.gpu.upload(data.subarray(row0 * cols, (row0 + n) * cols), `${b.name}.weight[${i}]`)],
    }));
    return new BlockedLinear('float', rows, cols, cols % 4 === 0 ? F32_VEC4_CODE : F32_CODE, blocks, b);
  }
  const data = p.data;
  const blocks: RowBlock[] = planRowBlocks(rows, [cols * 2], limit, b.name).map(({ row0, rows: n }, i) => {
    const s = sliceHalves(data, row0 * cols, n * cols);
    return { rows: n, rowBase: row0, words: [s.offset], buffers: [b.gpu.upload(s.data, `${b.name}.weight[${i}]`)] };
  });
  return new BlockedLinear('float', rows, cols, F16_CODE, blocks, b);
}

// ------------------------------------------------------------------------------------------------------ rtn

/**
 * rtn: weight j of row r is offset_g + code · scale_g, g = j / G; the four k-bit codes of a chunk are read
 * with one funnel shift at bit c0.x + (r·cols + j0)·k of the packed stream (any k, any alignment); scales and
 * offsets are f16 at half c1.x + r·gpr + g. When G is a multiple of 4 a chunk lies in one group (variant
 * `rtn-g4`: one scale and offset per chunk). Words: c0 = (bit offset, k, G, groups per row), c1.x = half offset.
 */
export function rtnCode(groupMultipleOf4: boolean): WeightCode {
  const perChunk = /* wgsl */ `
  let g = lin.c1.x + row * gpr + j0 / G;
  let o = f16_offsets(g);
  let sc = f16_scales(g);
  return vec4<f32>(o) + vec4<f32>(q) * sc;`;
  const perWeight = /* wgsl */ `
  let g = vec4<u32>(lin.c1.x + row * gpr) + min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(lin.cols - 1u)) / vec4<u32>(G);
  let o = vec4<f32>(f16_offsets(g.x), f16_offsets(g.y), f16_offsets(g.z), f16_offsets(g.w));
  let sc = vec4<f32>(f16_scales(g.x), f16_scales(g.y), f16_scales(g.z), f16_scales(g.w));
  return o + q * sc;`;
  return {
    key: groupMultipleOf4 ? 'rtn-g4' : 'rtn',
    buffers: [{ name: 'codes' }, { name: 'scales' }, { name: 'offsets' }],
    wgsl: /* wgsl */ `
${bitsReader('codes')}
${f16Reader('scales')}
${f16Reader('offsets')}
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let k = lin.c0.y;
  let G = lin.c0.z;
  let gpr = lin.c0.w;
  let v = bits_codes(lin.c0.x + (row * lin.cols + j0) * k, 4u * k);
  let m = (1u << k) - 1u;
  let q = vec4<f32>(f32(v & m), f32((v >> k) & m), f32((v >> (2u * k)) & m), f32((v >> (3u * k)) & m));
${groupMultipleOf4 ? perChunk : perWeight}
}
${ROW_SCALE_ONE}`,
  };
}

export function rtnKernel(p: RtnParams, b: KernelBuildContext): GpuLinear {
  const { rows, cols } = p;
  const k = p.options.bits;
  const G = rtnGroupLength(p.options, cols);
  const gpr = rtnGroupsPerRow(p.options, cols);
  const plan = planRowBlocks(rows, [(cols * k) / 8 + 4, gpr * 2, gpr * 2], blockByteLimit(b.gpu), b.name);
  const blocks: RowBlock[] = plan.map(({ row0, rows: n }, i) => {
    const codes = sliceBits(p.codes, row0 * cols * k, n * cols * k);
    const scales = sliceHalves(p.scales, row0 * gpr, n * gpr);
    const offsets = sliceHalves(p.offsets, row0 * gpr, n * gpr);
    return {
      rows: n,
      rowBase: row0,
      words: [codes.bitOffset, k, G, gpr, scales.offset],
      buffers: [
        b.gpu.upload(codes.data, `${b.name}.codes[${i}]`),
        b.gpu.upload(scales.data, `${b.name}.scales[${i}]`),
        b.gpu.upload(offsets.data, `${b.name}.offsets[${i}]`),
      ],
    };
  });
  return new BlockedLinear('rtn', rows, cols, rtnCode(G % 4 === 0), blocks, b);
}

// ------------------------------------------------------------------------------------------- binary / signs

/**
 * ±1 matrices from packed sign bits (bit 1 = −1, LSB-first, rows at any bit position): weight (r, j) =
 * ±1 [· colScale_j], and the dot product is multiplied by rowScale_r. Eight signs per decode, read with one
 * funnel shift. `binary` uses it with its f16 row scales; LittleBit's two stages use it with (g, ℓ) and h.
 * Words: c0 = (bit offset, half offset of row scales, half offset of column scales).
 */
export function signsCode(columnScales: boolean): WeightCode {
  return {
    key: columnScales ? 'signs-colscale' : 'signs',
    buffers: [{ name: 'sg' }, { name: 'rs' }, ...(columnScales ? [{ name: 'cs' }] : [])],
    wgsl: /* wgsl */ `
${bitsReader('sg')}
${f16Reader('rs')}
${columnScales ? f16Reader('cs') : ''}
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let v = vec4<u32>(bits_sg(lin.c0.x + row * lin.cols + j0, 4u)) >> vec4<u32>(0u, 1u, 2u, 3u);
  let s = select(vec4<f32>(1.0), vec4<f32>(-1.0), (v & vec4<u32>(1u)) != vec4<u32>(0u));
  ${
    columnScales
      ? `let c = lin.c0.z + j0;
  let last = lin.c0.z + lin.cols - 1u;
  return s * vec4<f32>(f16_cs(c), f16_cs(min(c + 1u, last)), f16_cs(min(c + 2u, last)), f16_cs(min(c + 3u, last)));`
      : 'return s;'
  }
}
fn rowScale(row: u32) -> f32 {
  return f16_rs(lin.c0.y + row);
}`,
  };
}

export interface SignMatrix {
  /** The packed stream (bytes, LSB-first) of rows × cols signs, row-major from bit 0. */
  bits: Uint8Array;
  rows: number;
  cols: number;
  /** f16 row scales [rows]. */
  rowScales: Uint16Array;
  /** f16 column scales [cols], or null. */
  colScales: Uint16Array | null;
}

/** Row blocks of a sign matrix (bits and row scales split; column scales whole in every block). */
export function signBlocks(m: SignMatrix, b: KernelBuildContext, label: string): RowBlock[] {
  const limit = blockByteLimit(b.gpu);
  const plan = planRowBlocks(m.rows, [m.cols / 8 + 4, 2], limit - (m.colScales ? m.colScales.byteLength + 8 : 0), label);
  const cs = m.colScales ? b.gpu.upload(m.colScales, `${label}.colScales`) : null;
  return plan.map(({ row0, rows: n }, i) => {
    const bits = sliceBits(m.bits, row0 * m.cols, n * m.cols);
    const rs = sliceHalves(m.rowScales, row0, n);
    return {
      rows: n,
      rowBase: row0,
      words: [bits.bitOffset, rs.offset, 0],
      buffers: [b.gpu.upload(bits.data, `${label}.signs[${i}]`), b.gpu.upload(rs.data, `${label}.rowScales[${i}]`), ...(cs ? [cs] : [])],
    };
  });
}

export function binaryKernel(p: BinaryParams, b: KernelBuildContext): GpuLinear {
  const m: SignMatrix = { bits: p.signs, rows: p.rows, cols: p.cols, rowScales: p.scales, colScales: null };
  return new BlockedLinear('binary', p.rows, p.cols, signsCode(false), signBlocks(m, b, b.name), b);
}

