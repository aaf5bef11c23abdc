import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type DecodeCall, modelFromLlama2c, runDecodePlan } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { ModuleBuilder } from '../src/wasm/emitter.js';
import { NodeSession, WasmArena, compileDecodeProgram } from '../src/index.js';

/**
 * Issue 12: a one-token step runs as a compiled decode program (wasm/decode-program.ts: the forward's kernel
 * calls made by one wasm function). It must give the logits of the forward's own calls bit for bit, be used
 * exactly where the session can (one thread, no hooks), and leave every error to the forward.
 */
const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);
const MODELS = [
  { name: 'stories260K', file: 'models/stories260K/stories260K.bin' },
  { name: 'stories3M', file: 'models/stories3M/stories3M-q80.bin' },
];

const argmax = (a: Float32Array) => a.reduce((b, v, i) => (v > a[b]! ? i : b), 0);
const bits = (a: Float32Array) => Array.from(new Uint32Array(Float32Array.from(a).buffer));

describe.each(MODELS)('decode program on $name', ({ file }) => {
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared(file)), file));

  it('gives the same logits, bit for bit, as the forward’s own calls for 48 greedy steps after a prefill', () => {
    const program = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const plain = NodeSession.fromWeights(model, { kernels: 'wasm', decodeProgram: false });
    // a prefill first (the forward's path), so the program starts mid-context from the same cache
    const prompt = [1, 403, 407, 365];
    let a = argmax(program.forward(prompt));
    let b = argmax(plain.forward(prompt));
    expect(a).toBe(b);
    for (let step = 0; step < 48; step++) {
      const la = program.forward([a]);
      const lb = plain.forward([b]);
      expect(bits(la)).toEqual(bits(lb));
      a = argmax(la);
      b = argmax(lb);
    }
    expect(program.usesDecodeProgram).toBe(true);
    expect(plain.usesDecodeProgram).toBe(false);
    // a longer prefill after the program was built grows the forward's activations (new arrays); the program
    // keeps its own and still agrees
    const more = [a, 411, 412, 413, 414, 415, 416, 417, 418];
    expect(bits(program.forward(more))).toEqual(bits(plain.forward(more)));
    for (let step = 0; step < 4; step++) expect(bits(program.forward([420 + step]))).toEqual(bits(plain.forward([420 + step])));
    expect(program.position).toBe(prompt.length + 48 + more.length + 4);
    // after a reset the same program starts over from position 0
    program.reset();
    plain.reset();
    expect(bits(program.forward([1]))).toEqual(bits(plain.forward([1])));
  });

  it('is not used with hooks or for logits: none; with a thread pool, tokens are timed both ways (same logits)', () => {
    const session = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const layers: number[] = [];
    session.forward([1], { hooks: { onLayerOutput: (l) => layers.push(l) } });
    expect(layers).toEqual(Array.from({ length: model.config.nLayers }, (_, l) => l));
    expect(session.usesDecodeProgram).toBe(false);
    expect(session.forward([403], { logits: 'none' }).length).toBe(0);
    expect(session.usesDecodeProgram).toBe(false);
    const pooled = NodeSession.fromWeights(model, { kernels: 'wasm', threads: 2, threadAdaptive: false, threadMinWorkNs: 0 });
    const plain = NodeSession.fromWeights(model, { kernels: 'wasm', decodeProgram: false });
    try {
      let token = 1;
      for (let step = 0; step < 12; step++) {
        const a = pooled.forward([token]);
        expect(bits(a)).toEqual(bits(plain.forward([token])));
        token = argmax(a);
      }
      expect(pooled.usesDecodeProgram).toBe(true);
      // the first calls alternate: both ways ran, the pooled one with its products split
      expect(pooled.stepStats.program).toBeGreaterThanOrEqual(3);
      expect(pooled.stepStats.pooled).toBeGreaterThanOrEqual(3);
      expect(pooled.threadStats.split).toBeGreaterThan(0);
    } finally {
      pooled.dispose();
    }
  });

  it('leaves a bad token and a full context to the forward’s typed errors, and changes nothing on them', () => {
    const session = NodeSession.fromWeights(model, { kernels: 'wasm', contextLength: 2 });
    session.forward([1]);
    expect(session.usesDecodeProgram).toBe(true);
    expect(() => session.forward([model.config.vocabSize])).toThrow(/outside 0\.\./);
    expect(() => session.forward([1.5])).toThrow(/outside 0\.\./);
    expect(session.position).toBe(1);
    session.forward([2]);
    expect(() => session.forward([3])).toThrow(/exceed the KV cache capacity 2/);
    expect(session.position).toBe(2);
  });
});

describe('compileDecodeProgram', () => {
  it('computes position- and token-dependent arguments as runDecodePlan does (i32 wrap-around included)', () => {
    const arena = new WasmArena({ shared: true });
    const src = arena.alloc(64 * 4);
    const dst = arena.alloc(64 * 4);
    const dst2 = arena.alloc(64 * 4);
    arena.f32.set(Float32Array.from({ length: 64 }, (_, i) => i + 0.5), src / 4);
    // dst[pos] = src[token]; dst2[2·pos + 1 .. +2] = src[token + pos .. +2]
    const calls: DecodeCall[] = [
      { fn: arena.copyBytes, params: ['i32', 'i32', 'i32'], args: [{ base: dst, perPos: 4 }, { base: src, perToken: 4 }, 4] },
      { fn: arena.copyBytes, params: ['i32', 'i32', 'i32'], args: [{ base: dst2 + 4, perPos: 8 }, { base: src, perPos: 4, perToken: 4 }, 8] },
    ];
    const run = compileDecodeProgram(calls);
    const snapshot = () => Array.from(arena.f32.subarray(dst / 4, dst2 / 4 + 64));
    const cases = [
      [0, 0],
      [3, 7],
      [10, 20],
    ] as const;
    for (const [pos, token] of cases) run(pos, token);
    const viaProgram = snapshot();
    arena.f32.fill(0, dst / 4, dst2 / 4 + 64);
    for (const [pos, token] of cases) runDecodePlan(calls, pos, token);
    expect(snapshot()).toEqual(viaProgram);
    expect(viaProgram[3]).toBe(7.5);
    expect(viaProgram[64 + 2 * 10 + 1]).toBe(30.5);
  });

  it('refuses a symbolic f32 argument and a call whose argument count is wrong', () => {
    const arena = new WasmArena();
    expect(() => compileDecodeProgram([{ fn: arena.copyBytes, params: ['i32', 'i32', 'f32'], args: [0, 0, { base: 0, perPos: 1 }] }])).toThrow(/f32 argument/);
    expect(() => compileDecodeProgram([{ fn: arena.copyBytes, params: ['i32', 'i32', 'i32'], args: [0, 0] }])).toThrow(/2 arguments for 3/);
  });

  it('emits a module without memory that imports functions (WebAssembly.validate)', () => {
    const m = new ModuleBuilder(null);
    expect(m.importFunction('k', 'a', ['i32', 'f32'])).toBe(0);
    expect(m.importFunction('k', 'b', ['i32'])).toBe(1);
    expect(WebAssembly.validate(m.emit())).toBe(true);
  });
});
