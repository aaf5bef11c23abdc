import { registerBaselineCodecs } from '@ultrasketch/baselines';
import { registerLittleBitCodec } from '@ultrasketch/littlebit';
import { registerAllKernels } from '@ultrasketch/runtime-node';
import { registerSketchCodecs } from '@ultrasketch/sketch-core';

/**
 * Register every codec this toolkit ships (baselines, sketch and hashednets, littlebit) and the CPU
 * kernels for them. Explicit and idempotent: the pipeline calls it before encoding or reading a bundle.
 */
export function registerAllCodecs(): void {
  registerBaselineCodecs();
  registerSketchCodecs();
  registerLittleBitCodec();
  registerAllKernels();
}
