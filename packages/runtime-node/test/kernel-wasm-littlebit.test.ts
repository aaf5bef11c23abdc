import { readFileSync } from 'node:fs';
import { Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type LittleBitParams, littlebitCodec } from '@ultrasketch/littlebit';
import { LINEAR_KINDS, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { type LittleBitTiling, emitLittleBitModule, wasmLittlebitKernel } from '../src/kernels/wasm-littlebit.js';
import { worstKernelError } from './oracle.js';

/**
 * The WebAssembly LittleBit kernel against the oracle (decode() to dense, float64 product): 1e-5 relative to
 * Σ_j |ŵ_ij x_j|. Both table kinds on both stages (the tiling thresholds are forced both ways), n = 1
 * (single-vector tables, float64 sums) and n = 2..9 (four-vector tables: blocks of 4 and a remainder).
 */
function worstRelativeError(params: LittleBitParams, x: Float32Array, n: number, tiling?: LittleBitTiling): number {
  const k = wasmLittlebitKernel(params, tiling ? { tiling } : {});
  expect(k.constructor.name).toBe('WasmLittleBitLinear');
  return worstKernelError(littlebitCodec.decode(params), params.rows, params.cols, k, x, n);
}

const encode = (w: Float32Array, rows: number, cols: number, raw: Record<string, unknown>, seed = 1) =>
  littlebitCodec.encode(w, rows, cols, littlebitCodec.resolveOptions(raw), { name: 't', seed });

const BYTES: LittleBitTiling = { byteMinRows1: 1, byteMinRows4: 1, maxTableBytes: 1 << 30 };
const NIBBLES: LittleBitTiling = { byteMinRows1: 1 << 30, byteMinRows4: 1 << 30, maxTableBytes: 1 << 30 };

describe('wasm littlebit kernel equals decode-then-dense', () => {
  it('the module validates', () => {
    expect(WebAssembly.validate(emitLittleBitModule())).toBe(true);
  });

  const SHAPES: Array<[number, number]> = [
    [1, 1],
    [1, 53],
    [41, 1],
    [13, 7],
    [7, 24],
    [33, 130],
    [300, 40],
    [40, 260],
  ];
  it.each(SHAPES)('random %i×%i, ranks 1..min (≤ 9, plus full), residual on/off, byte and nibble tables, n = 1, 2, 5, 9', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    const full = Math.min(rows, cols);
    const ranks = [...new Set([...Array.from({ length: Math.min(full, 9) }, (_, i) => i + 1), full])];
    for (const rank of ranks) {
      for (const residual of [false, true]) {
        const params = encode(w, rows, cols, { rank, residual });
        for (const tiling of [BYTES, NIBBLES, undefined]) {
          for (const n of [1, 2, 5, 9]) {
            const err = worstRelativeError(params, rng.normalArray(n * cols), n, tiling);
            expect(err, `rank ${rank} residual ${residual} n ${n} ${JSON.stringify(tiling)}`).toBeLessThanOrEqual(1e-5);
          }
        }
      }
    }
  });

  it('larger: 260×240 at ranks 225 and 232, 520×264 at rank 264', () => {
    const rng = new Rng(5);
    for (const [rows, cols, rank] of [
      [260, 240, 225],
      [260, 240, 232],
      [520, 264, 264],
    ] as Array<[number, number, number]>) {
      const params = encode(rng.normalArray(rows * cols), rows, cols, { rank, residual: true });
      for (const tiling of [BYTES, NIBBLES]) {
        for (const n of [1, 4]) expect(worstRelativeError(params, rng.normalArray(n * cols), n, tiling)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('zero input gives zero output; a zero matrix gives zero output', () => {
    const rng = new Rng(2);
    const p = encode(rng.normalArray(9 * 11), 9, 11, { rank: 3 });
    const y = new Float32Array(9).fill(7);
    wasmLittlebitKernel(p).apply(new Float32Array(11), y, 1);
    expect([...y]).toEqual(new Array(9).fill(0));
    const z = encode(new Float32Array(6 * 5), 6, 5, { rank: 2 });
    wasmLittlebitKernel(z).apply(rng.normalArray(5), y, 1);
    expect([...y.subarray(0, 6)]).toEqual(new Array(6).fill(0));
  });

  it('every linear of stories3M layers 0, 2, 4 at 0.55 bpw (1 path), 1.0 bpw (2 paths), 1.2 bpw multiple8, n = 1 and 4', () => {
    const ckpt = readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url)));
    const model = modelFromLlama2c(ckpt);
    const rng = new Rng(3);
    const settings: Array<Record<string, unknown>> = [
      { bpw: 0.55, residual: false },
      { bpw: 1.0, residual: true },
      { bpw: 1.2, residual: true, rankRounding: 'multiple8' },
    ];
    for (let l = 0; l < model.config.nLayers; l += 2) {
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(l, kind);
        for (const raw of settings) {
          const params = encode(model.tensors.get(name)!.data, rows, cols, raw);
          for (const n of [1, 4]) {
            expect(worstRelativeError(params, rng.normalArray(n * cols), n), `${name} ${JSON.stringify(raw)}`).toBeLessThanOrEqual(1e-5);
          }
        }
      }
    }
  });
});
