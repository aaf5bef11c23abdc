import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EVAL_TEXT, HAVE_SHARED, MODELS, cli, ensureBuilt, parseOneObject, parseSafetensorsSpec } from './helpers.js';

/** `compress --finetune-steps` through the built command (stories260K, tiny budgets). */
let tmp = '';
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-finetune-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const M = MODELS.stories260K;

/** The data area of a bundle and its training section (stored without the wall time, which only the report carries). */
function comparable(path: string): { data: Buffer; training: Record<string, unknown> } {
  const bytes = readFileSync(path);
  const spec = parseSafetensorsSpec(bytes);
  const training = JSON.parse(spec.metadata.training!) as Record<string, unknown>;
  return { data: bytes.subarray(8 + spec.headerBytes), training };
}

describe.skipIf(!HAVE_SHARED)('compress --finetune-steps', () => {
  it('stores the training section and reports it', () => {
    const out = join(tmp, 'ft.usk');
    const r = cli(['compress', M, '--codec', 'binary', '--finetune-steps', '2', '--batch', '2', '--seq', '16', '--lr', '0.001', '-o', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = parseOneObject(r.stdout) as { training: { recipe: Record<string, unknown>; cost: { tokens: number; steps: number } } };
    expect(report.training.recipe).toMatchObject({ steps: 2, batch: 2, seq: 16, lr: 0.001, loss: 'kd', data: 'calib' });
    expect(report.training.cost).toMatchObject({ steps: 2, tokens: 64 });
    expect(comparable(out).training).toMatchObject({ method: 'ste-trainer' });
    // the wall time is in the report only: the same command gives a byte-identical file
    expect(comparable(out).training.cost).not.toHaveProperty('wallSeconds');
    expect((report.training.cost as { wallSeconds?: number }).wallSeconds).toBeGreaterThan(0);
  });

  it('refuses to finetune on the evaluation text, and finetuning flags without --finetune-steps', () => {
    const out = join(tmp, 'refused.usk');
    const r = cli(['compress', M, '--codec', 'binary', '--finetune-steps', '1', '--calib', EVAL_TEXT, '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refusing to calibrate on the evaluation text: the calibration file is eval\.txt/);
    expect(existsSync(out)).toBe(false);
    const u = cli(['compress', M, '--codec', 'binary', '--lr', '0.001', '-o', out]);
    expect(u.code).not.toBe(0);
    expect(u.stderr).toMatch(/--lr need\(s\) --finetune-steps/);
  });

  it('--train-mode: states refuses a codec without state training; ste is recorded as the provider', () => {
    const out = join(tmp, 'mode.usk');
    const bad = cli(['compress', M, '--codec', 'binary', '--finetune-steps', '1', '--batch', '1', '--seq', '16', '--train-mode', 'states', '-o', out]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/E_BAD_ARGUMENT.*binary has no state-training provider/);
    expect(existsSync(out)).toBe(false);
    const ok = cli(['compress', M, '--codec', 'hashednets', '--bpw', '1', '--finetune-steps', '1', '--batch', '1', '--seq', '16', '--train-mode', 'ste', '-o', out, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    const report = parseOneObject(ok.stdout) as { training: { providers: Record<string, string> } };
    expect(new Set(Object.values(report.training.providers))).toEqual(new Set(['ste']));
  });

  it('--resume after a killed run gives the same bundle as an uninterrupted run', async () => {
    const args = (dir: string, out: string) => ['compress', M, '--codec', 'rtn', '--bits', '2', '--finetune-steps', '30', '--batch', '1', '--seq', '16', '--checkpoint-dir', dir, '--checkpoint-every', '1', '-o', out, '-q'];
    const straight = cli(args(join(tmp, 'ckA'), join(tmp, 'a.usk')));
    expect(straight.code, straight.stderr).toBe(0);
    // Kill (SIGKILL) a run once its first checkpoint exists, then resume it.
    const ckB = join(tmp, 'ckB');
    const child = spawn(process.execPath, [CLI, ...args(ckB, join(tmp, 'b.usk'))], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const started = Date.now();
    while (!existsSync(join(ckB, 'finetune.ckpt')) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    expect(existsSync(join(tmp, 'b.usk'))).toBe(false); // killed before the end
    const resumed = cli([...args(ckB, join(tmp, 'b.usk')), '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const a = comparable(join(tmp, 'a.usk'));
    const b = comparable(join(tmp, 'b.usk'));
    expect(b.data.equals(a.data)).toBe(true);
    expect(b.training).toEqual(a.training);
  });
});
