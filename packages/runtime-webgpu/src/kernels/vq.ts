import type { VqParams } from '@ultrasketch/baselines';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { BlockedLinear, type GpuLinear, type KernelBuildContext, type RowBlock, type WeightCode, blockByteLimit, planRowBlocks, sliceBits } from '../linear.js';
import { bitsReader, f16Reader } from '../wgsl.js';

/**
 * `vq` with 4-value sub-vectors (the embedding form of docs/results.md §11.1b; compress --embeddings vqK): the
 * chunk of weights j0..j0+3 of a row is exactly one sub-vector, so decode4 reads its k-bit index from the packed
 * stream (bit c0.x + (row·cols + j0)/4 · k) and returns that codebook entry (4 f16 values). The codebook (at most
 * 256 × 4 halves) is bound whole to every row block. Words: c0 = (bit offset, k). Also serves as the embedding
 * table (gather: no workgroup prologue).
 */
export const VQ4_CODE: WeightCode = {
  key: 'vq4',
  buffers: [{ name: 'codes' }, { name: 'cb' }],
  wgsl: /* wgsl */ `
${bitsReader('codes')}
${f16Reader('cb')}
fn decode4(row: u32, j0: u32) -> vec4<f32> {
  let k = lin.c0.y;
  let e = bits_codes(lin.c0.x + ((row * lin.cols + j0) >> 2u) * k, k) * 4u;
  return vec4<f32>(f16_cb(e), f16_cb(e + 1u), f16_cb(e + 2u), f16_cb(e + 3u));
}
fn rowScale(row: u32) -> f32 {
  return 1.0;
}`,
};

export function vqKernel(p: VqParams, b: KernelBuildContext): GpuLinear {
  const { rows, cols } = p;
  const { dim, bits: k } = p.options;
  if (dim !== 4) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `runtime-webgpu runs vq with 4-value sub-vectors only, this weight has ${dim}`, {
      source: b.name,
      hint: 'store the embedding with compress --embeddings vq6|vq7|vq8 (4-value sub-vectors), or run it on the CPU',
    });
  }
  const cb = b.gpu.upload(p.codebook, `${b.name}.codebook`);
  const plan = planRowBlocks(rows, [((cols / 4) * k) / 8 + 4], blockByteLimit(b.gpu) - p.codebook.byteLength - 8, b.name);
  const blocks: RowBlock[] = plan.map(({ row0, rows: n }, i) => {
    const codes = sliceBits(p.codes, (row0 * cols * k) / 4, (n * cols * k) / 4);
    return { rows: n, rowBase: row0, words: [codes.bitOffset, k], buffers: [b.gpu.upload(codes.data, `${b.name}.codes[${i}]`), cb] };
  });
  return new BlockedLinear('vq', rows, cols, VQ4_CODE, blocks, b);
}
