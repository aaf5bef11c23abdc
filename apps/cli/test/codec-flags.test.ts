/**
 * littlebit's refinement flags (--ls-rounds, --refine-signs, --refine-rounds, --refine-objective): parsing into
 * codec options, the codecs that take them, help text. In-process, from source (no build, no model).
 */
import { describe, expect, it } from 'vitest';
import { rawCodecOptions } from '../src/codec-flags.js';
import { UsageError, commandHelp, parseCommandArgs } from '../src/command.js';
import { COMMANDS } from '../src/main.js';

const command = (name: string) => COMMANDS.find((c) => c.name === name)!;
const M = 'model.bin';

describe('littlebit refine flags', () => {
  for (const name of ['compress', 'sweep']) {
    it(`${name}: parsed into littlebit codec options`, () => {
      const extra = name === 'compress' ? ['--codec', 'littlebit', '-o', 'x.usk'] : ['--codecs', 'littlebit', '--bpw', '0.55'];
      const input = parseCommandArgs(command(name), [M, ...extra, '--no-residual', '--ls-rounds', '8', '--refine-signs', '--refine-objective', 'activation']);
      const raw = rawCodecOptions(input, ['littlebit'], name, name === 'sweep' ? ['bpw'] : []);
      expect(raw).toEqual({ residual: false, lsRounds: 8, refineSigns: true, refineObjective: 'activation' });
      const two = parseCommandArgs(command(name), [M, ...extra, '--refine-rounds', '3', '--ls-rounds', '2', '--refine-objective', 'frobenius']);
      expect(rawCodecOptions(two, ['littlebit'], name, name === 'sweep' ? ['bpw'] : [])).toEqual({ refineRounds: 3, lsRounds: 2, refineObjective: 'frobenius' });
    });

    it(`${name}: help lists the flags`, () => {
      const help = commandHelp(command(name));
      for (const flag of ['--ls-rounds N', '--refine-signs', '--refine-rounds N', '--refine-objective O']) expect(help).toContain(flag);
      expect(help).toContain('littlebit with --refine-objective activation');
    });
  }

  it('compress help keeps the recipe table one line per recipe and per method (line breaks inside a paragraph survive wrapping)', () => {
    const help = commandHelp(command('compress'));
    for (const name of ['quick', 'standard', 'long']) expect(help).toMatch(new RegExp(`\\n  ${name}: [\\d,]+ training tokens`));
    expect(help).toMatch(/\n  littlebit: lr 0\.003, batch 4/);
    expect(help.replace(/\s+/g, ' ')).toContain('(here: binary lr 0.0001; littlebit lr 0.001, plan kl, embedding trained; sketch embedding trained; hashednets embedding trained)');
    // an indented line wraps under itself; a plain paragraph's lines start at column 0
    expect(help).toMatch(/\n  littlebit: [^\n]+\n    refineSigns=true/);
    expect(help).toMatch(/\n-o must not be an input of the command [^\n]+\n[^ ]/);
  });

  it('they apply to littlebit only; bad values are usage errors', () => {
    const input = parseCommandArgs(command('compress'), [M, '--codec', 'rtn', '--ls-rounds', '8', '-o', 'x.usk']);
    expect(() => rawCodecOptions(input, ['rtn'], 'compress')).toThrow(UsageError);
    expect(() => rawCodecOptions(input, ['rtn'], 'compress')).toThrow('--ls-rounds applies to --codec littlebit, not rtn');
    expect(() => parseCommandArgs(command('compress'), [M, '--codec', 'littlebit', '--refine-objective', 'l2', '-o', 'x.usk'])).toThrow(UsageError);
    expect(() => parseCommandArgs(command('compress'), [M, '--codec', 'littlebit', '--ls-rounds', '-1', '-o', 'x.usk'])).toThrow(UsageError);
    expect(() => parseCommandArgs(command('compress'), [M, '--codec', 'littlebit', '--ls-rounds', '65', '-o', 'x.usk'])).toThrow(UsageError);
  });
});
