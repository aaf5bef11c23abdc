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

describe('fromSystemError', () => {
  const sys = (code: string) => Object.assign(new Error(`${code}: something`), { code });
  it('maps the usual errno codes to typed errors that name the path and a fix', async () => {
    const { fromSystemError } = await import('../src/index.js');
    const cases: Array<[string, string]> = [
      ['ENOENT', 'E_FILE_NOT_FOUND'],
      ['EACCES', 'E_PERMISSION_DENIED'],
      ['EPERM', 'E_PERMISSION_DENIED'],
      ['EROFS', 'E_PERMISSION_DENIED'],
      ['ENOSPC', 'E_NO_SPACE'],
      ['EDQUOT', 'E_NO_SPACE'],
      ['EEXIST', 'E_EXISTS'],
      ['EISDIR', 'E_NOT_A_FILE'],
      ['ERR_FS_FILE_TOO_LARGE', 'E_LIMIT_EXCEEDED'],
      ['EMFILE', 'E_SYSTEM'],
      ['EIO', 'E_SYSTEM'],
    ];
    for (const [code, typed] of cases) {
      const out = fromSystemError(sys(code), '/x/model.bin', 'write');
      expect(isUltraSketchError(out), code).toBe(true);
      const e = out as UltraSketchError;
      expect(e.code, code).toBe(typed);
      expect(e.source).toBe('/x/model.bin');
      expect(e.hint, code).toBeTruthy();
      expect(e.cause).toBeInstanceOf(Error);
    }
  });
  it('returns anything that is not a system error unchanged', async () => {
    const { fromSystemError } = await import('../src/index.js');
    const typed = new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'bad');
    expect(fromSystemError(typed, 'p', 'read')).toBe(typed);
    const plain = new TypeError('not system');
    expect(fromSystemError(plain, 'p', 'read')).toBe(plain);
    expect(fromSystemError('string', 'p', 'read')).toBe('string');
    expect(fromSystemError(Object.assign(new Error('x'), { code: 'lowercase' }), 'p', 'read')).toBeInstanceOf(Error);
  });
});

describe('describeValue', () => {
  it('renders small values as JSON-like text and cuts long ones', async () => {
    const { describeValue } = await import('../src/index.js');
    expect(describeValue(3)).toBe('3');
    expect(describeValue(Number.NaN)).toBe('NaN');
    expect(describeValue('x')).toBe('"x"');
    expect(describeValue(null)).toBe('null');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue([1, 2])).toBe('[1,2]');
    expect(describeValue({ a: [1, { b: 2 }] })).toBe('{"a":[1,{"b":2}]}');
    expect(describeValue({ a: [1, { b: [2] }] })).toBe('{"a":[1,{"b":[…]}]}'); // three levels, then elided
    expect(describeValue('y'.repeat(500)).length).toBeLessThanOrEqual(80);
    expect(describeValue(Array.from({ length: 100 }, (_, i) => i), 1000)).toMatch(/,… \(100 items\)\]$/);
  });
  it('does not overflow the stack on a value nested 100,000 deep (JSON.stringify does)', async () => {
    const { describeValue } = await import('../src/index.js');
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    expect(describeValue(deep)).toBe('[[[[…]]]]');
  });
});
