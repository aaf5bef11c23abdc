import type { ModelConfig, TextTokenizer } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { type EvalProtocol, defaultWindow, evaluate } from '../src/index.js';

/**
 * The three perplexity protocols of `evaluate` (docs/evaluation.md, docs/inputs.md), on a scripted model whose
 * NLL at position t is a known function of t, so the test can tell exactly which positions each protocol scores,
 * which tokens it feeds (BOS in place of a llamacpp chunk's first token) and how it tokenizes the text (documents
 * with BOS each, or the whole text once).
 */

const V = 16;
const BOS = 1;
const config = { seqLen: 64, vocabSize: V } as ModelConfig;

/** Characters → ids 2..15 (a-n), one token per character; `\n` is id 0. */
class ScriptTokenizer implements TextTokenizer {
  readonly kind = 'llama2c' as const;
  readonly vocabSize = V;
  readonly eosId = -1;
  calls: string[] = [];
  constructor(readonly bosId: number) {}
  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    this.calls.push(text);
    const ids = [...text].map((c) => (c === '\n' ? 0 : 2 + ((c.charCodeAt(0) - 97) % 14)));
    return opts.bos && this.bosId >= 0 ? [this.bosId, ...ids] : ids;
  }
  decode(): string {
    return '';
  }
  createStreamDecoder(): never {
    throw new Error('unused');
  }
}

/** Row t puts logit a_t = 0.1·(t+1) on the token that follows position t; NLL_t = ln(V − 1 + e^a_t) − a_t. */
class ScriptSession {
  readonly config = config;
  fed: number[][] = [];
  reset(): void {}
  forward(tokens: ArrayLike<number>): Float32Array {
    const n = tokens.length;
    this.fed.push(Array.from(tokens));
    const out = new Float32Array(n * V);
    for (let t = 0; t + 1 < n; t++) out[t * V + tokens[t + 1]!] = 0.1 * (t + 1);
    return out;
  }
}
const nllAt = (t: number) => {
  const a = Math.fround(0.1 * (t + 1)); // the logits are float32
  return Math.log(V - 1 + Math.exp(a)) - a;
};

async function run(protocol: EvalProtocol, text: string, window: number, bosId = BOS) {
  const tokenizer = new ScriptTokenizer(bosId);
  const session = new ScriptSession();
  const r = await evaluate({ session, tokenizer, text, protocol, window });
  return { r, tokenizer, session };
}

const TEXT = 'abcdefgh\n\nijklmnabcd\n\nefghijkl';

describe('evaluation protocols', () => {
  it('llama2c-documents: BOS per document, positions 1..W−1 of every window', async () => {
    const { r, tokenizer, session } = await run('llama2c-documents', TEXT, 8);
    expect(tokenizer.calls).toEqual(['abcdefgh', 'ijklmnabcd', 'efghijkl']);
    expect(session.fed[0]![0]).toBe(BOS);
    const want = [0, 1, 2, 3, 4, 5, 6].map(nllAt).reduce((a, b) => a + b) / 7;
    for (const x of r.windowNll) expect(x).toBeCloseTo(want, 12);
    expect(r.predictedTokens).toBe(r.windows * 7);
    expect(r.firstScored).toBe(0);
  });

  it('wikitext: the text tokenized once as given (blank lines are tokens), BOS only at its start, W−1 predictions per window', async () => {
    const { r, tokenizer, session } = await run('wikitext', TEXT, 8);
    expect(tokenizer.calls).toEqual([TEXT]);
    expect(r.streamTokens).toBe(1 + TEXT.length);
    expect(session.fed[0]![0]).toBe(BOS);
    expect(session.fed[1]![0]).not.toBe(BOS); // the second window starts mid-text
    expect(session.fed[0]!.slice(1)).toEqual(tokenizer.encode('abcdefgh\n\n').slice(0, 7));
    expect(r.windows).toBe(Math.floor((1 + TEXT.length) / 8));
    expect(r.predictedTokens).toBe(r.windows * 7);
    expect(r.protocol).toBe('wikitext');
  });

  it('llamacpp: each chunk starts with BOS in place of its first token; only positions W/2..W−2 are scored', async () => {
    const { r, session } = await run('llamacpp', TEXT, 8);
    expect(session.fed.every((w) => w[0] === BOS)).toBe(true);
    const want = [4, 5, 6].map(nllAt).reduce((a, b) => a + b) / 3;
    expect(r.firstScored).toBe(4);
    expect(r.predictedTokens).toBe(r.windows * 3);
    for (const x of r.windowNll) expect(x).toBeCloseTo(want, 12);
    expect(r.meanNll).toBeCloseTo(want, 12);
  });

  it('a vocabulary without BOS (Qwen): nothing is added or replaced', async () => {
    const { session } = await run('llamacpp', TEXT, 8, -1);
    expect(session.fed[0]![0]).toBe(2); // 'a'
    const { r } = await run('wikitext', TEXT, 8, -1);
    expect(r.streamTokens).toBe(TEXT.length);
  });

  it('default windows: llama2c-documents and wikitext 2048, llamacpp 512, each capped by seq_len; llamacpp needs W ≥ 4', async () => {
    const long = { seqLen: 131072 } as ModelConfig;
    expect(defaultWindow('llama2c-documents', long)).toBe(2048);
    expect(defaultWindow('wikitext', long)).toBe(2048);
    expect(defaultWindow('llamacpp', long)).toBe(512);
    expect(defaultWindow('llama2c-documents', { seqLen: 512 } as ModelConfig)).toBe(512);
    expect(defaultWindow('llamacpp', { seqLen: 256 } as ModelConfig)).toBe(256);
    await expect(run('llamacpp', TEXT, 3)).rejects.toThrow(/too short for the llamacpp protocol/);
  });
});
