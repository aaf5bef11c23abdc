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
export function registerAll(): void {
  registerCodec(littlebitCodec);
}
