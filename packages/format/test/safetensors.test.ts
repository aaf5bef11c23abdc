import { describe, expect, it } from 'vitest';
import { DTYPE_BYTES, ErrorCodes, f32ArrayToBf16, f32ArrayToF16 } from '@ultrasketch/core';
import {
  getSafetensorsFloat32,
  getSafetensorsTensor,
  readSafetensors,
  tensorDataToFloat32,
  writeSafetensors,
  type SafetensorsTensorInput,
} from '../src/index.js';
import { expectRejects } from './helpers.js';
import { entry, f32Bytes, header, rawSafetensors } from './safetensorsBytes.js';

const SRC = 'model.safetensors';

/** A mixed set of tensors: every float dtype, an int8, a scalar, an empty tensor. */
function sampleTensors(): SafetensorsTensorInput[] {
  return [
    { name: 'w.f32', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, -0, 1e-30]) },
    { name: 'w.f16', dtype: 'F16', shape: [3], data: f32ArrayToF16([1, -65504, 2 ** -24]) },
    { name: 'w.bf16', dtype: 'BF16', shape: [2], data: f32ArrayToBf16([1.5, -3]) },
    { name: 'w.f64', dtype: 'F64', shape: [1], data: new Float64Array([0.1]) },
    { name: 'codes', dtype: 'I8', shape: [5], data: new Int8Array([-128, -1, 0, 1, 127]) },
    { name: 'packed', dtype: 'U8', shape: [3], data: new Uint8Array([0xff, 0x00, 0x5a]) },
    { name: 'step', dtype: 'I64', shape: [], data: new BigInt64Array([42n]) },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  ];
}

