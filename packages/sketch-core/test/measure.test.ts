import { type Codec, Rng } from '@ultrasketch/core';
import type { LinearKind } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import {
  MixedHashFamily,
  RowRunHashFamily,
  hashedNetsCodec,
  occupancy,
  sketchCodec,
  sketchGroups,
} from '../src/index.js';
import { errorStats, realMatrix, stories3M } from './helpers.js';

/**
 * The measurements behind docs/sketch.md. Not a test of correctness: it prints tables.
 *
 *   SKETCH_MEASURE=1 npx vitest run packages/sketch-core/test/measure.test.ts
 *
 * (Skipped without SKETCH_MEASURE: it takes a minute and asserts only the headline reproduction.)
 */
const RUN = process.env.SKETCH_MEASURE === '1';
const COMPRESSED: LinearKind[] = ['q', 'k', 'v', 'gate', 'up', 'down']; // methods.md §1: O stays float
const fmt = (x: number, d = 4) => x.toFixed(d);

describe.runIf(RUN)('measurements for docs/sketch.md', () => {
  it('occupancy of the hash families', () => {
    const rows: string[] = [];
    rows.push('| shape (rows×cols) | states/row w | λ = n/w | family | empty | e^(−λ) | load mean | load var | max load |');
    rows.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    const cases: Array<[number, number, number]> = [
      [192, 192, 384], // stories3M q at 0.5 bpw (3 rows, f16)
      [64, 192, 128], // k/v at 0.5 bpw: rows shorter than the ring? no: 192 > 128, 2 runs per row
      [512, 192, 1024], // gate/up at 0.5 bpw
      [192, 512, 1024], // down at 0.5 bpw
      [192, 192, 768], // q at 1.0 bpw
      [100, 100, 10000], // λ = 1
      [100, 100, 2500], // λ = 4
    ];
    for (const [r, c, w] of cases) {
      const fams = [
        new MixedHashFamily({ seed: 1, rows: r, cols: c, width: w, depth: 3 }),
        new RowRunHashFamily({ seed: 1, rows: r, cols: c, width: w, depth: 3 }),
        new RowRunHashFamily({ seed: 1, rows: r, cols: c, width: w, depth: 3 }, { stratified: false }),
      ];
      for (const f of fams) {
        const s = occupancy(f);
        const label = f instanceof RowRunHashFamily && fams[2] === f ? 'rowrun, uniform offsets' : f.name;
        rows.push(
          `| ${r}×${c} | ${w} | ${fmt(s.meanLoad, 2)} | ${label} | ${fmt(s.emptyFraction)} | ${fmt(s.poissonEmptyFraction)} | ${fmt(s.meanLoad, 2)} | ${fmt(s.loadVariance, 3)} | ${s.maxLoad} |`,
        );
      }
    }
    console.log(`\nOCCUPANCY (3 sketch rows pooled, seed 1)\n${rows.join('\n')}`);
  });

  it('post-training error on stories3M: sketch (both families) vs hashednets', () => {
    const model = stories3M();
    type Variant = [label: string, codec: Codec<any, any>, raw: Record<string, unknown>];
    const variants: Variant[] = [
      ['sketch rowrun f16', sketchCodec, { hash: 'rowrun' }],
      ['sketch mixed f16', sketchCodec, { hash: 'mixed' }],
      ['sketch rowrun int8', sketchCodec, { hash: 'rowrun', state: 'int8' }],
      ['sketch mixed int8', sketchCodec, { hash: 'mixed', state: 'int8' }],
      ['sketch rowrun f16, 4 groups, saliency α=1 (s_j = 1)', sketchCodec, { hash: 'rowrun', groups: 4, alloc: 'saliency' }],
      ['hashednets f16', hashedNetsCodec, {}],
    ];
    const out: string[] = [];
    out.push('| method | bpw | rel. Frobenius error (all) | mean \\|ŵ\\|/\\|w\\| (all) | q L0 err / mag | k L0 | up L3 | down L5 | bpw stored |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    const headline: Record<string, number> = {};
    for (const bpw of [0.5, 0.75, 1.0]) {
      for (const [label, codec, raw] of variants) {
        const o = codec.resolveOptions({ ...raw, bpw });
        let e2 = 0;
        let w2 = 0;
        let aHat = 0;
        let a = 0;
        let bits = 0;
        let n = 0;
        const picks: Record<string, string> = {};
        const seeds = [1, 2, 3];
        for (const seed of seeds) {
          for (let l = 0; l < model.config.nLayers; l++) {
            for (const kind of COMPRESSED) {
              const [w, rows, cols] = realMatrix(l, kind);
              const p = codec.encode(w, rows, cols, o, { name: `${l}.${kind}`, seed });
              const d = codec.decode(p);
              for (let i = 0; i < w.length; i++) {
                e2 += (d[i]! - w[i]!) ** 2;
                w2 += w[i]! ** 2;
                aHat += Math.abs(d[i]!);
                a += Math.abs(w[i]!);
              }
              bits += codec.bits(p).total;
              n += rows * cols;
              const key = `${kind}${l}`;
              if (seed === 1 && ['q0', 'k0', 'up3', 'down5'].includes(key)) {
                const s = errorStats(w, d);
                picks[key] = `${fmt(s.relFro, 3)} / ${fmt(s.magRatio, 3)}`;
              }
            }
          }
        }
        headline[`${label}@${bpw}`] = aHat / a;
        out.push(
          `| ${label} | ${bpw} | ${fmt(Math.sqrt(e2 / w2))} | ${fmt(aHat / a)} | ${picks.q0} | ${picks.k0} | ${picks.up3} | ${picks.down5} | ${fmt(bits / n)} |`,
        );
      }
    }
    console.log(`\nPOST-TRAINING ERROR, stories3M, all ${model.config.nLayers * COMPRESSED.length} compressed linears (Q K V Gate Up Down), seeds 1–3 pooled\n${out.join('\n')}`);
    // methods.md §5: "keeps only 2–4% of the mean weight magnitude" at 0.5 bpw, 3 rows, 16-bit states
    expect(headline['sketch rowrun f16@0.5']).toBeGreaterThan(0.02);
    expect(headline['sketch rowrun f16@0.5']).toBeLessThan(0.04);
    expect(headline['sketch mixed f16@0.5']).toBeGreaterThan(0.02);
    expect(headline['sketch mixed f16@0.5']).toBeLessThan(0.04);
  });

  it('synthetic Laplace weights (methods.md §5 setting): magnitude kept at 0.5 bpw', () => {
    const rng = new Rng(1);
    const [rows, cols] = [512, 512];
    const w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i++) {
      const u = rng.next() - 0.5;
      w[i] = -0.02 * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
    }
    const lines: string[] = [];
    for (const state of ['f16', 'int8'] as const) {
      for (const hash of ['rowrun', 'mixed'] as const) {
        const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 0.5, hash, state }), { name: 'laplace', seed: 1 });
        const s = errorStats(w, sketchCodec.decode(p));
        lines.push(`| ${hash} | ${state} | ${sketchGroups(p)[0]!.alloc.width} | ${fmt(rows * cols / sketchGroups(p)[0]!.alloc.width, 1)} | ${fmt(s.relFro)} | ${fmt(s.magRatio)} |`);
      }
    }
    console.log(`\nLAPLACE 512×512, 0.5 bpw, 3 rows\n| hash | state | w | weights per state | rel. Frobenius | mean |ŵ|/|w| |\n| --- | --- | --- | --- | --- | --- |\n${lines.join('\n')}`);
  });

  it('sign statistics: how often the decoded sign matches, and how often the weight itself is recovered', () => {
    const lines: string[] = [];
    for (const bpw of [0.5, 1.0, 2.0, 4.0]) {
      for (const hash of ['rowrun', 'mixed'] as const) {
        let agree = 0;
        let exact = 0;
        let nonzero = 0;
        let n = 0;
        for (const kind of COMPRESSED) {
          const [w, rows, cols] = realMatrix(0, kind);
          const d = sketchCodec.decode(sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw, hash, state: 'f32' }), { name: kind, seed: 1 }));
          for (let i = 0; i < w.length; i++) {
            if (d[i] !== 0 && w[i] !== 0) {
              nonzero++;
              if (Math.sign(d[i]!) === Math.sign(w[i]!)) agree++;
            }
            if (d[i] === w[i]) exact++;
            n++;
          }
        }
        lines.push(`| ${bpw} | ${hash} | ${fmt(agree / nonzero, 3)} | ${fmt(exact / n, 3)} |`);
      }
    }
    console.log(`\nSIGNS, stories3M layer 0 (Q K V Gate Up Down), f32 states\n| bpw | hash | sign agreement (ŵ ≠ 0) | ŵ = w exactly |\n| --- | --- | --- | --- |\n${lines.join('\n')}`);
  });
});
