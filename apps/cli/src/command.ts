/**
 * The declarative command table's types, the argument parser built on `node:util` `parseArgs`, and the help
 * text generated from the same table. A command is data (name, summary, positionals, options with their
 * descriptions and defaults, examples) plus a thin `run` that calls library code; nothing about a command's
 * interface is written twice.
 */
import { parseArgs } from 'node:util';

/** How an option's string value is turned into the value `run` receives. */
export type OptionKind = 'boolean' | 'string' | 'path' | 'int' | 'number' | 'count-or-all';

export interface OptionSpec {
  /** Long name without dashes, e.g. `top-p`. */
  name: string;
  short?: string;
  kind: OptionKind;
  /** Placeholder shown in help (`--steps N`). */
  valueName?: string;
  description: string;
  /** Default, as shown in help and as `run` receives it when the option is absent. */
  default?: string | number | boolean;
  /** Help text for a default that is computed at run time ("the model's seq_len"). */
  defaultText?: string;
  /** Smallest accepted value for `int` / `number` / `count-or-all`. */
  min?: number;
  /** Largest accepted value for `int` / `number`. */
  max?: number;
  /** The option must be given. */
  required?: boolean;
  /** For `string` options: the only accepted values. */
  choices?: string[];
}

export interface PositionalSpec {
  name: string;
  description: string;
}

/** What a command's `run` receives: positionals by name, option values by long name (parsed, defaults applied). */
export interface CommandInput {
  positionals: Record<string, string>;
  options: Record<string, string | number | boolean | undefined>;
  /** The words after the command name, as typed (for provenance: the command line stored in a bundle). */
  argv?: string[];
  /** Long names of the options given on the command line (the others hold their defaults). */
  given?: ReadonlySet<string>;
}

/** Where a command writes: stdout is for results only, stderr for everything a person reads along the way. */
export interface CommandIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

export interface Command {
  name: string;
  /** One line, shown in the command list. */
  summary: string;
  /** Paragraphs shown in `<cmd> --help` after the usage line. */
  description: string;
  positionals: PositionalSpec[];
  options: OptionSpec[];
  /** Complete command lines, shown in help. */
  examples: string[];
  run(input: CommandInput, io: CommandIO): Promise<void>;
}

/** Options every command accepts (appended to each command's own). */
export const COMMON_OPTIONS: OptionSpec[] = [
  { name: 'quiet', short: 'q', kind: 'boolean', default: false, description: 'no progress bar and no notes on stderr (errors are still printed)' },
  { name: 'help', short: 'h', kind: 'boolean', default: false, description: 'show this help and exit' },
];

/** A mistake in how the command was typed: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

export function allOptions(cmd: Command): OptionSpec[] {
  return [...cmd.options, ...COMMON_OPTIONS];
}

/** Parse `argv` (the words after the command name) against a command's table entry. */
export function parseCommandArgs(cmd: Command, argv: string[]): CommandInput & { help: boolean } {
  argv = [...argv];
  const specs = allOptions(cmd);
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const o of specs) {
    config[o.name] = { type: o.kind === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: config, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(describeParseError(err, specs), cmd.name);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { positionals: {}, options: {}, argv, given: new Set(), help: true };

  const positionals: Record<string, string> = {};
  const given = parsed.positionals;
  if (given.length > cmd.positionals.length) {
    const extra = given.slice(cmd.positionals.length).map((p) => `'${p}'`).join(', ');
    throw new UsageError(`unexpected argument${given.length - cmd.positionals.length > 1 ? 's' : ''} ${extra}`, cmd.name);
  }
  cmd.positionals.forEach((p, i) => {
    const v = given[i];
    if (v === undefined) throw new UsageError(`missing <${p.name}> (${p.description})`, cmd.name);
    positionals[p.name] = v;
  });

  const options: CommandInput['options'] = {};
  const givenNames = new Set<string>();
  for (const o of specs) {
    const raw = values[o.name];
    if (raw !== undefined) givenNames.add(o.name);
    if (raw === undefined) {
      if (o.required) throw new UsageError(`--${o.name} ${o.valueName ?? 'VALUE'} is required (${o.description})`, cmd.name);
      options[o.name] = o.default;
      continue;
    }
    try {
      options[o.name] = typeof raw === 'boolean' ? raw : convertValue(o, raw);
    } catch (err) {
      throw err instanceof UsageError ? new UsageError(err.message, cmd.name) : err;
    }
  }
  return { positionals, options, argv, given: givenNames, help: false };
}

function convertValue(o: OptionSpec, raw: string): string | number {
  const flag = `--${o.name}`;
  const range = (v: number, what: string): number => {
    if (o.min !== undefined && v < o.min) throw new UsageError(`${flag} must be ${what} ≥ ${o.min}, got '${raw}'`);
    if (o.max !== undefined && v > o.max) throw new UsageError(`${flag} must be ${what} ≤ ${o.max}, got '${raw}'`);
    return v;
  };
  switch (o.kind) {
    case 'string':
    case 'path':
      if (o.kind === 'path' && raw === '') throw new UsageError(`${flag} needs a file path, got an empty string`);
      if (o.choices && !o.choices.includes(raw)) {
        throw new UsageError(`${flag} must be one of ${o.choices.join(', ')}; got '${raw}'`);
      }
      return raw;
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw.trim())) throw new UsageError(`${flag} expects an integer, got '${raw}'`);
      const v = Number(raw);
      if (!Number.isSafeInteger(v)) throw new UsageError(`${flag} is out of range: '${raw}'`);
      return range(v, 'an integer');
    }
    case 'number': {
      const v = raw.trim() === '' ? Number.NaN : Number(raw);
      if (!Number.isFinite(v)) throw new UsageError(`${flag} expects a number, got '${raw}'`);
      return range(v, 'a number');
    }
    case 'count-or-all': {
      if (raw === 'all') return 'all';
      if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${flag} expects a positive integer or 'all', got '${raw}'`);
      return range(Number(raw), 'an integer');
    }
    case 'boolean':
      return raw;
  }
}

/** Turn parseArgs' error into a message that names the option and suggests the nearest real one. */
function describeParseError(err: unknown, specs: OptionSpec[]): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const m = /Unknown option '([^']+)'/.exec(message);
    const given = m?.[1] ?? '';
    const suggestion = closest(given.replace(/^-+/, '').split('=')[0]!, specs.map((o) => o.name));
    return `unknown option '${given}'${suggestion ? ` (did you mean --${suggestion}?)` : ''}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // e.g. "Option '--steps <value>' argument missing" or "Option '--json' does not take an argument"
    const m = /Option '(-[^ ']+)/.exec(message);
    const flag = m?.[1]?.replace(/^-(\w)$/, (_, s: string) => `--${specs.find((o) => o.short === s)?.name ?? s}`);
    const spec = specs.find((o) => `--${o.name}` === flag);
    if (spec && spec.kind !== 'boolean') {
      const dash = /ambiguous/.test(message) ? `; for a value that starts with '-', write ${flag}=VALUE` : '';
      return `${flag} needs a value (${flag} ${spec.valueName ?? 'VALUE'})${dash}`;
    }
    if (spec) return `${flag} is a switch and takes no value`;
  }
  return message.split('\n')[0]!.replace(/^Unknown option/, 'unknown option');
}

