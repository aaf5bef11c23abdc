import { readFileSync } from 'node:fs';
import { UltraSketchError, f16BitsToF32 } from '@ultrasketch/core';
import { readLlama2cCheckpoint, readLlama2cTokenizer } from '@ultrasketch/format';
import { LlamaForward, type ModelWeights, Tokenizer, modelFromLlama2c } from '@ultrasketch/model';
import { type SaliencyStats, collectSaliency } from '@ultrasketch/saliency';
import { type LittleBitParams, unpackSigns } from '../src/index.js';

// What littlebit.test.ts and refine.test.ts share: the error code of a throw, the stored-form oracle, and
// stories3M with real calibration statistics.

/** The UltraSketchError code `fn` throws (`untyped: …` for any other throw); undefined when it does not throw. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof UltraSketchError ? err.code : `untyped: ${String(err)}`;
  }
  return undefined;
}

/** Ŵ_ij = Σ_paths h_i g_j Σ_k ℓ_k U_s[i,k] V_s[j,k], straight from the stored tensors (independent of the codec). */
export function denseFromStored(p: LittleBitParams): Float64Array {
  const { rows, cols, rank } = p;
  const out = new Float64Array(rows * cols);
  for (const path of p.paths) {
    const U = unpackSigns(path.uSigns, rows * rank); // [out, r]
    const Vt = unpackSigns(path.vSigns, rank * cols); // [r, in]
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let k = 0; k < rank; k++) s += f16BitsToF32(path.l[k]!) * U[i * rank + k]! * Vt[k * cols + j]!;
        out[i * cols + j] += f16BitsToF32(path.h[i]!) * s * f16BitsToF32(path.g[j]!);
      }
    }
  }
  return out;
}

/**
 * stories3M (the q80 checkpoint in ../shared) and the calibration statistics (E[a_j²] of each linear's inputs)
 * the float model measures on the first `maxTokens` tokens of calib.txt.
 */
export function stories3MCalibrated(maxTokens = 1024): { model: ModelWeights; stats: SaliencyStats } {
  const shared = new URL('../../../../shared/', import.meta.url);
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL('models/stories3M/stories3M-q80.bin', shared))));
  const tok = Tokenizer.fromLlama2c(readLlama2cTokenizer(readFileSync(new URL('models/stories3M/tok4096.bin', shared)), model.config.vocabSize));
  const tokens: number[] = [];
  for (const doc of readFileSync(new URL('data/tinystories/calib.txt', shared), 'utf8').split('\n\n')) {
    if (tokens.length >= maxTokens) break;
    if (doc.trim()) tokens.push(...tok.encode(doc.trim(), { bos: true, eos: false }));
  }
  const stats = collectSaliency({ forward: LlamaForward.fromWeights(model), tokens, maxTokens });
  return { model, stats };
}
