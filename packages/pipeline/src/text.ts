import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { TextTokenizer } from '@ultrasketch/model';

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

/**
 * The documents of a text in a form that survives cosmetic edits, for telling whether two texts share
 * documents (calibration vs evaluation): a byte-order mark dropped, CRLF and CR read as LF, lines of only
 * spaces or tabs read as blank, then `splitDocuments`, then every run of whitespace inside a document made one
 * space. So a copy with an extra newline, Windows line ends, re-wrapped lines or trailing blank lines gives
 * the same list. (Evaluation itself uses `splitDocuments` on the text as it is.)
 */
export function comparableDocuments(text: string): string[] {
  const unified = text
    .replace(/^\uFEFF/, '')
    .replace(/\r\n?/g, '\n')
    .replace(/^[ \t]+$/gm, '');
  return splitDocuments(unified)
    .map((d) => d.replace(/\s+/g, ' ').trim())
    .filter((d) => d.length > 0);
}

/** Encode every document with BOS (no EOS) and concatenate them into one token stream. */
export function documentTokenStream(tokenizer: TextTokenizer, text: string, source = '<text>'): Int32Array {
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