/** The candidate closest to `word` by edit distance, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

// ---------------------------------------------------------------------------------------------------------
// Help text, generated from the table.

const PROGRAM = 'ultrasketch';

function optionLabel(o: OptionSpec): string {
  const short = o.short ? `-${o.short}, ` : '    ';
  return `${short}--${o.name}${o.kind === 'boolean' ? '' : ` ${o.valueName ?? 'VALUE'}`}`;
}

function defaultLabel(o: OptionSpec): string {
  const parts: string[] = [];
  if (o.choices) parts.push(`one of: ${o.choices.join(', ')}`);
  if (o.required) parts.push('required');
  else if (o.defaultText) parts.push(`default: ${o.defaultText}`);
  else if (o.default !== undefined && o.kind !== 'boolean') parts.push(`default: ${String(o.default)}`);
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

export function usageLine(cmd: Command): string {
  const pos = cmd.positionals.map((p) => `<${p.name}>`).join(' ');
  const req = cmd.options
    .filter((o) => o.required)
    .map((o) => `--${o.name} ${o.valueName ?? 'VALUE'}`)
    .join(' ');
  return [PROGRAM, cmd.name, pos, req, '[options]'].filter((s) => s !== '').join(' ');
}

/** Wrap `text` to `width` columns, indenting continuation lines by `indent`. */
function wrap(text: string, width: number, indent: number): string {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line === '' ? w : `${line} ${w}`;
  }
  if (line !== '') lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

export function commandHelp(cmd: Command): string {
  const out: string[] = [`Usage: ${usageLine(cmd)}`, '', cmd.summary];
  // Paragraphs are separated by blank lines; a single line break inside one starts a new line (a list such as the
  // recipe table), each wrapped on its own and keeping its leading indentation.
  for (const para of cmd.description.split('\n\n')) {
    out.push('');
    for (const line of para.split('\n')) {
      const indent = /^ */.exec(line)![0].length;
      const hanging = indent > 0 ? indent + 2 : 0;
      out.push(' '.repeat(indent) + wrap(line, 100 - hanging, hanging));
    }
  }
  if (cmd.positionals.length > 0) {
    out.push('', 'Arguments:');
    const w = Math.max(...cmd.positionals.map((p) => p.name.length + 2));
    for (const p of cmd.positionals) out.push(`  ${`<${p.name}>`.padEnd(w)}  ${wrap(p.description, 96 - w, w + 4)}`);
  }
  const specs = allOptions(cmd);
  const w = Math.max(...specs.map((o) => optionLabel(o).length));
  out.push('', 'Options:');
  for (const o of specs) out.push(`  ${optionLabel(o).padEnd(w)}  ${wrap(o.description + defaultLabel(o), 98 - w, w + 4)}`);
  if (cmd.examples.length > 0) {
    out.push('', cmd.examples.length > 1 ? 'Examples:' : 'Example:');
    for (const e of cmd.examples) out.push(`  ${e}`);
  }
  return `${out.join('\n')}\n`;
}

export function mainHelp(commands: Command[], version: string): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    `${PROGRAM} ${version}: sub-1-bit LLM compression toolkit (compress, run, evaluate and inspect Llama-family models)`,
    '',
    `Usage: ${PROGRAM} <command> [arguments] [options]`,
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Options:',
    '  -h, --help     show this help (or a command\'s help: ultrasketch <command> --help)',
    '  -V, --version  print the version and exit',
    '',
    'Results go to stdout (with --json: exactly one JSON object); progress, notes and errors go to stderr.',
    'Exit codes: 0 success, 1 the work failed (error [CODE]: ...), 2 the command line is wrong.',
    'Set ULTRASKETCH_DEBUG=1 to print stack traces with errors.',
    '',
    'Example:',
    `  ${PROGRAM} generate ../shared/models/stories3M/stories3M-q80.bin --prompt "Once upon a time" --steps 128`,
    '',
  ].join('\n');
}
