import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type ForwardHooks, type ModelConfig, type TextTokenizer, TensorNames, parseLinearName } from '@ultrasketch/model';
import { documentTokenStream } from './text.js';

/**
 * Anything that can score a window: a runtime session (CPU now, WebGPU later). A session that honours
 * `hooks` (runtime-node's) lets a non-finite result be traced to the layer it started in; one that ignores
 * them still gets the typed error, without the layer.
 */
export interface ScoringSession {
  readonly config: ModelConfig;
  reset(): void;
  forward(tokens: ArrayLike<number>, options: { logits: 'all'; hooks?: ForwardHooks }): Float32Array | Promise<Float32Array>;
}

export interface EvaluateProgress {
  windowsDone: number;
  windowsTotal: number;
  tokensDone: number;
}

/**
 * Perplexity protocols (docs/evaluation.md; named in every report):
 * - `llama2c-documents` (default; llama2.c parity): documents split on blank lines, BOS each, one stream,
 *   non-overlapping windows of W (default seq_len), positions 1..W−1 scored;
 * - `wikitext` (the literature's protocol for Hugging Face models): the text joined as given and tokenized once
 *   (BOS at its start when the tokenizer adds one), non-overlapping windows of W (default 2048, capped by the
 *   model), the first token of each window not scored;
 * - `llamacpp` (llama.cpp's `perplexity`): the text tokenized once, chunks of W = 512 (capped by the model) each
 *   starting with BOS in place of its first token (when the vocabulary has one), only the second half scored:
 *   positions W/2 .. W−2 predict tokens W/2+1 .. W−1.
 */
export type EvalProtocol = 'llama2c-documents' | 'wikitext' | 'llamacpp';
export const EVAL_PROTOCOLS: readonly EvalProtocol[] = ['llama2c-documents', 'wikitext', 'llamacpp'];

/**
 * The window a protocol uses when none is given: llama2c-documents the model's seq_len (llama2.c's protocol) but at
 * most 2048 (a 128k-context model's seq_len is longer than most evaluation texts); wikitext 2048 and llamacpp 512,
 * each capped by seq_len.
 */
export function defaultWindow(protocol: EvalProtocol, config: ModelConfig): number {
  if (protocol === 'llamacpp') return Math.min(512, config.seqLen);
  return Math.min(2048, config.seqLen);
}

export interface EvaluateOptions {
  session: ScoringSession;
  /** Default 'llama2c-documents'. */
  protocol?: EvalProtocol;
  tokenizer: TextTokenizer;
  /** Evaluation text: documents separated by blank lines. */
  text: string;
  /** Name of the text (a path) for messages and reports. */
  textSource?: string;
  /** Window length W; default `defaultWindow(protocol, config)`. */
  window?: number;
  /** Evaluate only the first N windows; default all. */
  windows?: number;
  /** The float model to compare against on the same windows (KL and top-1). */
  reference?: ScoringSession;
  /** Names of the two models (paths) for error messages; default 'the evaluated model' / 'the reference model'. */
  modelSource?: string;
  referenceSource?: string;
  onProgress?(p: EvaluateProgress): void;
}

export interface EvaluateResult {
  /** The protocol, named in every report (see docs/evaluation.md). */
  protocol: EvalProtocol;
  /** The first position of each window whose prediction is scored (0; W/2 for llamacpp). */
  firstScored: number;
  window: number;
  windows: number;
  predictedTokens: number;
  streamTokens: number;
  meanNll: number;
  perplexity: number;
  /** Mean NLL of each window, in order. */
  windowNll: number[];
  /** Present with a reference: mean KL(P_ref ‖ P) per position, in nats. */
  kl?: number;
  /** Present with a reference: fraction of positions where both argmaxes agree. */
  top1?: number;
  /** Present with a reference: the reference model's own figures on the same windows. */
  reference?: { meanNll: number; perplexity: number };
}

/**
 * The llama2.c-documents perplexity protocol: documents split on blank lines, BOS each, one stream,
 * non-overlapping windows of W tokens (remainder dropped), each run from an empty cache; positions
 * 1..W−1 scored. With a reference, KL(P_ref ‖ P) and top-1 agreement on the same positions.
 */
