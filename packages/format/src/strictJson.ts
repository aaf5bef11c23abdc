/**
 * Duplicate keys in JSON objects, and nesting depth. JSON allows duplicates ("names SHOULD be unique",
 * RFC 8259) and parsers disagree on which one wins: JSON.parse keeps the last, others keep the first or
 * fail. A file that two tools read differently must not be accepted, so our readers refuse any object with
 * a repeated key, at any depth. Depth is bounded (LIMITS.maxJsonDepth) because JSON.parse accepts nesting
 * that later recursive code (JSON.stringify in an error message, a structured clone) cannot handle: a
 * value 100,000 arrays deep overflowed the stack while its error message was built.
 *
 * JSON.parse cannot report duplicates (a reviver sees only the surviving value), so this scanner walks the
 * text once more. It runs only on text JSON.parse has already accepted, so it tokenizes valid JSON only and
 * needs no error handling of its own; on any other input it still terminates, in one pass. It is iterative
 * (an explicit stack, not recursion), so nesting depth cannot exhaust the call stack, and linear in the
 * text: each character is looked at a bounded number of times, and each key costs one Set lookup.
 */

export interface DuplicateKey {
  /** The repeated key, decoded (so "a" and "\u0061" are the same key). */
  key: string;
  /** The keys leading to the object holding it, outermost first ([] for the top-level object). */
  path: string[];
}

/** The first structural problem `scanJson` found. */
export type JsonProblem =
  | ({ kind: 'duplicate' } & DuplicateKey)
  /** A container opened at depth `depth` (the top-level value is depth 1), beyond the limit. */
  | { kind: 'depth'; depth: number; path: string[] };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

interface Frame {
  /** Keys seen so far in this object; undefined for an array. */
  keys: Set<string> | undefined;
  /** The key this container is the value of (for the path), or undefined in an array or at the top. */
  key: string | undefined;
}

/** The first duplicated key in `text` (already valid JSON), or undefined when every object's keys are unique. */
export function findDuplicateKey(text: string): DuplicateKey | undefined {
  const problem = scanJson(text, Infinity);
  return problem?.kind === 'duplicate' ? { key: problem.key, path: problem.path } : undefined;
}

/**
 * The first duplicated key or container nested deeper than `maxDepth` in `text` (already valid JSON), in
 * text order; undefined when there is neither.
 */
export function scanJson(text: string, maxDepth: number): JsonProblem | undefined {
  const stack: Frame[] = [];
  // The last string read in an object where a key is expected, waiting for its ':'.
  let pendingKey: string | undefined;
  // The key whose value comes next (set at ':' and consumed by the value).
  let valueKey: string | undefined;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      // A string is a key when it comes in an object and no ':' follows yet (valueKey is cleared by ',').
      if (top !== undefined && top.keys !== undefined && valueKey === undefined) {
        const raw = text.slice(i + 1, end);
        // Only escaped keys need decoding; JSON.parse of the literal is exact and linear in its length.
        pendingKey = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        if (top.keys.has(pendingKey)) return { kind: 'duplicate', key: pendingKey, path: pathOf(stack) };
        top.keys.add(pendingKey);
      } else {
        valueKey = undefined;
      }
      i = end + 1;
      continue;
    }
    switch (c) {
      case 0x7b: // {
      case 0x5b: // [
        if (stack.length >= maxDepth) {
          // The path ends with the key this container is the value of, when it is one.
          const path = pathOf(stack);
          if (valueKey !== undefined) path.push(valueKey);
          return { kind: 'depth', depth: stack.length + 1, path };
        }
        stack.push({ keys: c === 0x7b ? new Set() : undefined, key: valueKey });
        valueKey = undefined;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        stack.pop();
        valueKey = undefined;
        break;
      case 0x3a: // :
        valueKey = pendingKey;
        break;
      case 0x2c: // ,
        valueKey = undefined;
        break;
      default:
        // Numbers, true/false/null and whitespace: a value ends the pending key's turn only at ',' or '}'.
        break;
    }
    i++;
  }
  return undefined;
}

/** Index of the closing quote of the string literal opening at `start`. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i += 2;
    else if (c === QUOTE) return i;
    else i++;
  }
  return text.length;
}

function pathOf(stack: Frame[]): string[] {
  const path: string[] = [];
  for (const f of stack) if (f.key !== undefined) path.push(f.key);
  return path;
}
