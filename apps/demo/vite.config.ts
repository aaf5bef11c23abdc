import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The demo bundles the workspace packages from their sources (as the root vitest config does), so `vite dev` and
 * `vite build` never run against a stale dist/ of a package edited a minute ago. Only the browser entry of the
 * pipeline is reachable (`@ultrasketch/pipeline/browser`): nothing of Node is pulled in (the build fails loudly
 * if a `node:*` import sneaks in, see `onwarn`).
 */
const packageSource = (path: string) => fileURLToPath(new URL(`../../packages/${path}`, import.meta.url));

export default defineConfig({
  // Relative asset URLs: dist/ works from any folder of any static server (and from a test's temp dir).
  base: './',
  resolve: {
    alias: [
      { find: /^@ultrasketch\/pipeline\/browser$/, replacement: packageSource('pipeline/src/browser.ts') },
      { find: /^@ultrasketch\/([a-z-]+)$/, replacement: packageSource('$1/src/index.ts') },
    ],
  },
  build: {
    target: 'es2022',
    // The embedded default bundle (1.8 MB) is copied as a file, never inlined as base64 into the JavaScript.
    assetsInlineLimit: (file) => (file.endsWith('.usk') ? false : undefined),
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      onwarn(warning, warn) {
        // A Node built-in stubbed out for the browser would break the page at run time: fail the build instead.
        if (/externalized for browser compatibility/.test(warning.message)) throw new Error(warning.message);
        warn(warning);
      },
    },
  },
  // The CPU fallback's Web Worker (src/cpu-worker.ts) is an ES module worker, bundled with the same aliases.
  worker: { format: 'es' },
  server: { fs: { allow: [fileURLToPath(new URL('../..', import.meta.url))] } },
});
