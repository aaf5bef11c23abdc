/**
 * A blocked float32 transpose in WebAssembly, for the trainer gemm's operands whose reduction dimension is
 * not contiguous (∂L/∂Ŵ = dYᵀX transposes both; dX = dY·Ŵ transposes Ŵ; attention's backward transposes its
 * probability blocks). The JavaScript tiled loop it replaces ran at ~1.2 ns an element and was ~6% of a
 * training step (cpu profile, stories3M 4 × 128); here the source is first copied into wasm memory in one
 * memcpy (`Float32Array.set`) and transposed there, where a load and a store cost no bounds checks.
 *
 *     transpose(src, dst, rows, cols):  dst[j·rows + i] = src[i·cols + j]   (byte addresses, [rows, cols] → [cols, rows])
 *
 * Walked in 16 × 16 tiles so that both the rows read and the rows written stay in L1 (16 lines each).
 */
import { type FunctionBuilder, ModuleBuilder, whileLtU } from './emitter.js';
import { ExpBuilder } from './trainer-exp.js';
import type { WasmMemory } from './engine.js';
import { requireWasm } from './engine.js';
import { PRIVATE_MEMORY_IMPORT, TRAINER_MEMORY_IMPORT } from './trainer-memory.js';

const TILE = 16;

const I8X16_SHUFFLE = 0x0d;
// byte lanes of i8x16.shuffle(a, b): a is 0..15, b 16..31
const LO_PAIRS = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23]; // (a0 b0 a1 b1)
const HI_PAIRS = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31]; // (a2 b2 a3 b3)
const LO_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]; // (a0 a1 b0 b1)
const HI_HALVES = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]; // (a2 a3 b2 b3)

/**
 * transpose(src, dst, rows, cols, iBegin, iEnd, jBegin, jEnd): dst[j·rows + i] = src[i·cols + j] for
 * iBegin ≤ i < iEnd, jBegin ≤ j < jEnd, in 16 × 16 tiles. `simd`: 4 × 4 blocks (4 row loads, 8 shuffles, 4
 * stores) — the range's sizes must then be multiples of 4; scalar otherwise (the edges).
 */
