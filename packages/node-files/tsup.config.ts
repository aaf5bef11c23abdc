import { defineConfig } from 'tsup';

// Node only (node:fs, node:crypto): no browser entry. ESM and CJS, like every package here.
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
});
