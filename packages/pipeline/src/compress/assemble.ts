/**
 * Stage 5 of `compress`: the bundle's contents — every 2-D weight as encoded (or trained), the RMSNorm weights
 * as float32, the tokenizer, and the sections that say what the file is: provenance (source, tool, command,
 * calibration) and the bit accounting of docs/methods.md §4, counted from what is actually stored.
 */
import { deflateRawSync } from 'node:zlib';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type BundleInput, storedTokenizerBytes } from '@ultrasketch/format';
import { expectedTensors, parameterCount } from '@ultrasketch/model';
import { ACCOUNTING_DEFINITION, type StoredAccounting, type WeightAccounting, accountingGroups } from '../accounting.js';
import type { CompressOptions, Provenance } from '../compress.js';
import type { TrainingSection } from '../finetune.js';
import { PIPELINE_VERSION, TOOL_NAME } from '../version.js';
import type { EncodedWeights } from './encode.js';
import type { CompressInput } from './input.js';
import type { TensorPipeline } from './pipelines.js';
import type { CompressSettings } from './settings.js';
import type { Trained } from './train.js';
import type { WeightPlan } from './weight-plan.js';

export interface AssembledBundle {
  input: BundleInput;
  accounting: StoredAccounting;
  provenance: Provenance;
  /** Format 3 (`pack`): the deflate the writer uses for the metadata and the tokenizer. */
  packOptions: { pack?: { deflateRaw(b: Uint8Array): Uint8Array } };
}

export function assembleBundle(
  plan: WeightPlan,
  encoded: EncodedWeights,
  trained: Trained | null,
  tensors: TensorPipeline,
  settings: CompressSettings,
  options: CompressOptions,
  model: CompressInput,
): AssembledBundle {
  const config = model.config;
  const vectors = new Map<string, Float32Array>();
  let normWeights = 0;
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length !== 1) continue;
    const v = trained?.norms.get(name) ?? tensors.vector(name);
    vectors.set(name, v);
    normWeights += v.length;
  }

  const { codec, codecOptions } = settings;
  const { compressedNames, perWeight } = encoded;
  if (compressedNames.length === 0) {
    throw new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, `codec ${codec.id}: no linear could be compressed at this target`, {
      hint: 'raise the target (--bpw)',
    });
  }
  const order = (name: string) => plan.weights.findIndex((p) => p.name === name);
  plan.keptDense.sort((a, b) => order(a.name) - order(b.name));
  const tok = model.tokenizer.embed;
  const packOptions = options.pack ? { pack: { deflateRaw: (b: Uint8Array) => deflateRawSync(b, { level: 9 }) } } : {};
  // As stored: format 3 (--pack) deflates the tokenizer, and the section must say what the file holds.
  const tokenizerBytes = storedTokenizerBytes(tok, packOptions);
  const groups = accountingGroups(perWeight, new Set(compressedNames), normWeights, tokenizerBytes);
  const accounting: StoredAccounting = {
    definition: ACCOUNTING_DEFINITION,
    params: parameterCount(config),
    linearBits: groups.compressedLinears.bits,
    linearWeights: groups.compressedLinears.weights,
    bpwLinears: groups.compressedLinears.bits / groups.compressedLinears.weights,
    linearCodec: { id: codec.id, version: codec.version, options: codecOptions },
    layers: settings.layers,
    compressedLinears: compressedNames,
    ...(plan.keptDense.length > 0 ? { keptDense: plan.keptDense.map((k) => k.name) } : {}),
    groups,
    weights: perWeight,
  };
  const source = model.info();
  const provenance: Provenance = {
    sourcePath: options.provenance?.sourcePath ?? source.path,
    sourceSha256: options.provenance?.sourceSha256 ?? source.sha256,
    sourceFormat: String(source.format),
    tool: TOOL_NAME,
    toolVersion: options.provenance?.toolVersion ?? PIPELINE_VERSION,
    command: options.provenance?.command ?? '',
    ...(settings.saliencyUsed && tensors.calibration ? { calibration: tensors.calibration } : {}),
  };
  const input: BundleInput = {
    config: { ...config } as unknown as Record<string, unknown>,
    tokenizer: tok,
    weights: encoded.weights,
    vectors,
    sections: { provenance, accounting, ...(trained ? { training: storedTraining(trained.training) } : {}) },
  };
  return { input, accounting, provenance, packOptions };
}

/**
 * The training section as stored: without `cost.wallSeconds`, which only the report carries, so the same command
 * gives a byte-identical bundle whether or not it trained (and however long the training took).
 */
function storedTraining(t: TrainingSection): Omit<TrainingSection, 'cost'> & { cost: Omit<TrainingSection['cost'], 'wallSeconds'> } {
  const { wallSeconds: _time, ...cost } = t.cost;
  return { ...t, cost };
}

/** Bits of every named linear ÷ their weights (bpwSelectedLinears: the compressed ones and those kept dense). */
export function selectedBpw(perWeight: Record<string, WeightAccounting>, names: string[]): number {
  let bits = 0;
  let n = 0;
  for (const name of names) {
    bits += perWeight[name]!.bits;
    n += perWeight[name]!.weights;
  }
  return bits / n;
}
