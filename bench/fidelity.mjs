#!/usr/bin/env node
/**
 * Long distillation runs, as a resumable campaign (issue 14): every method at its rates, trained with a named
 * recipe for up to --tokens training tokens, each run cut into segments at the milestones so it yields a
 * bundle (and its quality) at every milestone: the curve of perplexity against training tokens.
 *
 *   node bench/fidelity.mjs [options]          (run `pnpm build` first; it runs the built CLI)
 *
 * Each segment is one `ultrasketch compress ... --recipe R --finetune-steps S --stop-after-steps M
 * --checkpoint-dir D --resume` command (printed, and stored in the log and the bundle), so every point is
 * reproducible by hand. The schedule of a run is its full length (S steps), so a point mid-run is the model at
 * that step of the long run, not a run whose schedule ended there. Stop it any time (Ctrl-C, kill, end of a
 * session): the next invocation skips the points already in the log and resumes each run from its checkpoint.
 *
 * Options:
 *   --model PATH        float model (default ../shared/models/stories3M/stories3M-q80.bin)
 *   --configs LIST      codec:bpw items (binary has no rate), default
 *                       littlebit:0.55,littlebit:1.0,hashednets:0.5,hashednets:1.0,sketch:0.5,sketch:1.0,binary
                      (sketch = the paper's AbsMaxMin, --query absmaxmin; signmean = the CLI's default
                      sketch, signmean d 1 int8 with 8 saliency groups)
 *   --recipe NAME       quick | standard | long (default long): the per-method settings (lr, data, init)
 *   --lr X              peak learning rate of every run instead of the recipe's (a recipe experiment: use its
 *                       own --out, whose teacher-samples may be a link to the campaign's). The log records each
 *                       point's peak rate; a run whose logged points trained at another rate than this
 *                       invocation would (a different --lr, or a recipe whose rate changed) is refused
 *   --plan P            uniform | sensitivity | kl: the bit plan of every run instead of the recipe's (standard and
 *                       long give LittleBit kl); logged per point, and a curve is never continued with another plan
 *   --embedding E       trained | frozen: whether the embedding and classifier train too, instead of the recipe's
 *                       (standard and long train LittleBit's, the sketch's and HashedNets'); logged per point,
 *                       and a curve never changes it midway
 *   --tokens N          training tokens of each run: its schedule length (default 10240000)
 *   --milestones LIST   training tokens at which a bundle is written and evaluated
 *                       (default 102400,307200,1024000,3072000,10240000; rounded to whole steps)
 *   --threads T         training threads per run (default 1)
 *   --jobs J            runs at a time (default 1)
 *   --eval-windows N    evaluation windows of eval.txt per point (default 64; never used for training or choosing)
 *   --out DIR           results: log.jsonl, curves.svg, table.md, bundles, checkpoints (default bench/results/fidelity)
 *   --until-point K     stop after each run has K points (default: all milestones)
 *   --dry-run           print the commands, run nothing
 *   --help              this text
 */
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, log, printHelp, requireBuilt } from './lib.mjs';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(ROOT, '../shared/models/stories3M/stories3M-q80.bin') },
    configs: { type: 'string', default: 'littlebit:0.55,littlebit:1.0,hashednets:0.5,hashednets:1.0,sketch:0.5,sketch:1.0,binary' },
    recipe: { type: 'string', default: 'long' },
    lr: { type: 'string' },
    plan: { type: 'string' },
    embedding: { type: 'string' },
    tokens: { type: 'string', default: '10240000' },
    milestones: { type: 'string', default: '102400,307200,1024000,3072000,10240000' },
    threads: { type: 'string', default: '1' },
    jobs: { type: 'string', default: '1' },
    'eval-windows': { type: 'string', default: '64' },
    out: { type: 'string', default: join(ROOT, 'bench/results/fidelity') },
    'until-point': { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) {
  printHelp(import.meta.url);
}
const CLI = join(ROOT, 'apps/cli/dist/cli.js');
if (!existsSync(CLI)) fail('apps/cli is not built (apps/cli/dist/cli.js is missing); run `pnpm build` first');
if (!existsSync(a.model)) fail(`model ${a.model} not found (--model)`);
const posInt = (s, flag) => {
  const v = Number(s);
  if (!Number.isInteger(v) || v < 1) fail(`${flag} ${s} must be a positive integer`, 2);
  return v;
};
const tokens = posInt(a.tokens, '--tokens');
const threads = posInt(a.threads, '--threads');
const jobs = posInt(a.jobs, '--jobs');
const evalWindows = posInt(a['eval-windows'], '--eval-windows');
const lr = a.lr === undefined ? undefined : Number(a.lr);
if (lr !== undefined && !(lr > 0 && Number.isFinite(lr))) fail(`--lr ${a.lr} must be a positive number`, 2);
if (a.plan !== undefined && !['uniform', 'sensitivity', 'kl'].includes(a.plan)) fail(`--plan ${a.plan} must be uniform, sensitivity or kl`, 2);
if (a.embedding !== undefined && !['trained', 'frozen'].includes(a.embedding)) fail(`--embedding ${a.embedding} must be trained or frozen`, 2);
const untilPoint = a['until-point'] === undefined ? Infinity : posInt(a['until-point'], '--until-point');
const BATCH = 4;
const SEQ = 128;
const perStep = BATCH * SEQ;
const totalSteps = Math.ceil(tokens / perStep);
const milestones = [...new Set(a.milestones.split(',').map((s) => Math.min(totalSteps, Math.max(1, Math.round(posInt(s.trim(), '--milestones') / perStep)))))].sort((x, y) => x - y);
// `sketch` is the paper's AbsMaxMin sketch (explicit --query absmaxmin: the campaign's sketch curves began with it,
// before the CLI's bare --codec sketch became the signmean variant); `signmean` is that CLI default (docs/results.md §12).
const CODEC_ARGS = { sketch: ['--codec', 'sketch', '--query', 'absmaxmin'], signmean: ['--codec', 'sketch'] };
const configs = a.configs.split(',').map((item) => {
  const [codec, bpw] = item.trim().split(':');
  if (!['littlebit', 'sketch', 'signmean', 'hashednets', 'binary', 'rtn'].includes(codec)) fail(`--configs: unknown codec ${codec}`, 2);
  if (codec !== 'binary' && codec !== 'rtn' && (bpw === undefined || !(Number(bpw) > 0))) fail(`--configs: ${item} needs a rate (codec:bpw)`, 2);
  return { id: bpw === undefined ? codec : `${codec}-${bpw}`, codec, bpw, codecArgs: CODEC_ARGS[codec] ?? ['--codec', codec] };
});
requireBuilt(['pipeline']);
const { inspectBundle, recipeSettings } = await import(dist('pipeline'));
/** The recipe's settings for a run's codec (signmean is a sketch variant). */
const recipeFor = (cfg) => recipeSettings(a.recipe, cfg.codec === 'signmean' ? 'sketch' : cfg.codec, 1 << 20);
/** The peak learning rate a run trains at in this invocation: --lr, else its recipe's rate for the codec. */
const rateFor = (cfg) => lr ?? recipeFor(cfg).lr;
/** The bit plan a run trains with in this invocation: --plan, else its recipe's (LittleBit: kl in standard and long). */
const planFor = (cfg) => a.plan ?? recipeFor(cfg).plan ?? 'uniform';
/** The plan a logged point trained with (logged since the recipes gained plans; every earlier point was uniform). */
const planOf = (e) => e.plan ?? 'uniform';
/** Whether a run's embedding trains in this invocation: --embedding, else its recipe's (standard and long: LittleBit, the sketch and HashedNets). */
const embeddingFor = (cfg) => a.embedding ?? (recipeFor(cfg).trainEmbedding ? 'trained' : 'frozen');
/** The embedding of a logged point (logged since recipes train it; every earlier point's was frozen). */
const embeddingOf = (e) => e.embedding ?? 'frozen';
/** The rate a logged point trained at (logged as peakLr since the recipes' rates began to differ per budget;
 * older points: --lr if given, else what their bundle's training section says; the bundle is read where this
 * --out keeps it, not through the logged path, which is relative to the clone that ran the segment). */
