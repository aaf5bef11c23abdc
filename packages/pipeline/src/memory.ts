import { freemem } from 'node:os';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * Will a job that must hold a model in memory fit? Compression streams a model one layer at a time, but
 * finetuning (and measuring quality against the float model) need the whole float model and more: they say what
 * they will need before starting, and refuse with the number rather than being killed by the kernel half-way.
 *
 * Available memory is what the operating system says can still be allocated without swapping
 * (`process.availableMemory()`: MemAvailable on Linux, within a cgroup limit when there is one). The margin, for
 * the runtime, the heap's own overhead and the estimate's error: 512 MiB + 10 % of the need.
 * `ULTRASKETCH_AVAILABLE_MEMORY` (bytes) replaces the measured figure, to check the refusal or to keep a job
 * within part of a shared machine.
 */
export const MEMORY_MARGIN_BYTES = 512 * 1024 * 1024;
export const MEMORY_MARGIN_FRACTION = 0.1;
export const AVAILABLE_MEMORY_VARIABLE = 'ULTRASKETCH_AVAILABLE_MEMORY';

export function availableMemory(): number {
  const forced = process.env[AVAILABLE_MEMORY_VARIABLE];
  if (forced !== undefined && forced !== '') {
    const v = Number(forced);
    if (!Number.isFinite(v) || v < 0) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${AVAILABLE_MEMORY_VARIABLE}=${forced} is not a number of bytes`, { source: AVAILABLE_MEMORY_VARIABLE });
    }
    return v;
  }
  const p = process as unknown as { availableMemory?: () => number };
  return typeof p.availableMemory === 'function' ? p.availableMemory() : freemem();
}

export function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** One part of a memory estimate. */
export interface MemoryItem {
  what: string;
  bytes: number;
}

/** Total of an estimate with its margin. */
export function withMargin(items: readonly MemoryItem[]): { need: number; margin: number; total: number } {
  const need = items.reduce((n, i) => n + i.bytes, 0);
  const margin = MEMORY_MARGIN_BYTES + MEMORY_MARGIN_FRACTION * need;
  return { need, margin, total: need + margin };
}

/**
 * E_OUT_OF_MEMORY when `items` (plus the margin) exceed the available memory, naming the job, every part of the
 * estimate and both figures; returns the estimate otherwise (for the report).
 */
export function assertMemoryFor(job: string, items: readonly MemoryItem[], source: string, hint: string): { need: number; total: number; available: number } {
  const { need, margin, total } = withMargin(items);
  const available = availableMemory();
  if (total > available) {
    throw new UltraSketchError(
      ErrorCodes.OUT_OF_MEMORY,
      `${job} needs about ${formatGiB(total)} of memory (${items.map((i) => `${i.what} ${formatGiB(i.bytes)}`).join(' + ')} + margin ${formatGiB(margin)}), ` +
        `and ${formatGiB(available)} is available`,
      { source, hint },
    );
  }
  return { need, total, available };
}
