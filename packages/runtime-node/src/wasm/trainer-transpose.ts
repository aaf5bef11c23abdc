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
import { FunctionBuilder, ModuleBuilder } from './emitter.js';
import type { WasmMemory } from './engine.js';
import { requireWasm } from './engine.js';
import { TRAINER_MODULE_MAX_PAGES } from './trainer-memory.js';

const TILE = 16;

function emitTranspose(): FunctionBuilder {
  const f = new FunctionBuilder(['i32', 'i32', 'i32', 'i32']);
  const [src, dst, rows, cols] = [0, 1, 2, 3];
  const i0 = f.local('i32');
  const j0 = f.local('i32');
  const i = f.local('i32');
  const j = f.local('i32');
  const i1 = f.local('i32');
  const j1 = f.local('i32');
  const s = f.local('i32'); // &src[i, j]
  const d = f.local('i32'); // &dst[j, i]
  const rowBytes = f.local('i32'); // dst row stride: rows · 4
  // while (v <u limit) { body; v += step } as a guarded do-while
  const loop = (v: number, limit: number, step: number, body: () => void) => {
    f.block().get(v).get(limit).i32GeU().brIf(0);
    f.loop();
    body();
    f.get(v).i32Const(step).i32Add().tee(v).get(limit).i32LtU().brIf(0);
    f.end().end();
  };
  // v1 = min(v0 + TILE, limit)
  const tileEnd = (v0: number, limit: number, out: number) => {
    f.get(v0).i32Const(TILE).i32Add().set(out);
    f.block().get(out).get(limit).i32LeU().brIf(0).get(limit).set(out).end();
  };
  f.get(rows).i32Const(2).i32Shl().set(rowBytes);
  f.i32Const(0).set(i0);
  loop(i0, rows, TILE, () => {
    tileEnd(i0, rows, i1);
    f.i32Const(0).set(j0);
    loop(j0, cols, TILE, () => {
      tileEnd(j0, cols, j1);
      f.get(i0).set(i);
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

/** The transpose instantiated over one memory (the trainer gemm's arena). */
export class WasmTranspose {
  readonly transpose: (src: number, dst: number, rows: number, cols: number) => void;

  /** `shared`: `memory` is a shared one (a TrainerMemory's). */
  constructor(memory: WasmMemory, shared = false) {
    const k = shared ? 1 : 0;
    bytes[k] ??= new ModuleBuilder(
      shared
        ? { module: 'env', name: 'memory', minPages: 1, maxPages: TRAINER_MODULE_MAX_PAGES, shared: true }
        : { module: 'env', name: 'memory', minPages: 1 },
    )
      .addFunction('transpose', emitTranspose())
      .emit();
    const wasm = requireWasm();
    const exports = new wasm.Instance(new wasm.Module(bytes[k]!), { env: { memory } }).exports;
    this.transpose = exports.transpose as WasmTranspose['transpose'];
  }
}
