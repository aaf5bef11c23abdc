import { registerAll as registerBaselines } from '@ultrasketch/baselines';
import { registerAll as registerLittleBit } from '@ultrasketch/littlebit';
import { registerAllKernels } from '@ultrasketch/runtime-node';
import { registerAll as registerSketch } from '@ultrasketch/sketch-core';

/**
 * Register every codec this toolkit ships (baselines, sketch and hashednets, littlebit) and the CPU
 * kernels for them. Explicit and idempotent: the pipeline calls it before encoding or reading a bundle.
 */
export function registerAllCodecs(): void {
  registerBaselines();
  registerSketch();
  registerLittleBit();
  registerAllKernels();
}
