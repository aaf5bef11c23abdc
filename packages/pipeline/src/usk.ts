import { registerAllCodecs } from './codecs.js';
import { ErrorCodes, UltraSketchError, describeValue } from '@ultrasketch/core';
import { type Bundle, type BundleIntegrity, LIMITS, LLAMA_FAMILY_ARCHITECTURES, USK_PACKED_METADATA_TENSOR, readBundle, sha256Hex, tokenizerTensorNames } from '@ultrasketch/format';
import {
  type ModelConfig,
  type ModelWeights,
  TensorNames,
  type TextTokenizer,
  expectedTensors,
  headDim,
  kvDim,
  validateModelConfig,
} from '@ultrasketch/model';
import { type BundleAccounting, type BitsAndWeights, bundleAccounting, weightRole } from './accounting.js';
import type { LoadedModel } from './load.js';
import { type LoadedTokenizer, bundleTokenizer } from './tokenizers.js';

export interface LoadBundleOptions {
  /** Verify every tensor's CRC-32 (default true). The metadata checksum is always verified. */
  verifyChecksums?: boolean;
}

/** A bundle read from disk, validated against its own model config. */
export interface LoadedBundle {
  bundle: Bundle;
  config: ModelConfig;
  tokenizer: TextTokenizer;
  /** The embedded tokenizer: its kind, the ids generation stops at. */
  tokenizerInfo: LoadedTokenizer;
  /** The embedded tokenizer's main bytes (a llama2.c tokenizer file, or tokenizer.json); every tokenizer tensor is in `bundle.tokenizer`. */
  tokenizerBytes: Uint8Array;
  fileBytes: number;
  /** Recomputed from the stored tensors and the real file size (methods.md §4). */
  accounting: BundleAccounting;
  /** The bundle's `provenance` / `quality` sections, as stored (null when absent). */
  provenance: Record<string, unknown> | null;
  quality: Record<string, unknown> | null;
  /** The `training` section (recipe, cost, final and held-out losses) of a finetuned bundle, else null. */
  training: Record<string, unknown> | null;
  /** What the checksums covered on this read (a version-1 bundle has no metadata checksum). */
  integrity: BundleIntegrity;
  source: { path: string; format: 'usk'; fileBytes: number; sha256: string };
}

/**
 * Bundles from bytes, with nothing of Node: this module is part of the browser entry (src/browser.ts). The
 * file-based functions (loadBundle, inspectBundle, openModel of a path) are in usk-files.ts.
 */

/**
 * Validate and account a bundle already in memory; `source` (a path or a name) names it in errors. `hashHex`
 * computes the SHA-256 recorded in `source` (the Node entry passes node:crypto's, several times faster on a
 * large bundle than the portable one used by default).
 */
export function bundleFromBytes(
  bytes: Uint8Array,
  source: string,
  options: LoadBundleOptions = {},
  hashHex: (bytes: Uint8Array) => string = sha256Hex,
): LoadedBundle {
  registerAllCodecs();
  const bundle = readBundle(bytes, source, options.verifyChecksums === undefined ? {} : { verifyChecksums: options.verifyChecksums });
  const config = bundleModelConfig(bundle, source);
  checkConfigAgainstTensors(bundle, config, source);
  checkBundleTensors(bundle, config, source);
  const tokenizerBytes = bundle.tokenizer.bytes;
  const tokenizerInfo = bundleTokenizer(bundle, config, source);
  const tokenizer = tokenizerInfo.tokenizer;
  const accounting = bundleAccounting(bundle, config, bytes.byteLength, source);
  const section = (key: string): Record<string, unknown> | null => {
    const v = bundle.sections[key];
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  };
  const provenance = section('provenance');
  return {
    bundle,
    config,
    tokenizer,
    tokenizerInfo,
    tokenizerBytes,
    fileBytes: bytes.byteLength,
    accounting,
    provenance,
    quality: section('quality'),
    training: section('training'),
    integrity: bundle.integrity,
    source: {
      path: source,
      format: 'usk',
      fileBytes: bytes.byteLength,
      sha256: hashHex(bytes),
    },
  };
}

