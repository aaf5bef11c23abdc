/**
 * Stage 2 of `compress`: the plan — which codec stores each 2-D weight of the model, in model order. The
 * compressed linears get the job's codec (a mixed bit plan gives each its own `bpw`), the other linears float
 * f16, the embedding and an untied classifier their storage. A compressed linear whose budget the codec cannot
 * meet is refused here, before anything is encoded, or (with `--small-matrix keep`) planned as float f16 and
 * listed as kept dense. Only shapes are read: a streamed model's tensors are not loaded for the plan.
 */
import { type Codec, ErrorCodes, UltraSketchError, getCodec, isUltraSketchError } from '@ultrasketch/core';
import { type ModelConfig, type ModelWeights, TensorNames, expectedTensors, parseLinearName } from '@ultrasketch/model';
import { matrixFeasibility, targetBpw } from '../feasibility.js';
import type { CompressOptions, KeptDense } from '../compress.js';
import type { SmallMatrixPolicy } from './defaults.js';
import type { CodecChoice, CompressSettings } from './settings.js';

/** One 2-D weight of the plan: the codec that stores it and its resolved options. */
export interface PlannedWeight {
  name: string;
  codec: Codec;
  options: unknown;
  /** A linear compressed by the job's codec (not the embedding, classifier, or a linear kept in float). */
  compressed: boolean;
}

export interface WeightPlan {
  weights: PlannedWeight[];
  keptDense: KeptDense[];
}

/** A choice of codec and raw options, resolved. */
export function withCodec(c: CodecChoice): { codec: Codec; options: unknown } {
  const found = getCodec(c.id);
  return { codec: found, options: found.resolveOptions(c.options) };
}

