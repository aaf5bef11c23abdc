/**
 * The codec flags shared by `compress` and `sweep`, what codec option each sets, which codecs take it, and
 * the defaults for the data files (../shared/data/tinystories next to the repository).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CALIB_TOKENS, EMBEDDING_STORAGES, SMALL_MATRIX_POLICIES, codecOptionKeys } from '@ultrasketch/pipeline';
import { type CommandInput, type OptionSpec, UsageError } from './command.js';

interface CodecFlag {
  spec: OptionSpec;
  /** The codec option it sets. */
  key: string;
  /** Turn the parsed value into the option value. */
  value?(v: string | number | boolean): unknown;
}

const CODEC_FLAGS: CodecFlag[] = [
  { key: 'bits', spec: { name: 'bits', kind: 'int', valueName: 'K', description: 'rtn: bits per weight, 2, 3, 4 or 8', defaultText: '4' } },
  {
    key: 'groupSize',
    spec: { name: 'group-size', kind: 'int', valueName: 'G', min: 0, description: 'rtn: weights per scale/offset group along a row (0 = one group per row)', defaultText: '64' },
  },
  { key: 'dtype', spec: { name: 'dtype', kind: 'string', valueName: 'T', choices: ['f16', 'f32'], description: 'float: storage of the linears', defaultText: 'f16' } },
  {
    key: 'bpw',
    spec: {
      name: 'bpw',
      kind: 'number',
      valueName: 'X',
      min: 0,
      description: 'sketch, hashednets, littlebit: target bits per weight of each compressed linear (every stored bit counted)',
      defaultText: 'none, sketch and hashednets need it; littlebit 0.55',
    },
  },
  { key: 'rows', spec: { name: 'rows', kind: 'int', valueName: 'D', min: 1, description: 'sketch: sketch rows d (hashes per weight)', defaultText: "1 (signmean default), 3 with --query absmaxmin" } },
  {
    key: 'state',
    spec: { name: 'state', kind: 'string', valueName: 'F', choices: ['f16', 'int8', 'f32'], description: 'sketch (f16|int8|f32), hashednets (f16|f32): state format', defaultText: 'sketch int8 (f16 with --query absmaxmin); hashednets f16' },
  },
  { key: 'hash', spec: { name: 'hash', kind: 'string', valueName: 'H', choices: ['rowrun', 'mixed'], description: 'sketch: hash family', defaultText: 'rowrun' } },
  {
    key: 'groups',
    spec: { name: 'groups', kind: 'int', valueName: 'G', min: 1, description: 'sketch: channel groups (G > 1 splits input channels by calibration saliency)', defaultText: '8 (1 with --query absmaxmin)' },
  },
  {
    key: 'alloc',
    spec: {
      name: 'alloc',
      kind: 'string',
      valueName: 'A',
      description: 'sketch: how states are split among channel groups: uniform, saliency, or saliency:ALPHA (exponent α, default 1)',
      defaultText: 'saliency (uniform with --query absmaxmin)',
    },
  },
  { key: 'split', spec: { name: 'split', kind: 'string', valueName: 'S', choices: ['count', 'mass'], description: 'sketch: cut channel groups by channel count or by score mass', defaultText: 'count' } },
  {
    key: 'query',
    spec: {
      name: 'query',
      kind: 'string',
      valueName: 'Q',
      choices: ['absmaxmin', 'signmean'],
      description:
        "sketch: build and query: signmean (signed bucket means, ŵ = mean over rows of ξ·state; the measured best, docs/results.md §12) or absmaxmin (the paper's min-|w| build and max-|·| query, for reproduction: then --rows, --state, --groups and --alloc default to the paper's 3, f16, 1, uniform)",
      defaultText: 'signmean, with --rows 1 --state int8 --groups 8 --alloc saliency',
    },
  },
  {
    key: 'softQuery',
    spec: {
      name: 'soft-query',
      kind: 'number',
      valueName: 'TAU0',
      min: 0,
      description:
        "sketch, training only (needs --finetune-steps, --query absmaxmin, --rows ≥ 2): train through a soft AbsMax pick, ŵ = Σ softmax(|c|/τ)·c over the d candidates, τ annealed from TAU0 × the RMS of the matrix's weights to the hard pick over the first 80% of the steps; the bundle stores the hard sketch (docs/results.md §12.3b)",
      defaultText: 'off (the hard pick)',
    },
  },
  { key: 'rank', spec: { name: 'rank', kind: 'int', valueName: 'R', min: 1, description: 'littlebit: rank per path instead of a --bpw target', defaultText: 'from --bpw' } },
  { key: 'residual', value: () => true, spec: { name: 'residual', kind: 'boolean', description: 'littlebit: add the residual path (the default)' } },
  { key: 'residual', value: () => false, spec: { name: 'no-residual', kind: 'boolean', description: 'littlebit: one path only' } },
  {
    key: 'rankRounding',
    spec: { name: 'rank-rounding', kind: 'string', valueName: 'M', choices: ['floor', 'multiple8'], description: 'littlebit: how the rank from --bpw is rounded down', defaultText: 'floor' },
  },
  { key: 'oversampling', spec: { name: 'oversampling', kind: 'int', valueName: 'P', min: 0, description: 'littlebit: truncated SVD oversampling', defaultText: '10' } },
  { key: 'powerIterations', spec: { name: 'power-iterations', kind: 'int', valueName: 'Q', min: 0, description: 'littlebit: truncated SVD power iterations', defaultText: '2' } },
  {
    key: 'lsRounds',
    spec: {
      name: 'ls-rounds',
      kind: 'int',
      valueName: 'N',
      min: 0,
      max: 64,
      description: 'littlebit: refined init, N rounds of least-squares updates of the scales h, g, ℓ of every path (same stored form and bits)',
      defaultText: '0 = off',
    },
  },
  {
    key: 'refineSigns',
    value: () => true,
    spec: { name: 'refine-signs', kind: 'boolean', description: 'littlebit: refined init, each --ls-rounds round also re-fits the signs by greedy flips (needs --ls-rounds > 0)' },
  },
  {
    key: 'refineRounds',
    spec: {
      name: 'refine-rounds',
      kind: 'int',
      valueName: 'N',
      min: 0,
      max: 64,
      description: 'littlebit: refined init, N backfitting rounds of the two paths (needs the residual path)',
      defaultText: '0 = off',
    },
  },
  {
    key: 'refineObjective',
    spec: {
      name: 'refine-objective',
      kind: 'string',
      valueName: 'O',
      choices: ['frobenius', 'activation'],
      description:
        'littlebit: what the refinements minimize: frobenius = ‖W − Ŵ‖², activation = Σ (W − Ŵ)²_ij·E[a_j²] (calibrates on --calib; needs --ls-rounds or --refine-rounds)',
      defaultText: 'frobenius',
    },
  },
];

