import { registerAllCodecs } from './codecs.js';
import { createHash } from 'node:crypto';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type Bundle, LIMITS, USK_TOKENIZER_TENSOR, readBundle, readLlama2cTokenizer } from '@ultrasketch/format';
import {
  type ModelConfig,
  type ModelWeights,
  Tokenizer,
  expectedTensors,
  validateModelConfig,
} from '@ultrasketch/model';
import { type BundleAccounting, type BitsAndWeights, bundleAccounting, weightRole } from './accounting.js';
import { type LoadedModel, loadModelFromBytes, readFileChecked } from './load.js';
import { looksLikeSafetensorsBytes } from './sniff.js';

export interface LoadBundleOptions {
  /** Verify every tensor's CRC-32 (default true). */
  verifyChecksums?: boolean;
}

/** A bundle read from disk, validated against its own model config. */
export interface LoadedBundle {
  bundle: Bundle;
  config: ModelConfig;
  tokenizer: Tokenizer;
  /** The embedded tokenizer file's bytes. */
  tokenizerBytes: Uint8Array;
  fileBytes: number;
  /** Recomputed from the stored tensors and the real file size (methods.md §4). */
  accounting: BundleAccounting;
  /** The bundle's `provenance` / `quality` sections, as stored (null when absent). */
  provenance: Record<string, unknown> | null;
  quality: Record<string, unknown> | null;
  source: { path: string; format: 'usk'; fileBytes: number; sha256: string };
}

/** Read, validate and account a `.usk` bundle file. Every failure is a typed error naming the file. */
export function loadBundle(path: string, options: LoadBundleOptions = {}): LoadedBundle {
  return loadBundleFromBytes(readFileChecked(path, 'bundle'), path, options);
}

