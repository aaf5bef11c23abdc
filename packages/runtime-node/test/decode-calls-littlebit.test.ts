import { readFileSync } from 'node:fs';
import { binaryCodec } from '@ultrasketch/baselines';
import { Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { littlebitCodec } from '@ultrasketch/littlebit';
import { LINEAR_KINDS, type Linear, LlamaForward, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { wasmBinaryKernel } from '../src/kernels/wasm-binary.js';
import { type LittleBitTiling, wasmLittlebitKernel } from '../src/kernels/wasm-littlebit.js';
import { NodeSession, WasmArena, wasmForwardParts } from '../src/index.js';
import { applyBothWays, checkPool, checkProgram, checkUndefined, expectProgramMatchesForward, hexBits } from './decode-fixtures.js';

/**
 * Issue 12, decode programs: the LittleBit and binary kernels describe their one-token call (`decodeCalls`) with
 * the code that runs it, so a compiled program (and runDecodePlan) gives `apply(x, y, 1)`'s bits. Per kernel
 * variant — byte and nibble tables (tilings forced both ways, and the default's V nibble / U byte mix), one path and
 * the residual two, rows / rank not multiples of 8 (w's padding zeroed by a zero_bytes call) — with x and y
 * views of a shared arena; undefined where the one-token call would do JS work (x or y staged: plain arrays,
 * cols % 8 ≠ 0, y overlapping x); with a thread pool on the arena, the same one-thread calls. Then two sessions over stories260K with
 * these kernels in the forward: the program's logits against the forward's own, bit for bit.
 */
const rng = new Rng(1212);
const BYTES: LittleBitTiling = { byteMinRows1: 1, byteMinRows4: 1, maxTableBytes: 1 << 30 };
const NIBBLES: LittleBitTiling = { byteMinRows1: 1 << 30, byteMinRows4: 1 << 30, maxTableBytes: 1 << 30 };

interface Case {
  label: string;
  rows: number;
  cols: number;
  build: (arena: WasmArena) => Linear;
  /** The number of calls of the one-token path (undefined: decodeCalls must be undefined even in place). */
  calls: number | undefined;
}

function littlebit(rows: number, cols: number, rank: number, residual: boolean, tiling?: LittleBitTiling, tilingName = 'default'): Case {
  const p = littlebitCodec.encode(rng.normalArray(rows * cols), rows, cols, littlebitCodec.resolveOptions({ rank, residual }), { name: 't', seed: 1 });
  const paths = residual ? 2 : 1;
  // f16tof32 of the scales, then zero_bytes of w's padding when rank % 8 ≠ 0, then 4 calls per path (build V,
  // dot V, build U, dot U)
  const calls = cols % 8 !== 0 ? undefined : 1 + 4 * paths + (rank % 8 !== 0 ? 1 : 0);
  return {
    label: `littlebit ${rows}×${cols} rank ${rank}, ${paths} path(s), ${tilingName} tiling`,
    rows,
    cols,
    build: (arena) => wasmLittlebitKernel(p, tiling ? { arena, tiling } : { arena }),
    calls,
  };
}

function binary(rows: number, cols: number, tiling?: LittleBitTiling, tilingName = 'default'): Case {
  const p = binaryCodec.encode(rng.normalArray(rows * cols), rows, cols, {}, { name: 't', seed: 1 });
  return {
    label: `binary ${rows}×${cols}, ${tilingName} tiling`,
    rows,
    cols,
    build: (arena) => wasmBinaryKernel(p, tiling ? { arena, tiling } : { arena }),
    calls: cols % 8 !== 0 ? undefined : 3, // f16tof32 of the scales, build, dot
  };
}

const CASES: Case[] = [
  littlebit(72, 96, 16, true, BYTES, 'byte'), // both stages on byte tables, U's rows straight-line (2 bytes)
  littlebit(72, 96, 16, true, NIBBLES, 'nibble'), // both on nibble tables
  littlebit(72, 96, 16, true), // V nibble (rank < 64), U byte
  littlebit(40, 128, 24, false), // both on nibble tables (rows < 64); one path
  littlebit(136, 144, 136, false, BYTES, 'byte'), // U's rows of 17 bytes: the looped byte dot, not straight-line
  littlebit(37, 64, 5, true), // rows and rank not byte-aligned: w's padding zeroed in the program
  littlebit(37, 64, 13, false, BYTES, 'byte'),
  littlebit(37, 61, 5, true), // cols % 8 ≠ 0: x is padded in scratch by JS → no decode calls
  binary(72, 96, BYTES, 'byte'),
  binary(72, 96, NIBBLES, 'nibble'),
  binary(37, 64), // rows not byte-aligned
  binary(37, 61), // cols % 8 ≠ 0 → no decode calls
];

const bits = hexBits;

describe('LittleBit / binary decodeCalls: apply(x, y, 1)’s calls', () => {
  it.each(CASES.map((c) => [c.label, c] as const))('%s', (_, c) => {
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    expect(k.constructor.name).toMatch(/^Wasm/);
    const { x, xv, yv, want, calls } = applyBothWays(arena, k);
    if (c.calls === undefined) {
      expect(calls).toBeUndefined();
      return;
    }
    expect(calls).toBeDefined();
    expect(calls!.length).toBe(c.calls);
    if (c.label.startsWith('littlebit') && c.calls % 2 === 0) expect(calls![1]!.fn).toBe(arena.zeroBytes);
    checkProgram(arena, k, calls!, x, xv, yv, want);
  });

  it.each([CASES[0]!, CASES[5]!, CASES[8]!].map((c) => [c.label, c] as const))('%s: the one-thread calls with a thread pool too; undefined for staged, overlapping or short vectors', (_, c) => {
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    checkPool(arena, k);
    checkUndefined(arena, k);
  });
});

describe('a session with LittleBit / binary products runs one-token steps as a decode program (stories260K)', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL(`../../../../shared/${file}`, import.meta.url)), file));
  const c = model.config;
  const tensor = (name: string) => model.tensors.get(name)!.data;

  /**
   * A session whose layers' products are LittleBit (all but down; down too when `littlebitDown`: its cols =
   * hidden = 172, not a multiple of 8) and whose classifier is binary; the embedding stays the dense tied table.
   * The kernels live in the arena that holds the forward's activations, so they read and write them in place.
   */
  function session(decodeProgram: boolean, littlebitDown: boolean): NodeSession {
    const parts = wasmForwardParts(model, { arena: { shared: true } });
    const arena = parts.arenas[0]!;
    parts.layers = parts.layers.map((dense, l) => {
      const layer = { ...dense };
      for (const kind of LINEAR_KINDS) {
        if (kind === 'down' && !littlebitDown) continue;
        const name = TensorNames.linear(l, kind);
        const [rows, cols] = linearShape(c, kind);
        const p = littlebitCodec.encode(tensor(name), rows, cols, littlebitCodec.resolveOptions({ rank: 12, residual: true }), { name, seed: 1 });
        layer[kind] = wasmLittlebitKernel(p, { arena });
      }
      return layer;
    });
    const cls = binaryCodec.encode(tensor(TensorNames.embedding), c.vocabSize, c.dim, {}, { name: 'cls', seed: 1 });
    parts.classifier = wasmBinaryKernel(cls, { arena });
    return new NodeSession(new LlamaForward(parts), { kernels: 'custom', arenas: parts.arenas, decodeProgram });
  }

  it('the same logits, bit for bit, as the forward’s own calls; no program when a product cannot describe itself', () => {
    const program = session(true, false);
    const plain = session(false, false);
    expectProgramMatchesForward(program, plain, [1, 403, 407], 12);
    // down of cols 172 stages x through scratch: its decodeCalls is undefined, so the session keeps the forward
    const noProgram = session(true, true);
    noProgram.forward([1]);
    expect(noProgram.usesDecodeProgram).toBe(false);
  });
});
