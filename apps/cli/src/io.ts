/** Small output helpers shared by the commands. */
import type { CommandIO } from './command.js';

/** Write exactly one JSON object (and a newline) to stdout. */
export function writeJson(io: CommandIO, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
}

/** Typed arrays become plain arrays; non-finite numbers become null (JSON has no NaN). */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<number>);
  if (typeof value === 'number' && !Number.isFinite(value)) return null;
  return value;
}

/** A note for the person at the terminal (stderr), unless --quiet. */
export function note(io: CommandIO, quiet: boolean, text: string): void {
  if (!quiet) io.stderr.write(`${text}\n`);
}

/** A warning (stderr); printed even with --quiet, because it is about the validity of the result. */
export function warn(io: CommandIO, text: string): void {
  io.stderr.write(`warning: ${text}\n`);
}

/** Aligned "key  value" lines for human summaries. */
export function table(rows: Array<[string, string]>): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

export function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${fmtInt(n)} B (${v.toFixed(v < 10 ? 2 : 1)} ${units[i]})`;
}
