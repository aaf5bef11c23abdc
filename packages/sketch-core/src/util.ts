import { type DType, ErrorCodes, type StoredTensor, UltraSketchError, badOption, expectStored } from '@ultrasketch/core';

/** Refuse a wrongly sized or non-finite matrix before encoding. */
export function assertFiniteMatrix(w: Float32Array, rows: number, cols: number, name: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || w.length !== rows * cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matrix has ${w.length} values, expected ${rows}×${cols}`, {
      source: name,
    });
  }
  for (let i = 0; i < w.length; i++) {
    if (w[i]! - w[i]! !== 0) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `weight at row ${Math.floor(i / cols)}, column ${i % cols} is ${w[i]}`, {
        source: name,
        hint: 'the model has non-finite weights; it cannot be compressed',
      });
    }
  }
}

/** The codec seed as a uint32; BAD_ARGUMENT otherwise. */
export function checkSeed(seed: number, name: string): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `seed ${seed} must be an integer in 0..4294967295`, { source: name });
  }
  return seed;
}

/** Reject option keys a codec does not know (a typo must not silently fall back to a default). */
export function rejectUnknownOptions(raw: Record<string, unknown>, known: readonly string[], codecId: string): void {
  for (const key of Object.keys(raw)) {
    if (raw[key] !== undefined && !known.includes(key)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec ${codecId} has no option "${key}" (options: ${known.join(', ')})`);
    }
  }
}

/** A number option (numbers, or numeric strings from a command line). */
export function numberOption(
  raw: Record<string, unknown>,
  key: string,
  fallback: number | undefined,
  ok: (v: number) => boolean,
  allowed: string,
  codecId: string,
): number {
  const v = raw[key] ?? fallback;
  if (v === undefined) badOption(codecId, key, v, `it is required; ${allowed}`);
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || !ok(n)) badOption(codecId, key, v, allowed);
  return n;
}

/** A string option from a fixed list. */
export function enumOption<T extends string>(
  raw: Record<string, unknown>,
  key: string,
  fallback: T,
  allowed: readonly T[],
  codecId: string,
): T {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) badOption(codecId, key, v, `allowed: ${allowed.join(', ')}`);
  return v as T;
}

/** A U32 [n] tensor, little-endian. */
export function u32Tensor(values: ArrayLike<number>): StoredTensor {
  const data = new Uint8Array(values.length * 4);
  const view = new DataView(data.buffer);
  for (let i = 0; i < values.length; i++) view.setUint32(i * 4, values[i]!, true);
  return { dtype: 'U32', shape: [values.length], data };
}

/** Read a stored U32 [n] tensor (validated) as numbers. */
export function u32Values(tensors: Record<string, StoredTensor>, component: string, n: number, source: string): Uint32Array {
  const t = expectStored(tensors, component, 'U32', [n], source);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return Uint32Array.from({ length: n }, (_, i) => view.getUint32(i * 4, true));
}

/** Raw little-endian bytes of a typed array (no copy). */
export function bytesOf(a: Uint16Array | Int8Array | Float32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Copy a stored tensor's bytes into an aligned typed array of the dtype. */
export function typedOf(t: StoredTensor, dtype: DType): Uint16Array | Int8Array | Float32Array {
  const n = t.data.byteLength;
  if (dtype === 'F16') {
    const out = new Uint16Array(n / 2);
    new Uint8Array(out.buffer).set(t.data);
    return out;
  }
  if (dtype === 'I8') {
    // Copy explicitly: on a Node Buffer, slice() is a view of the whole file, not a copy.
    const out = new Int8Array(n);
    new Uint8Array(out.buffer).set(t.data);
    return out;
  }
  const out = new Float32Array(n / 4);
  new Uint8Array(out.buffer).set(t.data);
  return out;
}

/** SHAPE_MISMATCH about a stored component. */
export function badStored(component: string, problem: string, source: string): never {
  throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `codec tensor "${component}": ${problem}`, {
    source,
    hint: 'the bundle is corrupt or was written by an incompatible codec version',
  });
}

/** NOT_FINITE about a stored component. */
export function nonFiniteStored(component: string, index: number, source: string): never {
  throw new UltraSketchError(ErrorCodes.NOT_FINITE, `codec tensor "${component}" holds a non-finite value at ${index}`, {
    source,
    hint: 'the bundle is corrupt',
  });
}
