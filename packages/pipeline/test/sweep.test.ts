/** sweep(): codec specs, the grid, the JSON table, the SVG plot and the Markdown table. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SweepResult, type SweepRow, WindowCache, codecFlags, loadModel, parseCodecSpec, shellJoin, sweep, sweepMarkdown, sweepSvg } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';
import { checkXml } from './xml.js';

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const EVAL = shared('data/tinystories/eval.txt');
const CALIB = shared('data/tinystories/calib.txt');
const HAVE_SHARED = requireShared('pipeline sweep tests', [MODEL_PATH, EVAL, CALIB]);

describe('codec specs and command lines', () => {
  it.each([
    ['rtn:2', 'rtn', { bits: 2 }],
    ['binary', 'binary', {}],
    ['sketch', 'sketch', {}],
    ['sketch:hash=mixed:groups=4', 'sketch', { hash: 'mixed', groups: 4 }],
    ['sketch:groups=8:alloc=saliency:0.5', 'sketch', { groups: 8, alloc: 'saliency:0.5' }],
    ['littlebit:residual=false', 'littlebit', { residual: false }],
    ['littlebit:rank=8:rank-rounding=multiple8', 'littlebit', { rank: 8, rankRounding: 'multiple8' }],
    ['rtn:bits=3:group-size=32', 'rtn', { bits: 3, groupSize: 32 }],
  ])('%s', (text, codec, options) => {
    expect(parseCodecSpec(text)).toEqual({ label: text, codec, options });
  });

  it.each(['nosuch', 'rtn:rows=3', 'binary:2', ':2', 'sketch:=1'])('refuses %j (BAD_ARGUMENT)', (text) => {
    expect(() => parseCodecSpec(text)).toThrow(UltraSketchError);
  });

  it('codec flags and shell quoting', () => {
    expect(codecFlags({ bits: 2, groupSize: 32 })).toEqual(['--bits', '2', '--group-size', '32']);
    expect(codecFlags({ residual: false, bpw: 0.5 })).toEqual(['--no-residual', '--bpw', '0.5']);
    expect(codecFlags({ alloc: 'saliency', alpha: 0.5 })).toEqual(['--alloc', 'saliency:0.5']);
    expect(shellJoin(['a', 'b c', "it's", '--x=1'])).toBe(`a 'b c' 'it'\\''s' --x=1`);
  });
});

describe('WindowCache', () => {
  it('scores each distinct window once (from a reset session), returns the same logits, and respects its budget', async () => {
    let calls = 0;
    let resets = 0;
    const inner = {
      config: { vocabSize: 2 } as never,
      reset: () => {
        resets++;
      },
      forward: (tokens: ArrayLike<number>) => {
        calls++;
        return Float32Array.from(Array.from(tokens).flatMap((t) => [t, -t]));
      },
    };
    const c = new WindowCache(inner, 64);
    const a = await c.forward([1, 2, 3], { logits: 'all' });
    const b = await c.forward([1, 2, 3], { logits: 'all' });
    expect(b).toBe(a);
    expect(Array.from(a)).toEqual([1, -1, 2, -2, 3, -3]);
    expect(calls).toBe(1);
    expect(resets).toBe(1);
    expect(Array.from(await c.forward([3, 2, 1], { logits: 'all' }))).toEqual([3, -3, 2, -2, 1, -1]);
    expect(calls).toBe(2);
    // over budget (64 bytes = 16 floats): computed every time, never stored
    const big = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    await c.forward(big, { logits: 'all' });
    await c.forward(big, { logits: 'all' });
    expect(calls).toBe(4);
  });
});

function row(label: string, codec: string, bpw: number | null, bpwLinears: number | null, ppl: number | null, status: 'ok' | 'skipped' = 'ok'): SweepRow {
  return {
    label,
    codec,
    status,
    ...(status === 'skipped' ? { reason: 'infeasible <&>' } : {}),
    bpwTarget: bpw,
    options: {},
    bpwLinears,
    bpwSelectedLinears: bpwLinears,
    bitsPerParam: bpwLinears === null ? null : bpwLinears + 3,
    fileBytes: 1000,
    keptDense: [],
    meanNll: ppl === null ? null : Math.log(ppl),
    perplexity: ppl,
    kl: 1,
    top1: 0.5,
    seconds: 1,
    command: `ultrasketch compress m.bin --codec ${codec}`,
  };
}

describe('sweepSvg and sweepMarkdown on a synthetic result', () => {
  const result: SweepResult = {
    tool: 'ultrasketch',
    toolVersion: '0',
    command: 'ultrasketch sweep m.bin',
    model: { path: 'models/m<&>.bin', sha256: 'x', format: 'legacy-f32', params: 1000 },
    protocol: 'llama2c-documents',
    evalText: { source: 'eval.txt', sha256: 'y' },
    window: 512,
    windows: 2,
    predictedTokens: 1022,
    calibration: null,
    rows: [
      row('float32', 'float32', null, 32, 4.05),
      row('rtn:2', 'rtn', null, 2.51, 433.8),
      row('sketch', 'sketch', 0.5, 0.498, 1.2e10),
      row('sketch', 'sketch', 1, 0.997, 1.0e10),
      row('hashednets', 'hashednets', 0.5, 0.5, 3.8e9),
      row('hashednets', 'hashednets', 1, 1.0, Number.POSITIVE_INFINITY),
      row('littlebit', 'littlebit', 0.5, null, null, 'skipped'),
    ],
    files: null,
  };

  it('is well-formed, log-scaled, one polyline per codec, float32 as a dashed line, axes labelled', () => {
    const svg = sweepSvg(result);
    const { elements, texts } = checkXml(svg);
    expect(elements[0]).toBe('svg');
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    const polylines = [...svg.matchAll(/<polyline points="([^"]+)"/g)].map((m) => m[1]!.split(' '));
    expect(polylines).toHaveLength(3); // rtn:2, sketch, hashednets (its infinite point is not drawn)
    expect(polylines.map((p) => p.length)).toEqual([1, 2, 1]);
    expect(svg).toMatch(/<line class="float32"[^>]*stroke-dasharray/);
    const all = texts.join(' | ');
    expect(all).toContain('bits per weight of the compressed linears (bpwLinears)');
    expect(all).toContain('perplexity (log scale)');
    expect(all).toContain('float32 (4.05)');
    for (const label of ['rtn:2', 'sketch', 'hashednets']) expect(all).toContain(label);
    expect(all).toContain('littlebit @ 0.5: skipped');
    expect(all).toContain('hashednets @ 1: perplexity not finite');
    expect(all).toContain('1e10'); // decade labels reach the largest perplexity
    // log scale: the sketch points at 1.2e10 and 1e10 sit ~0.08 decades apart, far above rtn's 434
    const y = (p: string) => Number(p.split(',')[1]);
    const [sk0, sk1] = polylines[1]!;
    const rtn = polylines[0]![0]!;
    expect(y(sk0!)).toBeLessThan(y(rtn));
    expect(Math.abs(y(sk0!) - y(sk1!))).toBeLessThan(Math.abs(y(sk0!) - y(rtn)) / 20);
  });

  it('the Markdown table has a row per point, skipped ones with their reason, and the commands', () => {
    const md = sweepMarkdown(result);
    const tableRows = md.split('\n').filter((l) => /^\| \d+ \|/.test(l));
    expect(tableRows).toHaveLength(result.rows.length);
    expect(md).toContain('| 6 | littlebit | 0.50 | skipped: infeasible <&> |');
    expect(md).toContain('1.20e+10');
    expect(md).toContain('`ultrasketch compress m.bin --codec rtn`');
    expect(md).not.toContain('training tokens'); // no point was finetuned
  });

  it("a finetuned sweep's table gives each point's training tokens and minutes", () => {
    const rows = result.rows.map((r) => (r.codec === 'sketch' ? { ...r, training: { tokens: 102400, wallSeconds: 957.7 } } : r));
    const md = sweepMarkdown({ ...result, rows });
    expect(md).toContain('| training tokens | training minutes |');
    expect(md).toMatch(/\| 2 \| sketch \| 0\.5 \|.*\| 102,400 \| 16\.0 \|/);
    expect(md).toMatch(/\| 1 \| rtn:2 \|.*\| — \| — \|/);
    const header = md.split('\n').find((l) => l.startsWith('| # |'))!;
    for (const line of md.split('\n').filter((l) => /^\| [0-5] \|/.test(l))) expect(line.split('|').length).toBe(header.split('|').length);
  });
});

describe.runIf(HAVE_SHARED)('sweep() on stories260K', () => {
  let dir: string;
  let result: SweepResult;
  const model = HAVE_SHARED ? loadModel(MODEL_PATH) : (undefined as never);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'usk-sweep-'));
    result = await sweep({
      model,
      codecs: ['rtn:4', 'binary', 'hashednets', 'sketch:groups=2', 'littlebit'],
      bpw: [0.5, 1.0],
      evalText: readFileSync(EVAL, 'utf8'),
      evalTextSource: EVAL,
      evalWindows: 1,
      window: 128,
      calibration: { text: readFileSync(CALIB, 'utf8'), textSource: CALIB, maxTokens: 256 },
      outDir: dir,
      command: 'test sweep',
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs fixed-bit codecs once and targeted codecs per bpw, float first; infeasible points skipped with the reason', () => {
    expect(result.rows.map((r) => `${r.label}@${r.bpwTarget}`)).toEqual([
      'float32@null',
      'rtn:4@null',
      'binary@null',
      'hashednets@0.5',
      'hashednets@1',
      'sketch:groups=2@0.5',
      'sketch:groups=2@1',
      'littlebit@0.5',
      'littlebit@1',
    ]);
    const float = result.rows[0]!;
    expect(float.kl).toBeLessThan(1e-9);
    expect(float.top1).toBe(1);
    for (const r of result.rows.slice(1, 7)) {
      expect(r.status).toBe('ok');
      expect(r.perplexity).toBeCloseTo(Math.exp(r.meanNll!), 6);
      expect(r.command).toMatch(/^ultrasketch compress /);
    }
    const rtn = result.rows[1]!;
    expect(rtn.perplexity!).toBeLessThan(2 * float.perplexity!);
    expect(result.rows[3]!.bpwLinears).toBeLessThanOrEqual(0.5);
    for (const r of result.rows.slice(7)) {
      expect(r.status).toBe('skipped');
      expect(r.reason).toContain('the smallest target every compressed linear meets is');
      expect(r.perplexity).toBeNull();
    }
    expect(result.calibration?.tokens).toBe(256);
    expect(result.rows[5]!.command).toContain('--calib-tokens 256');
    expect(result.rows[3]!.command).not.toContain('--calib');
    expect(result.window).toBe(128);
    expect(result.predictedTokens).toBe(127);
  });

  it('writes sweep.json (the same table) and sweep.svg', () => {
    const json = JSON.parse(readFileSync(join(dir, 'sweep.json'), 'utf8')) as SweepResult;
    expect(json.rows).toHaveLength(result.rows.length);
    expect(json.rows.map((r) => r.perplexity)).toEqual(result.rows.map((r) => r.perplexity));
    for (const key of ['codec', 'options', 'bpwLinears', 'bitsPerParam', 'meanNll', 'perplexity', 'kl', 'top1', 'seconds', 'command']) {
      expect(json.rows[1]).toHaveProperty(key);
    }
    const svg = readFileSync(join(dir, 'sweep.svg'), 'utf8');
    checkXml(svg);
    expect([...svg.matchAll(/<polyline /g)]).toHaveLength(4);
  });

  it('bad grids are refused before any work', async () => {
    await expect(sweep({ model, codecs: ['sketch'], bpw: [], evalText: 'x', evalWindows: 1 })).rejects.toThrow(/needs bpw targets/);
    await expect(sweep({ model, codecs: ['rtn:5'], bpw: [], evalText: 'x', evalWindows: 1 })).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
    await expect(
      sweep({ model, codecs: ['sketch:groups=2'], bpw: [1], evalText: 'same', evalWindows: 1, calibration: { text: 'same' } }),
    ).rejects.toThrow(/refusing to calibrate on the evaluation text/);
  });

  it('finetuning flags: --smooth-k refused when no point uses it, dropped from the points that do not; --train-dense skips a point that compresses every linear', async () => {
    const calibText = readFileSync(CALIB, 'utf8');
    const evalText = readFileSync(EVAL, 'utf8');
    const finetune = { steps: 1, batch: 1, seq: 16, calibText, calibSource: CALIB };
    await expect(
      sweep({ model, codecs: ['binary', 'rtn:2'], bpw: [], evalText, evalWindows: 1, window: 32, finetune: { ...finetune, smoothK: 20 } }),
    ).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, source: '--smooth-k' });
    const r = await sweep({
      model,
      codecs: ['binary', 'littlebit'],
      bpw: [1],
      smallMatrix: 'keep',
      evalText,
      evalWindows: 1,
      window: 32,
      finetune: { ...finetune, smoothK: 20 },
    });
    const [binary, littlebit] = [r.rows[1]!, r.rows[2]!];
    expect(binary.status).toBe('ok');
    expect(binary.command).not.toContain('--smooth-k');
    expect(littlebit.status).toBe('ok');
    expect(littlebit.command).toContain('--smooth-k 20');
    // rtn compresses every linear, so --train-dense has nothing to train there: that point is skipped with the
    // reason; littlebit keeps stories260K's small matrices in float and trains them.
    const d = await sweep({
      model,
      codecs: ['rtn:4', 'littlebit'],
      bpw: [1],
      smallMatrix: 'keep',
      evalText,
      evalWindows: 1,
      window: 32,
      finetune: { ...finetune, trainDense: true },
    });
    expect(d.rows[1]!.status).toBe('skipped');
    expect(d.rows[1]!.reason).toMatch(/--train-dense.*no float-stored linear/);
    expect(d.rows[1]!.perplexity).toBeNull();
    expect(d.rows[2]!.status).toBe('ok');
    expect(d.rows[2]!.command).toContain('--train-dense');
  });
});
