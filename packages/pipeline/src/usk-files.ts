import { createHash } from 'node:crypto';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { loadCheckpointWeights, loadModel, readFileChecked } from './load.js';
import type { ReferenceModel } from './sessions.js';
import { detectModelPath } from './sources.js';
import {
  type BundleInspection,
  type LoadBundleOptions,
  type LoadedBundle,
  type OpenBytesOptions,
  type OpenedBundle,
  type OpenedModel,
  bundleFromBytes,
  inspectLoadedBundle,
  openBundleBytes,
  openedBundle,
} from './usk.js';

/**
 * Bundles and models from files (Node). The byte-level work is in usk.ts, which the browser entry shares; here
 * are the file reads and node:crypto's SHA-256 (native, for bundles of gigabytes).
 */

const nodeSha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Read, validate and account a `.usk` bundle file. Every failure is a typed error naming the file. */
export function loadBundle(path: string, options: LoadBundleOptions = {}): LoadedBundle {
  return loadBundleFromBytes(readFileChecked(path, 'bundle'), path, options);
}

/** `loadBundle` for bytes already in memory; `source` (a path) names them in errors. */
export function loadBundleFromBytes(bytes: Uint8Array, source: string, options: LoadBundleOptions = {}): LoadedBundle {
  return bundleFromBytes(bytes, source, options, nodeSha256Hex);
}

/** Everything `ultrasketch inspect` prints: a per-tensor table and the totals of methods.md §4. */
export function inspectBundle(path: string, options: LoadBundleOptions = {}): BundleInspection {
  return inspectLoadedBundle(loadBundle(path, options));
}

export interface OpenModelOptions extends LoadBundleOptions {
  /** Tokenizer for a float model (its own when omitted: next to a llama2.c checkpoint, in an HF directory, in a GGUF); refused for a bundle. */
  tokenizerPath?: string;
}

/**
 * Open a model for running, told apart by content (docs/inputs.md): a `.usk` bundle (a safetensors header whose
 * metadata says format "ultrasketch.usk"; it brings its own tokenizer), or a float model — a llama2.c
 * checkpoint, an HF directory, a `.safetensors` file with its config.json beside it, or a GGUF file. Given bytes
 * (a Uint8Array) instead of a path, it opens a bundle from them (`openBundleBytes`).
 */
export function openModel(bytes: Uint8Array, options?: OpenBytesOptions): OpenedBundle;
export function openModel(path: string, options?: OpenModelOptions): OpenedModel;
export function openModel(input: string | Uint8Array, options: OpenModelOptions & OpenBytesOptions = {}): OpenedModel {
  // Bytes: a bundle only (the same as the browser entry's openModel, with the native SHA-256).
  if (typeof input !== 'string') return openBundleBytes(input, options, nodeSha256Hex);
  const path = input;
  if (detectModelPath(path) === 'usk') {
    if (options.tokenizerPath !== undefined) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a bundle carries its own tokenizer; --tokenizer applies to float models only', {
        source: '--tokenizer',
        hint: `drop --tokenizer when running ${path}`,
      });
    }
    return openedBundle(loadBundle(path, options));
  }
  const model = loadModel(path, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath });
  return {
    kind: 'checkpoint',
    config: model.weights.config,
    tokenizer: model.tokenizer,
    tokenizerInfo: model.tokenizerInfo,
    weights: model.weights,
    model,
    source: model.source,
  };
}

/**
 * Open a reference model by content: a `.usk` bundle, or a float model in any input format (llama2.c, HF
 * directory, safetensors with config.json, GGUF). No tokenizer is needed: it scores the evaluated model's tokens.
 */
export function openReference(path: string, options: LoadBundleOptions = {}): ReferenceModel {
  if (detectModelPath(path) === 'usk') {
    const loaded = loadBundle(path, options);
    return { kind: 'bundle', config: loaded.config, bundle: loaded.bundle, source: loaded.source };
  }
  const { weights, source } = loadCheckpointWeights(path);
  return { kind: 'checkpoint', config: weights.config, weights, source };
}