export async function evaluate(options: EvaluateOptions): Promise<EvaluateResult> {
  const { session, tokenizer, reference } = options;
  const config = session.config;
  const source = options.textSource ?? '<text>';
  const protocol = options.protocol ?? 'llama2c-documents';
  if (!EVAL_PROTOCOLS.includes(protocol)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `protocol ${JSON.stringify(protocol)} is not one of ${EVAL_PROTOCOLS.join(', ')}`, { source: '--protocol' });
  }
  const W = options.window ?? defaultWindow(protocol, config);
  if (!Number.isInteger(W) || W < 2 || W > config.seqLen) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `window ${W} must be an integer in 2..${config.seqLen} (the model's seq_len)`, {
      source: '--window',
    });
  }
  if (protocol === 'llamacpp' && W < 4) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `window ${W} is too short for the llamacpp protocol, which scores the second half of each chunk`, {
      source: '--window',
      hint: 'use --window 4 or more (llama.cpp uses 512)',
    });
  }
  if (reference && reference.config.vocabSize !== config.vocabSize) {
    throw new UltraSketchError(
      ErrorCodes.TOKENIZER_MISMATCH,
      `reference vocabulary (${reference.config.vocabSize}) differs from the model's (${config.vocabSize})`,
      { source: '--reference', hint: 'compare against the float model this one was compressed from' },
    );
  }
  const stream = protocol === 'llama2c-documents' ? documentTokenStream(tokenizer, options.text, source) : wholeTextStream(tokenizer, options.text, source);
  const first = protocol === 'llamacpp' ? Math.floor(W / 2) : 0;
  const bos = protocol === 'llamacpp' && tokenizer.bosId >= 0 ? tokenizer.bosId : -1;
  const available = Math.floor(stream.length / W);
  if (available === 0) {
    throw new UltraSketchError(
      ErrorCodes.EMPTY_INPUT,
      `the text has ${stream.length} tokens, fewer than one window of ${W}`,
      { source, hint: 'use a longer text or a smaller --window' },
    );
  }
  if (options.windows !== undefined && (!Number.isInteger(options.windows) || options.windows < 1)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `windows must be a positive integer, got ${options.windows}`, {
      source: '--windows',
    });
  }
  const nWindows = Math.min(options.windows ?? available, available);
  const vocab = config.vocabSize;
  const windowNll: number[] = [];
  let nllSum = 0;
  let refNllSum = 0;
  let klSum = 0;
  let agree = 0;
  const refCopy = reference ? new Float32Array(W * vocab) : undefined;
  const names = { evaluated: options.modelSource, reference: options.referenceSource };
  // A NaN or Inf anywhere below is a broken model, never a figure: stop at the first one, say where it is.
  const fail = async (which: 'evaluated' | 'reference', w: number, t: number, tokens: Int32Array, what: string): Promise<never> => {
    const s = which === 'evaluated' ? session : reference!;
    const source = names[which];
    throw await nonFiniteError({ model: which, ...(source === undefined ? {} : { source }), window: w, position: t, streamIndex: w * W + t, what }, s, tokens);
  };

  for (let w = 0; w < nWindows; w++) {
    let tokens = stream.subarray(w * W, (w + 1) * W);
    if (bos >= 0) {
      // llama.cpp's perplexity puts BOS in place of each chunk's first token.
      tokens = tokens.slice();
      tokens[0] = bos;
    }
    if (reference && refCopy) {
      reference.reset();
      // Copy: a session reuses its logits buffer, and the two may share an implementation.
      refCopy.set(await reference.forward(tokens, { logits: 'all' }));
    }
    session.reset();
    const logits = await session.forward(tokens, { logits: 'all' });
    let windowSum = 0;
    for (let t = first; t < W - 1; t++) {
      const target = tokens[t + 1]!;
      let refRow: Float32Array | undefined;
      let refLse = 0;
      if (refCopy) {
        refRow = refCopy.subarray(t * vocab, (t + 1) * vocab);
        const bad = firstNonFinite(refRow);
        if (bad >= 0) await fail('reference', w, t, tokens, `logit ${bad} is ${refRow[bad]}`);
        refLse = logSumExp(refRow);
      }
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      const bad = firstNonFinite(row);
      if (bad >= 0) await fail('evaluated', w, t, tokens, `logit ${bad} is ${row[bad]}`);
      const lse = logSumExp(row);
      const nll = lse - row[target]!;
      // Finite logits can still overflow float64 here when they are ~1e308 apart.
      if (!Number.isFinite(nll)) await fail('evaluated', w, t, tokens, `the negative log-likelihood is ${nll} (log-sum-exp ${lse})`);
      windowSum += nll;
      if (refRow) {
        const refNll = refLse - refRow[target]!;
        if (!Number.isFinite(refNll)) await fail('reference', w, t, tokens, `the negative log-likelihood is ${refNll} (log-sum-exp ${refLse})`);
        refNllSum += refNll;
        const kl = klDivergence(refRow, refLse, row, lse);
        if (!Number.isFinite(kl)) await fail('evaluated', w, t, tokens, `KL(reference ‖ model) is ${kl}`);
        klSum += kl;
        if (argmax(refRow) === argmax(row)) agree++;
      }
    }
    windowNll.push(windowSum / (W - 1 - first));
    nllSum += windowSum;
    options.onProgress?.({ windowsDone: w + 1, windowsTotal: nWindows, tokensDone: (w + 1) * W });
  }

  const predicted = nWindows * (W - 1 - first);
  const meanNll = nllSum / predicted;
  const result: EvaluateResult = {
    protocol,
    firstScored: first,
    window: W,
    windows: nWindows,
    predictedTokens: predicted,
    streamTokens: stream.length,
    meanNll,
    perplexity: finitePerplexity(meanNll, 'evaluated', names.evaluated, windowNll),
    windowNll,
  };
  if (reference) {
    result.kl = klSum / predicted;
    result.top1 = agree / predicted;
    result.reference = { meanNll: refNllSum / predicted, perplexity: finitePerplexity(refNllSum / predicted, 'reference', names.reference) };
  }
  return result;
}

