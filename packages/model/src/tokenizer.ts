import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Llama2cTokenizerFile } from '@ultrasketch/format';

/**
 * The llama2.c tokenizer (SentencePiece BPE with byte fallback, as exported by llama2.c's `tokenizer.py`),
 * reproducing `encode()` and `decode()` of llama2.c's `run.c` exactly, on bytes.
 *
 * Encoding (run.c `encode`), for the UTF-8 bytes of the text:
 * 1. BOS (id 1) if asked;
 * 2. the dummy prefix: if the text is non-empty, the id of the piece `" "`;
 * 3. each UTF-8 character — a byte plus the continuation bytes (`10xxxxxx`) that follow it, at most 4 bytes
 *    in all; a run of more continuation bytes is cut into groups of 4 — is looked up as a whole piece; a group
 *    that is not in the vocabulary becomes one byte-fallback token per byte, id = byte + 3;
 * 4. repeatedly, the adjacent pair whose concatenated piece is in the vocabulary with the highest score is
 *    merged (strictly greater wins, so of equal scores the leftmost pair); pairs whose piece scores -1e10 or
 *    less are never merged (run.c's initial best score); BOS takes part in this like any token, as in run.c;
 * 5. EOS (id 2) if asked.
 *
 * The lookup is exact string equality under C's `strcmp`, i.e. on bytes, with a piece cut at its first NUL
 * byte. run.c finds pieces with `bsearch` over a `qsort`-ed copy of the vocabulary; when two ids have the same
 * piece, which one it returns depends on those two functions. This class emulates glibc (stable merge sort,
 * bsearch's midpoint probe `(l + u) / 2`), so such a piece maps to the id glibc's run.c would return. The real
 * vocabularies we ship against (stories260K's tok512.bin, stories3M's tok4096.bin) have no duplicate pieces,
 * no empty pieces and no NUL bytes, so there the question does not arise.
 *
 * Like C, which sees a NUL-terminated `char*`, encoding stops at the first NUL byte (U+0000) of the text.
 * A JavaScript string is encoded to UTF-8 as `TextEncoder` does (a lone surrogate becomes U+FFFD); raw bytes
 * (`Uint8Array`) are taken as they are, invalid UTF-8 included, exactly as C would see them.
 *
 * The merge loop is run.c's, made O(n log n) with a doubly linked list of tokens and a max-heap of candidate
 * pairs ordered by (score desc, position asc) with lazy invalidation: it selects the same pair as run.c's
 * full rescan at every step, so the result is identical.
 *
 * Decoding (run.c `decode`): after BOS (prev token 1) a leading space of the piece is dropped, then a piece
 * `<0xXX>` stands for the raw byte 0xXX. `decode()` and {@link StreamDecoder} emit no text for BOS and EOS
 * themselves (their pieces are `"\n<s>\n"` / `"\n</s>\n"`, which run.c never prints: generation starts after
 * BOS and stops at the next BOS), and they turn the joined bytes into text once, as UTF-8 (WHATWG decoding,
 * invalid sequences become U+FFFD), so a character split over several byte-fallback tokens comes out whole.
 * A sequence is taken to start right after a BOS (`prevToken` defaults to 1), so `decode(encode(text))` gives
 * `text` back with or without an explicit BOS. Unlike run.c's `safe_printf`, no byte is filtered out.
 */

/** The best score a pair must beat to be merged (run.c starts its search at `-1e10`, a float32). */
const MERGE_SCORE_FLOOR = Math.fround(-1e10);
/** The pair cache is cleared when it grows past this many entries, to bound memory on adversarial input. */
const PAIR_CACHE_MAX = 1 << 20;

export interface EncodeOptions {
  /** Prepend BOS (id 1). Default false. */
  bos?: boolean;
  /** Append EOS (id 2). Default false. */
  eos?: boolean;
}

export interface DecodeOptions {
  /**
   * The token before the first one, for the strip-the-space-after-BOS rule. Default: BOS (1), i.e. the tokens
   * start a sequence. Pass the real previous token when decoding a continuation.
   */
  prevToken?: number;
}