function rateOf(e) {
  if (e.peakLr !== undefined) return e.peakLr;
  if (e.lr !== undefined) return e.lr;
  try {
    return inspectBundle(join(out, e.config, `step-${e.step}.usk`)).training.recipe.lr;
  } catch {
    return null;
  }
}
const out = resolve(a.out);
mkdirSync(out, { recursive: true });
const LOG = join(out, 'log.jsonl');
const samples = join(out, 'teacher-samples');
const rel = (p) => relative(ROOT, p);

/** Points already measured: `${config}@${step}` → entry. */
function readLog() {
  const done = new Map();
  if (!existsSync(LOG)) return done;
  for (const line of readFileSync(LOG, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line);
    // (the rate is checked per run before anything is scheduled: a run's points all share one)
    if (e.recipe === a.recipe && e.totalSteps === totalSteps) done.set(`${e.config}@${e.step}`, e);
  }
  return done;
}

function commandFor(cfg, step) {
  const dir = join(out, cfg.id);
  const ckpt = join(dir, 'checkpoint');
  const args = [
    'compress', rel(a.model), ...cfg.codecArgs, ...(cfg.bpw ? ['--bpw', cfg.bpw] : []),
    '--recipe', a.recipe, '--finetune-steps', String(totalSteps), '--batch', String(BATCH), '--seq', String(SEQ),
    '--threads', String(threads), '--checkpoint-dir', rel(ckpt), '--checkpoint-every', '200',
    '--teacher-samples', rel(samples), '--stop-after-steps', String(step),
    '--eval-windows', String(evalWindows), '-o', rel(join(dir, `step-${step}.usk`)), '--json',
    ...(lr === undefined ? [] : ['--lr', String(lr)]),
    '--plan', planFor(cfg),
    embeddingFor(cfg) === 'trained' ? '--train-embedding' : '--no-train-embedding',
  ];
  // The first segment starts the run; later ones resume it (a missing checkpoint is then an error, not a restart).
  if (existsSync(join(ckpt, 'finetune.ckpt'))) args.push('--resume');
  return args;
}

