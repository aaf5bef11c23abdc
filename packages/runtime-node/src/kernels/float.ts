import type { FloatParams } from '@ultrasketch/baselines';
import { f16BitsToF32 } from '@ultrasketch/core';
import { DenseLinear, type Linear } from '@ultrasketch/model';
import { RowDecodingLinear } from './rowKernel.js';

/** All 65536 f16 bit patterns as float32: f16 → f32 becomes one table load (256 KiB, shared). */
let f16Table: Float32Array | undefined;
export function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** f16 bit patterns (a codec's scales, offsets, codebook) as float32 values, through the table. */
export function f16ArrayToF32(halves: ArrayLike<number>): Float32Array {
  const t = f16ToF32Table();
  return Float32Array.from(halves, (h) => t[h]!);
}

/** `float` codec, f16 storage: rows decode through the f16 table. */
class F16Linear extends RowDecodingLinear {
  private readonly table = f16ToF32Table();

  constructor(private readonly p: FloatParams & { data: Uint16Array }) {
    super(p.rows, p.cols);
  }

  protected decodeRow(r: number, out: Float32Array): void {
    const { data } = this.p;
    const t = this.table;
    const base = r * this.inFeatures;
    for (let j = 0; j < out.length; j++) out[j] = t[data[base + j]!]!;
  }
}

/** f32 storage is already the dense kernel's input: use it in place (no copy). */
export function floatKernel(p: FloatParams): Linear {
  return p.data instanceof Float32Array
    ? new DenseLinear(p.data, p.rows, p.cols)
    : new F16Linear(p as FloatParams & { data: Uint16Array });
}
