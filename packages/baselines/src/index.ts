import { registerCodec } from '@ultrasketch/core';
import { binaryCodec } from './binary.js';
import { floatCodec } from './float.js';
import { rtnCodec } from './rtn.js';
import { vqCodec } from './vq.js';

export { rtnCodec, rtnGroupLength, rtnGroupsPerRow, RTN_BITS } from './rtn.js';
export type { RtnOptions, RtnParams } from './rtn.js';
export { binaryCodec } from './binary.js';
export type { BinaryOptions, BinaryParams } from './binary.js';
export { floatCodec } from './float.js';
export { vqCodec, vqEncode } from './vq.js';
export type { VqOptions, VqParams } from './vq.js';
export type { FloatOptions, FloatParams } from './float.js';

/** Register this package's codecs (float, rtn, binary, vq). Explicit and idempotent. */
export function registerBaselineCodecs(): void {
  registerCodec(floatCodec);
  registerCodec(rtnCodec);
  registerCodec(binaryCodec);
  registerCodec(vqCodec);
}

/**
 * @deprecated Use `registerBaselineCodecs`: three packages exported this same name, which collides when a
 * consumer imports them together. Kept as an alias so existing imports keep working.
 */
export const registerAll: () => void = registerBaselineCodecs;
