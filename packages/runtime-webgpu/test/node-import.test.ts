import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { isWebGpuError } from '../src/index.js';
import { webgpuImportError } from '../src/node.js';

/**
 * `webgpu` (Dawn) is an optional peer: a failed `import('webgpu')` must say which of the two things happened —
 * not installed (hint: the install command) or installed but not loadable (the cause; installing again would
 * not help). The packaging test (test/packaging.test.ts) runs the real case: the CLI tarball without webgpu.
 */
describe('webgpuImportError', () => {
  it('a missing package: no-webgpu, typed UNSUPPORTED, hint npm install webgpu', () => {
    // The message and code Node gives for `import('webgpu')` when the package is absent.
    const cause = Object.assign(new Error("Cannot find package 'webgpu' imported from /app/node_modules/@ultrasketch/runtime-webgpu/dist/node.js"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const err = webgpuImportError(cause);
    expect(isWebGpuError(err, 'no-webgpu')).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.UNSUPPORTED)).toBe(true);
    expect(err.message).toMatch(/not installed/);
    expect(err.hint).toMatch(/^npm install webgpu/);
    expect(err.cause).toBe(cause);
  });

  it('a package that is there but fails to load: the cause, not the install hint', () => {
    const err = webgpuImportError(new Error('libvulkan.so.1: cannot open shared object file'));
    expect(isWebGpuError(err, 'no-webgpu')).toBe(true);
    expect(err.message).toMatch(/installed but failed to load: libvulkan\.so\.1/);
    expect(err.hint).not.toMatch(/npm install webgpu/);
    expect(err.hint).toMatch(/libvulkan1/);
  });

  it('another missing module (a dependency of webgpu) is not "webgpu is not installed"', () => {
    const cause = Object.assign(new Error("Cannot find module './dawn.node'"), { code: 'MODULE_NOT_FOUND' });
    expect(webgpuImportError(cause).message).toMatch(/failed to load/);
  });
});
