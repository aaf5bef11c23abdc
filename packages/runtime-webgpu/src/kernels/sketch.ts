import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { HashedNetsParams, SketchParams } from '@ultrasketch/sketch-core';
import type { GpuLinear, KernelBuildContext } from '../linear.js';

export function sketchKernel(_p: SketchParams, b: KernelBuildContext): GpuLinear {
  throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'sketch kernel: not yet', { source: b.name });
}

export function hashednetsKernel(_p: HashedNetsParams, b: KernelBuildContext): GpuLinear {
  throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'hashednets kernel: not yet', { source: b.name });
}
