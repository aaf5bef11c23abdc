/**
 * Samples of the float model, generated once and cached on disk (issue 14: "data without limits"). calib.txt
 * is ~80k tokens, so a long run would see it a hundred times; the teacher's own samples are unlimited, but
 * sampling one token at a time inside every training step costs more than the step. So they are generated
 * up front with runtime-node's fused kernels (about 4× the reference forward), written to a file named by
 * what determines them, and reused by every later run with the same model, window length, seed and
 * temperature — across methods, rates and sessions. A run that needs more windows than the file holds
 * extends it: window i is a pure function of (model, seed, temperature, i), so a longer corpus starts with
 * the shorter one, and a run that needs fewer reads the file's first windows.
 *
 * File: `teacher-<model>-w<window>-s<seed>-t<temperature>.tok` = a 32-byte header (magic "USKTCORP", version 1,
 * window length, window count, vocabulary size, BOS, reserved) and the windows' tokens as little-endian int32.
 * Written atomically (temporary file + rename); a file whose header or size does not match is regenerated.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, Rng, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import type { ModelWeights } from '@ultrasketch/model';
import { NodeSession } from '@ultrasketch/runtime-node';
import { sampleLogits } from '@ultrasketch/ste-trainer';
import { writeFileAtomic } from '@ultrasketch/node-files';

const MAGIC = 'USKTCORP';
const VERSION = 1;
const HEADER_BYTES = 32;

export interface TeacherCorpusOptions {
  /** The cache directory (created if missing). */
  dir: string;
  /** Windows needed (each seqLen + 1 tokens, starting with BOS). */
  windows: number;
  /** Training tokens per window minus one: the window holds seqLen + 1 tokens. */
  seqLen: number;
  seed: number;
  /** Sampling temperature (default 1: the model's own distribution). */
  temperature?: number;
  /** First token of every window (default 1, llama2.c's BOS). */
  bos?: number;
  /** Called every few windows while generating: (windows done, windows needed). */
  onProgress?: (done: number, total: number) => void;
}

export interface TeacherCorpus {
  /** `windows` windows of seqLen + 1 tokens, back to back. */
  tokens: Int32Array;
  windows: number;
  path: string;
  /** Windows read from the file / generated now. */
  reused: number;
  generated: number;
  /** What the windows depend on, for the training section. */
  key: { model: string; seed: number; temperature: number; window: number; generator: string };
}

/** A short fingerprint of the model's weights and config (SHA-256 over both, first 16 hex digits). */
export function modelFingerprint(weights: ModelWeights): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(weights.config));
  for (const [name, t] of [...weights.tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    h.update(name);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

/** Samples of `weights` for training: read from the cache, generating (and saving) the windows it lacks. */
export function teacherCorpus(weights: ModelWeights, o: TeacherCorpusOptions): TeacherCorpus {
  const temperature = o.temperature ?? 1;
  const bos = o.bos ?? 1;
  const w = o.seqLen + 1;
  const V = weights.config.vocabSize;
  if (!Number.isInteger(o.windows) || o.windows < 1) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `teacher windows ${o.windows} must be a positive integer`);
  if (!(temperature > 0 && Number.isFinite(temperature))) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `teacher temperature ${temperature} must be a positive number`);
  if (w > weights.config.seqLen) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `teacher windows of ${w} tokens exceed the model's seq_len ${weights.config.seqLen}`, { hint: 'use a shorter --seq' });
  }
  const model = modelFingerprint(weights);
  const generator = 'runtime-node float kernels, KV cache, softmax sampling';
  const path = join(o.dir, `teacher-${model}-w${w}-s${o.seed >>> 0}-t${temperature}.tok`);
  try {
    mkdirSync(o.dir, { recursive: true });
  } catch (err) {
    throw fromSystemError(err, o.dir, 'create');
  }
  const have = readCorpus(path, w, V, bos);
  // Exactly the windows asked for, even when the file holds more (a longer run extended it): what a run trains
  // on must follow from its own command, not from the cache's history, or the command in a bundle would not
  // reproduce it on a fresh machine.
  const count = o.windows;
  const tokens = new Int32Array(count * w);
  const reused = have ? Math.min(have.length / w, count) : 0;
  if (have) tokens.set(have.subarray(0, reused * w));
  if (reused < count) {
    const session = NodeSession.fromWeights(weights, { contextLength: w });
    const probs = new Float64Array(V);
    const tok = [0];
    for (let i = reused; i < count; i++) {
      // Window i's randomness is its own generator: the corpus is a pure function of (model, seed, T, i).
      const rng = new Rng((BigInt(o.seed >>> 0) << 32n) | BigInt(i >>> 0));
      session.reset();
      let token = bos;
      tokens[i * w] = token;
      for (let t = 1; t < w; t++) {
        tok[0] = token;
        token = sample(session.forward(tok), probs, temperature, rng);
        tokens[i * w + t] = token;
      }
      if (o.onProgress && ((i + 1) % 16 === 0 || i + 1 === count)) o.onProgress(i + 1, count);
    }
    writeFileAtomic(path, encode(tokens, w, count, V, bos));
  }
  return { tokens, windows: count, path, reused, generated: count - reused, key: { model, seed: o.seed >>> 0, temperature, window: w, generator } };
}

/** sampleLogits, refusing a float model whose logits overflow (a NaN/Inf corpus would train nothing). */
function sample(logits: Float32Array, p: Float64Array, temperature: number, rng: Rng): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  if (!Number.isFinite(max)) {
    throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the float model gives a non-finite logit (${max}) while sampling teacher windows`, {
      hint: 'the float model overflows in its forward pass: `ultrasketch eval` on it names the layer',
    });
  }
  return sampleLogits(logits, p, temperature, rng);
}

function encode(tokens: Int32Array, w: number, count: number, vocab: number, bos: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + tokens.byteLength);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, w, true);
  dv.setUint32(16, count, true);
  dv.setUint32(20, vocab, true);
  dv.setInt32(24, bos, true);
  const body = new DataView(out.buffer, HEADER_BYTES);
  for (let i = 0; i < tokens.length; i++) body.setInt32(4 * i, tokens[i]!, true);
  return out;
}

/** The cached windows, or null when there is no usable file (missing, another shape, damaged: regenerated). */
function readCorpus(path: string, w: number, vocab: number, bos: number): Int32Array | null {
  if (!existsSync(path)) return null;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    if (size < HEADER_BYTES) return null;
    const head = new Uint8Array(HEADER_BYTES);
    if (readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES) return null;
    const dv = new DataView(head.buffer);
    const count = dv.getUint32(16, true);
    if (
      new TextDecoder().decode(head.subarray(0, 8)) !== MAGIC ||
      dv.getUint32(8, true) !== VERSION ||
      dv.getUint32(12, true) !== w ||
      dv.getUint32(20, true) !== vocab ||
      dv.getInt32(24, true) !== bos ||
      size !== HEADER_BYTES + 4 * w * count
    ) {
      return null;
    }
    const bytes = new Uint8Array(4 * w * count);
    let got = 0;
    while (got < bytes.length) {
      const r = readSync(fd, bytes, got, bytes.length - got, HEADER_BYTES + got);
      if (r <= 0) return null;
      got += r;
    }
    const dvb = new DataView(bytes.buffer);
    const tokens = new Int32Array(w * count);
    for (let i = 0; i < tokens.length; i++) {
      const t = dvb.getInt32(4 * i, true);
      if (t < 0 || t >= vocab) return null; // damaged: regenerate rather than train on it
      tokens[i] = t;
    }
    return tokens;
  } finally {
    closeSync(fd);
  }
}
