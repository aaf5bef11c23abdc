import { readFileSync } from 'node:fs';
import { UltraSketchError } from '@ultrasketch/core';

/** A file under ../shared (the read-only models and data next to the checkout), read in place. */
export const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);
export const bytes = (p: string) => new Uint8Array(readFileSync(shared(p)));

/** The UltraSketchError `fn` throws, for assertions on its code and fields; fails when it throws none (or another kind). */
export function caught(fn: () => unknown): UltraSketchError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UltraSketchError) return err;
    throw err;
  }
  throw new Error('expected an UltraSketchError');
}
