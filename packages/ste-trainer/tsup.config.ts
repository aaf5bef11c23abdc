import { defineConfig } from 'tsup';

// Two entries: the platform-neutral trainer (".") and the Node-only helpers ("./node": atomic checkpoint
// files). Only src/node.ts may import node:* modules.
export default defineConfig({
  entry: ['src/index.ts', 'src/node.ts', 'src/worker.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
  // ESM and CJS: the CJS build needs import.meta.url (node.ts finds worker.js beside itself) shimmed.
  shims: true,
});
