import { defineConfig } from 'tsup';

// Entries: the platform-neutral trainer ("."), the Node-only helpers ("./node": atomic checkpoint
// files) and the WebGPU training ops ("./webgpu", browser-safe; dist/webgpu/index.*). Only src/node.ts may import node:* modules.
export default defineConfig({
  entry: ['src/index.ts', 'src/node.ts', 'src/worker.ts', 'src/webgpu/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
  // ESM and CJS: the CJS build needs import.meta.url (node.ts finds worker.js beside itself) shimmed.
  shims: true,
});