const CONFIG_NUMBERS = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen', 'normEps', 'ropeTheta'] as const;

/** The bundle's `model_config`, type-checked field by field, within limits, and consistent. */
export function bundleModelConfig(bundle: Bundle, source: string): ModelConfig {
  const raw = bundle.config;
  const bad = (problem: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `metadata "model_config": ${problem}`, {
      source,
      hint: 'the bundle is corrupt or was written by an incompatible version',
    });
  };
  if (raw.architecture !== 'llama') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `model architecture ${describeValue(raw.architecture)} is not supported`, {
      source,
      hint: 'this build runs Llama-family models',
    });
  }
  for (const key of CONFIG_NUMBERS) if (typeof raw[key] !== 'number') bad(`${key} is ${describeValue(raw[key])}, expected a number`);
  if (raw.ropeLayout !== 'pairs' && raw.ropeLayout !== 'halves') bad(`ropeLayout is ${describeValue(raw.ropeLayout)}, expected "pairs" or "halves"`);
  if (typeof raw.tiedClassifier !== 'boolean') bad(`tiedClassifier is ${describeValue(raw.tiedClassifier)}, expected a boolean`);
  const c: ModelConfig = {
    architecture: 'llama',
    ...optionalConfigFields(raw, bad),
    dim: raw.dim as number,
    hiddenDim: raw.hiddenDim as number,
    nLayers: raw.nLayers as number,
    nHeads: raw.nHeads as number,
    nKvHeads: raw.nKvHeads as number,
    vocabSize: raw.vocabSize as number,
    seqLen: raw.seqLen as number,
    normEps: raw.normEps as number,
    ropeTheta: raw.ropeTheta as number,
    ropeLayout: raw.ropeLayout as ModelConfig['ropeLayout'],
    tiedClassifier: raw.tiedClassifier as boolean,
  };
  const limit = (value: number, max: number, what: string) => {
    if (value > max) {
      throw new UltraSketchError(ErrorCodes.LIMIT_EXCEEDED, `model_config ${what} = ${value} exceeds the limit of ${max}`, { source });
    }
  };
  limit(c.dim, LIMITS.maxModelDim, 'dim');
  limit(c.hiddenDim, LIMITS.maxModelDim, 'hiddenDim');
  limit(c.nLayers, LIMITS.maxLayers, 'nLayers');
  limit(c.nHeads, LIMITS.maxHeads, 'nHeads');
  limit(c.nKvHeads, LIMITS.maxHeads, 'nKvHeads');
  limit(c.vocabSize, LIMITS.maxVocab, 'vocabSize');
  limit(c.seqLen, LIMITS.maxSeqLen, 'seqLen');
  validateModelConfig(c, source);
  return c;
}

/**
 * The Llama-family fields a config may carry (issue 11), each passed through only when the bundle stores it, so a
 * bundle written before they existed reads back as exactly the same config. Types are checked here, values by
 * validateModelConfig.
 */