/** The whole text tokenized once, BOS at its start when the tokenizer adds one (wikitext, llamacpp). */
function wholeTextStream(tokenizer: TextTokenizer, text: string, source: string): Int32Array {
  if (text.trim() === '') {
    throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'the text is empty or only whitespace', { source, hint: 'pass a text file with content' });
  }
  return Int32Array.from(tokenizer.encode(text, { bos: true, eos: false }));
}

/**
 * exp(mean NLL), or NOT_FINITE when it overflows (a mean NLL above ~709 nats: finite logits, but so far apart
 * that the figure would print as Infinity).
 */
function finitePerplexity(meanNll: number, role: 'evaluated' | 'reference', source: string | undefined, windowNll?: number[]): number {
  const ppl = Math.exp(meanNll);
  if (Number.isFinite(ppl)) return ppl;
  const worst = windowNll && windowNll.length > 0 ? windowNll.indexOf(Math.max(...windowNll)) : -1;
  throw new UltraSketchError(
    ErrorCodes.NOT_FINITE,
    `the perplexity of the ${role} model overflows: its mean negative log-likelihood is ${meanNll} nats per token` +
      (worst >= 0 ? ` (worst: window ${worst}, ${windowNll![worst]} nats)` : ''),
    { ...(source === undefined ? {} : { source }), hint: 'the model assigns ~zero probability to the text: its logits are far out of range; check the weights (a mis-scaled tensor?)' },
  );
}

/** Where a non-finite value was found (NotFiniteError.where). Windows and positions are 0-based. */
export interface NonFiniteLocation {
  model: 'evaluated' | 'reference';
  /** The model's path (or its description), when the caller named it. */
  source?: string;
  window: number;
  /** Position inside the window: its logits predict token position + 1. */
  position: number;
  /** Index of that position in the whole token stream. */
  streamIndex: number;
  /** The value found ("logit 17 is NaN", "KL(...) is Infinity"). */
  what: string;
  /** First decoder layer whose values at this position are non-finite; null when after the last layer or unknown. */
  layer: number | null;
  /** Where in the forward pass it first appears, in words ("layer 0: the SwiGLU product entering mlp.down_proj"). */
  stage: string;
}

/** NOT_FINITE from evaluation, with the location as data (for tests and reports). */
export class NotFiniteError extends UltraSketchError {
  constructor(
    readonly where: NonFiniteLocation,
    hint: string,
  ) {
    super(
      ErrorCodes.NOT_FINITE,
      `${where.model === 'evaluated' ? 'the evaluated model' : 'the reference model'} gives a non-finite result at window ${where.window}, ` +
        `position ${where.position} (token ${where.streamIndex} of the stream): ${where.what}; first non-finite: ${where.stage}`,
      { ...(where.source === undefined ? {} : { source: where.source }), hint },
    );
  }
}

