/**
 * Typed errors with stable codes. Every error a user can trigger with bad input carries:
 * - `code`: a stable identifier that scripts and tests may match on (never reworded);
 * - `source`: the file or argument the problem is in, when there is one;
 * - `hint`: what to do about it.
 * The message joins the three so a plain `console.error(err.message)` is already helpful.
 */
export const ErrorCodes = {
  /** A file or directory the user named does not exist or cannot be read. */
  FILE_NOT_FOUND: 'E_FILE_NOT_FOUND',
  /** The input ends before the structure it announces is complete. */
  TRUNCATED: 'E_TRUNCATED',
  /** The magic number / signature is not the expected one. */
  BAD_MAGIC: 'E_BAD_MAGIC',
  /** A format version we do not read. */
  BAD_VERSION: 'E_BAD_VERSION',
  /** A header that cannot be parsed (bad JSON, wrong field types, ...). */
  BAD_HEADER: 'E_BAD_HEADER',
  /** A dimension that is zero, negative, absurdly large, or inconsistent with another. */
  BAD_DIMENSION: 'E_BAD_DIMENSION',
  /** A tensor's byte range lies outside the data it is supposed to be in. */
  BAD_OFFSET: 'E_BAD_OFFSET',
  /** Two tensors claim the same bytes. */
  OVERLAP: 'E_OVERLAP',
  /** A count, size or length exceeds a named safety limit. */
  LIMIT_EXCEEDED: 'E_LIMIT_EXCEEDED',
  /** An unknown or unsupported dtype. */
  BAD_DTYPE: 'E_BAD_DTYPE',
  /** The tokenizer does not fit the model (vocabulary size differs). */
  TOKENIZER_MISMATCH: 'E_TOKENIZER_MISMATCH',
  /** An input that must not be empty is empty (evaluation text, prompt file, ...). */
  EMPTY_INPUT: 'E_EMPTY_INPUT',
  /** Non-finite values (NaN, Infinity) where finite numbers are required. */
  NOT_FINITE: 'E_NOT_FINITE',
  /** A shape that does not match what the operation needs. */
  SHAPE_MISMATCH: 'E_SHAPE_MISMATCH',
  /** A tensor that a model needs is missing from the file. */
  MISSING_TENSOR: 'E_MISSING_TENSOR',
  /** A command-line or API argument that is invalid. */
  BAD_ARGUMENT: 'E_BAD_ARGUMENT',
  /** Trailing bytes or other data that the format does not allow. */
  TRAILING_DATA: 'E_TRAILING_DATA',
  /** A checksum did not match: the data changed after it was written. */
  CHECKSUM: 'E_CHECKSUM',
  /** The file is of a kind we recognise but cannot use for this operation. */
  UNSUPPORTED: 'E_UNSUPPORTED',
  /** A codec id (or id + version) that no registered codec has. */
  UNKNOWN_CODEC: 'E_UNKNOWN_CODEC',
  /** A compression target that cannot be met (bit budget too small for the codec's fixed costs, ...). */
  INFEASIBLE_BUDGET: 'E_INFEASIBLE_BUDGET',
  /** The GPU device was lost (driver reset, another process took the GPU, destroy()): recreate the session. */
  DEVICE_LOST: 'E_DEVICE_LOST',
  /** An allocation failed for lack of memory (GPU buffers): a shorter context, a smaller batch or model. */
  OUT_OF_MEMORY: 'E_OUT_OF_MEMORY',
  /** The operating system refused access to a file or directory (permissions, read-only file system). */
  PERMISSION_DENIED: 'E_PERMISSION_DENIED',
  /** The disk (or a quota) is full: nothing was written, or the partial write was removed. */
  NO_SPACE: 'E_NO_SPACE',
  /** A path names something that is not a regular file where a file is needed (FIFO, device, socket, directory). */
  NOT_A_FILE: 'E_NOT_A_FILE',
  /** An output path resolves to one of the command's own inputs: writing it would destroy the input. */
  OUTPUT_IS_INPUT: 'E_OUTPUT_IS_INPUT',
  /** A file already exists where the command must create a new one (and never overwrites). */
  EXISTS: 'E_EXISTS',
  /** Any other failure the operating system reported (an I/O error, too many open files, ...). */
  SYSTEM: 'E_SYSTEM',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface UltraSketchErrorOptions {
  /** The file, tensor or argument the problem is in. */
  source?: string;
  /** What the user can do to fix it. */
  hint?: string;
  cause?: unknown;
}

export class UltraSketchError extends Error {
  override readonly name = 'UltraSketchError';
  readonly code: ErrorCode;
  readonly source: string | undefined;
  readonly hint: string | undefined;
  /** The problem alone, without source or hint. */
  readonly problem: string;

  constructor(code: ErrorCode, problem: string, options: UltraSketchErrorOptions = {}) {
    const where = options.source ? `${options.source}: ` : '';
    const fix = options.hint ? ` (${options.hint})` : '';
    super(`${where}${problem}${fix}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.problem = problem;
    this.source = options.source;
    this.hint = options.hint;
  }
}

/** True when `err` is an UltraSketchError, optionally with the given code. */
export function isUltraSketchError(err: unknown, code?: ErrorCode): err is UltraSketchError {
  return err instanceof UltraSketchError && (code === undefined || err.code === code);
}

/** What the command was doing with the path when the system refused (phrases the message). */
export type FileAction = 'read' | 'write' | 'create' | 'open' | 'list' | 'remove' | 'rename';

/**
 * Turn a Node.js system error (an `Error` with an errno `code` such as ENOENT, EACCES, ENOSPC) into a typed
 * error naming the path, what went wrong and the fix. Anything that is not a system error (including an
 * UltraSketchError) is returned unchanged, so `throw fromSystemError(err, ...)` is safe in any catch.
 * Pure: it only reads `err.code`, so it runs anywhere (no `node:*` import).
 */
export function fromSystemError(err: unknown, path: string, action: FileAction): unknown {
  if (err instanceof UltraSketchError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^E[A-Z0-9_]+$/.test(code)) return err;
  const verb = { read: 'read', write: 'write', create: 'create', open: 'open', list: 'list', remove: 'remove', rename: 'rename' }[action];
  const make = (c: ErrorCode, problem: string, hint: string) =>
    new UltraSketchError(c, problem, { source: path, hint, cause: err });
  switch (code) {
    case 'ENOENT':
      return make(ErrorCodes.FILE_NOT_FOUND, `cannot ${verb}: no such file or directory`, 'check the path (and that its directory exists)');
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return make(
        ErrorCodes.PERMISSION_DENIED,
        `cannot ${verb}: permission denied${code === 'EROFS' ? ' (read-only file system)' : ''}`,
        action === 'read' || action === 'open' || action === 'list'
          ? 'make the file readable for this user (chmod/chown), or copy it somewhere readable'
          : 'choose a directory this user can write to, or fix its permissions',
      );
    case 'ENOSPC':
    case 'EDQUOT':
      return make(ErrorCodes.NO_SPACE, `cannot ${verb}: no space left on the device`, 'free disk space or write to another disk; nothing partial was kept');
    case 'EEXIST':
      return make(ErrorCodes.EXISTS, `cannot ${verb}: the file already exists`, 'remove it or choose another name');
    case 'EISDIR':
      return make(ErrorCodes.NOT_A_FILE, `cannot ${verb}: it is a directory`, 'name a file, not a directory');
    case 'ENOTDIR':
      return make(ErrorCodes.FILE_NOT_FOUND, `cannot ${verb}: a part of the path is a file, not a directory`, 'check the path');
    case 'EFBIG':
    case 'ERR_FS_FILE_TOO_LARGE':
      return make(ErrorCodes.LIMIT_EXCEEDED, `cannot ${verb}: the file is too large`, 'use a smaller file, or a file system that allows larger files');
    case 'EMFILE':
    case 'ENFILE':
      return make(ErrorCodes.SYSTEM, `cannot ${verb}: too many open files`, 'raise the open-file limit (ulimit -n) or close other programs');
    default:
      return make(ErrorCodes.SYSTEM, `cannot ${verb}: ${code}${err instanceof Error ? ` (${err.message})` : ''}`, 'check the file and the disk, then try again');
  }
}

/**
 * A short, safe rendering of an untrusted value for an error message: JSON for small values, cut at
 * `maxChars`, and never more than `maxDepth` levels deep (so a value nested 100,000 deep — possible in a
 * hostile file's JSON — cannot overflow the stack while its error is being built, as JSON.stringify would).
 */
export function describeValue(value: unknown, maxChars = 80, maxDepth = 3): string {
  const out = render(value, maxDepth);
  return out.length <= maxChars ? out : `${out.slice(0, Math.max(0, maxChars - 1))}…`;
}

function render(value: unknown, depth: number): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return String(value); // NaN and Infinity as words, unlike JSON
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
  if (typeof value !== 'object') return typeof value;
  if (depth <= 0) return Array.isArray(value) ? '[…]' : '{…}';
  if (Array.isArray(value)) {
    const items = value.slice(0, 8).map((v) => render(v, depth - 1));
    return `[${items.join(',')}${value.length > 8 ? `,… (${value.length} items)` : ''}]`;
  }
  const keys = Object.keys(value as object);
  const items = keys.slice(0, 8).map((k) => `${JSON.stringify(k)}:${render((value as Record<string, unknown>)[k], depth - 1)}`);
  return `{${items.join(',')}${keys.length > 8 ? ',…' : ''}}`;
}
