import { readFileSync } from 'node:fs';
import { Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { LINEAR_KINDS, type Linear, LlamaForward, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { hashedNetsCodec, sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SKETCH_TILING, RAW_SKETCH_TILING, type SketchTiling, wasmHashednetsKernel, wasmSketchKernel } from '../src/kernels/wasm-sketch.js';
import { NodeSession, WasmArena, wasmForwardParts } from '../src/index.js';
import { applyBothWays, checkPool, checkProgram, checkUndefined, expectProgramMatchesForward, hexBits } from './decode-fixtures.js';

/**
 * Issue 12, decode programs: the sketch kernel (AbsMaxMin over f16 keys, the signmean raw run groups, HashedNets)
 * describes its one-token call (`decodeCalls`) with the code that runs it, so a compiled program (and
 * runDecodePlan) gives `apply(x, y, 1)`'s bits. Per layout — the CLI's default signmean sketch (d 1, int8 states
 * widened per call, 8 saliency groups: the gather16 and its padding), signmean d = 3, f16 rings and exact groups,
 * AbsMaxMin rowrun (identity layout read in place, saliency groups through the gather) and mixed hashing with d > 1,
 * HashedNets in its own layout and padded (cols % 4 ≠ 0: x copied and padded by copy_bytes / zero_bytes calls) —
 * and tiling, with x and y views of a shared arena; undefined where the one-token call would do JS work (x or y
 * staged: plain arrays, y overlapping x); with a thread pool on the arena, the same one-thread calls. Then sessions over stories260K with these
 * kernels in the forward: the program's logits against the forward's own, bit for bit.
 */
const rng = new Rng(1213);
const laplace = (n: number) =>
  Float32Array.from({ length: n }, () => {
    const u = rng.next() - 0.5;
    return -0.05 * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });
const saliencyOf = (cols: number) => Float64Array.from({ length: cols }, (_, j) => (j % 7 === 0 ? 40 : 1 + rng.next()));

/** The CLI's default sketch (docs/cli.md: signmean, one sketch row, int8 states, 8 saliency groups, rowrun). */
const CLI_DEFAULT = { query: 'signmean', rows: 1, state: 'int8', groups: 8, alloc: 'saliency', hash: 'rowrun' };
const ONE_TOKEN: SketchTiling = { rows: () => 1, unroll: () => 1, tokens: 1 };

interface Case {
  label: string;
  rows: number;
  cols: number;
  build: (arena: WasmArena) => Linear;
  /** The one-token call reads x where it is in the kernels' layout (no copy_bytes / gather / padding calls). */
  direct?: boolean;
}

function sketch(label: string, rows: number, cols: number, raw: Record<string, unknown>, tiling?: SketchTiling, direct = false): Case {
  const p = sketchCodec.encode(laplace(rows * cols), rows, cols, sketchCodec.resolveOptions(raw), { name: 't', seed: 3, saliency: saliencyOf(cols) });
  return { label, rows, cols, build: (arena) => wasmSketchKernel(p, tiling ? { arena, tiling } : { arena }), direct };
}

function hashednets(rows: number, cols: number): Case {
  const p = hashedNetsCodec.encode(laplace(rows * cols), rows, cols, hashedNetsCodec.resolveOptions({ bpw: 1 }), { name: 't', seed: 3 });
  // one group in column order: x is the kernels' layout as it is when cols % 4 = 0; else copied and padded
  return { label: `hashednets ${rows}×${cols}`, rows, cols, build: (arena) => wasmHashednetsKernel(p, { arena }), direct: cols % 4 === 0 };
}

const CASES: Case[] = [
  sketch('signmean CLI default 64×172 (padding columns)', 64, 172, { bpw: 0.5, ...CLI_DEFAULT }),
  sketch('signmean CLI default 172×64', 172, 64, { bpw: 0.5, ...CLI_DEFAULT }),
  sketch('signmean CLI default 45×130, 1-token tiling', 45, 130, { bpw: 1, ...CLI_DEFAULT }, ONE_TOKEN),
  sketch('signmean CLI default 45×130, AbsMaxMin tiling', 45, 130, { bpw: 1, ...CLI_DEFAULT }, DEFAULT_SKETCH_TILING),
  sketch('signmean d = 3, int8', 30, 77, { bpw: 1, rows: 3, state: 'int8', query: 'signmean' }),
  sketch('signmean int8, Int32 run offsets (a ring of > 65536 states)', 96, 1000, { bpw: 6, rows: 1, state: 'int8', query: 'signmean' }),
  sketch('signmean f16 rings, exact groups', 37, 101, { bpw: 6, rows: 2, state: 'f16', groups: 4, alloc: 'saliency:3', query: 'signmean' }),
  sketch('AbsMaxMin rowrun d = 3 (identity layout)', 64, 96, { bpw: 1, rows: 3, state: 'f16' }, undefined, true),
  sketch('AbsMaxMin rowrun d = 3, raw tiling', 64, 96, { bpw: 1, rows: 3, state: 'f16' }, RAW_SKETCH_TILING, true),
  sketch('AbsMaxMin rowrun, 4 saliency groups', 45, 130, { bpw: 1, rows: 3, state: 'f16', groups: 4, alloc: 'saliency' }),
  sketch('AbsMaxMin rowrun d = 1, cols 30', 40, 30, { bpw: 2, rows: 1, state: 'f16' }),
  sketch('AbsMaxMin mixed d = 2', 40, 72, { bpw: 2, rows: 2, state: 'f16', hash: 'mixed' }),
  sketch('AbsMaxMin rowrun, exact groups', 37, 101, { bpw: 6, rows: 3, state: 'f16', hash: 'rowrun', groups: 4, alloc: 'saliency:3' }),
  hashednets(48, 64),
  hashednets(20, 30),
];

const bits = hexBits;

describe('sketch / HashedNets decodeCalls: apply(x, y, 1)’s calls', () => {
  it.each(CASES.map((c) => [c.label, c] as const))('%s', (_, c) => {
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    expect(k.constructor.name).toBe('WasmSketchLinear');
    const { x, xv, yv, want, calls } = applyBothWays(arena, k);
    expect(calls).toBeDefined();
    // y zeroed by a zero_bytes call (the kernels accumulate into it); x read in place, or laid out by wasm calls
    expect(calls!.some((call) => call.fn === arena.zeroBytes && call.args[0] === yv.byteOffset && call.args[1] === 4 * c.rows)).toBe(true);
    const readsX = calls!.filter((call) => call.args.includes(xv.byteOffset));
    if (c.direct) {
      // only the product reads x (the last call: one group), nothing copies it
      expect(calls!.some((call) => call.fn === arena.copyBytes)).toBe(false);
      expect(readsX).toEqual([calls!.at(-1)]);
    } else expect(readsX.length).toBe(1); // one gather or copy_bytes from x into scratch
    checkProgram(arena, k, calls!, x, xv, yv, want);
    // and apply, in place and on plain arrays, still gives the same bits after the program ran
    k.apply(xv, yv, 1);
    expect(bits(yv)).toBe(bits(want));
  });

  it.each([CASES[0]!, CASES[7]!, CASES[14]!].map((c) => [c.label, c] as const))('%s: the one-thread calls with a thread pool too; undefined for staged, overlapping or short vectors', (_, c) => {
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    checkPool(arena, k);
    checkUndefined(arena, k);
  });

  it('the JS fallbacks (AbsMaxMin int8 states, signmean over mixed hashing) describe no calls: no program', () => {
    const [rows, cols] = [24, 40];
    for (const raw of [
      { bpw: 2, rows: 3, state: 'int8' },
      { bpw: 1, rows: 2, hash: 'mixed', query: 'signmean' },
    ]) {
      const p = sketchCodec.encode(laplace(rows * cols), rows, cols, sketchCodec.resolveOptions(raw), { name: 't', seed: 3 });
      const k = wasmSketchKernel(p, { arena: new WasmArena({ shared: true }) });
      expect(k.constructor.name).not.toBe('WasmSketchLinear');
      expect(k.decodeCalls).toBeUndefined();
    }
  });
});

describe('a session with sketch / HashedNets products runs one-token steps as a decode program (stories260K)', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL(`../../../../shared/${file}`, import.meta.url)), file));
  const c = model.config;
  const tensor = (name: string) => model.tensors.get(name)!.data;

  /**
   * A session whose layers' products are the CLI's default signmean sketch (q, k, v, o), AbsMaxMin rowrun (gate,
   * up: d 3, f16) and HashedNets (down: cols = hidden = 172), and whose classifier is the default sketch too; the
   * embedding stays the dense tied table. The kernels live in the arena that holds the forward's activations, so
   * they read and write them in place. `fallback`: gate is AbsMaxMin over int8 states (the JS kernel).
   */
  function session(decodeProgram: boolean, fallback = false): NodeSession {
    const parts = wasmForwardParts(model, { arena: { shared: true } });
    const arena = parts.arenas[0]!;
    const encode = (data: Float32Array, rows: number, cols: number, raw: Record<string, unknown>, name: string) =>
      sketchCodec.encode(data, rows, cols, sketchCodec.resolveOptions(raw), { name, seed: 1, saliency: Float64Array.from({ length: cols }, (_, j) => 1 + (j % 5)) });
    parts.layers = parts.layers.map((dense, l) => {
      const layer = { ...dense };
      for (const kind of LINEAR_KINDS) {
        const name = TensorNames.linear(l, kind);
        const [rows, cols] = linearShape(c, kind);
        if (kind === 'down') {
          const p = hashedNetsCodec.encode(tensor(name), rows, cols, hashedNetsCodec.resolveOptions({ bpw: 1 }), { name, seed: 1 });
          layer[kind] = wasmHashednetsKernel(p, { arena });
        } else if (kind === 'gate' || kind === 'up') {
          const state = fallback && kind === 'gate' ? 'int8' : 'f16';
          layer[kind] = wasmSketchKernel(encode(tensor(name), rows, cols, { bpw: 1, rows: 3, state }, name), { arena });
        } else {
          layer[kind] = wasmSketchKernel(encode(tensor(name), rows, cols, { bpw: 0.5, ...CLI_DEFAULT }, name), { arena });
        }
      }
      return layer;
    });
    parts.classifier = wasmSketchKernel(encode(tensor(TensorNames.embedding), c.vocabSize, c.dim, { bpw: 1, ...CLI_DEFAULT }, 'cls'), { arena });
    return new NodeSession(new LlamaForward(parts), { kernels: 'custom', arenas: parts.arenas, decodeProgram });
  }

  it('the same logits, bit for bit, as the forward’s own calls; no program when a product cannot describe itself', () => {
    const program = session(true);
    const plain = session(false);
    expectProgramMatchesForward(program, plain, [1, 403, 407], 12);
    // a JS fallback kernel has no decodeCalls: the session keeps the forward
    const noProgram = session(true, true);
    noProgram.forward([1]);
    expect(noProgram.usesDecodeProgram).toBe(false);
  });
});