/**
 * What `--codec sketch` means for a new bundle when `--query` is not given: the variant measured best
 * (docs/results.md §12: signed bucket means, one sketch row, int8 states, 8 channel groups with saliency
 * allocation — it beats HashedNets at 0.3–1.0 bpw where the paper's AbsMaxMin trails it). Flags given win key
 * by key. `--query absmaxmin` leaves every other key to the codec's own defaults: the paper's sketch (d = 3,
 * f16 states, one group). Only the CLI applies this: the codec's own defaults stay the paper's, because a bundle
 * stores its options and a file without a `query` key must keep decoding as AbsMaxMin.
 */
export const SKETCH_DEFAULT_VARIANT: Readonly<Record<string, unknown>> = Object.freeze({
  query: 'signmean',
  rows: 1,
  state: 'int8',
  groups: 8,
  alloc: 'saliency',
});

/** The sketch defaults a codec's raw options still lack (`given`: every option already chosen for it). */
export function sketchDefaultsFor(codec: string, given: Record<string, unknown>): Record<string, unknown> {
  if (codec !== 'sketch' || given.query !== undefined) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(SKETCH_DEFAULT_VARIANT)) if (given[k] === undefined) out[k] = v;
  return out;
}

/** Which codecs take a flag (from the pipeline's table of codec option keys). */
function codecsTaking(key: string): string[] {
  return ['rtn', 'binary', 'float', 'sketch', 'hashednets', 'littlebit'].filter((c) => codecOptionKeys(c)?.includes(key));
}

/** The codec flags as option specs (`except`: flags a command defines itself, e.g. sweep's --bpw list). */
export function codecFlagSpecs(except: string[] = []): OptionSpec[] {
  return CODEC_FLAGS.filter((f) => !except.includes(f.spec.name)).map((f) => f.spec);
}

/**
 * Raw codec options from the given codec flags. Every given flag must apply to at least one of `codecs`
 * (a flag none of them takes is a usage error: it would be silently ignored otherwise).
 */