function optionalConfigFields(raw: Record<string, unknown>, bad: (problem: string) => never): Partial<ModelConfig> {
  const out: Partial<ModelConfig> = {};
  if ('sourceArchitecture' in raw) {
    if (!(LLAMA_FAMILY_ARCHITECTURES as readonly unknown[]).includes(raw.sourceArchitecture)) {
      bad(`sourceArchitecture is ${describeValue(raw.sourceArchitecture)}, expected one of ${LLAMA_FAMILY_ARCHITECTURES.join(', ')}`);
    }
    out.sourceArchitecture = raw.sourceArchitecture as ModelConfig['sourceArchitecture'];
  }
  if ('headDim' in raw) {
    if (typeof raw.headDim !== 'number') bad(`headDim is ${describeValue(raw.headDim)}, expected a number`);
    if ((raw.headDim as number) > LIMITS.maxModelDim) bad(`headDim ${raw.headDim as number} exceeds the limit of ${LIMITS.maxModelDim}`);
    out.headDim = raw.headDim as number;
  }
  for (const key of ['qkvBias', 'oBias', 'qkNorm'] as const) {
    if (key in raw) {
      if (typeof raw[key] !== 'boolean') bad(`${key} is ${describeValue(raw[key])}, expected true or false`);
      out[key] = raw[key] as boolean;
    }
  }
  if ('ropeScaling' in raw) {
    const rs = raw.ropeScaling;
    if (rs !== null && (typeof rs !== 'object' || Array.isArray(rs))) bad(`ropeScaling is ${describeValue(rs)}, expected an object or null`);
    if (rs !== null) {
      const r = rs as Record<string, unknown>;
      const keys = r.type === 'llama3' ? ['type', 'factor', 'lowFreqFactor', 'highFreqFactor', 'originalMaxPositionEmbeddings'] : r.type === 'freq-factors' ? ['type', 'factors'] : null;
      if (keys === null) bad(`ropeScaling type ${describeValue(r.type)} is unknown (llama3 or freq-factors)`);
      const extra = Object.keys(r).filter((k) => !keys!.includes(k));
      if (extra.length > 0) bad(`ropeScaling has unknown field(s) ${extra.join(', ')}`);
      if (r.type === 'freq-factors' && (!Array.isArray(r.factors) || r.factors.length > LIMITS.maxModelDim)) bad('ropeScaling.factors is not a list of at most maxModelDim numbers');
    }
    out.ropeScaling = rs as ModelConfig['ropeScaling'];
  }
  return out;
}

const CONFIG_DISAGREES = 'the bundle\'s model_config does not match its tensors: the header was damaged or edited; re-create the bundle';

/**
 * The model config against what the tensors themselves say: the embedding's rows and columns (vocabSize,
 * dim), the first layer's gate_proj rows (hiddenDim) and k_proj rows (nKvHeads × dim / nHeads), the
 * number of layers stored (nLayers), whether lm_head is stored (tiedClassifier). A disagreement is refused
 * with a typed error naming the config field, so a wrong field reads as a wrong field, not as a broken
 * weight. (normEps, ropeTheta, ropeLayout and seqLen leave no trace in any shape, and neither does
 * changing nHeads and nKvHeads in proportion: only the metadata checksum protects those.)
 * `checkBundleTensors` then checks every tensor one by one.
 */
