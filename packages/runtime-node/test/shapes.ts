/**
 * The awkward matrix shapes the kernel tests start from (single rows and columns, rows not byte-aligned, odd
 * sizes): kernels.test.ts, kernel-wasm-baselines.test.ts, kernel-cases.ts (LITTLEBIT_SHAPES) and
 * ../../runtime-webgpu/test/kernels.test.ts, each adding shapes of its own. No imports, so any package's tests
 * can take it.
 */
export const AWKWARD_SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 53],
  [41, 1],
  [13, 7],
  [7, 24],
  [33, 130],
];
