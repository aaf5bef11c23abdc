import { registerCodec } from '@ultrasketch/core';
import { hashedNetsCodec } from './hashednets.js';
import { sketchCodec } from './sketch.js';

export {
  HASH_FAMILIES,
  MAX_HASH_WIDTH,
  MixedHashFamily,
  RowRunHashFamily,
  createHashFamily,
  familyKey,
  fmix32,
  isHashFamilyName,
  occupancy,
  reduceRange,
} from './hash.js';
export type { HashFamily, HashFamilyConfig, HashFamilyName, OccupancyStats } from './hash.js';
export { buildAbsMaxMin, queryAbsMaxMinRow } from './absmaxmin.js';
export { SKETCH_QUERIES, buildSignMean, columnSigns, groupColumnSigns, querySignMeanRow } from './signmean.js';
export type { SketchQuery } from './signmean.js';
export {
  STATE_BITS,
  STATE_FORMATS,
  allocStates,
  f16BitsTowardZero,
  int8ScaleBits,
  int8TowardZero,
  quantizeRow,
  stateValue,
} from './states.js';
export type { StateArray, StateFormat } from './states.js';
export {
  ALLOC_KINDS,
  SPLIT_KINDS,
  allocateStates,
  allocationTargets,
  channelScores,
  groupAllocationOf,
  groupChannels,
  minGroupStates,
  partitionChannels,
} from './alloc.js';
export type { AllocKind, GroupAllocation, GroupDemand, SplitKind } from './alloc.js';
export {
  SKETCH_DEFAULT_HASH,
  SKETCH_MAX_GROUPS,
  SKETCH_MAX_ROWS,
  SKETCH_OPTION_KEYS,
  countSplitSizes,
  dequantizeStates,
  groupMapBits,
  sketchBudget,
  sketchCodec,
  sketchGroups,
  sketchMinBpw,
  sketchSoftQuery,
  smallestTarget,
  targetBits,
} from './sketch.js';
export type { SketchBudget, SketchGroup, SketchOptions, SketchParams } from './sketch.js';
export { hashedNetsCodec, hashedNetsFamily, hashedNetsMinBpw, hashedNetsWidth } from './hashednets.js';
export type { HashedNetsOptions, HashedNetsParams } from './hashednets.js';

/** Register this package's codecs (sketch, hashednets). Explicit and idempotent. */
export function registerSketchCodecs(): void {
  registerCodec(sketchCodec);
  registerCodec(hashedNetsCodec);
}

/**
 * @deprecated Use `registerSketchCodecs`: three packages exported this same name, which collides when a
 * consumer imports them together. Kept as an alias so existing imports keep working.
 */
export const registerAll: () => void = registerSketchCodecs;