export function checkConfigAgainstTensors(bundle: Bundle, config: ModelConfig, source: string): void {
  const disagree = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], field: string, evidence: string): never => {
    const value = describeValue((config as unknown as Record<string, unknown>)[field]);
    throw new UltraSketchError(code, `model_config ${field} = ${value} disagrees with the tensors: ${evidence}`, {
      source,
      hint: CONFIG_DISAGREES,
    });
  };
  const shapeOf = (name: string) => {
    const w = bundle.weights.get(name);
    return w ? ([w.entry.rows, w.entry.cols] as const) : undefined;
  };
  const needs = (name: string, rows: number, cols: number, [r, c]: readonly [number, number]) =>
    `weight ${name} is ${r}×${c}, the model config needs ${rows}×${cols}`;

  const embed = shapeOf(TensorNames.embedding);
  if (embed) {
    if (embed[0] !== config.vocabSize) {
      disagree(ErrorCodes.SHAPE_MISMATCH, 'vocabSize', needs(TensorNames.embedding, config.vocabSize, config.dim, embed));
    }
    if (embed[1] !== config.dim) disagree(ErrorCodes.SHAPE_MISMATCH, 'dim', needs(TensorNames.embedding, config.vocabSize, config.dim, embed));
  }

  // Layers stored: one more than the highest layer index any tensor names (a gap below it is left to
  // checkBundleTensors, which names the missing weight).
  let storedLayers = 0;
  let highest = '';
  for (const name of [...bundle.weights.keys(), ...bundle.vectors.keys()]) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m && Number(m[1]) + 1 > storedLayers) {
      storedLayers = Number(m[1]) + 1;
      highest = name;
    }
  }
  if (storedLayers < config.nLayers) {
    const missing = expectedTensors(config).find(([name]) => name.startsWith(`model.layers.${storedLayers}.`))![0];
    disagree(ErrorCodes.MISSING_TENSOR, 'nLayers', `they hold ${storedLayers} layer(s): ${missing} is missing`);
  }
  if (storedLayers > config.nLayers) {
    // Name a tensor of the first layer past the config's count when there is one (the usual case: nLayers too
    // small), else the highest-numbered one.
    const extra = [...bundle.weights.keys(), ...bundle.vectors.keys()].find((n) => n.startsWith(`model.layers.${config.nLayers}.`)) ?? highest;
    disagree(ErrorCodes.BAD_HEADER, 'nLayers', `they hold ${storedLayers} layers: tensor ${extra} is not part of a model with this config`);
  }

  const gate = shapeOf(TensorNames.linear(0, 'gate'));
  if (gate && gate[0] !== config.hiddenDim) {
    disagree(ErrorCodes.SHAPE_MISMATCH, 'hiddenDim', needs(TensorNames.linear(0, 'gate'), config.hiddenDim, config.dim, gate));
  }
  const k = shapeOf(TensorNames.linear(0, 'k'));
  if (k && k[0] !== kvDim(config)) {
    disagree(
      ErrorCodes.SHAPE_MISMATCH,
      'nKvHeads',
      `with nHeads = ${config.nHeads} the key/value width is ${kvDim(config)}, but ${needs(TensorNames.linear(0, 'k'), kvDim(config), config.dim, k)}`,
    );
  }

  const lmHead = bundle.weights.has(TensorNames.classifier);
  if (config.tiedClassifier && lmHead) {
    disagree(ErrorCodes.BAD_HEADER, 'tiedClassifier', `tensor ${TensorNames.classifier} is stored, which a tied classifier is not: it is not part of a model with this config`);
  }
  if (!config.tiedClassifier && !lmHead) {
    disagree(ErrorCodes.MISSING_TENSOR, 'tiedClassifier', `weight ${TensorNames.classifier} is missing`);
  }
}

/** The config fields a tensor's expected shape comes from, for messages. */
function shapeFields(name: string, c: ModelConfig): string {
  const hd = c.headDim === undefined ? 'dim / nHeads' : 'headDim';
  if (name === TensorNames.embedding || name === TensorNames.classifier) return 'vocabSize × dim';
  if (name.endsWith('q_proj.weight')) return `(nHeads · ${hd}) × dim`;
  if (name.endsWith('o_proj.weight')) return `dim × (nHeads · ${hd})`;
  if (name.endsWith('k_proj.weight') || name.endsWith('v_proj.weight')) return `(nKvHeads · ${hd}) × dim`;
  if (name.endsWith('gate_proj.weight') || name.endsWith('up_proj.weight')) return 'hiddenDim × dim';
  if (name.endsWith('down_proj.weight')) return 'dim × hiddenDim';
  if (name.endsWith('q_proj.bias')) return `nHeads · ${hd}`;
  if (name.endsWith('k_proj.bias') || name.endsWith('v_proj.bias')) return `nKvHeads · ${hd}`;
  if (name.endsWith('q_norm.weight') || name.endsWith('k_norm.weight')) return hd;
  return 'dim';
}