/** `loadBundle` for bytes already in memory; `source` (a path) names them in errors. */
export function loadBundleFromBytes(bytes: Uint8Array, source: string, options: LoadBundleOptions = {}): LoadedBundle {
  registerAllCodecs();
  const bundle = readBundle(bytes, source, options.verifyChecksums === undefined ? {} : { verifyChecksums: options.verifyChecksums });
  const config = bundleModelConfig(bundle, source);
  checkBundleTensors(bundle, config, source);
  const tokenizerBytes = bundle.tokenizer.bytes;
  const tokenizer = Tokenizer.fromLlama2c(
    readLlama2cTokenizer(tokenizerBytes, config.vocabSize, `${source} (${USK_TOKENIZER_TENSOR})`),
    source,
  );
  const accounting = bundleAccounting(bundle, config, bytes.byteLength, source);
  const section = (key: string): Record<string, unknown> | null => {
    const v = bundle.sections[key];
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  };
  return {
    bundle,
    config,
    tokenizer,
    tokenizerBytes,
    fileBytes: bytes.byteLength,
    accounting,
    provenance: section('provenance'),
    quality: section('quality'),
    source: {
      path: source,
      format: 'usk',
      fileBytes: bytes.byteLength,
      sha256: createHash('sha256').update(bytes).digest('hex'),
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
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `model architecture ${JSON.stringify(raw.architecture)} is not supported`, {
      source,
      hint: 'this build runs Llama-family models',
    });
  }
  for (const key of CONFIG_NUMBERS) if (typeof raw[key] !== 'number') bad(`${key} is ${JSON.stringify(raw[key])}, expected a number`);
  if (raw.ropeLayout !== 'pairs' && raw.ropeLayout !== 'halves') bad(`ropeLayout is ${JSON.stringify(raw.ropeLayout)}, expected "pairs" or "halves"`);
  if (typeof raw.tiedClassifier !== 'boolean') bad(`tiedClassifier is ${JSON.stringify(raw.tiedClassifier)}, expected a boolean`);
  const c: ModelConfig = {
    architecture: 'llama',
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
          `weight ${name} is ${w.entry.rows}×${w.entry.cols}, the model config needs ${shape[0]}×${shape[1]}`,
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
        throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `vector ${name} has ${v.length} values, the model config needs ${shape[0]}`, {
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
  role: 'linear' | 'embedding' | 'classifier' | 'norm' | 'tokenizer';
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

export interface InspectTotals {
  /** methods.md §4: bits of the compressed linears ÷ their weights. */
  bpwLinears: number;
  /** methods.md §4: 8 × fileBytes ÷ params, from the real file size. */
  bitsPerParam: number;
  fileBytes: number;
  params: number;
  linearBits: number;
  linearWeights: number;
  headerBytes: number;
  tensorBytes: number;
  compressedLinears: number;
  /** Linears of the selected kinds kept in float f16 because the codec could not meet the target on them. */
  keptDense: string[];
  /** Bits of the compressed and kept-dense linears ÷ their weights (= bpwLinears when none was kept). */
  bpwSelectedLinears: number;
  linearCodecs: Record<string, number>;
  groups: Record<string, BitsAndWeights | null>;
}

export interface BundleInspection {
  path: string;
  formatVersion: number;
  config: ModelConfig;
  tensors: InspectRow[];
  totals: InspectTotals;
  provenance: Record<string, unknown> | null;
  quality: Record<string, unknown> | null;
}

/** Everything `ultrasketch inspect` prints: a per-tensor table and the totals of methods.md §4. */
export function inspectBundle(path: string, options: LoadBundleOptions = {}): BundleInspection {
  return inspectLoadedBundle(loadBundle(path, options));
}

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
  const tokBits = 8 * loaded.tokenizerBytes.byteLength;
  rows.push({
    name: USK_TOKENIZER_TENSOR,
    role: 'tokenizer',
    compressed: false,
    keptDense: false,
    codec: 'U8',
    codecVersion: null,
    options: null,
    shape: [loaded.tokenizerBytes.byteLength],
    weights: 0,
    bits: tokBits,
    bpw: null,
    components: { [USK_TOKENIZER_TENSOR]: tokBits },
  });
  return {
    path: loaded.source.path,
    formatVersion: bundle.formatVersion,
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
  };
}

// ------------------------------------------------------------------------------------------------- open

export interface OpenModelOptions extends LoadBundleOptions {
  /** Tokenizer for a llama2.c checkpoint (found next to it when omitted); refused for a bundle. */
  tokenizerPath?: string;
}

/** A model opened for running: a float checkpoint (dense weights) or a bundle (compressed parameters). */
export type OpenedModel =
  | {
      kind: 'checkpoint';
      config: ModelConfig;
      tokenizer: Tokenizer;
      weights: ModelWeights;
      model: LoadedModel;
      source: LoadedModel['source'];
    }
  | {
      kind: 'bundle';
      config: ModelConfig;
      tokenizer: Tokenizer;
      bundle: Bundle;
      loaded: LoadedBundle;
      source: LoadedBundle['source'];
    };

/**
 * Open either a llama2.c checkpoint or a `.usk` bundle, told apart by content (a safetensors header whose
 * metadata says format "ultrasketch.usk"; a plain safetensors file is refused with BAD_MAGIC). A bundle
 * brings its own tokenizer.
 */
export function openModel(path: string, options: OpenModelOptions = {}): OpenedModel {
  const bytes = readFileChecked(path, 'model');
  if (looksLikeSafetensorsBytes(bytes)) {
    if (options.tokenizerPath !== undefined) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a bundle carries its own tokenizer; --tokenizer applies to checkpoints only', {
        source: '--tokenizer',
        hint: `drop --tokenizer when running ${path}`,
      });
    }
    const loaded = loadBundleFromBytes(bytes, path, options);
    return { kind: 'bundle', config: loaded.config, tokenizer: loaded.tokenizer, bundle: loaded.bundle, loaded, source: loaded.source };
  }
  const model = loadModelFromBytes(bytes, path, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath });
  return { kind: 'checkpoint', config: model.weights.config, tokenizer: model.tokenizer, weights: model.weights, model, source: model.source };
}