let stopping = false;
const children = new Set();
process.on('SIGINT', () => {
  if (stopping) process.exit(130);
  stopping = true;
  log('fidelity: stopping — each running segment saves its checkpoint (Ctrl-C again to abandon it)');
  for (const c of children) c.kill('SIGINT');
});

function runSegment(cfg, step) {
  return new Promise((resolvePromise) => {
    const args = commandFor(cfg, step);
    mkdirSync(join(out, cfg.id), { recursive: true });
    const shown = `ultrasketch ${args.join(' ')}`;
    log(`fidelity: ${cfg.id} to step ${step}/${totalSteps} (${(step * perStep).toLocaleString('en-US')} tokens): ${shown}`);
    if (a['dry-run']) return resolvePromise(null);
    const t0 = performance.now();
    const load0 = loadavg()[0];
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => {
      children.delete(child);
      if (code !== 0) {
        log(`fidelity: ${cfg.id} step ${step} ended with exit ${code}:\n${stderr.split('\n').slice(-6).join('\n')}`);
        return resolvePromise(null);
      }
      const r = JSON.parse(stdout);
      const t = r.training;
      const q = r.quality;
      const entry = {
        config: cfg.id,
        codec: cfg.codec,
        bpw: cfg.bpw ?? null,
        recipe: a.recipe,
        ...(lr === undefined ? {} : { lr }),
        peakLr: t.recipe.lr,
        plan: planFor(cfg),
        embedding: embeddingFor(cfg),
        totalSteps,
        step,
        tokens: t.cost.tokens,
        bpwLinears: r.bpwLinears,
        bitsPerParam: r.bitsPerParam,
        perplexity: q.perplexity,
        floatPerplexity: q.reference?.perplexity ?? null,
        kl: q.kl,
        top1: q.top1,
        evalWindows,
        holdoutKL: t.holdout?.kl ?? null,
        trainingSeconds: t.cost.wallSeconds,
        segmentSeconds: (performance.now() - t0) / 1000,
        threads,
        loadAverage: [load0, loadavg()[0]],
        command: shown,
        bundle: rel(join(out, cfg.id, `step-${step}.usk`)),
        time: new Date().toISOString(),
      };
      appendFileSync(LOG, `${JSON.stringify(entry)}\n`);
      log(`fidelity: ${cfg.id} @ ${entry.tokens.toLocaleString('en-US')} tokens: perplexity ${entry.perplexity.toFixed(2)} (${(entry.perplexity / entry.floatPerplexity).toFixed(2)}× float), held-out KL ${entry.holdoutKL?.toFixed(4)}`);
      writeReports();
      resolvePromise(entry);
    });
  });
}

// ------------------------------------------------------------------------------------------------ reports