/** `inMemory`: the float model's weights when it is in memory (null for a streamed model). */
export function planWeights(config: ModelConfig, inMemory: ModelWeights | null, settings: CompressSettings, options: CompressOptions): WeightPlan {
  const { codec, codecOptions, layers, smallMatrix } = settings;
  const plan: PlannedWeight[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length !== 2) continue;
    if (name === TensorNames.embedding) plan.push({ name, ...withCodec(settings.embedding), compressed: false });
    else if (name === TensorNames.classifier) plan.push({ name, ...withCodec(settings.classifier!), compressed: false });
    else {
      const kind = parseLinearName(name)!.kind;
      const planned = options.bpwPlan?.[name];
      const own = planned === undefined ? codecOptions : codec.resolveOptions({ ...(options.codecOptions ?? {}), bpw: planned });
      plan.push(layers.includes(kind) ? { name, codec, options: own, compressed: true } : { name, ...withCodec(settings.keepFloat), compressed: false });
    }
  }

  // Budgets the codec cannot meet: refuse now (before encoding anything), or keep those matrices dense.
  const keptDense: KeptDense[] = [];
  const infeasible: Infeasible[] = [];
  const shapes = new Map(expectedTensors(config));
  // The budget refusals depend on a matrix's shape only: a streamed model's matrices are not read for them.
  const matrixFor = (name: string): Matrix => {
    const [rows, cols] = shapes.get(name)! as [number, number];
    return { data: inMemory?.tensors.get(name)?.data ?? new Float32Array(rows * cols), rows, cols };
  };
  plan.forEach((p, index) => {
    if (!p.compressed) return;
    const [rows, cols] = shapes.get(p.name)! as [number, number];
    const f = matrixFeasibility(codec.id, p.options as typeof codecOptions, rows, cols);
    if (f && !f.feasible) infeasible.push({ index, rows, cols, minBpw: f.minBpw });
  });
  if (infeasible.length > 0) {
    const compressedCount = plan.filter((p) => p.compressed).length;
    if (smallMatrix === 'error' || infeasible.length === compressedCount) {
      const worst = infeasible.reduce((a, b) => (b.minBpw > a.minBpw ? b : a));
      throw infeasibleRefusal(codec, codecOptions, plan, matrixFor, worst, infeasible, compressedCount, smallMatrix);
    }
    for (const x of infeasible) {
      const p = plan[x.index]!;
      keptDense.push({ name: p.name, rows: x.rows, cols: x.cols, minBpw: x.minBpw, reason: codecRefusal(codec, codecOptions, matrixFor, p.name) });
      plan[x.index] = { name: p.name, ...withCodec(settings.keepFloat), compressed: false };
    }
  }

  // --train-dense with every linear compressed would train nothing: refuse before encoding. (With 'keep', an
  // encode-time refusal can still add a float linear; finetune() checks the final set.)
  if (options.finetune?.trainDense && smallMatrix === 'error' && plan.every((p) => p.compressed || !parseLinearName(p.name))) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec ${codec.id} compresses every linear (--layers ${layers.join(',')}); there is no float-stored linear to train`, {
      source: '--train-dense',
      hint: 'drop --train-dense, or leave some linear kinds in float with --layers',
    });
  }
  return { weights: plan, keptDense };
}

/** A matrix with its shape (for a streamed model, zeros of that shape: the budget checks read only the shape). */
interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

interface Infeasible {
  index: number;
  rows: number;
  cols: number;
  minBpw: number;
}

/** The codec's own refusal for one matrix (its encode checks the budget before any real work). */
function codecRefusal(codec: Codec, codecOptions: unknown, matrixFor: (name: string) => Matrix, name: string): string {
  const { data, rows, cols } = matrixFor(name);
  try {
    codec.encode(data, rows, cols, codecOptions, { name, seed: 0 });
  } catch (err) {
    if (isUltraSketchError(err, ErrorCodes.INFEASIBLE_BUDGET)) return err.problem;
    throw err;
  }
  return `codec ${codec.id} cannot meet the target on this ${rows}×${cols} matrix`;
}

function fmtBpw(x: number): string {
  return String(Math.round(x * 1e4) / 1e4);
}

function infeasibleRefusal(
  codec: Codec,
  codecOptions: unknown,
  plan: Array<{ name: string; compressed: boolean }>,
  matrixFor: (name: string) => Matrix,
  worst: { index: number; minBpw: number },
  infeasible: Infeasible[],
  compressedCount: number,
  policy: SmallMatrixPolicy,
): UltraSketchError {
  const worstName = plan[worst.index]!.name;
  // Group the matrices by shape: "k_proj, v_proj (64×192, ≥ 0.6094 bpw) in every layer".
  const byShape = new Map<string, { kinds: Set<string>; minBpw: number }>();
  for (const x of infeasible) {
    const key = `${x.rows}×${x.cols}`;
    const g = byShape.get(key) ?? { kinds: new Set<string>(), minBpw: x.minBpw };
    g.kinds.add(parseLinearName(plan[x.index]!.name)?.kind ?? plan[x.index]!.name);
    g.minBpw = Math.max(g.minBpw, x.minBpw);
    byShape.set(key, g);
  }
  const shapes = [...byShape].map(([shape, g]) => `${[...g.kinds].join(', ')} ${shape} needs ≥ ${fmtBpw(g.minBpw)} bpw`).join('; ');
  const target = targetBpw(codecOptions);
  const all = infeasible.length === compressedCount;
  const problem =
    `${worstName}: ${codecRefusal(codec, codecOptions, matrixFor, worstName)}. ` +
    `At ${target ?? 'this'} bpw ${infeasible.length} of ${compressedCount} compressed linears are too small for codec ${codec.id} (${shapes}); ` +
    `the smallest target every compressed linear meets is ${fmtBpw(worst.minBpw)} bpw`;
  const hint = all
    ? `use --bpw ${fmtBpw(worst.minBpw)} or more${policy === 'keep' ? ' (--small-matrix keep cannot help: no linear would be compressed)' : ''}`
    : `use --bpw ${fmtBpw(worst.minBpw)} or more, leave those kinds out with --layers, or pass --small-matrix keep to store them in float f16 (listed in the report)`;
  return new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, problem, { hint });
}
