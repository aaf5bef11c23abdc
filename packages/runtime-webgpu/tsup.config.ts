import { defineConfig } from 'tsup';

// Two entries: the main one (browsers and Node; no node:* — tsconfig.json has no Node types) and `./node`
// (the Dawn glue for Node, built against tsconfig.node.json). `webgpu` stays an import of the consumer's.
// ESM and CJS (`require` for resolvers that cannot load ESM). The public types use GPUDevice & co. from
// @webgpu/types (a dependency): the reference in every emitted .d.ts lets a consumer compile with
// skipLibCheck: false without adding those types itself.
const webgpuTypes = '/// <reference types="@webgpu/types" />';
export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: { banner: webgpuTypes },
    clean: true,
    sourcemap: true,
    target: 'es2022',
  },
  {
    entry: ['src/node.ts'],
    format: ['esm', 'cjs'],
    dts: { compilerOptions: { types: ['@webgpu/types', 'node'] }, banner: webgpuTypes },
    tsconfig: 'tsconfig.node.json',
    sourcemap: true,
    target: 'es2022',
    external: ['webgpu'],
  },
]);