function writeReports() {
  const entries = [...readLog().values()];
  writeFileSync(join(out, 'curves.svg'), curvesSvg(entries));
  const rows = entries
    .sort((x, y) => (x.config < y.config ? -1 : x.config > y.config ? 1 : x.step - y.step))
    .map(
      (e) =>
        `| ${e.config} | ${e.bpwLinears.toFixed(4)} | ${e.bitsPerParam.toFixed(3)} | ${e.tokens.toLocaleString('en-US')} | **${e.perplexity.toFixed(2)}** | ${(e.perplexity / e.floatPerplexity).toFixed(2)}× | ${e.kl.toFixed(3)} | ${(100 * e.top1).toFixed(1)} % | ${e.holdoutKL?.toFixed(4) ?? '—'} | ${(e.trainingSeconds / 60).toFixed(1)} |`,
    );
  writeFileSync(
    join(out, 'table.md'),
    [
      `Recipe \`${a.recipe}\`, schedule ${totalSteps} steps × ${BATCH} × ${SEQ}; evaluation: first ${evalWindows} windows of eval.txt (never trained on or used to choose); held-out KL: teacher windows never trained on.`,
      '',
      '| run | bpwLinears | bitsPerParam | training tokens | perplexity | × float | KL | top-1 | held-out KL | training min (cumulative) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
    ].join('\n'),
  );
}

