/**
 * The setup shared by the data-parallel trainer tests (parallel.test.ts and littlebit-lowrank.test.ts): the
 * built worker entry the threads run, a synthetic calibration stream, a run to the end of the schedule, and
 * the comparison of two runs that differ only in float summation order.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, expect } from 'vitest';
import { Trainer, type TrainerOptions } from '../src/index.js';

const PKG = fileURLToPath(new URL('..', import.meta.url));

/**
 * Workers run the BUILT entry (dist/worker.js): register a beforeAll that (re)builds it when it is missing or
 * older than a source file. Call it at the top level of a test file.
 */
export function useBuiltWorker(): void {
  beforeAll(() => {
    const worker = `${PKG}dist/worker.js`;
    const newest = Math.max(...readdirSync(`${PKG}src`).map((f) => statSync(`${PKG}src/${f}`).mtimeMs));
    if (!existsSync(worker) || statSync(worker).mtimeMs < newest) {
      execFileSync('npx', ['tsup'], { cwd: PKG, stdio: 'ignore' });
    }
  }, 300_000);
}

/** `length` tokens below `vocab`: a BOS (1) every `bosEvery` positions, a fixed mixing pattern in between. */
export function syntheticCalib(length: number, bosEvery: number, vocab: number): Int32Array {
  return Int32Array.from({ length }, (_, i) => (i % bosEvery === 0 ? 1 : (i * 7 + (i >> 3)) % vocab));
}

/** Copies of a trainer's parameters. */
export const snapshot = (t: Trainer): Float32Array[] => t.params.map((p) => p.data.slice());

export interface RunResult {
  params: Float32Array[];
  losses: number[];
}

/** Train a new Trainer over its whole schedule; its parameters and every step's loss (disposed after). */
export function runToEnd(options: TrainerOptions): RunResult {
  const t = new Trainer(options);
  const losses: number[] = [];
  try {
    while (t.completedSteps < t.steps) losses.push(t.step().loss);
    return { params: snapshot(t), losses };
  } finally {
    t.dispose();
  }
}

/**
 * Run `x` equals the reference run `y` up to float rounding: every loss within `tol` relative to y's, and the
 * parameters' relative L2 distance ‖x − y‖ / ‖y‖ below `tol`.
 */
export function expectRunsClose(x: RunResult, y: RunResult, tol: number): void {
  for (let i = 0; i < x.losses.length; i++) expect(Math.abs(x.losses[i]! - y.losses[i]!)).toBeLessThan(tol * Math.abs(y.losses[i]!));
  let num = 0;
  let den = 0;
  x.params.forEach((p, k) => {
    for (let i = 0; i < p.length; i++) {
      num += (p[i]! - y.params[k]![i]!) ** 2;
      den += y.params[k]![i]! ** 2;
    }
  });
  expect(Math.sqrt(num / den)).toBeLessThan(tol);
}
