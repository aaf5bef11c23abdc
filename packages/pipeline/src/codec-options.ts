import { ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import { SKETCH_OPTION_KEYS } from '@ultrasketch/sketch-core';
import { registerAllCodecs } from './codecs.js';

/**
 * The option keys each shipped codec accepts (its `resolveOptions` rejects any other), so that callers with
 * one set of flags for several codecs (the CLI, `sweep`) can tell which flag applies to which codec.
 */
const CODEC_OPTION_KEYS = new Map<string, readonly string[]>([
  ['float', ['dtype']],
  ['rtn', ['bits', 'groupSize']],
  ['binary', []],
  ['sketch', SKETCH_OPTION_KEYS],
  ['hashednets', ['bpw', 'state']],
  [
    'littlebit',
    ['bpw', 'rank', 'residual', 'rankRounding', 'oversampling', 'powerIterations', 'lsRounds', 'refineSigns', 'refineRounds', 'refineObjective'],
  ],
]);

/** The codecs a `compress` can choose for the linears, in the order help lists them. */
export const COMPRESS_CODECS: readonly string[] = ['rtn', 'binary', 'float', 'sketch', 'hashednets', 'littlebit'];

/** The option keys a codec accepts (undefined for a codec this table does not know). */
export function codecOptionKeys(codecId: string): readonly string[] | undefined {
  return CODEC_OPTION_KEYS.get(codecId);
}

export function setCodecOptionKeys(codecId: string, keys: readonly string[]): void {
  CODEC_OPTION_KEYS.set(codecId, [...keys]);
}

/**
 * Whether these raw options size the codec by a bits-per-weight target (sketch, hashednets, littlebit
 * without an explicit rank) — a sweep runs such a codec once per target; the others (rtn k, binary, float,
 * littlebit with a rank) have fixed bits and run once.
 */
export function isBpwTargeted(codecId: string, raw: Record<string, unknown> = {}): boolean {
  const keys = CODEC_OPTION_KEYS.get(codecId);
  return keys !== undefined && keys.includes('bpw') && (raw.rank === undefined || raw.rank === null);
}

/** Resolve raw options with the codec's own validation (BAD_ARGUMENT / UNKNOWN_CODEC on anything wrong). */
export function resolveCodecOptions(codecId: string, raw: Record<string, unknown>): unknown {
  registerAllCodecs();
  return getCodec(codecId, undefined, '--codec').resolveOptions(raw);
}

/** Keep only the keys of `raw` that `codecId` accepts. */
export function optionsFor(codecId: string, raw: Record<string, unknown>): Record<string, unknown> {
  const keys = CODEC_OPTION_KEYS.get(codecId);
  if (!keys) {
    throw new UltraSketchError(ErrorCodes.UNKNOWN_CODEC, `no option table for codec "${codecId}"`, { source: '--codec' });
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) if (raw[k] !== undefined) out[k] = raw[k];
  return out;
}
