import { registerAll } from '@ultrasketch/baselines';
import type { Codec } from '@ultrasketch/core';
import { type BundleWeightInput, writeBundle } from '@ultrasketch/format';
import { type ModelWeights, expectedTensors } from '@ultrasketch/model';

/**
 * A `.usk` bundle of `weights` written in the test, without the pipeline package: every matrix encoded with the
 * codec and options `pick` names for it (by tensor name), every vector stored as F32, an empty llama2.c tokenizer.
 */
export function bundleOf(weights: ModelWeights, pick: (name: string) => { codec: Codec<any, any>; options: Record<string, unknown> }): Uint8Array {
  registerAll();
  const w = new Map<string, BundleWeightInput>();
  const vectors = new Map<string, Float32Array>();
  for (const [name, shape] of expectedTensors(weights.config)) {
    const t = weights.tensors.get(name)!;
    if (shape.length === 1) {
      vectors.set(name, t.data);
      continue;
    }
    const [rows, cols] = shape as [number, number];
    const { codec, options: raw } = pick(name);
    const options = codec.resolveOptions(raw);
    const params = codec.encode(t.data, rows, cols, options, { name, seed: 0 });
    w.set(name, { entry: { codec: codec.id, version: codec.version, options, seed: 0, rows, cols }, tensors: codec.toTensors(params) });
  }
  return writeBundle({ config: weights.config as unknown as Record<string, unknown>, tokenizer: { kind: 'llama2c', bytes: new Uint8Array(0) }, weights: w, vectors });
}
