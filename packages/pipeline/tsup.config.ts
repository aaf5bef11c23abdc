import { defineConfig } from 'tsup';

// Two entries: the Node API (index) and the browser-safe subset (browser: no node:*, test/purity.test.ts).
export default defineConfig({
  entry: ['src/index.ts', 'src/browser.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
});
