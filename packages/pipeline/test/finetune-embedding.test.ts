import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readBundle } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import { type TrainingSection, compress, loadModel } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/** Finetuning with an rtn-stored embedding trains the student against the stored (decoded) embedding. */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE = requireShared('finetune embedding tests', [MODEL_PATH, shared('data/tinystories/calib.txt')]);

describe.runIf(HAVE)('finetuning against the stored embedding (stories260K)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE ? readFileSync(shared('data/tinystories/calib.txt'), 'utf8') : '';
  const finetune = { steps: 2, batch: 2, seq: 16, calibText, calibSource: 'calib.txt' };

  it('rtn2: recorded in the recipe, and the trained linears differ from training against the float embedding', async () => {
    const rtn2 = await compress({ model, codec: 'binary', embeddings: 'rtn2', finetune });
    const t = readBundle(rtn2.bytes).sections.training as TrainingSection;
    expect(t.recipe.studentEmbedding).toBe('rtn2');
    const f16 = await compress({ model, codec: 'binary', embeddings: 'f16', finetune });
    expect((readBundle(f16.bytes).sections.training as TrainingSection).recipe.studentEmbedding).toBeUndefined();
    // Same seed and data, different student embedding: different trained linear weights.
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const a = JSON.stringify(readBundle(rtn2.bytes).weights.get(name)!.params, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Uint8Array) : v));
    const b = JSON.stringify(readBundle(f16.bytes).weights.get(name)!.params, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Uint8Array) : v));
    expect(a).not.toBe(b);
  });
});
