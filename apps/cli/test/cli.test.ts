/**
 * The `ultrasketch` command as a user runs it: the built dist/cli.js, spawned, checked against llama2.c's
 * reference outputs in ../shared/reference.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '@ultrasketch/format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allOptions } from '../src/command.js';
import { COMMANDS } from '../src/main.js';
import {
  CALIB_TEXT,
  EVAL_TEXT,
  HAVE_SHARED,
  MODELS,
  REFERENCE,
  TOKENIZERS,
  cli,
  ensureBuilt,
  parseOneObject,
  readLines,
} from './helpers.js';

let tmp: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-cli-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** No stack trace lines ("    at fn (file:line)") unless ULTRASKETCH_DEBUG=1. */
const hasStack = (stderr: string) => /^\s+at .+/m.test(stderr);

describe('ultrasketch: help, version, usage errors', () => {
  it('--help lists every command; exit 0', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(c.name);
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))('%s --help mentions every option, its defaults and an example', (_name, cmd) => {
    const r = cli([cmd.name, '--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const flat = r.stdout.replace(/\s+/g, ' '); // help text is wrapped
    for (const o of allOptions(cmd)) {
      expect(flat).toContain(`--${o.name}`);
      expect(flat).toContain(o.description);
      if (o.defaultText) expect(flat).toContain(`default: ${o.defaultText}`);
      else if (o.default !== undefined && o.kind !== 'boolean') expect(flat).toContain(`default: ${String(o.default)}`);
    }
    for (const p of cmd.positionals) expect(r.stdout).toContain(`<${p.name}>`);
    expect(r.stdout).toMatch(/Examples?:\n {2}ultrasketch /);
  });

  it('--version prints the package version', () => {
    const r = cli(['--version']);
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('no command: help on stderr, exit 2', () => {
    const r = cli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('Usage: ultrasketch <command>');
  });

  it('an unknown command: exit 2 with a suggestion', () => {
    const r = cli(['generat', 'x.bin']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'generat'");
    expect(r.stderr).toContain("did you mean 'generate'");
  });

  it('an unknown option: exit 2, names it, suggests the nearest, points at --help', () => {
    const r = cli(['eval', 'x.bin', '--txt', 'a.txt']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--txt'");
    expect(r.stderr).toContain('did you mean --text?');
    expect(r.stderr).toContain('ultrasketch eval --help');
    expect(hasStack(r.stderr)).toBe(false);
  });

  it.each([
    [['generate', 'x.bin', '--steps', 'abc'], '--steps expects an integer'],
    [['generate', 'x.bin', '--steps', '0'], '--steps must be an integer ≥ 1'],
    [['generate', 'x.bin', '--steps'], '--steps needs a value'],
    [['generate', 'x.bin', '--prompt', '-dash'], "write --prompt=VALUE"],
    [['generate', 'x.bin', '--top-p', '1.5'], '--top-p must be a number ≤ 1'],
    [['generate', 'x.bin', '--json=yes'], '--json is a switch'],
    [['generate', 'x.bin', '--kernels', 'gpu'], '--kernels must be one of auto, wasm, js'],
    [['generate'], 'missing <checkpoint>'],
    [['generate', 'a.bin', 'b.bin'], "unexpected argument 'b.bin'"],
    [['eval', 'x.bin'], '--text FILE is required'],
    [['eval', 'x.bin', '--text', 't.txt', '--windows', 'some'], "--windows expects a positive integer or 'all'"],
  ])('usage error %j: exit 2', (args, message) => {
    const r = cli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(message);
  });
});

describe.skipIf(!HAVE_SHARED)('ultrasketch: typed errors', () => {
  it('a missing checkpoint: exit 1, E_FILE_NOT_FOUND and the path, no stack trace', () => {
    const missing = join(tmp, 'no-such-model.bin');
    const r = cli(['generate', missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_FILE_NOT_FOUND\]: /);
    expect(r.stderr).toContain(missing);
    expect(hasStack(r.stderr)).toBe(false);
    expect(r.stdout).toBe('');
  });

  it('ULTRASKETCH_DEBUG=1 adds the stack trace', () => {
    const r = cli(['inspect', join(tmp, 'none.bin')], { ULTRASKETCH_DEBUG: '1' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_FILE_NOT_FOUND');
    expect(hasStack(r.stderr)).toBe(true);
  });

  it('an empty text file: exit 1, E_EMPTY_INPUT', () => {
    const empty = join(tmp, 'empty.txt');
    writeFileSync(empty, '\n\n  \n');
    const r = cli(['eval', MODELS.stories260K, '--text', empty]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error [E_EMPTY_INPUT]');
    expect(r.stderr).toContain(empty);
  });

  it('a missing tokenizer: E_FILE_NOT_FOUND naming --tokenizer', () => {
    const r = cli(['generate', MODELS.stories260K, '--tokenizer', join(tmp, 'tok.bin')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_FILE_NOT_FOUND');
    expect(r.stderr).toContain('--tokenizer');
  });

  it('the wrong tokenizer for the model: E_TOKENIZER_MISMATCH', () => {
    const r = cli(['generate', MODELS.stories260K, '--tokenizer', TOKENIZERS.stories3M, '--steps', '4']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_TOKENIZER_MISMATCH');
  });

  it('a truncated checkpoint: E_TRUNCATED', () => {
    const cut = join(tmp, 'cut.bin');
    writeFileSync(cut, readFileSync(MODELS.stories260K).subarray(0, 100_000));
    const r = cli(['inspect', cut]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_TRUNCATED');
    expect(r.stderr).toContain(cut);
  });

  it('a sampling option the sampler refuses: E_BAD_ARGUMENT before any output', () => {
    const r = cli(['generate', MODELS.stories260K, '--top-p', '0', '--steps', '4']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_BAD_ARGUMENT\]/);
    expect(r.stdout).toBe('');
  });
});

describe.skipIf(!HAVE_SHARED)('ultrasketch generate', () => {
  const greedy = (model: keyof typeof MODELS, steps: number) => {
    const r = cli(['generate', MODELS[model], '--temperature', '0', '--steps', String(steps), '--json']);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
    return parseOneObject(r.stdout) as { tokens: number[]; text: string };
  };

  it('stories260K: greedy --steps 256 --json reproduces llama2.c greedy_tokens.txt exactly', () => {
    const out = greedy('stories260K', 256);
    expect(out.tokens).toEqual(readLines(REFERENCE('stories260K', 'greedy_tokens.txt')).map(Number));
    expect(out.text.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
  });

  it('stories3M: greedy, the first 64 tokens reproduce greedy_tokens.txt', () => {
    const out = greedy('stories3M', 64);
    expect(out.tokens).toEqual(readLines(REFERENCE('stories3M', 'greedy_tokens.txt')).slice(0, 64).map(Number));
  });

  it.each(['wasm', 'js'])('--kernels %s: greedy tokens match the reference (stories260K, 64 positions)', (kernels) => {
    const r = cli(['generate', MODELS.stories260K, '--temperature', '0', '--steps', '64', '--json', '--kernels', kernels]);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as { tokens: number[]; kernels: string };
    expect(out.kernels).toBe(kernels);
    expect(out.tokens).toEqual(readLines(REFERENCE('stories260K', 'greedy_tokens.txt')).slice(0, 64).map(Number));
  });

  it('streamed text equals the --json text (and nothing else is on stdout)', () => {
    const json = greedy('stories260K', 200);
    const r = cli(['generate', MODELS.stories260K, '--temperature', '0', '--steps', '200']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${json.text}\n`);
    expect(r.stderr).toMatch(/generate: 200 positions .* tokens\/s/);
  });

  it('--quiet leaves stderr empty', () => {
    const r = cli(['generate', MODELS.stories260K, '--steps', '16', '--quiet']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('without --seed, the seed is printed on stderr and repeats the run', () => {
    const first = cli(['generate', MODELS.stories260K, '--steps', '48', '--json']);
    expect(first.code).toBe(0);
    const m = /--seed (\d+)/.exec(first.stderr);
    expect(m).not.toBeNull();
    const again = cli(['generate', MODELS.stories260K, '--steps', '48', '--json', '--seed', m![1]!]);
    expect(parseOneObject(again.stdout).tokens).toEqual(parseOneObject(first.stdout).tokens);
    expect(parseOneObject(first.stdout).seed).toBe(Number(m![1]));
  });

  it('a prompt is encoded with BOS and printed back whole, multi-byte characters included', () => {
    const prompt = 'Lily ate a crème brûlée 🍰 with Ben';
    const r = cli(['generate', MODELS.stories260K, '--prompt', prompt, '--temperature', '0', '--steps', '80', '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as { tokens: number[]; text: string };
    expect(out.tokens[0]).toBe(1);
    expect(out.text.startsWith(prompt)).toBe(true);
    const streamed = cli(['generate', MODELS.stories260K, '--prompt', prompt, '--temperature', '0', '--steps', '80']);
    expect(streamed.stdout).toBe(`${out.text}\n`);
  });

  it('--steps beyond seq_len runs seq_len positions and says so', () => {
    const r = cli(['generate', MODELS.stories260K, '--steps', '600', '--temperature', '0', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("more than the model's seq_len");
    expect((parseOneObject(r.stdout).tokens as number[]).length).toBeLessThanOrEqual(512);
  });
});

describe.skipIf(!HAVE_SHARED)('ultrasketch eval', () => {
  it('stories260K --windows 2 --json reproduces window_nll.txt lines 1-2 within 1e-4', () => {
    const r = cli(['eval', MODELS.stories260K, '--tokenizer', TOKENIZERS.stories260K, '--text', EVAL_TEXT, '--windows', '2', '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as Record<string, number> & { windowNll: number[]; protocol: string };
    const ref = readLines(REFERENCE('stories260K', 'window_nll.txt')).slice(0, 2).map(Number);
    expect(out.windows).toBe(2);
    expect(out.predictedTokens).toBe(2 * 511);
    expect(out.windowNll).toHaveLength(2);
    out.windowNll.forEach((nll, i) => expect(Math.abs(nll - ref[i]!)).toBeLessThanOrEqual(1e-4));
    expect(Math.abs(out.meanNll - (ref[0]! + ref[1]!) / 2)).toBeLessThanOrEqual(1e-4);
    expect(out.perplexity).toBeCloseTo(Math.exp(out.meanNll), 10);
    expect(out.protocol).toBe('llama2c-documents');
    expect(out.streamTokens).toBe(144_501);
    expect(out.windowsAvailable).toBe(282);
  });

  it('a model against itself as --reference: KL ≈ 0, top-1 = 1, the same NLL', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', EVAL_TEXT, '--windows', '1', '--reference', MODELS.stories260K, '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as { kl: number; top1: number; meanNll: number; reference: { meanNll: number; perplexity: number; path: string } };
    expect(out.kl).toBeGreaterThanOrEqual(0);
    expect(out.kl).toBeLessThan(1e-9);
    expect(out.top1).toBe(1);
    expect(out.reference.meanNll).toBeCloseTo(out.meanNll, 9);
    expect(out.reference.path).toBe(MODELS.stories260K);
  });

  it('the human summary names the model, windows, mean NLL and perplexity', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', EVAL_TEXT, '--windows', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/windows\s+1 of 282 × 512 tokens \(511 predicted\)/);
    expect(r.stdout).toMatch(/mean NLL\s+\d\.\d{6} nats/);
    expect(r.stdout).toMatch(/perplexity\s+\d+\.\d{4}/);
  });

  it('warns on stderr when the text is the calibration file', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', CALIB_TEXT, '--windows', '1', '--json', '--quiet']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning: evaluating on calibration text');
    parseOneObject(r.stdout);
  });

  it('a bundle evaluated against a checkpoint that is not its source: a warning naming both, never silence', () => {
    const bundle = join(tmp, 'src-check.usk');
    expect(cli(['compress', MODELS.stories260K, '--codec', 'rtn', '--bits', '8', '-o', bundle, '--quiet']).code).toBe(0);
    // The recorded source: no warning.
    const same = cli(['eval', bundle, '--text', EVAL_TEXT, '--windows', '1', '--window', '32', '--reference', MODELS.stories260K, '--json', '--quiet']);
    expect(same.code).toBe(0);
    expect(same.stderr).not.toContain('is not the checkpoint this bundle was compressed from');
    // Another checkpoint (one weight changed by one ulp, so another sha256): compared, with a warning.
    const other = join(tmp, 'other-260K.bin');
    const bytes = new Uint8Array(readFileSync(MODELS.stories260K));
    bytes[bytes.length - 1]! ^= 1;
    writeFileSync(other, bytes);
    const r = cli(['eval', bundle, '--text', EVAL_TEXT, '--windows', '1', '--window', '32', '--reference', other, '--json', '--quiet']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: the reference .*other-260K\.bin .* is not the checkpoint this bundle was compressed from/);
    parseOneObject(r.stdout);
  });

  it('--window smaller than seq_len', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', EVAL_TEXT, '--window', '64', '--windows', '3', '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout);
    expect(out.window).toBe(64);
    expect(out.predictedTokens).toBe(3 * 63);
  });
});

describe.skipIf(!HAVE_SHARED)('ultrasketch inspect', () => {
  it.each([
    ['stories3M', 'v2-q8_0', 3_148_224, 6],
    ['stories260K', 'legacy-f32', 260_032, 5],
  ] as const)('%s --json: layout, parameters, file bytes, a table that accounts for every byte', (model, layout, params, layers) => {
    const r = cli(['inspect', MODELS[model], '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as {
      kind: string;
      layout: string;
      parameters: number;
      fileBytes: number;
      bitsPerParameter: number;
      config: { nLayers: number; tiedClassifier: boolean };
      tensors: Array<{ name: string; shape: number[]; dtype: string; offset: number; bytes: number }>;
      regions: Array<{ offset: number; bytes: number }>;
    };
    expect(out.kind).toBe('llama2c-checkpoint');
    expect(out.layout).toBe(layout);
    expect(out.parameters).toBe(params);
    expect(out.fileBytes).toBe(statSync(MODELS[model]).size);
    expect(out.bitsPerParameter).toBeCloseTo((8 * out.fileBytes) / params, 10);
    expect(out.config.nLayers).toBe(layers);
    expect(out.config.tiedClassifier).toBe(true);
    // 9 tensors per layer + embedding + final norm (tied classifier: no lm_head).
    expect(out.tensors).toHaveLength(9 * layers + 2);
    const numel = out.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(numel).toBe(params);
    // The ranges tile the file: sorted by offset, each starts where the previous ended.
    const ranges = [...out.tensors, ...out.regions].sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const t of ranges) {
      expect(t.offset).toBe(end);
      end += t.bytes;
    }
    expect(end).toBe(out.fileBytes);
    if (layout === 'v2-q8_0') {
      const q = out.tensors.find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
      expect(q.dtype).toBe('Q8_0');
      expect(q.bytes).toBe(192 * 192 + 4 * ((192 * 192) / 64));
    }
  });

  it('the human table names canonical and llama2.c tensors', () => {
    const r = cli(['inspect', MODELS.stories260K]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('model.layers.4.mlp.down_proj.weight');
    expect(r.stdout).toContain('w2[4]');
    expect(r.stdout).toMatch(/parameters\s+260,032/);
  });

  it.each([
    ['stories260K', 512],
    ['stories3M', 4096],
  ] as const)('a tokenizer file (%s): recognised, vocabulary counted', (model, vocab) => {
    const r = cli(['inspect', TOKENIZERS[model], '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout);
    expect(out.kind).toBe('llama2c-tokenizer');
    expect(out.vocabSize).toBe(vocab);
    expect(out.byteFallbackTokens).toBe(256);
    expect(cli(['inspect', TOKENIZERS[model], '--vocab', String(vocab + 1)]).stderr).toContain('E_TOKENIZER_MISMATCH');
  });

  it('a safetensors file: the tensor table from the header and the metadata', () => {
    const file = join(tmp, 'small.safetensors');
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new Uint8Array([7, 8, 9]);
    writeFileSync(
      file,
      writeSafetensors(
        [
          { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
          { name: 'b', dtype: 'U8', shape: [3], data: b },
        ],
        { format: 'test', note: 'hello' },
      ),
    );
    const r = cli(['inspect', file, '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as {
      kind: string;
      fileBytes: number;
      metadata: Record<string, string>;
      tensors: Array<{ name: string; dtype: string; shape: number[]; bytes: number; offset: number }>;
    };
    expect(out.kind).toBe('safetensors');
    expect(out.fileBytes).toBe(statSync(file).size);
    expect(out.metadata).toEqual({ format: 'test', note: 'hello' });
    const byName = Object.fromEntries(out.tensors.map((t) => [t.name, t]));
    expect(byName.a).toMatchObject({ dtype: 'F32', shape: [2, 3], bytes: 24 });
    expect(byName.b).toMatchObject({ dtype: 'U8', shape: [3], bytes: 3 });
    const bytes = readFileSync(file);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + byName.a!.offset, bytes.byteOffset + byName.a!.offset + 24))).toEqual(a);
    expect(cli(['inspect', file]).stdout).toContain('note: hello');
  });
});
