import { defineConfig } from 'tsup';

// Two entries: the platform-neutral trainer (".") and the Node-only helpers ("./node": atomic checkpoint
// files). Only src/node.ts may import node:* modules.
export default defineConfig({
  entry: ['src/index.ts', 'src/node.ts', 'src/worker.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
});
