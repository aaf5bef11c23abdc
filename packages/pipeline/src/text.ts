import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Tokenizer } from '@ultrasketch/model';

/**
 * Split text into documents the way the evaluation protocol does: on blank lines ("\n\n"), each piece
 * trimmed of leading/trailing spaces and newlines, empty pieces dropped.
 */
export function splitDocuments(text: string): string[] {
  return text
    .split('\n\n')
    .map((piece) => piece.replace(/^[ \n]+|[ \n]+$/g, ''))
    .filter((piece) => piece.length > 0);
}

/** Encode every document with BOS (no EOS) and concatenate them into one token stream. */
export function documentTokenStream(tokenizer: Tokenizer, text: string, source = '<text>'): Int32Array {
  const docs = splitDocuments(text);
  if (docs.length === 0) {
    throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'the text contains no documents (it is empty or only whitespace)', {
      source,
      hint: 'pass a text file with content, documents separated by blank lines',
    });
  }
  const parts = docs.map((d) => tokenizer.encode(d, { bos: true, eos: false }));
  const stream = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    stream.set(p, offset);
    offset += p.length;
  }
  return stream;
}