describe('safetensors writer', () => {
  it('writes the exact bytes of the format (golden file built by hand)', () => {
    const bytes = writeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }], { b: '2', a: '1' });
    const json = '{"__metadata__":{"a":"1","b":"2"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const padded = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
    expect(Array.from(bytes)).toEqual(Array.from(rawSafetensors(padded, f32Bytes(1, 2))));
  });

  it('omits __metadata__ when there is none, and pads the header with spaces to a multiple of 8', () => {
    const bytes = writeSafetensors([{ name: 'abc', dtype: 'U8', shape: [1], data: new Uint8Array([7]) }]);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(text.trimEnd()).toBe('{"abc":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}');
    expect(text.slice(text.trimEnd().length)).toMatch(/^ *$/);
    expect(bytes.byteLength).toBe(8 + n + 1);
  });

  it('round-trips every dtype, a scalar and an empty tensor; data are views into the file', () => {
    const input = sampleTensors();
    const bytes = writeSafetensors(input, { format: 'pt', note: 'ünïcødé ✓' });
    const file = readSafetensors(bytes, SRC);
    expect(file.metadata).toEqual({ format: 'pt', note: 'ünïcødé ✓' });
    expect(file.headerBytes % 8).toBe(0);
    expect(file.dataOffset).toBe(8 + file.headerBytes);
    expect([...file.tensors.keys()].sort()).toEqual(input.map((t) => t.name).sort());
    for (const t of input) {
      const got = file.tensors.get(t.name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(Array.from(got.data)).toEqual(Array.from(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
      expect(got.data.buffer).toBe(bytes.buffer); // a view, not a copy
    }
  });

  it('is deterministic: input order and Map vs array do not matter', () => {
    const input = sampleTensors();
    const a = writeSafetensors(input, { z: '1', a: '2', '10': '3' });
    const b = writeSafetensors([...input].reverse(), { '10': '3', a: '2', z: '1' });
    const c = writeSafetensors(new Map(input.map(({ name, ...t }) => [name, t])), { a: '2', '10': '3', z: '1' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(true);
    // Metadata keys are sorted as strings (JSON.stringify would have put "10" first for another reason).
    expect(new TextDecoder().decode(a)).toContain('"__metadata__":{"10":"3","a":"2","z":"1"}');
  });

  it('lays tensors out by element size (largest first) then name, so each is aligned to its element size', () => {
    const bytes = writeSafetensors(sampleTensors());
    const file = readSafetensors(bytes, SRC);
    const layout = [...file.tensors].sort((x, y) => x[1].data.byteOffset - y[1].data.byteOffset);
    expect(layout.map(([name]) => name)).toEqual(['step', 'w.f64', 'empty', 'w.f32', 'w.bf16', 'w.f16', 'codes', 'packed']);
    for (const [name, t] of layout) {
      expect(t.data.byteOffset % DTYPE_BYTES[t.dtype], name).toBe(0);
    }
    // Aligned, so a zero-copy typed view works:
    const f32 = file.tensors.get('w.f32')!;
    expect(Array.from(new Float32Array(bytes.buffer, f32.data.byteOffset, 6))).toEqual([1, -2, 3.5, 0, -0, Math.fround(1e-30)]);
  });

  it('keeps "__proto__" an ordinary name, as a tensor and as a metadata key', () => {
    const meta: Record<string, string> = {};
    Object.defineProperty(meta, '__proto__', { value: 'x', enumerable: true });
    const bytes = writeSafetensors([{ name: '__proto__', dtype: 'U8', shape: [1], data: new Uint8Array([1]) }], meta);
    const file = readSafetensors(bytes, SRC);
    expect(file.tensors.get('__proto__')!.shape).toEqual([1]);
    expect(Object.keys(file.metadata)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(file.metadata)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('refuses data whose byte length disagrees with shape × dtype', () => {
    expectRejects(
      () => writeSafetensors([{ name: 'w', dtype: 'F16', shape: [4], data: new Float32Array(4) }]),
      ErrorCodes.SHAPE_MISMATCH,
      'w',
      /has 16 bytes of data but shape \[4\] of F16 needs 8/,
    );
  });

  it('refuses duplicate names, the reserved name, unknown dtypes, bad dims and non-string metadata', () => {
    const t = { dtype: 'U8' as const, shape: [1], data: new Uint8Array(1) };
    expectRejects(() => writeSafetensors([{ name: 'a', ...t }, { name: 'a', ...t }]), ErrorCodes.BAD_ARGUMENT, 'a', /given twice/);
    expectRejects(() => writeSafetensors([{ name: '__metadata__', ...t }]), ErrorCodes.BAD_ARGUMENT, '<tensors>', /invalid tensor name "__metadata__"/);
    expectRejects(() => writeSafetensors([{ name: '', ...t }]), ErrorCodes.BAD_ARGUMENT, '<tensors>', /invalid tensor name ""/);
    expectRejects(
      () => writeSafetensors([{ name: 'q', dtype: 'Q4' as never, shape: [1], data: new Uint8Array(1) }]),
      ErrorCodes.BAD_DTYPE,
      'q',
      /unknown dtype "Q4"/,
    );
    expectRejects(() => writeSafetensors([{ name: 'a', ...t, shape: [-1] }]), ErrorCodes.BAD_DIMENSION, 'a', /dimension -1/);
    expectRejects(() => writeSafetensors([{ name: 'a', ...t, shape: [0.5] }]), ErrorCodes.BAD_DIMENSION, 'a', /dimension 0.5/);
    expectRejects(() => writeSafetensors([{ name: 'a', ...t }], { k: 3 as never }), ErrorCodes.BAD_ARGUMENT, '__metadata__', /value for "k" is a number/);
  });

  it('refuses what its own limits would make unreadable', () => {
    const tight = { maxSafetensorsHeaderBytes: 64, maxTensorCount: 2, maxTensorRank: 2, maxTensorDim: 4, maxTensorElements: 8 };
    const u8 = (name: string, shape: number[]) => ({ name, dtype: 'U8' as const, shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1)) });
    expectRejects(() => writeSafetensors([u8('a', [1, 1, 1])], {}, tight), ErrorCodes.LIMIT_EXCEEDED, 'a', /rank 3 exceeds 2/);
    expectRejects(() => writeSafetensors([u8('a', [5])], {}, tight), ErrorCodes.LIMIT_EXCEEDED, 'a', /dimension 5 exceeds 4/);
    expectRejects(() => writeSafetensors([u8('a', [3, 3])], {}, tight), ErrorCodes.LIMIT_EXCEEDED, 'a', /exceeds 8 elements/);
    expectRejects(() => writeSafetensors([u8('a', [1]), u8('b', [1]), u8('c', [1])], {}, tight), ErrorCodes.LIMIT_EXCEEDED, '<tensors>', /3 tensors/);
    expectRejects(() => writeSafetensors([u8('a', [1]), u8('b', [1])], {}, tight), ErrorCodes.LIMIT_EXCEEDED, '<header>', /exceeds the limit of 64/);
  });
});

describe('safetensors reader', () => {
  it('reads a hand-built file from another producer: unpadded header, odd offsets, extra fields ignored', () => {
    // U8[1] first puts the F32 tensor at an odd offset; readers must still convert it.
    const h = `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9],"future":true}}`;
    const data = new Uint8Array(9);
    data[0] = 9;
    data.set(f32Bytes(0.25, -8), 1);
    const file = readSafetensors(rawSafetensors(h, data), SRC);
    expect(file.headerBytes).toBe(new TextEncoder().encode(h).byteLength);
    expect(file.metadata).toEqual({});
    expect(Array.from(getSafetensorsFloat32(file, 'b', SRC))).toEqual([0.25, -8]);
    expect(Array.from(getSafetensorsTensor(file, 'a', SRC).data)).toEqual([9]);
  });

  it('reads from a Uint8Array that is a window into a larger buffer', () => {
    const bytes = writeSafetensors([{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array([3]) }]);
    const big = new Uint8Array(bytes.byteLength + 13);
    big.set(bytes, 5);
    const file = readSafetensors(big.subarray(5, 5 + bytes.byteLength), SRC);
    expect(Array.from(getSafetensorsFloat32(file, 'x', SRC))).toEqual([3]);
  });

  it('accepts a header padded with trailing whitespace of any kind JSON allows', () => {
    const h = `${header(entry('x', 'U8', [2], [0, 2]))} \n\t  `;
    expect(readSafetensors(rawSafetensors(h, new Uint8Array([1, 2])), SRC).tensors.get('x')!.shape).toEqual([2]);
  });

  it('converts F16, BF16, F32 and F64 tensors to float32 exactly (F64 rounded)', () => {
    const file = readSafetensors(writeSafetensors(sampleTensors()), SRC);
    expect(Array.from(getSafetensorsFloat32(file, 'w.f16', SRC))).toEqual([1, -65504, 2 ** -24]);
    expect(Array.from(getSafetensorsFloat32(file, 'w.bf16', SRC))).toEqual([1.5, -3]);
    expect(Array.from(getSafetensorsFloat32(file, 'w.f32', SRC))).toEqual([1, -2, 3.5, 0, -0, Math.fround(1e-30)]);
    expect(Array.from(getSafetensorsFloat32(file, 'w.f64', SRC))).toEqual([Math.fround(0.1)]);
    expect(getSafetensorsFloat32(file, 'empty', SRC).length).toBe(0);
    // The result is a fresh array, not tied to the file.
    expect(getSafetensorsFloat32(file, 'w.f32', SRC).buffer.byteLength).toBe(24);
  });

  it('refuses to read non-float dtypes as float32 and names missing tensors', () => {
    const file = readSafetensors(writeSafetensors(sampleTensors()), SRC);
    expectRejects(() => tensorDataToFloat32(file.tensors.get('codes')!, 'codes'), ErrorCodes.BAD_DTYPE, 'codes', /dtype I8 is not a float type/);
    expectRejects(() => getSafetensorsFloat32(file, 'step', SRC), ErrorCodes.BAD_DTYPE, `${SRC}: step`, /dtype I64 is not a float type/);
    expectRejects(() => getSafetensorsTensor(file, 'nope', SRC), ErrorCodes.MISSING_TENSOR, SRC, /tensor "nope" is not in the file/);
  });
});
