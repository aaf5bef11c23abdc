import { ErrorCodes, UltraSketchError, describeValue } from '@ultrasketch/core';

/** Refuse NaN/Inf weights before encoding: a codec would otherwise store garbage scales silently. */
export function assertFiniteMatrix(w: Float32Array, rows: number, cols: number, name: string): void {
  if (w.length !== rows * cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matrix has ${w.length} values, expected ${rows}×${cols}`, {
      source: name,
    });
  }
  for (let i = 0; i < w.length; i++) {
    if (w[i]! - w[i]! !== 0) {
      throw new UltraSketchError(
        ErrorCodes.NOT_FINITE,
        `weight at row ${Math.floor(i / cols)}, column ${i % cols} is ${w[i]}`,
        { source: name, hint: 'the model has non-finite weights; it cannot be compressed' },
      );
    }
  }
}

/** Read an integer option with a default, or fail with BAD_ARGUMENT naming it. */
export function intOption(
  raw: Record<string, unknown>,
  key: string,
  fallback: number,
  ok: (v: number) => boolean,
  allowed: string,
  codecId: string,
): number {
  const v = raw[key] ?? fallback;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || !ok(n)) {
    throw new UltraSketchError(
      ErrorCodes.BAD_ARGUMENT,
      `codec ${codecId}: option ${key} = ${describeValue(v)} is invalid; ${allowed}`,
      { source: `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` },
    );
  }
  return n;
}

/** Reject option keys a codec does not know (a typo must not silently fall back to a default). */
export function rejectUnknownOptions(raw: Record<string, unknown>, known: string[], codecId: string): void {
  for (const key of Object.keys(raw)) {
    if (raw[key] !== undefined && !known.includes(key)) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `codec ${codecId} has no option "${key}" (options: ${known.join(', ')})`,
      );
    }
  }
}
