import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLlama2cCheckpoint, writeLlama2cLegacy } from '@ultrasketch/format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVAL_TEXT, HAVE_SHARED, MODELS, TOKENIZERS, cli, ensureBuilt } from './helpers.js';

/**
 * `eval` and `compress --eval-windows` never answer NaN (issue 18): a checkpoint whose finite weights
 * overflow in the forward pass (stories260K with the FFN norm of layer 3 scaled by 1e30, written by the
 * format package's llama2.c writer) is exit 1 with E_NOT_FINITE naming the file, the window, the position and
 * the layer — evaluated, or as --reference (which used to report KL 0) — and compress writes no bundle.
 */
let tmp = '';
let broken = '';
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-not-finite-'));
  if (!HAVE_SHARED) return;
  const ckpt = readLlama2cCheckpoint(readFileSync(MODELS.stories260K), MODELS.stories260K);
  ckpt.weights.rmsFfn[3] = ckpt.weights.rmsFfn[3]!.map((v) => v * 1e30);
  broken = join(tmp, 'broken.bin');
  writeFileSync(broken, writeLlama2cLegacy(ckpt.config, ckpt.weights));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TOK = TOKENIZERS.stories260K;

describe.skipIf(!HAVE_SHARED)('non-finite results are errors, never figures', () => {
  it('eval of an overflowing checkpoint: exit 1, E_NOT_FINITE naming the file, window 0, position 0, layer 3; no NaN printed', () => {
    const r = cli(['eval', broken, '--tokenizer', TOK, '--text', EVAL_TEXT, '--windows', '1', '--window', '32', '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/E_NOT_FINITE/);
    expect(r.stderr).toContain(`${broken}: the evaluated model gives a non-finite result at window 0, position 0`);
    expect(r.stderr).toMatch(/layer 3: the SwiGLU product/);
    expect(r.stderr).not.toMatch(/perplexity\s+NaN/);
  });

  it('the same checkpoint as --reference: the error names the reference (it used to print KL 0)', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', EVAL_TEXT, '--windows', '1', '--window', '32', '--reference', broken]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toMatch(/KL/);
    expect(r.stderr).toContain(`${broken}: the reference model gives a non-finite result at window 0, position 0`);
  });

  it('compress --eval-windows of the overflowing checkpoint: exit 1, E_NOT_FINITE, no bundle written', () => {
    const out = join(tmp, 'nan.usk');
    const r = cli(['compress', broken, '--tokenizer', TOK, '--codec', 'rtn', '--bits', '8', '--eval-windows', '1', '--eval-window', '32', '--eval-text', EVAL_TEXT, '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_NOT_FINITE.*the reference model gives a non-finite result at window 0, position 0/);
    expect(existsSync(out)).toBe(false);
  });
});
