/**
 * `@ultrasketch/pipeline/browser`: what a web page needs of the pipeline — open a `.usk` bundle from bytes, run it
 * (CPU WebAssembly session here; WebGPU through `@ultrasketch/runtime-webgpu` with `model.bundle`), read its bit
 * figures, evaluate perplexity. Nothing reachable from this file imports node:* (test/purity.test.ts walks the
 * imports), so bundlers (Vite, webpack, esbuild) build it without Node polyfills.
 *
 * Why a separate entry rather than a browser-safe main entry: the main entry is the Node API the CLI and every
 * existing user import (compress, loadModel, openModel(path), files, sweeps, finetuning); moving those behind
 * `./node` would break all of them for the benefit of one page. The browser entry is a subset with the same
 * names and types, so code written against it also runs in Node.
 */
import { type OpenBytesOptions, type OpenedBundle, openBundleBytes } from './usk.js';

/**
 * Open a `.usk` bundle from its bytes (a `File`'s `arrayBuffer()`, a `fetch` response): validated, its codecs and
 * CPU kernels registered, its embedded tokenizer ready, `loaded.accounting` holding bpwLinears and bitsPerParam.
 * Run it with `createSession(model)` (CPU) or `WebGpuSession.fromBundle(model.bundle, …)`.
 */
export function openModel(bytes: Uint8Array, options: OpenBytesOptions = {}): OpenedBundle {
  return openBundleBytes(bytes, options);
}

export { bundleFromBytes, bundleModelConfig, inspectLoadedBundle } from './usk.js';
export type {
  BundleInspection,
  InspectRow,
  InspectTotals,
  LoadBundleOptions,
  LoadedBundle,
  OpenBytesOptions,
  OpenedBundle,
  OpenedModel,
} from './usk.js';
export { createSession, describeRuntime, sessionContextLength, DEFAULT_CONTEXT_CAP } from './sessions.js';
export type { CreateSessionOptions, ReferenceModel } from './sessions.js';
export { registerAllCodecs } from './codecs.js';
export { readQualitySection, readTrainingSection } from './stored-sections.js';
export type { StoredQuality, StoredTraining } from './stored-sections.js';
export { ACCOUNTING_DEFINITION, accountingGroups, bundleAccounting, weightRole } from './accounting.js';
export type { AccountingGroups, BitsAndWeights, BundleAccounting, StoredAccounting, WeightAccounting, WeightRole } from './accounting.js';
export { evaluate, defaultWindow, logSumExp, klDivergence, EVAL_PROTOCOLS } from './evaluate.js';
export type { EvaluateOptions, EvaluateResult, EvaluateProgress, ScoringSession, EvalProtocol } from './evaluate.js';
export { splitDocuments, comparableDocuments, documentTokenStream } from './text.js';
export { bundleTokenizer } from './tokenizers.js';
export type { LoadedTokenizer } from './tokenizers.js';
export { PIPELINE_VERSION, TOOL_NAME } from './version.js';
