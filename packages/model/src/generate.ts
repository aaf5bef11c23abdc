import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/** Picks the next token from a position's logits (a `Sampler`, or argmax). */
export interface TokenPicker {
  sample(logits: Float32Array): number;
}

export interface GenerateOptions {
  /** Total positions to run, prompt included (llama2.c's `steps`). */
  steps: number;
  picker: TokenPicker;
  /** Stop when the model emits this token (llama2.c stops at BOS = 1). Default 1; -1 never stops. */
  stopToken?: number;
}

/** One generation step: the token fed at `pos`, and the logits it produced for position pos+1. */
export interface GenerateStep {
  pos: number;
  token: number;
  logits: Float32Array;
  /** The token chosen to feed next (the prompt's next token while still inside the prompt). */
  next: number;
}

/**
 * llama2.c's generation loop over any single-position step function: feed prompt tokens one by one,
 * then feed back what the picker chooses; stop after `steps` positions or at `stopToken`.
 * The step function may be async (WebGPU); the Node runtime passes a synchronous one.
 */
export async function* generateTokens(
  step: (token: number, pos: number) => Float32Array | Promise<Float32Array>,
  prompt: readonly number[],
  options: GenerateOptions,
): AsyncGenerator<GenerateStep> {
  if (prompt.length === 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'generation needs at least one prompt token (BOS)');
  }
  if (!Number.isInteger(options.steps) || options.steps < 1) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `steps must be a positive integer, got ${options.steps}`);
  }
  const stop = options.stopToken ?? 1;
  let token = prompt[0]!;
  for (let pos = 0; pos < options.steps; pos++) {
    const logits = await step(token, pos);
    const next = pos + 1 < prompt.length ? prompt[pos + 1]! : options.picker.sample(logits);
    yield { pos, token, logits, next };
    if (next === stop) return;
    token = next;
  }
}
