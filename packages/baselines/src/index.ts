import { registerCodec } from '@ultrasketch/core';
import { binaryCodec } from './binary.js';
import { floatCodec } from './float.js';
import { rtnCodec } from './rtn.js';

export { rtnCodec, rtnGroupLength, rtnGroupsPerRow, RTN_BITS } from './rtn.js';
export type { RtnOptions, RtnParams } from './rtn.js';
export { binaryCodec } from './binary.js';
export type { BinaryOptions, BinaryParams } from './binary.js';
export { floatCodec } from './float.js';
export type { FloatOptions, FloatParams } from './float.js';

/** Register this package's codecs (float, rtn, binary). Explicit and idempotent. */
export function registerAll(): void {
  registerCodec(floatCodec);
  registerCodec(rtnCodec);
  registerCodec(binaryCodec);
}