async function nonFiniteError(
  at: Omit<NonFiniteLocation, 'layer' | 'stage'>,
  session: ScoringSession,
  tokens: Int32Array,
): Promise<NotFiniteError> {
  const found = await locateNonFinite(session, tokens, at.position);
  const hint =
    found.layer === null && found.stage.startsWith('unknown')
      ? 'the weights overflow float32 in the forward pass (a corrupt or mis-scaled tensor?); run with --runtime node to find the layer'
      : 'the weights overflow float32 in the forward pass there (a corrupt or mis-scaled tensor?); check that layer\'s weights, or re-create the file from its source';
  return new NotFiniteError({ ...at, ...found }, hint);
}

/**
 * Re-run one window with forward hooks and return the first place where the values at `position` stop being
 * finite. The hooks fire in data-flow order (the inputs of q/k/v, o, gate/up, down, then the layer's output;
 * finally the classifier's input), so the first non-finite row names the stage that produced it.
 */
export async function locateNonFinite(
  session: ScoringSession,
  tokens: ArrayLike<number>,
  position: number,
): Promise<{ layer: number | null; stage: string }> {
  let found: { layer: number | null; stage: string } | null = null;
  let called = false;
  const rowBad = (x: Float32Array, width: number) => firstNonFinite(x.subarray(position * width, (position + 1) * width)) >= 0;
  const hooks: ForwardHooks = {
    onLinearInput(name, x, n, inFeatures) {
      called = true;
      if (found || position >= n || !rowBad(x, inFeatures)) return;
      if (name === TensorNames.classifier) {
        found = { layer: null, stage: 'after the last layer: the final RMSNorm output (model.norm) entering the classifier' };
        return;
      }
      const p = parseLinearName(name);
      if (!p) return;
      const what: Record<string, string> = {
        q: 'the attention RMSNorm output (input_layernorm) entering self_attn.q_proj',
        k: 'the attention RMSNorm output (input_layernorm) entering self_attn.k_proj',
        v: 'the attention RMSNorm output (input_layernorm) entering self_attn.v_proj',
        o: 'the attention output (softmax of q·k over v) entering self_attn.o_proj',
        gate: 'the residual after attention, RMS-normed (post_attention_layernorm), entering mlp.gate_proj',
        up: 'the residual after attention, RMS-normed (post_attention_layernorm), entering mlp.up_proj',
        down: 'the SwiGLU product of mlp.gate_proj and mlp.up_proj entering mlp.down_proj',
      };
      found = { layer: p.layer, stage: `layer ${p.layer}: ${what[p.kind] ?? name}` };
    },
    onLayerOutput(layer, x, n) {
      called = true;
      if (found || position >= n || !rowBad(x, session.config.dim)) return;
      found = { layer, stage: `layer ${layer}: the output of mlp.down_proj added to the residual stream` };
    },
  };
  session.reset();
  await session.forward(tokens, { logits: 'all', hooks });
  if (found) return found;
  if (!called) return { layer: null, stage: 'unknown: this runtime does not report per-layer values' };
  return { layer: null, stage: 'after the last layer: the classifier (lm_head) output' };
}

/** Index of the first NaN or ±Infinity in x, or -1. */
export function firstNonFinite(x: ArrayLike<number>): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) return i;
  return -1;
}

/** log Σ exp(x), computed stably in float64. */
export function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i]! - max);
  return max + Math.log(sum);
}

/**
 * KL(P ‖ Q) = Σ P (log P − log Q) for logits p, q with their log-sum-exps. evaluate() calls it with P the
 * reference (float) model and Q the evaluated one (docs/evaluation.md: KL(P_float ‖ P_compressed)).
 */
export function klDivergence(p: Float32Array, pLse: number, q: Float32Array, qLse: number): number {
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    const logP = p[i]! - pLse;
    const prob = Math.exp(logP);
    if (prob > 0) kl += prob * (logP - (q[i]! - qLse));
  }
  return Math.max(0, kl);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}
