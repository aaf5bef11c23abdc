import { defineConfig } from 'tsup';

// Two entries: the main one (browsers and Node; no node:* — tsconfig.json has no Node types) and `./node`
// (the Dawn glue for Node, built against tsconfig.node.json). `webgpu` stays an import of the consumer's.
export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'es2022',
  },
  {
    entry: ['src/node.ts'],
    format: ['esm'],
    dts: { compilerOptions: { types: ['@webgpu/types', 'node'] } },
    tsconfig: 'tsconfig.node.json',
    sourcemap: true,
    target: 'es2022',
    external: ['webgpu'],
  },
]);