/** Where a tokenizer's vocabulary came from (a bundle embeds the source's own kind). */
export type TokenizerKind = 'llama2c' | 'gguf-llama' | 'hf-json' | 'gguf-gpt2';

/** Turns tokens into text one at a time (see {@link StreamDecoder}). */
export interface TokenStreamDecoder {
  /** The text this token completes (an unfinished character is held back). */
  push(token: number): string;
  /** End the stream: what was held back, and a reset. */
  flush(): string;
}

/**
 * What the rest of the code uses of a tokenizer, whichever vocabulary it has: the llama2.c tokenizer (also over a
 * GGUF `llama` vocabulary) and `HfTokenizer` (tokenizer.json, and GGUF `gpt2` vocabularies) implement it.
 * `bosId`/`eosId` are -1 when the vocabulary has none (Qwen has no BOS; `encode` with `bos` then adds nothing).
 * `vocabSize` is one more than the largest id the tokenizer can produce; a model's vocabulary may be larger
 * (padded embedding rows), never smaller.
 */
export interface TextTokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(tokens: ArrayLike<number>, opts?: DecodeOptions): string;
  createStreamDecoder(opts?: DecodeOptions): TokenStreamDecoder;
}

export class Tokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosId = 1;
  readonly eosId = 2;
  /** The longest piece in bytes, as the file declares it. */
  readonly maxTokenLength: number;

  private readonly pieces: Uint8Array[];
  private readonly scores: Float32Array;
  /** Each piece as a binary (latin1) string, cut at its first NUL like a C string. */
  private readonly keys: string[];
  /** Binary piece string → the id run.c's bsearch would return for it. */
  private readonly lookup: Map<string, number>;
  /** Id of each single-byte piece, or -1. */
  private readonly singleByte: Int32Array;
  /** Decoded bytes of each piece (byte tokens resolved) and the same after BOS (leading space dropped). */
  private readonly decoded: Uint8Array[];
  private readonly decodedAfterBos: Uint8Array[];
  /** (left * vocabSize + right) → merged id or -1. */
  private readonly pairCache = new Map<number, number>();
  private readonly spaceId: number;

  // Working buffers, grown on demand and reused across encode() calls.
  private bytes = new Uint8Array(0);
  private tok = new Int32Array(0);
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private ver = new Int32Array(0);
  private heap = new Int32Array(0);
  private eScore = new Float64Array(0);
  private eLeft = new Int32Array(0);
  private eRight = new Int32Array(0);
  private eVerL = new Int32Array(0);
  private eVerR = new Int32Array(0);
  private eId = new Int32Array(0);

  constructor(
    pieces: readonly Uint8Array[],
    scores: Float32Array,
    maxTokenLength: number,
    source = '<tokenizer>',
    /** Where the vocabulary came from: a llama2.c file, or a GGUF `llama` vocabulary mapped to the same pieces. */
    readonly kind: 'llama2c' | 'gguf-llama' = 'llama2c',
  ) {
    if (pieces.length !== scores.length) {
      throw new UltraSketchError(
        ErrorCodes.SHAPE_MISMATCH,
        `tokenizer has ${pieces.length} pieces but ${scores.length} scores`,
        { source },
      );
    }
    if (pieces.length < 3) {
      throw new UltraSketchError(
        ErrorCodes.BAD_DIMENSION,
        `tokenizer has ${pieces.length} tokens; a llama2.c vocabulary needs at least <unk>, <s> and </s>`,
        { source, hint: 'pass a llama2.c tokenizer file' },
      );
    }
    const n = pieces.length;
    this.vocabSize = n;
    this.maxTokenLength = maxTokenLength;
    this.pieces = pieces.map((p) => p.slice());
    this.scores = scores.slice();
    this.keys = this.pieces.map(cStringKey);
    this.lookup = buildLookup(this.keys);
    this.singleByte = new Int32Array(256).fill(-1);
    for (let b = 1; b < 256; b++) this.singleByte[b] = this.lookup.get(String.fromCharCode(b)) ?? -1;
    this.spaceId = this.singleByte[0x20]!;
    this.decoded = new Array<Uint8Array>(n);
    this.decodedAfterBos = new Array<Uint8Array>(n);
    for (let i = 0; i < n; i++) {
      const p = this.pieces[i]!;
      this.decoded[i] = resolveBytePiece(p);
      this.decodedAfterBos[i] = p.length > 0 && p[0] === 0x20 ? resolveBytePiece(p.subarray(1)) : this.decoded[i]!;
    }
  }

  static fromLlama2c(file: Llama2cTokenizerFile, source?: string): Tokenizer {
    return new Tokenizer(file.pieces, file.scores, file.maxTokenLength, source);
  }

  /** The raw bytes of a token's piece (a copy). */
  pieceBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.pieces[id]!.slice();
  }

  /** The merge score of a token's piece. */
  score(id: number): number {
    this.checkId(id);
    return this.scores[id]!;
  }

  /** llama2.c `encode()`: see the comment at the top of this file. */
  encode(text: string | Uint8Array, opts: EncodeOptions = {}): number[] {
    const n = typeof text === 'string' ? this.utf8Into(text) : this.bytesInto(text);
    const bytes = this.bytes;
    this.ensureTokens(n + 2);
    const tok = this.tok;
    let count = 0;
    if (opts.bos) tok[count++] = this.bosId;
    if (n > 0) {
      if (this.spaceId < 0) {
        throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'the vocabulary has no " " piece for the dummy prefix', {
          hint: 'llama2.c encoding needs a SentencePiece vocabulary with a space token',
        });
      }
      tok[count++] = this.spaceId;
    }

    // Group the bytes into UTF-8 characters the way run.c does, look each group up, fall back to bytes.
    let start = 0;
    let len = 0;
    for (let i = 0; i < n; i++) {
      if (len === 0) start = i;
      len++;
      const following = i + 1 < n ? bytes[i + 1]! : 0; // C reads the terminating NUL here
      if ((following & 0xc0) === 0x80 && len < 4) continue;
      let id: number;
      if (len === 1) id = this.singleByte[bytes[start]!]!;
      else {
        let key = '';
        for (let k = start; k < start + len; k++) key += String.fromCharCode(bytes[k]!);
        id = this.lookup.get(key) ?? -1;
      }
      if (id !== -1) tok[count++] = id;
      else {
        for (let k = start; k < start + len; k++) {
          const fallback = bytes[k]! + 3;
          if (fallback >= this.vocabSize) {
            throw new UltraSketchError(
              ErrorCodes.UNSUPPORTED,
              `byte 0x${bytes[k]!.toString(16).padStart(2, '0')} has no piece and no byte-fallback token (vocabulary size ${this.vocabSize})`,
              { hint: 'this vocabulary lacks the 256 byte-fallback tokens at ids 3..258' },
            );
          }
          tok[count++] = fallback;
        }
      }
      len = 0;
    }

    count = this.mergePairs(count);
    const out = new Array<number>(count + (opts.eos ? 1 : 0));
    for (let i = 0; i < count; i++) out[i] = tok[i]!;
    if (opts.eos) out[count] = this.eosId;
    return out;
  }

  /**
   * llama2.c `decode(prev_token, token)`: the bytes the token stands for (a copy). After BOS a leading space is
   * dropped; a piece `<0xXX>` is the raw byte 0xXX. BOS and EOS give their pieces here, as in run.c.
   */
  decodePiece(prevToken: number, token: number): Uint8Array {
    this.checkId(token);
    return (prevToken === this.bosId ? this.decodedAfterBos[token]! : this.decoded[token]!).slice();
  }

  /** The text of a token sequence: BOS/EOS give no text; the joined bytes are decoded as UTF-8 once. */
  decode(tokens: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const d = new StreamDecoder(this, opts);
    let text = '';
    for (let i = 0; i < tokens.length; i++) text += d.push(tokens[i]!);
    return text + d.flush();
  }

  /** A decoder that takes tokens one at a time and returns the text each completes (for streaming output). */
  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, opts);
  }

  /** @internal The decoded bytes of a token after `prevToken` (shared storage: do not modify). */
  decodedBytes(prevToken: number, token: number): Uint8Array {
    this.checkId(token);
    return prevToken === this.bosId ? this.decodedAfterBos[token]! : this.decoded[token]!;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${id} is outside 0..${this.vocabSize - 1}`, {
        hint: 'the token ids do not belong to this tokenizer',
      });
    }
  }

  /** The merged id of two adjacent tokens, or -1 (run.c: `sprintf("%s%s")` then `str_lookup`). */
  private pairId(a: number, b: number): number {
    const k = a * this.vocabSize + b;
    let id = this.pairCache.get(k);
    if (id === undefined) {
      id = this.lookup.get(this.keys[a]! + this.keys[b]!) ?? -1;
      if (this.pairCache.size >= PAIR_CACHE_MAX) this.pairCache.clear();
      this.pairCache.set(k, id);
    }
    return id;
  }

  /** run.c's merge loop over tok[0..count), in place; returns the new count. */
  private mergePairs(count: number): number {
    if (count < 2) return count;
    const { tok, next, prev, ver, scores } = this;
    this.ensureHeap(3 * count);
    for (let i = 0; i < count; i++) {
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
      ver[i] = 0;
    }
    let size = 0;
    let entries = 0;
    const push = (left: number, right: number): void => {
      const id = this.pairId(tok[left]!, tok[right]!);
      if (id === -1) return;
      const s = scores[id]!;
      if (!(s > MERGE_SCORE_FLOOR)) return;
      const e = entries++;
      this.eScore[e] = s;
      this.eLeft[e] = left;
      this.eRight[e] = right;
      this.eVerL[e] = ver[left]!;
      this.eVerR[e] = ver[right]!;
      this.eId[e] = id;
      // sift up
      const heap = this.heap;
      let pos = size++;
      while (pos > 0) {
        const parent = (pos - 1) >> 1;
        if (!this.before(e, heap[parent]!)) break;
        heap[pos] = heap[parent]!;
        pos = parent;
      }
      heap[pos] = e;
    };
    for (let i = 0; i + 1 < count; i++) push(i, i + 1);

    let alive = count;
    const heap = this.heap;
    while (size > 0) {
      const e = heap[0]!;
      // pop: move the last entry to the root and sift down
      const last = heap[--size]!;
      let pos = 0;
      for (;;) {
        let child = 2 * pos + 1;
        if (child >= size) break;
        if (child + 1 < size && this.before(heap[child + 1]!, heap[child]!)) child++;
        if (!this.before(heap[child]!, last)) break;
        heap[pos] = heap[child]!;
        pos = child;
      }
      if (size > 0) heap[pos] = last;

      const left = this.eLeft[e]!;
      const right = this.eRight[e]!;
      if (ver[left] !== this.eVerL[e] || ver[right] !== this.eVerR[e]) continue; // stale
      // merge right into left
      tok[left] = this.eId[e]!;
      ver[left]!++;
      ver[right]!++;
      const after = next[right]!;
      next[left] = after;
      if (after !== -1) prev[after] = left;
      alive--;
      const before = prev[left]!;
      if (before !== -1) push(before, left);
      if (after !== -1) push(left, after);
    }

    // Compact the list (node 0 is always the head: merges keep the left node).
    let w = 0;
    for (let i = 0; i !== -1; i = next[i]!) tok[w++] = tok[i]!;
    if (w !== alive) throw new Error('tokenizer merge bookkeeping is inconsistent');
    return w;
  }

  /** Heap order: higher score first; of equal scores, the leftmost pair. */
  private before(a: number, b: number): boolean {
    const sa = this.eScore[a]!;
    const sb = this.eScore[b]!;
    return sa > sb || (sa === sb && this.eLeft[a]! < this.eLeft[b]!);
  }

  /** UTF-8 of a string into this.bytes, up to the first NUL; returns the byte count. */
  private utf8Into(text: string): number {
    const m = text.length;
    if (this.bytes.length < 3 * m) this.bytes = new Uint8Array(Math.max(3 * m, 2 * this.bytes.length));
    const b = this.bytes;
    let n = 0;
    for (let i = 0; i < m; i++) {
      let c = text.charCodeAt(i);
      if (c < 0x80) {
        if (c === 0) break;
        b[n++] = c;
        continue;
      }
      if (c < 0x800) {
        b[n++] = 0xc0 | (c >> 6);
        b[n++] = 0x80 | (c & 0x3f);
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < m ? text.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          b[n++] = 0xf0 | (c >> 18);
          b[n++] = 0x80 | ((c >> 12) & 0x3f);
          b[n++] = 0x80 | ((c >> 6) & 0x3f);
          b[n++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd; // lone surrogate, as TextEncoder
      }
      b[n++] = 0xe0 | (c >> 12);
      b[n++] = 0x80 | ((c >> 6) & 0x3f);
      b[n++] = 0x80 | (c & 0x3f);
    }
    return n;
  }

  /** Raw bytes into this.bytes, up to the first NUL; returns the byte count. */
  private bytesInto(src: Uint8Array): number {
    let n = src.indexOf(0);
    if (n < 0) n = src.length;
    if (this.bytes.length < n) this.bytes = new Uint8Array(Math.max(n, 2 * this.bytes.length));
    this.bytes.set(src.subarray(0, n));
    return n;
  }

  private ensureTokens(n: number): void {
    if (this.tok.length >= n) return;
    const size = Math.max(n, 2 * this.tok.length);
    this.tok = new Int32Array(size);
    this.next = new Int32Array(size);
    this.prev = new Int32Array(size);
    this.ver = new Int32Array(size);
  }

  private ensureHeap(n: number): void {
    if (this.heap.length >= n) return;
    const size = Math.max(n, 2 * this.heap.length);
    this.heap = new Int32Array(size);
    this.eScore = new Float64Array(size);
    this.eLeft = new Int32Array(size);
    this.eRight = new Int32Array(size);
    this.eVerL = new Int32Array(size);
    this.eVerR = new Int32Array(size);
    this.eId = new Int32Array(size);
  }
}

/**
 * Turns tokens into text incrementally: `push(token)` returns the text that token completes, holding back an
 * unfinished UTF-8 sequence until its last byte arrives; `flush()` ends the stream (an unfinished sequence
 * becomes U+FFFD) and resets it. The concatenation of all returned strings equals `tokenizer.decode(tokens)`.
 */
export class StreamDecoder implements TokenStreamDecoder {
  private prevToken: number;
  private readonly initialPrev: number;
  private readonly utf8 = new Utf8Decoder();

  constructor(
    private readonly tokenizer: Tokenizer,
    opts: DecodeOptions = {},
  ) {
    this.initialPrev = opts.prevToken ?? tokenizer.bosId;
    this.prevToken = this.initialPrev;
  }

  push(token: number): string {
    const bytes = this.tokenizer.decodedBytes(this.prevToken, token);
    this.prevToken = token;
    if (token === this.tokenizer.bosId || token === this.tokenizer.eosId) return '';
    return this.utf8.write(bytes);
  }

  flush(): string {
    this.prevToken = this.initialPrev;
    return this.utf8.end();
  }
}

/**
 * A streaming UTF-8 decoder following the WHATWG Encoding Standard's algorithm (what `TextDecoder` does with
 * `fatal: false, ignoreBOM: true`): each maximal invalid subsequence becomes one U+FFFD. Written out here so the
 * package needs neither DOM nor Node typings.
 */
class Utf8Decoder {
  private codePoint = 0;
  private needed = 0;
  private seen = 0;
  private lower = 0x80;
  private upper = 0xbf;
  private units: number[] = [];

  write(bytes: Uint8Array): string {
    const units = this.units;
    units.length = 0;
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      if (this.needed === 0) {
        if (byte < 0x80) units.push(byte);
        else if (byte >= 0xc2 && byte <= 0xdf) {
          this.needed = 1;
          this.codePoint = byte & 0x1f;
        } else if (byte >= 0xe0 && byte <= 0xef) {
          if (byte === 0xe0) this.lower = 0xa0;
          if (byte === 0xed) this.upper = 0x9f;
          this.needed = 2;
          this.codePoint = byte & 0xf;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          if (byte === 0xf0) this.lower = 0x90;
          if (byte === 0xf4) this.upper = 0x8f;
          this.needed = 3;
          this.codePoint = byte & 0x7;
        } else units.push(0xfffd);
        continue;
      }
      if (byte < this.lower || byte > this.upper) {
        this.reset();
        units.push(0xfffd);
        i--; // reprocess this byte as the start of a new sequence
        continue;
      }
      this.lower = 0x80;
      this.upper = 0xbf;
      this.codePoint = (this.codePoint << 6) | (byte & 0x3f);
      if (++this.seen !== this.needed) continue;
      const cp = this.codePoint;
      this.reset();
      if (cp < 0x10000) units.push(cp);
      else units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    }
    return unitsToString(units);
  }

  end(): string {
    const pending = this.needed !== 0;
    this.reset();
    return pending ? '\ufffd' : '';
  }

  private reset(): void {
    this.codePoint = 0;
    this.needed = 0;
    this.seen = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }
}

function unitsToString(units: number[]): string {
  if (units.length <= 4096) return String.fromCharCode.apply(null, units);
  let s = '';
  for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode.apply(null, units.slice(i, i + 4096));
  return s;
}

/** A piece as a binary string of its bytes, cut at the first NUL (C string semantics). */
function cStringKey(piece: Uint8Array): string {
  let s = '';
  for (let i = 0; i < piece.length && piece[i] !== 0; i++) s += String.fromCharCode(piece[i]!);
  return s;
}

/** C `strcmp` on binary strings (unsigned byte order; every char code is < 256). */
function strcmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Key → id as run.c's `str_lookup` answers with glibc: `qsort` (a stable merge sort for these sizes) of
 * (piece, id) by `strcmp`, then `bsearch` probing index `(l + u) / 2`. Only duplicate pieces make this differ
 * from "any id with that piece".
 */
function buildLookup(keys: readonly string[]): Map<string, number> {
  const order = keys.map((_, i) => i).sort((x, y) => strcmp(keys[x]!, keys[y]!) || x - y);
  const map = new Map<string, number>();
  for (const key of new Set(keys)) {
    let l = 0;
    let u = order.length;
    while (l < u) {
      const idx = (l + u) >>> 1;
      const c = strcmp(key, keys[order[idx]!]!);
      if (c < 0) u = idx;
      else if (c > 0) l = idx + 1;
      else {
        map.set(key, order[idx]!);
        break;
      }
    }
  }
  return map;
}

/**
 * run.c's `sscanf(piece, "<0x%02hhX>", &byte)`: a piece starting `<0x` followed by one or two hex digits stands
 * for that byte (the closing `>` is not checked, as in C). Otherwise the piece's own bytes.
 */
function resolveBytePiece(p: Uint8Array): Uint8Array {
  if (p.length >= 4 && p[0] === 0x3c && p[1] === 0x30 && p[2] === 0x78) {
    const h1 = hexValue(p[3]!);
    if (h1 >= 0) {
      const h2 = p.length >= 5 ? hexValue(p[4]!) : -1;
      return Uint8Array.of(h2 >= 0 ? h1 * 16 + h2 : h1);
    }
  }
  return p.slice();
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