export function rawCodecOptions(input: CommandInput, codecs: string[], command: string, except: string[] = []): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  const given = input.given ?? new Set<string>();
  if (given.has('residual') && given.has('no-residual')) throw new UsageError('give --residual or --no-residual, not both', command);
  for (const f of CODEC_FLAGS) {
    if (except.includes(f.spec.name) || !given.has(f.spec.name)) continue;
    const takers = codecsTaking(f.key);
    if (!codecs.some((c) => takers.includes(c))) {
      throw new UsageError(
        `--${f.spec.name} applies to ${takers.length > 0 ? `--codec ${takers.join(' or ')}` : 'no codec'}, not ${codecs.join(', ')}`,
        command,
      );
    }
    const v = input.options[f.spec.name]!;
    raw[f.key] = f.value ? f.value(v) : v;
  }
  return raw;
}

/** compress --pack: format 3 (docs/bundle.md), the metadata and the tokenizer deflated. */
export const PACK_SPEC: OptionSpec = {
  name: 'pack',
  kind: 'boolean',
  description: 'write format 3: metadata and tokenizer deflated, for whole-file bits (builds before format 3 cannot read it)',
};

/** Options shared by compress and sweep (model storage, calibration, evaluation). */
export function sharedCompressSpecs(): OptionSpec[] {
  return [
    { name: 'tokenizer', kind: 'path', valueName: 'FILE', description: 'the model\'s tokenizer (embedded in the bundle): a llama2.c tokenizer file or a tokenizer.json', defaultText: "a llama2.c checkpoint: the tok*.bin / tokenizer.bin beside it; an HF model: its tokenizer.json; a GGUF file: its own vocabulary" },
    {
      name: 'layers',
      kind: 'string',
      valueName: 'LIST',
      description: 'linear kinds to compress: a comma-separated subset of q,k,v,o,gate,up,down, or all (the others are stored in float f16)',
      defaultText: "the codec's: all seven; sketch and hashednets all but o",
    },
    {
      name: 'embeddings',
      kind: 'string',
      valueName: 'S',
      choices: [...EMBEDDING_STORAGES],
      default: 'f16',
      description: 'storage of the embedding (and an untied classifier): f16, f32; rtnK (K bits, groups of 64); vqK (4-value sub-vectors, a 2^K-entry codebook fitted to the calibration text\'s token counts: K/4 bits a value); binary (1 bit)',
    },
    { name: 'seed', kind: 'int', valueName: 'S', min: 0, max: 0xffffffff, default: 0, description: "run seed; each weight's codec seed is derived from it and the weight's name" },
    {
      name: 'small-matrix',
      kind: 'string',
      valueName: 'P',
      choices: [...SMALL_MATRIX_POLICIES],
      default: 'error',
      description:
        'a compressed linear too small for the target (e.g. littlebit scales alone exceed it): error = refuse, naming the smallest feasible bpw; keep = store it in float f16 and list it in the report (kept dense; not counted in bpwLinears, counted in bitsPerParam)',
    },
    {
      name: 'calib',
      kind: 'path',
      valueName: 'FILE',
      description:
        'calibration text for codecs that use activation statistics (sketch with --groups > 1, littlebit with --refine-objective activation); never the evaluation text',
      defaultText: '../shared/data/tinystories/calib.txt',
    },
    { name: 'calib-tokens', kind: 'int', valueName: 'N', min: 1, default: DEFAULT_CALIB_TOKENS, description: 'calibration tokens (the first N of the calibration text)' },
    {
      name: 'eval-text',
      kind: 'path',
      valueName: 'FILE',
      description: 'evaluation text for the quality measurement',
      defaultText: '../shared/data/tinystories/eval.txt',
    },
    { name: 'eval-window', kind: 'int', valueName: 'W', min: 2, description: 'evaluation window length in tokens', defaultText: "the model's seq_len, at most 2048" },
  ];
}

/** The repository root (apps/cli/dist/cli.js or apps/cli/src/*.ts → three levels up). */
function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
}

/** ../shared/data/tinystories/<file> next to the repository, when it exists. */
export function defaultDataFile(file: 'calib.txt' | 'eval.txt'): string | undefined {
  const p = join(repoRoot(), '..', 'shared', 'data', 'tinystories', file);
  return existsSync(p) ? p : undefined;
}
