import { type ErrorCode, ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * What went wrong on the GPU side, finer than the core error code:
 * - `no-webgpu`: no `GPU` object was given (navigator.gpu missing, or the Node `webgpu` package not loaded);
 * - `no-adapter`: requestAdapter() found none (no driver; in Node without a GPU see docs/webgpu.md: SwiftShader);
 * - `limits`: the adapter cannot give a limit the model needs (a buffer larger than its binding limit, ...);
 * - `out-of-memory`: the device could not allocate a buffer (code E_OUT_OF_MEMORY);
 * - `device-lost`: the device was lost (driver reset, another tab took the GPU, destroy()) (code E_DEVICE_LOST);
 * - `validation`: the device rejected a command (a bug in this runtime: please report it);
 * - `disposed`: the session was used after dispose().
 */
export type GpuFailure = 'no-webgpu' | 'no-adapter' | 'limits' | 'out-of-memory' | 'device-lost' | 'validation' | 'disposed';

const CODE: Record<GpuFailure, ErrorCode> = {
  'no-webgpu': ErrorCodes.UNSUPPORTED,
  'no-adapter': ErrorCodes.UNSUPPORTED,
  limits: ErrorCodes.LIMIT_EXCEEDED,
  'out-of-memory': ErrorCodes.OUT_OF_MEMORY,
  'device-lost': ErrorCodes.DEVICE_LOST,
  validation: ErrorCodes.UNSUPPORTED,
  disposed: ErrorCodes.BAD_ARGUMENT,
};

/**
 * A typed WebGPU failure: an `UltraSketchError` (stable `code`, `source`, `hint`) that also says which GPU
 * failure it was (`failure`), so callers can tell "retry with a smaller context" (out-of-memory) from
 * "recreate the session" (device-lost) without parsing messages.
 */
export class WebGpuError extends UltraSketchError {
  readonly failure: GpuFailure;

  constructor(failure: GpuFailure, problem: string, options: { source?: string; hint?: string; cause?: unknown } = {}) {
    super(CODE[failure], problem, { source: options.source ?? 'webgpu', ...options });
    this.failure = failure;
  }
}

/** The stable core error code a GPU failure is reported with. */
export function gpuFailureCode(failure: GpuFailure): ErrorCode {
  return CODE[failure];
}

export function isWebGpuError(err: unknown, failure?: GpuFailure): err is WebGpuError {
  return err instanceof WebGpuError && (failure === undefined || err.failure === failure);
}
