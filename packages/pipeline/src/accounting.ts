import { type BitCount, ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import { type Bundle, USK_PACKED_METADATA_TENSOR, tokenizerTensorNames } from '@ultrasketch/format';
import { type LinearKind, type ModelConfig, TensorNames, parameterCount, parseLinearName } from '@ultrasketch/model';

/**
 * Bit accounting, exactly as docs/methods.md §4 defines it (and docs/bundle.md repeats):
 * - bpwLinears = every bit stored for the COMPRESSED linears (all their component tensors: codes, scales,
 *   offsets, signs, states, maps, padding) ÷ the number of weights in those linears;
 * - bitsPerParam = 8 × the size of the whole bundle file ÷ all parameters of the model (`parameterCount`:
 *   embeddings, norms, classifier and uncompressed linears included; a tied classifier counted once).
 * bitsPerParam cannot be stored inside the file it measures (the number would change the file's size), so
 * the `accounting` section holds everything else and readers compute bitsPerParam from the real file size.
 */

/** Bits and weights of a group of tensors. */
export interface BitsAndWeights {
  bits: number;
  weights: number;
}

/** One 2-D weight's stored cost. */
export interface WeightAccounting {
  codec: string;
  /** rows × cols. */
  weights: number;
  /** Exact stored bits (8 × the bytes of its component tensors). */
  bits: number;
  /** Bits by component tensor (e.g. codes, scales, offsets). */
  components: Record<string, number>;
}

/** The `accounting` section stored in a bundle (everything but bitsPerParam; see above). */
export interface StoredAccounting {
  /** Where the definitions come from. */
  definition: string;
  params: number;
  linearBits: number;
  linearWeights: number;
  bpwLinears: number;
  /** The codec the compressed linears use. */
  linearCodec: { id: string; version: number; options: unknown };
  /** Which linear kinds were compressed ('q', 'k', ...). */
  layers: LinearKind[];
  /** Canonical names of the compressed linears, in model order. */
  compressedLinears: string[];
  /**
   * Linears of the selected kinds that the codec could not store at the target (too small) and that were
   * kept in float f16 instead (`smallMatrix: 'keep'`); absent when there are none.
   */
  keptDense?: string[];
  groups: AccountingGroups;
  /** Every 2-D weight's cost, by name. */
  weights: Record<string, WeightAccounting>;
}

export interface AccountingGroups {
  compressedLinears: BitsAndWeights;
  /** Linears kept in float (stored with the `float` codec), e.g. o_proj for the sketch method. */
  uncompressedLinears: BitsAndWeights;
  embedding: BitsAndWeights;
  /** Absent (null) when the classifier is tied to the embedding. */
  classifier: BitsAndWeights | null;
  /** RMSNorm weights, stored F32. */
  norms: BitsAndWeights;
  /** The embedded tokenizer file (no parameters). */
  tokenizer: BitsAndWeights;
  /**
   * Format 3 only: the deflated metadata tensor (`usk.metadata`; no parameters). Absent in format 1 and 2, whose
   * metadata is all in the JSON header (`headerBytes`), and in the stored section (a file cannot hold its size).
   */
  metadata?: BitsAndWeights;
}

export const ACCOUNTING_DEFINITION =
  'docs/methods.md §4: bpwLinears = bits stored for the compressed linears / their weights; ' +
  'bitsPerParam = 8 × file bytes / params, computed by readers from the real file size (a file cannot store its own size)';

/** What a 2-D weight is in the model. */
export type WeightRole = 'linear' | 'embedding' | 'classifier';

export function weightRole(name: string): WeightRole | undefined {
  if (name === TensorNames.embedding) return 'embedding';
  if (name === TensorNames.classifier) return 'classifier';
  return parseLinearName(name) ? 'linear' : undefined;
}

export function toWeightAccounting(codec: string, rows: number, cols: number, bits: BitCount): WeightAccounting {
  return { codec, weights: rows * cols, bits: bits.total, components: { ...bits.components } };
}

/** Sum groups from per-weight costs, the compressed set, norm lengths and tokenizer bytes. */
export function accountingGroups(
  weights: Record<string, WeightAccounting>,
  compressed: ReadonlySet<string>,
  normWeights: number,
  tokenizerBytes: number,
): AccountingGroups {
  const zero = (): BitsAndWeights => ({ bits: 0, weights: 0 });
  const groups: AccountingGroups = {
    compressedLinears: zero(),
    uncompressedLinears: zero(),
    embedding: zero(),
    classifier: null,
    norms: { bits: 32 * normWeights, weights: normWeights },
    tokenizer: { bits: 8 * tokenizerBytes, weights: 0 },
  };
  for (const [name, w] of Object.entries(weights)) {
    const role = weightRole(name);
    const g =
      role === 'embedding'
        ? groups.embedding
        : role === 'classifier'
          ? (groups.classifier ??= zero())
          : compressed.has(name)
            ? groups.compressedLinears
            : groups.uncompressedLinears;
    g.bits += w.bits;
    g.weights += w.weights;
  }
  return groups;
}

/** The accounting of a bundle as read: recomputed from its stored tensors, plus the file-level figure. */
export interface BundleAccounting {
  /** Bits of the compressed linears ÷ their weights (methods.md §4). */
  bpwLinears: number;
  /** 8 × fileBytes ÷ params (methods.md §4), from the real file size. */
  bitsPerParam: number;
  fileBytes: number;
  params: number;
  linearBits: number;
  linearWeights: number;
  /** The safetensors JSON header (8-byte length prefix excluded), padding included. */
  headerBytes: number;
  /** All tensor data: fileBytes = 8 + headerBytes + tensorBytes. */
  tensorBytes: number;
  compressedLinears: string[];
  /** Linears of the selected kinds kept in float because the codec could not meet the target on them. */
  keptDense: string[];
  /** Bits of the compressed AND the kept-dense linears ÷ their weights (= bpwLinears when none was kept). */
  bpwSelectedLinears: number;
  /** Codec id → number of compressed linears using it. */
  linearCodecs: Record<string, number>;
  /** Where the compressed set came from: the bundle's accounting section, or the fallback rule. */
  compressedFrom: 'accounting-section' | 'non-float-linears' | 'all-linears';
  groups: AccountingGroups;
  weights: Record<string, WeightAccounting>;
}

/**
 * Recompute a read bundle's accounting from the tensors actually stored (never trusting stored numbers):
 * each weight's bits are its codec's `bits()` of the parameters read back, checked equal to 8 × the bytes
 * of its component tensors in the file. The compressed set is the accounting section's `compressedLinears`
 * when present; otherwise every linear whose codec is not `float`, or, when all are float, every linear.
 */
export function bundleAccounting(bundle: Bundle, config: ModelConfig, fileBytes: number, source: string): BundleAccounting {
  const weights: Record<string, WeightAccounting> = {};
  for (const [name, w] of bundle.weights) {
    const codec = getCodec(w.entry.codec, w.entry.version, source);
    const bits = codec.bits(w.params);
    let fileComponentBytes = 0;
    const prefix = `${name}.`;
    for (const [tname, t] of bundle.file.tensors) {
      if (tname.startsWith(prefix) && !tname.slice(prefix.length).includes('.')) fileComponentBytes += t.data.byteLength;
    }
    if (bits.total !== 8 * fileComponentBytes) {
      throw new UltraSketchError(
        ErrorCodes.UNSUPPORTED,
        `codec ${w.entry.codec} counts ${bits.total} bits for weight ${name}, but ${fileComponentBytes} bytes are stored for it`,
        { source, hint: 'the codec\'s bits() disagrees with what it stores; this is a bug in the codec' },
      );
    }
    weights[name] = toWeightAccounting(w.entry.codec, w.entry.rows, w.entry.cols, bits);
  }

  const linears = [...bundle.weights.keys()].filter((n) => weightRole(n) === 'linear');
  let compressed: string[];
  let compressedFrom: BundleAccounting['compressedFrom'];
  const section = bundle.sections.accounting as Record<string, unknown> | undefined;
  if (section !== undefined && section !== null && typeof section === 'object' && 'compressedLinears' in section) {
    const list = section.compressedLinears;
    if (!Array.isArray(list) || list.length === 0 || list.some((n) => typeof n !== 'string' || weightRole(n) !== 'linear' || !bundle.weights.has(n))) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'accounting.compressedLinears must list linear weights present in the bundle', {
        source,
        hint: 'the bundle\'s metadata is corrupt',
      });
    }
    compressed = [...new Set(list as string[])];
    compressedFrom = 'accounting-section';
  } else {
    compressed = linears.filter((n) => bundle.weights.get(n)!.entry.codec !== 'float');
    compressedFrom = 'non-float-linears';
    if (compressed.length === 0) {
      compressed = linears;
      compressedFrom = 'all-linears';
    }
  }
  const compressedSet = new Set(compressed);
  compressed = linears.filter((n) => compressedSet.has(n)); // model order
  let keptDense: string[] = [];
  if (section !== undefined && section !== null && typeof section === 'object' && 'keptDense' in section) {
    const list = section.keptDense;
    if (
      !Array.isArray(list) ||
      list.some((n) => typeof n !== 'string' || weightRole(n) !== 'linear' || !bundle.weights.has(n) || compressedSet.has(n))
    ) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'accounting.keptDense must list stored linears that are not compressed', {
        source,
        hint: 'the bundle\'s metadata is corrupt',
      });
    }
    const keptSet = new Set(list as string[]);
    keptDense = linears.filter((n) => keptSet.has(n));
  }
  const linearCodecs: Record<string, number> = {};
  for (const n of compressed) linearCodecs[weights[n]!.codec] = (linearCodecs[weights[n]!.codec] ?? 0) + 1;

  let normWeights = 0;
  for (const v of bundle.vectors.values()) normWeights += v.length;
  // Every tensor the tokenizer is stored in (hf-json has two: tokenizer.json and tokenizer_config.json).
  const tokenizerBytes = tokenizerTensorNames(bundle.tokenizer.kind).reduce((n, name) => n + (bundle.file.tensors.get(name)?.data.byteLength ?? 0), 0);
  const groups = accountingGroups(weights, compressedSet, normWeights, tokenizerBytes);
  const packedMetadata = bundle.formatVersion === 3 ? bundle.file.tensors.get(USK_PACKED_METADATA_TENSOR) : undefined;
  if (packedMetadata) groups.metadata = { bits: 8 * packedMetadata.data.byteLength, weights: 0 };
  const params = parameterCount(config);
  const linearBits = groups.compressedLinears.bits;
  const linearWeights = groups.compressedLinears.weights;
  const tensorBytes = fileBytes - 8 - bundle.file.headerBytes;
  return {
    bpwLinears: linearWeights === 0 ? 0 : linearBits / linearWeights,
    bitsPerParam: (8 * fileBytes) / params,
    fileBytes,
    params,
    linearBits,
    linearWeights,
    headerBytes: bundle.file.headerBytes,
    tensorBytes,
    compressedLinears: compressed,
    keptDense,
    bpwSelectedLinears: selectedBits(weights, [...compressed, ...keptDense]),
    linearCodecs,
    compressedFrom,
    groups,
    weights,
  };
}

function selectedBits(weights: Record<string, WeightAccounting>, names: string[]): number {
  let bits = 0;
  let n = 0;
  for (const name of names) {
    bits += weights[name]!.bits;
    n += weights[name]!.weights;
  }
  return n === 0 ? 0 : bits / n;
}
