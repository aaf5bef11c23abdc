import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type LinearKind, type ModelWeights, TensorNames, linearShape } from '@ultrasketch/model';
import { CodecSteProvider, DenseProvider, type WeightProvider } from './providers.js';

/**
 * Choosing a weight provider per linear layer.
 *
 * A provider FACTORY builds the provider of one linear from its context (teacher weight, shape, name,
 * saliency, seed). Built-in kinds:
 *   - 'frozen': the teacher's weight, not trained (codec float);
 *   - 'dense':  a trainable full-precision copy (codec float);
 *   - 'ste':    CodecSteProvider for any registered codec (options.codec, options.codecOptions,
 *               options.rebuildEvery).
 * Codec packages' providers plug in by registering a factory under a new kind, e.g. 'sketch-states' or
 * 'littlebit' (see docs/ste-trainer.md), after which `makeProviders` and the pipeline can select them by
 * name with their options.
 */
export interface ProviderContext {
  name: string;
  layer: number;
  kind: LinearKind;
  rows: number;
  cols: number;
  /** The teacher's weight [rows, cols] (do not modify: copy it if you train it). */
  weight: Float32Array;
  /** E[a_j²] per input channel from calibration, when known. */
  saliency?: Float64Array;
  /** A per-tensor seed (base seed mixed with the tensor's position). */
  seed: number;
}

export type ProviderFactory = (ctx: ProviderContext, options: Record<string, unknown>) => WeightProvider;

const FACTORIES_KEY = Symbol.for('@ultrasketch/ste-trainer/provider-factories/v1');

function factories(): Map<string, ProviderFactory> {
  const g = globalThis as unknown as Record<symbol, Map<string, ProviderFactory> | undefined>;
  let m = g[FACTORIES_KEY];
  if (!m) {
    m = new Map<string, ProviderFactory>([
      ['frozen', (ctx) => new DenseProvider({ name: ctx.name, rows: ctx.rows, cols: ctx.cols, weight: ctx.weight })],
      [
        'dense',
        (ctx, o) =>
          new DenseProvider({
            name: ctx.name,
            rows: ctx.rows,
            cols: ctx.cols,
            weight: ctx.weight,
            trainable: true,
            ...(o.dtype === 'f32' || o.dtype === 'f16' ? { dtype: o.dtype } : {}),
          }),
      ],
      [
        'ste',
        (ctx, o) => {
          if (typeof o.codec !== 'string') {
            throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `provider 'ste' needs options.codec (a registered codec id)`, { source: ctx.name });
          }
          return new CodecSteProvider({
            name: ctx.name,
            rows: ctx.rows,
            cols: ctx.cols,
            weight: ctx.weight,
            codec: o.codec,
            options: (o.codecOptions as Record<string, unknown> | undefined) ?? {},
            context: { seed: ctx.seed, ...(ctx.saliency ? { saliency: ctx.saliency } : {}) },
            ...(typeof o.rebuildEvery === 'number' ? { rebuildEvery: o.rebuildEvery } : {}),
          });
        },
      ],
    ]);
    g[FACTORIES_KEY] = m;
  }
  return m;
}

/** Register a provider kind (idempotent: the first registration of a kind wins). */
export function registerProviderFactory(kind: string, factory: ProviderFactory): void {
  const m = factories();
  if (!m.has(kind)) m.set(kind, factory);
}

export function getProviderFactory(kind: string): ProviderFactory {
  const f = factories().get(kind);
  if (!f) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `unknown weight provider kind "${kind}" (known: ${[...factories().keys()].sort().join(', ')})`);
  }
  return f;
}

/** What to do with one linear: a provider kind and its options, or a factory, or undefined (frozen). */
export type ProviderChoice = { kind: string; options?: Record<string, unknown> } | ProviderFactory | undefined;

export interface MakeProvidersOptions {
  /** Per-linear saliency (E[a²] per input channel), by canonical name. */
  saliency?: Map<string, Float64Array>;
  /** Base seed for per-tensor seeds (default 0). */
  seed?: number;
}

/**
 * Build the providers of every linear of `teacher` with `choose(layer, kind)`. Linears for which it returns
 * undefined are left out (the trainer keeps them frozen).
 */
export function makeProviders(
  teacher: ModelWeights,
  choose: (layer: number, kind: LinearKind) => ProviderChoice,
  options: MakeProvidersOptions = {},
): Map<string, WeightProvider> {
  const c = teacher.config;
  const out = new Map<string, WeightProvider>();
  for (let l = 0; l < c.nLayers; l++) {
    LINEAR_KINDS.forEach((kind, ki) => {
      const choice = choose(l, kind);
      if (choice === undefined) return;
      const name = TensorNames.linear(l, kind);
      const [rows, cols] = linearShape(c, kind);
      const sal = options.saliency?.get(name);
      const ctx: ProviderContext = {
        name,
        layer: l,
        kind,
        rows,
        cols,
        weight: teacher.tensors.get(name)!.data,
        seed: ((options.seed ?? 0) + Math.imul(l * LINEAR_KINDS.length + ki + 1, 0x9e3779b1)) >>> 0,
        ...(sal ? { saliency: sal } : {}),
      };
      const p = typeof choice === 'function' ? choice(ctx, {}) : getProviderFactory(choice.kind)(ctx, choice.options ?? {});
      out.set(name, p);
    });
  }
  return out;
}
