import { registerCodec } from '@ultrasketch/core';
import { littlebitCodec } from './codec.js';

export { littlebitCodec, littlebitRank, littlebitParamsFormulaBits, LITTLEBIT_DEFAULT_BPW } from './codec.js';
export type { LittleBitOptions, LittleBitParams, RefineObjective } from './codec.js';
export {
  littlebitFormulaBits,
  littlebitFormulaBpw,
  littlebitStoredBits,
  littlebitMinBpw,
  rankForBpw,
  rankForBpwExact,
  resolveRank,
  signWords,
} from './bits.js';
export type { RankRounding, RankSpec } from './bits.js';
export { dualSvidFactors, toPath, pathDense, naiveSignSvd, balanceScales } from './dualSvid.js';
export { refinePaths, lsStep, signStep, workFromFactors, workFromPath, workToPath, workDense, weightedError } from './refine.js';
export type { WorkPath, RefineSettings, RefineResult } from './refine.js';
export type { LittleBitPath, LittleBitFactors, SvdSettings } from './dualSvid.js';
export { packSigns, unpackSigns, signAt, paddingIsZero } from './signs.js';

/** Register this package's codec (littlebit). Explicit and idempotent. */
export function registerLittleBitCodec(): void {
  registerCodec(littlebitCodec);
}

/**
 * @deprecated Use `registerLittleBitCodec`: three packages exported this same name, which collides when a
 * consumer imports them together. Kept as an alias so existing imports keep working.
 */
export const registerAll: () => void = registerLittleBitCodec;