/** Perplexity against training tokens, both axes logarithmic, one line per run, the float model dashed. */
function curvesSvg(entries) {
  const W = 720;
  const H = 440;
  const m = { l: 64, r: 190, t: 30, b: 48 };
  const byRun = new Map();
  for (const e of entries) byRun.set(e.config, [...(byRun.get(e.config) ?? []), e].sort((x, y) => x.tokens - y.tokens));
  const all = entries.length > 0 ? entries : [{ tokens: 1e5, perplexity: 10, floatPerplexity: 5 }];
  const fl = all.find((e) => e.floatPerplexity)?.floatPerplexity ?? null;
  const xs = all.map((e) => Math.log10(e.tokens));
  const ys = [...all.map((e) => Math.log10(e.perplexity)), ...(fl ? [Math.log10(fl)] : [])];
  const [x0, x1] = [Math.floor(Math.min(...xs)), Math.ceil(Math.max(...xs) + 1e-9)];
  const [y0, y1] = [Math.floor(Math.min(...ys) * 4) / 4, Math.ceil(Math.max(...ys) * 4 + 1e-9) / 4];
  const px = (v) => m.l + ((Math.log10(v) - x0) / Math.max(1e-9, x1 - x0)) * (W - m.l - m.r);
  const py = (v) => H - m.b - ((Math.log10(v) - y0) / Math.max(1e-9, y1 - y0)) * (H - m.t - m.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  parts.push(`<text x="${m.l}" y="18" font-size="14">Perplexity on eval.txt (first ${evalWindows} windows) vs training tokens — recipe ${a.recipe}</text>`);
  for (let d = x0; d <= x1; d++) {
    const x = px(10 ** d);
    parts.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#ddd"/><text x="${x}" y="${H - m.b + 16}" text-anchor="middle">1e${d}</text>`);
  }
  for (let v = y0; v <= y1 + 1e-9; v += 0.25) {
    const y = py(10 ** v);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#eee"/><text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${(10 ** v).toFixed(1)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle">training tokens</text>`);
  if (fl) parts.push(`<line x1="${m.l}" y1="${py(fl)}" x2="${W - m.r}" y2="${py(fl)}" stroke="black" stroke-dasharray="5,4"/><text x="${W - m.r + 6}" y="${py(fl) + 4}">float ${fl.toFixed(2)}</text>`);
  [...byRun.entries()].forEach(([run, es], i) => {
    const c = colors[i % colors.length];
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${es.map((e) => `${px(e.tokens).toFixed(1)},${py(e.perplexity).toFixed(1)}`).join(' ')}"/>`);
    for (const e of es) parts.push(`<circle cx="${px(e.tokens).toFixed(1)}" cy="${py(e.perplexity).toFixed(1)}" r="3" fill="${c}"><title>${run} ${e.tokens} tokens: ${e.perplexity.toFixed(2)}</title></circle>`);
    const last = es[es.length - 1];
    parts.push(`<text x="${W - m.r + 6}" y="${m.t + 16 * i + 20}" fill="${c}">${run} (${last.bpwLinears.toFixed(2)} bpw): ${last.perplexity.toFixed(1)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

// ------------------------------------------------------------------------------------------------ schedule

// Milestone by milestone across runs, so every curve grows together; `jobs` segments at a time.
const queue = [];
for (const [k, step] of milestones.entries()) {
  if (k >= untilPoint) break;
  for (const cfg of configs) queue.push({ cfg, step, k });
}
const running = new Map(); // config → promise (a run's segments are sequential)
const done = readLog();
// A curve is one schedule at one rate, one bit plan and one embedding setting: a recipe whose settings changed since a
// run began (or a different --lr / --plan / --embedding) must not silently continue it, nor count its old points as
// this invocation's (with another plan the factors' ranks differ, so the checkpoint would not even load).
/** Stop when a logged point of the run trained with another value of the setting than this invocation's. */
function refuseChange(cfg, points, { name, flag, given, want, of }) {
  const other = points.map(of).find((v) => v !== want);
  if (other === undefined) return;
  fail(
    `${cfg.id}: the points in ${rel(LOG)} were trained with the ${name} ${other}, but this invocation's is ${want} (${given ? flag : `recipe ${a.recipe}'s now`}); ` +
      `pass ${flag} ${other} to continue that curve, or --out DIR for a new one`,
    2,
  );
}
for (const cfg of configs) {
  const points = [...done.values()].filter((e) => e.config === cfg.id);
  const want = rateFor(cfg);
  const other = [...new Set(points.map(rateOf))].find((r) => r !== want);
  if (other === null) {
    fail(`${cfg.id}: a point in ${rel(LOG)} has no logged rate and its bundle cannot be read, so whether it trained at ${want} is unknown: restore the bundle, or --out DIR for a new curve`, 2);
  }
  if (other !== undefined) {
    fail(
      `${cfg.id}: the points in ${rel(LOG)} were trained at peak lr ${other}, but this invocation trains at ${want} (${lr === undefined ? `recipe ${a.recipe}'s rate now` : '--lr'}); ` +
        `a curve cannot change its rate midway: pass --lr ${other} to continue that curve, or --out DIR for a new one`,
      2,
    );
  }
  refuseChange(cfg, points, { name: 'bit plan', flag: '--plan', given: a.plan !== undefined, want: planFor(cfg), of: planOf });
  refuseChange(cfg, points, { name: 'embedding', flag: '--embedding', given: a.embedding !== undefined, want: embeddingFor(cfg), of: embeddingOf });
}
writeReports();
log(`fidelity: ${configs.length} runs × ${milestones.length} points (steps ${milestones.join(', ')} of ${totalSteps}); ${done.size} point(s) already in ${rel(LOG)}`);
async function worker() {
  while (!stopping) {
    const i = queue.findIndex((q) => !done.has(`${q.cfg.id}@${q.step}`) && !running.has(q.cfg.id) && !queue.some((p) => p.cfg.id === q.cfg.id && p.step < q.step && !done.has(`${p.cfg.id}@${p.step}`)));
    if (i < 0) {
      if (running.size === 0) return;
      await Promise.race(running.values());
      continue;
    }
    // The first run generates the shared teacher samples; the others wait for them instead of generating the same file.
    if (running.size > 0 && !(existsSync(samples) && readdirSync(samples).some((f) => f.endsWith('.tok')))) {
      await new Promise((r) => setTimeout(r, 5000));
      continue;
    }
    const { cfg, step } = queue[i];
    const p = runSegment(cfg, step);
    running.set(cfg.id, p);
    const entry = await p;
    running.delete(cfg.id);
    // A failed segment is not retried in this invocation (its error was printed); the next one tries again.
    done.set(`${cfg.id}@${step}`, entry ?? (a['dry-run'] ? { dryRun: true } : { failed: true }));
  }
}
await Promise.all(Array.from({ length: jobs }, worker));
writeReports();
// A segment that failed (its error printed above) makes the invocation fail too, so a script that queues
// campaigns (`a && b`) stops instead of going on as if the point had been measured.
const failed = [...done.entries()].filter(([, e]) => e.failed).map(([k]) => k);
log(`fidelity: ${stopping ? 'stopped' : failed.length > 0 ? `finished with ${failed.length} failed segment(s): ${failed.join(', ')}` : 'done'}; ${rel(join(out, 'table.md'))}, ${rel(join(out, 'curves.svg'))}`);
if (failed.length > 0 && !stopping) process.exitCode = 1;