/**
 * When a bundle is run next to a checkpoint given as its reference (eval --reference, bench --baseline),
 * compare the checkpoint's SHA-256 with the source hash the bundle recorded. A mismatch is a warning, not
 * an error: comparing with another checkpoint (a q80 copy, another model) is legitimate, but the user
 * should know the comparison is not against the bundle's own source. Returns the warning, or null when the
 * hashes agree or the bundle recorded no SHA-256 to compare with (a library caller may store its own
 * provenance; the provenance section is a report, so a bundle is never refused for it).
 */
export function referenceSourceWarning(
  provenance: Record<string, unknown> | null,
  reference: { path: string; sha256: string },
): string | null {
  const recorded = provenance?.sourceSha256;
  if (typeof recorded !== 'string' || !/^[0-9a-f]{64}$/i.test(recorded)) return null;
  if (recorded.toLowerCase() === reference.sha256.toLowerCase()) return null;
  const from = typeof provenance?.sourcePath === 'string' ? ` (${provenance.sourcePath})` : '';
  return (
    `the reference ${reference.path} (sha256 ${reference.sha256.slice(0, 16)}…) is not the checkpoint this bundle was compressed from` +
    `${from}, sha256 ${recorded.slice(0, 16)}…: the comparison is against another model`
  );
}

/**
 * Every tensor the config needs is present with the right shape (2-D weights as codec entries, 1-D as F32
 * vectors), and the bundle holds nothing else.
 */
