import { type DType, DTYPE_BYTES, f16ArrayToF32, f32ArrayToF16 } from './dtypes.js';
import { ErrorCodes, UltraSketchError, describeValue } from './errors.js';

/**
 * The codec interface every compression method implements, and the registry that finds a codec by id.
 *
 * A codec turns one weight matrix W [rows, cols] (row-major float32, y = W x) into parameters, and back:
 * - `encode` compresses; `decode` expands to dense (the ORACLE: tests and research only — runtimes compute
 *   from the parameters directly with one fused kernel per codec);
 * - `bits` is the exact storage cost, by component, of what `toTensors` writes;
 * - `toTensors` / `fromTensors` are how parameters live in a bundle: ordinary safetensors tensors.
 *   `fromTensors` validates every dtype, shape and size against (rows, cols, options) before use.
 */

/** A tensor as stored in a file: dtype, shape and raw little-endian bytes. */
export interface StoredTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** Exact storage cost in bits; `total` is the sum of `components`. */
export interface BitCount {
  total: number;
  components: Record<string, number>;
}

/** What a codec may use besides the matrix itself. */
export interface CodecContext {
  /** Canonical tensor name, for messages. */
  name: string;
  /** Seed for anything randomized (hash families, sampling); same seed → same output. */
  seed: number;
  /** Per-input-channel mean squared activation E[a_j²] (length cols), from calibration. */
  saliency?: Float64Array;
}

/** Every codec's parameters carry the matrix shape and the (resolved) options that made them. */
export interface CodecParams<O = unknown> {
  rows: number;
  cols: number;
  options: O;
}

export interface Codec<O = unknown, P extends CodecParams<O> = CodecParams<O>> {
  readonly id: string;
  readonly version: number;
  readonly description: string;
  /** Check user options (CLI flags or stored JSON) and fill defaults; BAD_ARGUMENT on anything invalid. */
  resolveOptions(raw: Record<string, unknown>): O;
  encode(w: Float32Array, rows: number, cols: number, options: O, ctx: CodecContext): P;
  /** Dense reconstruction Ŵ [rows, cols] — the oracle for tests. */
  decode(params: P): Float32Array;
  /** Dense rows [row0, row0 + count) of Ŵ into `out` (embedding lookups decode one row at a time). */
  decodeRows(params: P, row0: number, count: number, out: Float32Array): void;
  bits(params: P): BitCount;
  /** The tensors to store, by component name (the bundle prefixes them with the weight's name). */
  toTensors(params: P): Record<string, StoredTensor>;
  fromTensors(tensors: Record<string, StoredTensor>, rows: number, cols: number, options: O, source: string): P;
}

// ---------------------------------------------------------------------------------------------------------
// Registry. It lives on globalThis under a Symbol.for key so that two copies of this package (a bundler
// duplicating it) share one registry; registration is explicit (`registerCodec`, a package's `register…Codecs()`),
// never an import side effect, and idempotent.

const REGISTRY_KEY = Symbol.for('@ultrasketch/core/codec-registry/v1');

type AnyCodec = Codec<any, any>;

function registry(): Map<string, AnyCodec> {
  const g = globalThis as unknown as Record<symbol, Map<string, AnyCodec> | undefined>;
  return (g[REGISTRY_KEY] ??= new Map());
}

/** Register a codec. Registering the same id again is a no-op (the first registration wins). */
export function registerCodec(codec: AnyCodec): void {
  const r = registry();
  if (!r.has(codec.id)) r.set(codec.id, codec);
}

/** Find a registered codec; UNKNOWN_CODEC (listing the known ids) when absent or of another version. */
export function getCodec(id: string, version?: number, source?: string): AnyCodec {
  const codec = registry().get(id);
  if (!codec) {
    const known = [...registry().keys()].sort().join(', ') || 'none registered';
    throw new UltraSketchError(ErrorCodes.UNKNOWN_CODEC, `unknown codec "${id}" (known: ${known})`, {
      ...(source === undefined ? {} : { source }),
      hint: 'upgrade UltraSketch, or call the registration function of the package that provides the codec (registerBaselineCodecs, registerSketchCodecs, registerLittleBitCodec)',
    });
  }
  if (version !== undefined && version !== codec.version) {
    throw new UltraSketchError(
      ErrorCodes.UNKNOWN_CODEC,
      `codec "${id}" version ${version} is not supported (this build has version ${codec.version})`,
      { ...(source === undefined ? {} : { source }), hint: 'use the UltraSketch version that wrote the file' },
    );
  }
  return codec;
}

export function listCodecs(): string[] {
  return [...registry().keys()].sort();
}

// ---------------------------------------------------------------------------------------------------------
// Helpers codecs share for storing and validating their tensors.

/** Store float values as F16 tensor bytes. */
export function f16Tensor(values: ArrayLike<number>, shape: number[]): StoredTensor {
  return { dtype: 'F16', shape, data: new Uint8Array(f32ArrayToF16(values).buffer) };
}

/** Store f16 bit patterns (already rounded) as an F16 tensor. */
export function f16BitsTensor(bits: Uint16Array, shape: number[]): StoredTensor {
  return { dtype: 'F16', shape, data: new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength) };
}

/** Store raw bytes as a U8 tensor. */
export function u8Tensor(bytes: Uint8Array, shape: number[] = [bytes.length]): StoredTensor {
  return { dtype: 'U8', shape, data: bytes };
}

/** Copy a stored F16 tensor's bit patterns into an aligned Uint16Array. */
export function f16BitsOf(t: StoredTensor): Uint16Array {
  const out = new Uint16Array(t.data.byteLength / 2);
  new Uint8Array(out.buffer).set(t.data);
  return out;
}

/** A stored F16 tensor's values as float32. */
export function f16ValuesOf(t: StoredTensor): Float32Array {
  return f16ArrayToF32(f16BitsOf(t));
}

/**
 * Fetch a component tensor and check its dtype, shape and byte length; a typed error names the tensor and
 * what was expected, so a hostile or mismatched bundle never reaches a kernel.
 */
export function expectStored(
  tensors: Record<string, StoredTensor>,
  component: string,
  dtype: DType,
  shape: number[],
  source: string,
): StoredTensor {
  const t = tensors[component];
  const hint = 'the bundle is corrupt or was written by an incompatible codec version';
  if (!t) {
    throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `codec tensor "${component}" is missing`, { source, hint });
  }
  const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]) || t.data.byteLength !== bytes) {
    throw new UltraSketchError(
      ErrorCodes.SHAPE_MISMATCH,
      `codec tensor "${component}" is ${t.dtype}[${t.shape}] (${t.data.byteLength} bytes), expected ${dtype}[${shape}] (${bytes} bytes)`,
      { source, hint },
    );
  }
  return t;
}

/** Bits of a set of stored tensors, by component: exactly 8 × their bytes. */
export function storedBits(tensors: Record<string, StoredTensor>): BitCount {
  const components: Record<string, number> = {};
  let total = 0;
  for (const [name, t] of Object.entries(tensors)) {
    components[name] = t.data.byteLength * 8;
    total += components[name];
  }
  return { total, components };
}

/** Throw BAD_ARGUMENT for an option value, naming the option and what is allowed. */
export function badOption(codecId: string, option: string, value: unknown, allowed: string): never {
  throw new UltraSketchError(
    ErrorCodes.BAD_ARGUMENT,
    `codec ${codecId}: option ${option} = ${describeValue(value)} is invalid; ${allowed}`,
    { source: `--${option}` },
  );
}
