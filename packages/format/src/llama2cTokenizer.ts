import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { ByteReader } from './byteReader.js';
import { LIMITS } from './limits.js';

/**
 * llama2.c tokenizer files (`tokenizer.bin`, `tok512.bin`, ...): int32 `max_token_length`, then for each
 * token: float32 score, int32 byte length, that many bytes of UTF-8. The file does not store the vocabulary
 * size; the reader is told it (from the model), and a file with more or fewer entries is rejected.
 */
export interface Llama2cTokenizerFile {
  maxTokenLength: number;
  /** Token strings as raw bytes (a piece need not be valid UTF-8 on its own). */
  pieces: Uint8Array[];
  scores: Float32Array;
}

export function readLlama2cTokenizer(
  bytes: Uint8Array,
  vocabSize: number,
  source = '<tokenizer>',
): Llama2cTokenizerFile {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0 || vocabSize > LIMITS.maxVocab) {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `vocabulary size ${vocabSize} is outside 1..${LIMITS.maxVocab}`, {
      source,
    });
  }
  // Each entry takes at least 8 bytes, so the file length bounds the allocation below.
  const mismatch = (found: string) =>
    new UltraSketchError(
      ErrorCodes.TOKENIZER_MISMATCH,
      `tokenizer has ${found} but the model's vocabulary has ${vocabSize}`,
      { source, hint: 'pass the tokenizer that was trained with this model (--tokenizer)' },
    );
  if (4 + 8 * vocabSize > bytes.byteLength) {
    throw mismatch(`room for at most ${Math.max(0, Math.floor((bytes.byteLength - 4) / 8))} tokens`);
  }
  const r = new ByteReader(bytes, source);
  const maxTokenLength = r.i32('max_token_length');
  if (maxTokenLength <= 0 || maxTokenLength > LIMITS.maxTokenBytes) {
    throw new UltraSketchError(
      ErrorCodes.BAD_HEADER,
      `max_token_length ${maxTokenLength} is outside 1..${LIMITS.maxTokenBytes}`,
      { source, hint: 'this is not a llama2.c tokenizer file' },
    );
  }
  const pieces: Uint8Array[] = new Array(vocabSize);
  const scores = new Float32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    if (r.remaining < 8) throw mismatch(`only ${i} tokens`);
    scores[i] = r.f32(`score of token ${i}`);
    const len = r.i32(`length of token ${i}`);
    if (len < 0 || len > maxTokenLength) {
      throw new UltraSketchError(
        ErrorCodes.BAD_HEADER,
        `token ${i} has length ${len}, outside 0..max_token_length (${maxTokenLength})`,
        { source, hint: 'the tokenizer file is corrupt' },
      );
    }
    if (!Number.isFinite(scores[i]!)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `token ${i} has a non-finite score`, {
        source,
        hint: 'the tokenizer file is corrupt',
      });
    }
    pieces[i] = r.take(len, `bytes of token ${i}`).slice();
  }
  if (r.remaining !== 0) throw mismatch(`${r.remaining} bytes after entry ${vocabSize} (more tokens)`);
  return { maxTokenLength, pieces, scores };
}