export function checkBundleTensors(bundle: Bundle, config: ModelConfig, source: string): void {
  const expected = new Set<string>();
  for (const [name, shape] of expectedTensors(config)) {
    expected.add(name);
    if (shape.length === 2) {
      const w = bundle.weights.get(name);
      if (!w) {
        throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `weight ${name} is missing`, {
          source,
          hint: 'the bundle is incomplete for its model config',
        });
      }
      if (w.entry.rows !== shape[0] || w.entry.cols !== shape[1]) {
        throw new UltraSketchError(
          ErrorCodes.SHAPE_MISMATCH,
          `weight ${name} is ${w.entry.rows}×${w.entry.cols}, the model config needs ${shape[0]}×${shape[1]} (${shapeFields(name, config)})`,
          { source, hint: 'the bundle does not match its model config' },
        );
      }
    } else {
      const v = bundle.vectors.get(name);
      if (!v) {
        throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `vector ${name} is missing`, {
          source,
          hint: 'the bundle is incomplete for its model config',
        });
      }
      if (v.length !== shape[0]) {
        throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `vector ${name} has ${v.length} values, the model config needs ${shape[0]} (${shapeFields(name, config)})`, {
          source,
          hint: 'the bundle does not match its model config',
        });
      }
      for (let i = 0; i < v.length; i++) {
        if (v[i]! - v[i]! !== 0) {
          throw new UltraSketchError(ErrorCodes.NOT_FINITE, `vector ${name} has a non-finite value (${v[i]}) at index ${i}`, { source });
        }
      }
    }
  }
  for (const name of [...bundle.weights.keys(), ...bundle.vectors.keys()]) {
    if (!expected.has(name)) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `tensor ${name} is not part of a model with this config`, {
        source,
        hint: 'the bundle is corrupt or was written for another architecture',
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------- inspect

/** One row of `inspect`'s table. */
export interface InspectRow {
  name: string;
  role: 'linear' | 'embedding' | 'classifier' | 'norm' | 'tokenizer' | 'metadata';
  /** True for the compressed linears (the ones bpwLinears counts). */
  compressed: boolean;
  /** True for a linear of the selected kinds kept in float because the codec could not meet the target. */
  keptDense: boolean;
  /** Codec id; for tensors stored without a codec, their dtype ('F32' norms, 'U8' tokenizer). */
  codec: string;
  codecVersion: number | null;
  options: unknown;
  shape: number[];
  /** Parameters (0 for the tokenizer). */
  weights: number;
  /** Stored bits (8 × bytes). */
  bits: number;
  /** bits ÷ weights; null for the tokenizer. */
  bpw: number | null;
  components: Record<string, number>;
}

/** `inspect`'s totals: the bundle's accounting (methods.md §4), with the compressed linears counted instead of listed. */
export interface InspectTotals extends Omit<BundleAccounting, 'compressedLinears' | 'compressedFrom' | 'groups' | 'weights'> {
  /** How many linears are compressed. */
  compressedLinears: number;
  groups: Record<string, BitsAndWeights | null>;
}

export interface BundleInspection {
  path: string;
  formatVersion: number;
  /** The embedded tokenizer's kind ('llama2c', 'gguf-llama', 'hf-json') and what it is. */
  tokenizer: { kind: string; description: string; bosId: number; stopIds: number[] };
  /** What the checksums covered (docs/bundle.md, "Integrity"). */
  integrity: BundleIntegrity;
  config: ModelConfig;
  tensors: InspectRow[];
  totals: InspectTotals;
  provenance: Record<string, unknown> | null;
  quality: Record<string, unknown> | null;
  training: Record<string, unknown> | null;
}

/** Everything `ultrasketch inspect` prints (a per-tensor table and the totals of methods.md §4), for a bundle read. */
export function inspectLoadedBundle(loaded: LoadedBundle): BundleInspection {
  const { bundle, config, accounting } = loaded;
  const compressed = new Set(accounting.compressedLinears);
  const kept = new Set(accounting.keptDense);
  const rows: InspectRow[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length === 2) {
      const w = bundle.weights.get(name)!;
      const a = accounting.weights[name]!;
      rows.push({
        name,
        role: weightRole(name)!,
        compressed: compressed.has(name),
        keptDense: kept.has(name),
        codec: w.entry.codec,
        codecVersion: w.entry.version,
        options: w.entry.options,
        shape: [w.entry.rows, w.entry.cols],
        weights: a.weights,
        bits: a.bits,
        bpw: a.bits / a.weights,
        components: a.components,
      });
    } else {
      const bits = 8 * bundle.file.tensors.get(name)!.data.byteLength;
      rows.push({
        name,
        role: 'norm',
        compressed: false,
        keptDense: false,
        codec: 'F32',
        codecVersion: null,
        options: null,
        shape,
        weights: shape[0]!,
        bits,
        bpw: bits / shape[0]!,
        components: { [name]: bits },
      });
    }
  }
  // One row per tensor the tokenizer is stored in (hf-json: tokenizer.json and tokenizer_config.json).
  for (const name of tokenizerTensorNames(bundle.tokenizer.kind)) {
    const n = bundle.file.tensors.get(name)!.data.byteLength;
    rows.push({
      name,
      role: 'tokenizer',
      compressed: false,
      keptDense: false,
      codec: 'U8',
      codecVersion: null,
      options: null,
      shape: [n],
      weights: 0,
      bits: 8 * n,
      bpw: null,
      components: { [name]: 8 * n },
    });
  }
  // Format 3: the deflated metadata is a tensor too, so the rows and the header add up to the file.
  const packed = accounting.groups.metadata;
  if (packed) {
    rows.push({
      name: USK_PACKED_METADATA_TENSOR,
      role: 'metadata',
      compressed: false,
      keptDense: false,
      codec: 'U8',
      codecVersion: null,
      options: null,
      shape: [packed.bits / 8],
      weights: 0,
      bits: packed.bits,
      bpw: null,
      components: { [USK_PACKED_METADATA_TENSOR]: packed.bits },
    });
  }
  return {
    path: loaded.source.path,
    formatVersion: bundle.formatVersion,
    tokenizer: {
      kind: bundle.tokenizer.kind,
      description: loaded.tokenizerInfo.description,
      bosId: loaded.tokenizer.bosId,
      stopIds: loaded.tokenizerInfo.stopIds,
    },
    integrity: loaded.integrity,
    config,
    tensors: rows,
    totals: {
      bpwLinears: accounting.bpwLinears,
      bitsPerParam: accounting.bitsPerParam,
      fileBytes: accounting.fileBytes,
      params: accounting.params,
      linearBits: accounting.linearBits,
      linearWeights: accounting.linearWeights,
      headerBytes: accounting.headerBytes,
      tensorBytes: accounting.tensorBytes,
      compressedLinears: accounting.compressedLinears.length,
      keptDense: accounting.keptDense,
      bpwSelectedLinears: accounting.bpwSelectedLinears,
      linearCodecs: accounting.linearCodecs,
      groups: { ...accounting.groups },
    },
    provenance: loaded.provenance,
    quality: loaded.quality,
    training: loaded.training,
  };
}

// ------------------------------------------------------------------------------------------------- open

/** A model opened for running: a float model (dense weights, any input format) or a bundle (compressed parameters). */
export type OpenedModel =
  | {
      kind: 'checkpoint';
      config: ModelConfig;
      tokenizer: TextTokenizer;
      tokenizerInfo: LoadedTokenizer;
      weights: ModelWeights;
      model: LoadedModel;
      source: LoadedModel['source'];
    }
  | {
      kind: 'bundle';
      config: ModelConfig;
      tokenizer: TextTokenizer;
      tokenizerInfo: LoadedTokenizer;
      bundle: Bundle;
      loaded: LoadedBundle;
      source: LoadedBundle['source'];
    };

/** The bundle form of `OpenedModel`, from a path or from bytes (a browser's file picker, a fetch). */
export type OpenedBundle = Extract<OpenedModel, { kind: 'bundle' }>;

export interface OpenBytesOptions extends LoadBundleOptions {
  /** What names the bytes in errors and in `source.path` (a file name; default "<bytes>"). */
  name?: string;
}

/**
 * Open a `.usk` bundle from bytes for running: validated, its codecs registered, its embedded tokenizer built
 * and its bit figures (`loaded.accounting`: bpwLinears, bitsPerParam) recomputed from the stored tensors. Bytes
 * of anything else (a float checkpoint) are refused with a typed error: only bundles bring their own tokenizer
 * and config, so only they can be opened without a file system.
 */
export function openBundleBytes(
  bytes: Uint8Array,
  options: OpenBytesOptions = {},
  hashHex: (bytes: Uint8Array) => string = sha256Hex,
): OpenedBundle {
  if (!(bytes instanceof Uint8Array)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `openModel(bytes) needs a Uint8Array, got ${describeValue(bytes)}`, {
      hint: 'pass new Uint8Array(await file.arrayBuffer()) (a browser File) or the result of fs.readFileSync',
    });
  }
  const source = options.name ?? '<bytes>';
  if (!looksLikeBundle(bytes)) {
    throw new UltraSketchError(ErrorCodes.BAD_MAGIC, 'these bytes are not a .usk bundle (they do not start with a safetensors header)', {
      source,
      hint: 'open a bundle made by `ultrasketch compress`; float checkpoints are opened by path with openModel(path) in Node',
    });
  }
  return openedBundle(bundleFromBytes(bytes, source, options, hashHex));
}

/** A loaded bundle in its `OpenedModel` form (what openModel answers for a bundle, from bytes or a path). */
export function openedBundle(loaded: LoadedBundle): OpenedBundle {
  return {
    kind: 'bundle',
    config: loaded.config,
    tokenizer: loaded.tokenizer,
    tokenizerInfo: loaded.tokenizerInfo,
    bundle: loaded.bundle,
    loaded,
    source: loaded.source,
  };
}

/**
 * Bytes that start like a safetensors file (a u64 header length that fits, then "{"), as sniff.ts tells them;
 * a llama2.c checkpoint never does. Anything else that is not a bundle gets the bundle reader's own error.
 */
function looksLikeBundle(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 10) return false;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return n >= 2n && n <= BigInt(bytes.byteLength - 8) && bytes[8] === 0x7b;
}