function emitTranspose(simd: boolean): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, rows, cols, iBegin, iEnd, jBegin, jEnd] = [0, 1, 2, 3, 4, 5, 6, 7];
  const i0 = f.local('i32');
  const j0 = f.local('i32');
  const i = f.local('i32');
  const j = f.local('i32');
  const i1 = f.local('i32');
  const j1 = f.local('i32');
  const s = f.local('i32'); // &src[i, j]
  const d = f.local('i32'); // &dst[j, i]
  const rowBytes = f.local('i32'); // dst row stride: rows · 4
  const colBytes = f.local('i32'); // src row stride: cols · 4
  const r = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const t = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const shuffle = (a: number, b: number, lanes: number[]) => {
    f.get(a).get(b).simdOp(I8X16_SHUFFLE);
    for (const l of lanes) f.code.push(l);
  };
  const loop = (v: number, limit: number, step: number, body: () => void) => whileLtU(f, v, limit, step, body);
  // v1 = min(v0 + TILE, limit)
  const tileEnd = (v0: number, limit: number, out: number) => {
    f.get(v0).i32Const(TILE).i32Add().set(out);
    f.block().get(out).get(limit).i32LeU().brIf(0).get(limit).set(out).end();
  };
  f.get(rows).i32Const(2).i32Shl().set(rowBytes);
  f.get(cols).i32Const(2).i32Shl().set(colBytes);
  f.get(iBegin).set(i0);
  loop(i0, iEnd, TILE, () => {
    tileEnd(i0, iEnd, i1);
    f.get(jBegin).set(j0);
    loop(j0, jEnd, TILE, () => {
      tileEnd(j0, jEnd, j1);
      f.get(i0).set(i);
      if (simd) {
        loop(i, i1, 4, () => {
          f.get(j0).set(j);
          loop(j, j1, 4, () => {
            // s = src + (i·cols + j)·4; d = dst + (j·rows + i)·4
            f.get(src).get(i).get(cols).i32Mul().get(j).i32Add().i32Const(2).i32Shl().i32Add().set(s);
            f.get(dst).get(j).get(rows).i32Mul().get(i).i32Add().i32Const(2).i32Shl().i32Add().set(d);
            for (let k = 0; k < 4; k++) {
              f.get(s);
              if (k > 0) f.get(colBytes).i32Const(k).i32Mul().i32Add();
              f.v128Load().set(r[k]!);
            }
            shuffle(r[0]!, r[1]!, LO_PAIRS);
            f.set(t[0]!);
            shuffle(r[0]!, r[1]!, HI_PAIRS);
            f.set(t[1]!);
            shuffle(r[2]!, r[3]!, LO_PAIRS);
            f.set(t[2]!);
            shuffle(r[2]!, r[3]!, HI_PAIRS);
            f.set(t[3]!);
            // column k of the block = row k of dst's block
            const out: Array<[number, number, number[]]> = [[t[0]!, t[2]!, LO_HALVES], [t[0]!, t[2]!, HI_HALVES], [t[1]!, t[3]!, LO_HALVES], [t[1]!, t[3]!, HI_HALVES]];
            out.forEach(([a, b, lanes], k) => {
              f.get(d);
              if (k > 0) f.get(rowBytes).i32Const(k).i32Mul().i32Add();
              shuffle(a, b, lanes);
              f.v128Store();
            });
          });
        });
        return;
      }
      loop(i, i1, 1, () => {
        // s = src + (i·cols + j0)·4; d = dst + (j0·rows + i)·4
        f.get(src).get(i).get(cols).i32Mul().get(j0).i32Add().i32Const(2).i32Shl().i32Add().set(s);
        f.get(dst).get(j0).get(rows).i32Mul().get(i).i32Add().i32Const(2).i32Shl().i32Add().set(d);
        f.get(j0).set(j);
        loop(j, j1, 1, () => {
          f.get(d).get(s).f32Load().f32Store();
          f.get(s).i32Const(4).i32Add().set(s);
          f.get(d).get(rowBytes).i32Add().set(d);
        });
      });
    });
  });
  return f;
}

const bytes: (Uint8Array | undefined)[] = [];

type RangeFn = (src: number, dst: number, rows: number, cols: number, iBegin: number, iEnd: number, jBegin: number, jEnd: number) => void;

/** The transpose instantiated over one memory (the trainer gemm's). */
export class WasmTranspose {
  readonly transpose: (src: number, dst: number, rows: number, cols: number) => void;

  /** `shared`: `memory` is a shared one (a TrainerMemory's). */
  constructor(memory: WasmMemory, shared = false) {
    const k = shared ? 1 : 0;
    bytes[k] ??= new ModuleBuilder(shared ? TRAINER_MEMORY_IMPORT : PRIVATE_MEMORY_IMPORT)
      .addFunction('transpose', emitTranspose(false))
      .addFunction('transpose4', emitTranspose(true))
      .emit();
    const wasm = requireWasm();
    const exports = new wasm.Instance(new wasm.Module(bytes[k]!), { env: { memory } }).exports;
    const scalar = exports.transpose as RangeFn;
    const simd = exports.transpose4 as RangeFn;
    // The largest [rows4, cols4] corner in 4 × 4 SIMD blocks, the remaining columns and rows scalar.
    this.transpose = (src, dst, rows, cols) => {
      const r4 = rows & ~3;
      const c4 = cols & ~3;
      if (r4 > 0 && c4 > 0) simd(src, dst, rows, cols, 0, r4, 0, c4);
      if (c4 < cols) scalar(src, dst, rows, cols, 0, rows, c4, cols);
      if (r4 < rows && c4 > 0) scalar(src, dst, rows, cols, r4, rows, 0, c4);
    };
  }
}
