import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import workspace packages from source, so a test run never depends on a stale dist/.
// (The CLI tests spawn the built command; `pnpm test` builds first.)
const pkg = (dir: string) => fileURLToPath(new URL(`./${dir}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      // subpath entries first (an alias also matches its key followed by '/...')
      '@ultrasketch/ste-trainer/node': fileURLToPath(new URL('./packages/ste-trainer/src/node.ts', import.meta.url)),
      '@ultrasketch/ste-trainer/webgpu': fileURLToPath(new URL('./packages/ste-trainer/src/webgpu/index.ts', import.meta.url)),
      '@ultrasketch/pipeline/browser': fileURLToPath(new URL('./packages/pipeline/src/browser.ts', import.meta.url)),
      '@ultrasketch/runtime-webgpu/node': fileURLToPath(new URL('./packages/runtime-webgpu/src/node.ts', import.meta.url)),
      '@ultrasketch/core': pkg('packages/core'),
      '@ultrasketch/node-files': pkg('packages/node-files'),
      '@ultrasketch/format': pkg('packages/format'),
      '@ultrasketch/baselines': pkg('packages/baselines'),
      '@ultrasketch/littlebit': pkg('packages/littlebit'),
      '@ultrasketch/sketch-core': pkg('packages/sketch-core'),
      '@ultrasketch/model': pkg('packages/model'),
      '@ultrasketch/saliency': pkg('packages/saliency'),
      '@ultrasketch/runtime-node': pkg('packages/runtime-node'),
      '@ultrasketch/runtime-webgpu': pkg('packages/runtime-webgpu'),
      '@ultrasketch/pipeline': pkg('packages/pipeline'),
      '@ultrasketch/ste-trainer': pkg('packages/ste-trainer'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
