import { describe, expect, it } from 'vitest';
import { ErrorCodes, UltraSketchError, isUltraSketchError } from '../src/index.js';

describe('UltraSketchError', () => {
  it('joins source, problem and hint into the message, and keeps each as a field', () => {
    const err = new UltraSketchError(ErrorCodes.TRUNCATED, 'file is truncated', {
      source: 'model.bin',
      hint: 're-download it',
    });
    expect(err.message).toBe('model.bin: file is truncated (re-download it)');
    expect(err.code).toBe('E_TRUNCATED');
    expect(err.problem).toBe('file is truncated');
    expect(err.source).toBe('model.bin');
    expect(err.hint).toBe('re-download it');
    expect(err.name).toBe('UltraSketchError');
    expect(err).toBeInstanceOf(Error);
    expect(String(err)).toBe('UltraSketchError: model.bin: file is truncated (re-download it)');
  });

  it('leaves out what it was not given', () => {
    expect(new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'bad').message).toBe('bad');
    expect(new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'bad', { source: 'x' }).message).toBe('x: bad');
    expect(new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'bad', { hint: 'h' }).message).toBe('bad (h)');
    const plain = new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'bad');
    expect(plain.source).toBeUndefined();
    expect(plain.hint).toBeUndefined();
    expect('cause' in plain).toBe(false);
  });

  it('carries a cause', () => {
    const cause = new RangeError('inner');
    expect(new UltraSketchError(ErrorCodes.BAD_HEADER, 'outer', { cause }).cause).toBe(cause);
  });

  it('isUltraSketchError matches the class, and the code when given', () => {
    const err = new UltraSketchError(ErrorCodes.OVERLAP, 'x');
    expect(isUltraSketchError(err)).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.OVERLAP)).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.BAD_OFFSET)).toBe(false);
    expect(isUltraSketchError(new Error('x'))).toBe(false);
    expect(isUltraSketchError({ code: 'E_OVERLAP' })).toBe(false);
  });

  it('has stable, unique codes of the form E_<KEY>', () => {
    const entries = Object.entries(ErrorCodes);
    for (const [key, code] of entries) expect(code).toBe(`E_${key}`);
    expect(new Set(Object.values(ErrorCodes)).size).toBe(entries.length);
  });
});
