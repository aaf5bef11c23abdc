/**
 * The `ultrasketch` command: the command table and the dispatcher. `main` never calls process.exit; it
 * returns the exit code (0 success, 1 the work failed, 2 the command line is wrong), so it can be driven
 * in-process as well as from `cli.ts`.
 */
import { type FileAction, fromSystemError, isUltraSketchError } from '@ultrasketch/core';
import { type Command, type CommandIO, UsageError, closest, commandHelp, mainHelp, parseCommandArgs } from './command.js';
import { benchCommand } from './commands/bench.js';
import { compressCommand } from './commands/compress.js';
import { evalCommand } from './commands/eval.js';
import { generateCommand } from './commands/generate.js';
import { inspectCommand } from './commands/inspect.js';
import { sweepCommand } from './commands/sweep.js';

declare const __ULTRASKETCH_VERSION__: string;

/** The version baked in at build time (tsup `define`); "dev" when running from source. */
export const VERSION = typeof __ULTRASKETCH_VERSION__ === 'string' ? __ULTRASKETCH_VERSION__ : 'dev';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: Command[] = [compressCommand, generateCommand, evalCommand, inspectCommand, sweepCommand, benchCommand];

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export async function main(argv: string[], io: CommandIO, env: Record<string, string | undefined> = {}): Promise<number> {
  const debug = env.ULTRASKETCH_DEBUG === '1';
  const [first, ...rest] = argv;
  try {
    if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
      if (first === 'help' && rest[0] !== undefined) {
        io.stdout.write(commandHelp(findCommand(rest[0])));
        return EXIT_OK;
      }
      // Bare `ultrasketch` is a usage mistake, but a helpful one: help on stderr, exit 2.
      (first === undefined ? io.stderr : io.stdout).write(mainHelp(COMMANDS, VERSION));
      return first === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (first === '--version' || first === '-V') {
      io.stdout.write(`${VERSION}\n`);
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option '${first}' before the command`);
    const cmd = findCommand(first);
    const input = parseCommandArgs(cmd, rest);
    if (input.help) {
      io.stdout.write(commandHelp(cmd));
      return EXIT_OK;
    }
    await cmd.run(input, io);
    return EXIT_OK;
  } catch (err) {
    return report(err, io, debug);
  }
}

function findCommand(name: string): Command {
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd) return cmd;
  const guess = closest(name, COMMANDS.map((c) => c.name));
  throw new UsageError(
    `unknown command '${name}'${guess ? ` (did you mean '${guess}'?)` : ''}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`,
  );
}

/** Print an error the way a user can act on it, and pick the exit code. */
export function report(err: unknown, io: CommandIO, debug: boolean): number {
  // Last resort: a system error that no reader or writer mapped (a library's own file access) still gets its
  // typed code and fix (E_NO_SPACE, E_PERMISSION_DENIED, ...), named by the path Node recorded.
  err = typedSystemError(err);
  if (err instanceof UsageError) {
    const helpCmd = err.command ? `ultrasketch ${err.command} --help` : 'ultrasketch --help';
    io.stderr.write(`error: ${err.message}\n(see '${helpCmd}')\n`);
    return EXIT_USAGE;
  }
  if (isUltraSketchError(err)) {
    io.stderr.write(`error [${err.code}]: ${err.message}\n`);
    if (debug && err.stack) io.stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  }
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? ` [${e.code}]` : '';
  io.stderr.write(`error${code}: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) io.stderr.write(`${e.stack}\n`);
  else io.stderr.write('(this looks like a bug or a system problem; set ULTRASKETCH_DEBUG=1 for the stack trace)\n');
  return EXIT_FAILURE;
}

/** What a failed system call was doing, for `fromSystemError`'s wording. */
const SYSCALL_ACTIONS: Record<string, FileAction> = {
  open: 'open',
  read: 'read',
  write: 'write',
  fsync: 'write',
  close: 'write',
  mkdir: 'create',
  copyfile: 'write',
  rename: 'rename',
  unlink: 'remove',
  rmdir: 'remove',
  rm: 'remove',
  scandir: 'list',
  opendir: 'list',
};

/**
 * A Node system error (one with a `syscall`, or a file too large for readFile) as a typed error; anything else
 * unchanged. Node's own argument errors (ERR_INVALID_ARG_TYPE, ...) are bugs and stay untyped.
 */
export function typedSystemError(err: unknown): unknown {
  if (isUltraSketchError(err) || err instanceof UsageError) return err;
  const e = err as NodeJS.ErrnoException | null;
  if (typeof e?.code !== 'string' || (typeof e.syscall !== 'string' && e.code !== 'ERR_FS_FILE_TOO_LARGE')) return err;
  const path = typeof e.path === 'string' ? e.path : typeof (e as { dest?: unknown }).dest === 'string' ? String((e as { dest?: unknown }).dest) : '(file)';
  return fromSystemError(err, path, SYSCALL_ACTIONS[e.syscall ?? ''] ?? 'open');
}
