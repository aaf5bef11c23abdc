/**
 * The fuzzing engine shared by bench/fuzz.mjs (≥ 10^5 cases per reader, in a worker under a watchdog) and the
 * property-based tests (packages/format/test/fuzz-readers.test.ts, packages/pipeline/test/fuzz-bundle.test.ts).
 *
 * A case is a PLAN: plain JSON saying which real seed file to start from and which edits to make to it, so a
 * failing case can be saved, printed and replayed, and fast-check can shrink it. Plans come from fast-check
 * arbitraries built from the seed's own structure (its header fields, its tensors' names and offsets, the
 * paths inside its JSON metadata), so most cases get past the first check of a reader and reach the deeper
 * ones; plain byte flips, truncations and appended bytes are mixed in for the checks nobody thought of.
 *
 * Plain ESM with one dependency (fast-check): the TypeScript tests and the Node script run the same code.
 */
import fc from 'fast-check';

// ------------------------------------------------------------------------------------------------- bytes

export function concatBytes(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

// CRC-32 (zlib polynomial), written here rather than imported from @ultrasketch/format: the mutators re-seal
// bundles after an edit, and using the reader's own checksum code to build its inputs would hide a bug in it.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32Tag(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return `crc32:${((c ^ 0xffffffff) >>> 0).toString(16).padStart(8, '0')}`;
}

/** FNV-1a over bytes, for comparing two parses of the same input (determinism), not for security. */
function fnv(h, bytes) {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
  return h;
}

// ----------------------------------------------------------------------------------------- byte-level edits

/** Boundary values for a 32-bit header field (as a signed or unsigned reader would see them). */
export const INT32_EDGES = [0, 1, -1, 2, 3, 4, 7, 8, 16, 31, 32, 64, 255, 256, 512, 1023, 1024, 4096, 65535, 65536, 1 << 20, 1 << 22, (1 << 22) + 1, 2 ** 30, 2 ** 31 - 1, -(2 ** 31), -2, -64];
/** Boundary values for a u64 length field, as decimal strings (a plan is JSON; BigInt is not). */
export const U64_EDGES = ['0', '1', '2', '7', '8', '4294967295', '4294967296', '104857600', '104857601', '9007199254740991', '9007199254740993', '18446744073709551615', '9223372036854775808'];
export const F32_EDGES = [Number.NaN, Infinity, -Infinity, 0, -0, 1, -1, 3.4e38, -3.4e38, 1e-45, 65504, 1e30];

/** An int32 field value: a boundary, anything, or a small change of what is there (`delta`). */
export const int32Value = () =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...INT32_EDGES).map((v) => ({ v })) },
    { weight: 2, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v) => ({ v })) },
    { weight: 3, arbitrary: fc.integer({ min: -64, max: 64 }).map((d) => ({ d })) },
    { weight: 1, arbitrary: fc.constantFrom(2, 4, 16, 1024).map((m) => ({ m })) },
  );

/**
 * Edits on raw bytes. `at` is taken modulo the current length, so a plan stays meaningful (and replayable)
 * whatever the edits before it did to the length.
 */
export function applyByteOps(bytes, ops) {
  let b = bytes;
  for (const op of ops) {
    const len = b.byteLength;
    const pos = (at) => (len === 0 ? 0 : at % len);
    switch (op.k) {
      case 'flip': {
        if (len === 0) break;
        b = b === bytes ? b.slice() : b;
        b[pos(op.at)] ^= op.mask;
        break;
      }
      case 'set': {
        if (len === 0) break;
        b = b === bytes ? b.slice() : b;
        b[pos(op.at)] = op.v;
        break;
      }
      case 'trunc':
        b = b.slice(0, op.at % (len + 1));
        break;
      case 'append':
        b = concatBytes([b, expandBytes(op.bytes)]);
        break;
      case 'insert': {
        const p = op.at % (len + 1);
        b = concatBytes([b.subarray(0, p), expandBytes(op.bytes), b.subarray(p)]);
        break;
      }
      case 'delete': {
        const p = pos(op.at);
        b = concatBytes([b.subarray(0, p), b.subarray(Math.min(len, p + op.n))]);
        break;
      }
      case 'dup': {
        // Copy a range over another place: repeats structure (a header over data, a table entry twice).
        if (len === 0) break;
        const from = pos(op.from);
        const to = pos(op.to);
        const n = Math.min(op.n, len - from, len - to);
        b = b === bytes ? b.slice() : b;
        b.copyWithin(to, from, from + n);
        break;
      }
      case 'int':
        b = writeInt(b === bytes ? b.slice() : b, op);
        break;
      default:
        throw new Error(`unknown byte op ${op.k}`);
    }
  }
  return b;
}

/** `bytes` in a plan: a short literal list, or {fill, n} for a long run of one byte. */
function expandBytes(spec) {
  if (Array.isArray(spec)) return Uint8Array.from(spec);
  return new Uint8Array(spec.n).fill(spec.fill);
}

/** Write a number of width `w` at `at` (aligned to the width); `d` adds to and `m` multiplies what is there. */
function writeInt(b, op) {
  const size = { u8: 1, i32: 4, u32: 4, f32: 4, u64: 8 }[op.w];
  if (b.byteLength < size) return b;
  const at = Math.min(op.at, b.byteLength - size);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (op.w) {
    case 'u8':
      view.setUint8(at, op.v ?? view.getUint8(at) + (op.d ?? 0) * (op.m ?? 1));
      break;
    case 'i32':
    case 'u32': {
      const old = view.getInt32(at, true);
      view.setInt32(at, op.v !== undefined ? op.v | 0 : (op.d !== undefined ? old + op.d : old * op.m) | 0, true);
      break;
    }
    case 'f32':
      view.setFloat32(at, op.v, true);
      break;
    case 'u64': {
      const old = view.getBigUint64(at, true);
      const v = op.v !== undefined ? BigInt(op.v) : op.d !== undefined ? old + BigInt(op.d) : old * BigInt(op.m);
      view.setBigUint64(at, BigInt.asUintN(64, v), true);
      break;
    }
  }
  return b;
}

/**
 * Generic byte edits for a file of `length` bytes. `hot` lists offsets worth hitting more often (header
 * fields: `{at, w}`), where numbers are written at their natural width.
 */
export function byteOpArb(length, hot = []) {
  const anywhere = fc.nat({ max: Math.max(0, length - 1) });
  const hotAt = hot.length ? fc.constantFrom(...hot.map((h) => h.at)) : anywhere;
  const pos = fc.oneof({ weight: 2, arbitrary: hotAt }, { weight: 1, arbitrary: fc.nat({ max: 255 }) }, { weight: 3, arbitrary: anywhere });
  const bytes = fc.oneof(
    fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 16 }),
    fc.record({ fill: fc.constantFrom(0, 0x20, 0xff, 0x7b, 0x41), n: fc.constantFrom(1, 3, 4, 8, 255, 4096, 65536) }),
  );
  const arms = [
    { weight: 5, arbitrary: fc.record({ k: fc.constant('flip'), at: pos, mask: fc.integer({ min: 1, max: 255 }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('set'), at: pos, v: fc.constantFrom(0, 0x7f, 0x80, 0xff, 0x22, 0x7d) }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('trunc'), at: fc.oneof(anywhere, pos) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('append'), bytes }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('insert'), at: pos, bytes }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('delete'), at: pos, n: fc.constantFrom(1, 2, 4, 8, 64, 1000) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('dup'), from: pos, to: pos, n: fc.constantFrom(4, 8, 28, 256, 4096) }) },
  ];
  if (hot.length) {
    const field = fc.constantFrom(...hot).chain((h) => {
      const value = h.w === 'u64' ? fc.constantFrom(...U64_EDGES).map((v) => ({ v })) : h.w === 'f32' ? fc.constantFrom(...F32_EDGES).map((v) => ({ v })) : int32Value();
      return value.map((v) => ({ k: 'int', at: h.at, w: h.w, ...v }));
    });
    arms.push({ weight: 4, arbitrary: field });
  }
  return fc.oneof(...arms);
}

// ------------------------------------------------------------------------------------------ JSON emitting

/**
 * Markers a plan can put in a JSON tree for text JSON.stringify cannot write. `GEN` objects are emitted as
 * generated text: {num: '1e400'} (a literal number: Infinity, 2^53 + 1, -0.0, ...), {nest: n} (n nested
 * arrays), {rep: n, item} (an array of n copies of a literal), {str: n} (a string of n letters). `DUP` on an
 * object lists extra [key, value] entries written after its own: duplicate keys.
 */
export const GEN = '\u0000gen';
export const DUP = '\u0000dup';

/** Text the emitter writes as it is (brackets, commas, keys), told apart from values by its class. */
class Punct {
  constructor(text) {
    this.text = text;
  }
}

export function emitJson(v) {
  // Iterative on purpose: a plan may nest values deeply, and the emitter must not be what overflows.
  const out = [];
  const stack = [v];
  while (stack.length) {
    const x = stack.pop();
    if (x instanceof Punct) {
      out.push(x.text);
      continue;
    }
    if (x === null || typeof x !== 'object') {
      out.push(JSON.stringify(x) ?? 'null');
      continue;
    }
    if (Object.prototype.hasOwnProperty.call(x, GEN)) {
      out.push(generated(x[GEN]));
      continue;
    }
    const todo = [];
    if (Array.isArray(x)) {
      todo.push(new Punct('['));
      x.forEach((e, i) => {
        if (i) todo.push(new Punct(','));
        todo.push(e);
      });
      todo.push(new Punct(']'));
    } else {
      const entries = Object.keys(x)
        .filter((k) => k !== DUP)
        .map((k) => [k, x[k]]);
      for (const e of x[DUP] ?? []) entries.push(e);
      todo.push(new Punct('{'));
      entries.forEach(([k, e], i) => {
        todo.push(new Punct(`${i ? ',' : ''}${JSON.stringify(k)}:`));
        todo.push(e);
      });
      todo.push(new Punct('}'));
    }
    for (let i = todo.length - 1; i >= 0; i--) stack.push(todo[i]);
  }
  return out.join('');
}

function generated(g) {
  if (g.num !== undefined) return g.num;
  if (g.nest !== undefined) return '['.repeat(g.nest) + ']'.repeat(g.nest);
  if (g.rep !== undefined) return `[${new Array(g.rep).fill(g.item).join(',')}]`;
  if (g.str !== undefined) return JSON.stringify('a'.repeat(g.str));
  throw new Error('unknown generated JSON');
}

const gen = (g) => ({ [GEN]: g });

/** JSON values a header field may be replaced by: boundaries, wrong types, huge and unrepresentable ones. */
export function jsonValueArb() {
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc.constantFrom(
        0, 1, -1, 2, 0.5, -0, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 53, 2 ** 64, 1e308, -1e308,
        null, true, false, '', '0', '64', '1e400', 'F32', 'F16', 'U8', 'I8', 'BF16', 'F64', 'rtn', 'float', 'llama',
        [], {}, [0], [1], [-1], [0, 0], [1, 1], [0, 2 ** 53], [2 ** 31, 2 ** 31], [65536, 65536, 65536], [1e308], ['1'], [null],
      ),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        gen({ num: '1e400' }), gen({ num: '-1e400' }), gen({ num: '9007199254740993' }), gen({ num: '1.0' }),
        gen({ num: '-0.0' }), gen({ num: '1e2' }), gen({ num: '4294967296e0' }), gen({ nest: 2000 }), gen({ nest: 100000 }),
        gen({ rep: 64, item: '2' }), gen({ rep: 100000, item: '1' }), gen({ rep: 9, item: '65536' }), gen({ str: 70000 }),
        gen({ rep: 1000, item: '{}' }),
      ),
    },
    { weight: 2, arbitrary: fc.integer() },
    { weight: 1, arbitrary: fc.double({ noNaN: true }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(0, 1, 2, 3, 8, 64, 65536, 2 ** 31, 2 ** 32, 1e15), { maxLength: 10 }) },
  );
}

// ------------------------------------------------------------------------------------------ JSON editing

const own = (o, k) => o !== null && typeof o === 'object' && Object.prototype.hasOwnProperty.call(o, k);

/** Set a property as an own data property (assignment to "__proto__" would change the prototype instead). */
function put(o, k, v) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** Every path into `v` down to `depth` levels (at most `max` of them, breadth first). */
export function jsonPaths(v, depth = 4, max = 2000) {
  const out = [];
  const queue = [[v, []]];
  while (queue.length && out.length < max) {
    const [x, path] = queue.shift();
    if (path.length) out.push(path);
    if (path.length >= depth || x === null || typeof x !== 'object') continue;
    const keys = Array.isArray(x) ? x.map((_, i) => i) : Object.keys(x);
    for (const k of keys) queue.push([x[k], [...path, k]]);
  }
  return out;
}

/** A JSON edit at `path`: see `jsonEditArb` for the actions. Paths that no longer exist are skipped. */
export function applyJsonEdit(root, edit) {
  const { path, a } = edit;
  if (path.length === 0) return a === 'set' ? structuredClone(edit.v) : root;
  let parent = root;
  for (const k of path.slice(0, -1)) {
    if (!own(parent, k)) return root;
    parent = parent[k];
  }
  const key = path[path.length - 1];
  if (parent === null || typeof parent !== 'object') return root;
  const present = own(parent, key);
  const old = present ? parent[key] : undefined;
  switch (a) {
    case 'del':
      if (Array.isArray(parent)) {
        if (present) parent.splice(Number(key), 1);
      } else delete parent[key];
      break;
    case 'set':
      put(parent, key, structuredClone(edit.v));
      break;
    case 'str': // a number as a string, a string as a number: the retyping a hand-edited file gets
      put(parent, key, typeof old === 'string' ? gen({ num: /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(old) ? old : '0' }) : JSON.stringify(old ?? null));
      break;
    case 'wrap':
      put(parent, key, [old ?? null]);
      break;
    case 'delta':
      if (typeof old === 'number') put(parent, key, old + edit.d);
      else if (Array.isArray(old) && typeof old[0] === 'number') put(parent, key, old.map((x) => x + edit.d));
      break;
    case 'dup':
      if (Array.isArray(parent)) parent.push(structuredClone(edit.v ?? old ?? null));
      else if (present) put(parent, DUP, [...(parent[DUP] ?? []), [key, edit.v === undefined ? old : structuredClone(edit.v)]]);
      break;
    case 'rename':
      if (present && !Array.isArray(parent)) {
        delete parent[key];
        put(parent, edit.to, old);
      }
      break;
    default:
      throw new Error(`unknown JSON edit ${a}`);
  }
  return root;
}

/** JSON edits at the given paths: delete, set, retype, wrap, nudge a number, duplicate the key, rename it. */
export function jsonEditArb(paths, renameTo = []) {
  if (paths.length === 0) return fc.constant({ path: [], a: 'del' });
  const path = fc.constantFrom(...paths);
  const names = fc.constantFrom('', '__metadata__', '__proto__', 'constructor', 'toString', 'x', '\u0000', 'a.b', ...renameTo);
  return fc.oneof(
    { weight: 2, arbitrary: fc.record({ path, a: fc.constant('del') }) },
    { weight: 5, arbitrary: fc.record({ path, a: fc.constant('set'), v: jsonValueArb() }) },
    { weight: 2, arbitrary: fc.record({ path, a: fc.constant('str') }) },
    { weight: 1, arbitrary: fc.record({ path, a: fc.constant('wrap') }) },
    { weight: 3, arbitrary: fc.record({ path, a: fc.constant('delta'), d: fc.constantFrom(-1, 1, -8, 8, 64, 1024, 2 ** 32, -(2 ** 31)) }) },
    { weight: 2, arbitrary: fc.record({ path, a: fc.constant('dup'), v: fc.option(jsonValueArb(), { nil: undefined }) }, { requiredKeys: ['path', 'a'] }) },
    { weight: 1, arbitrary: fc.record({ path, a: fc.constant('rename'), to: names }) },
  );
}

// ---------------------------------------------------------------------------------------------- safetensors

/**
 * A safetensors file split into its parts (8-byte length, JSON header, data area). Independent of the reader
 * under test; only ever applied to seeds, which are valid.
 */
export function splitSafetensors(bytes) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { header, data: bytes.subarray(8 + n) };
}

/** Header text (padded with `pad` to a multiple of 8 unless `pad` is '') in front of `data`. */
export function joinSafetensors(headerText, data, pad = ' ') {
  const json = new TextEncoder().encode(headerText);
  const n = pad === '' ? json.byteLength : Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(pad === '' ? 0x20 : pad.charCodeAt(0), 8 + json.byteLength, 8 + n);
  out.set(data, 8 + n);
  return out;
}

/** What the structure-aware safetensors/bundle arbitraries need to know about a seed. */
export function safetensorsInfo(bytes) {
  const { header } = splitSafetensors(bytes);
  const tensors = Object.keys(header).filter((k) => k !== '__metadata__');
  const meta = header.__metadata__ ?? {};
  const metaJson = {};
  for (const [k, v] of Object.entries(meta)) {
    try {
      const parsed = JSON.parse(v);
      if (parsed !== null && typeof parsed === 'object') metaJson[k] = jsonPaths(parsed, 4, 600);
    } catch {
      // a plain string value: edited as a header path instead
    }
  }
  const sizes = Object.fromEntries(tensors.map((t) => [t, header[t].data_offsets[1] - header[t].data_offsets[0]]));
  return { length: bytes.byteLength, headerPaths: jsonPaths(header, 3, 3000), tensors, sizes, metaKeys: Object.keys(meta), metaJson };
}

/**
 * Structure-aware edits of a safetensors file (or a bundle, which is one):
 * - `tdata`: change one tensor's bytes (flip, resize, fill, reshape to match) and lay the data area out again,
 *   fixing every offset and, in a bundle, the tensor's checksum, so that the reader gets past the layer that
 *   would otherwise stop it and the codec behind it sees the damage;
 * - `meta`: a JSON edit inside one `__metadata__` value (a bundle's model_config, weights, checksums, ...);
 * - `hjson`: a JSON edit of the header itself (dtype, shape, data_offsets, names, duplicate keys, ...);
 * - `pad`: the header's padding (spaces, NULs, other bytes, none).
 */
export function safetensorsStructArb(info) {
  const arms = [];
  if (info.tensors.length) {
    const name = fc.constantFrom(...info.tensors);
    arms.push({
      weight: 3,
      arbitrary: fc.oneof(
        fc.record({ k: fc.constant('tdata'), name, a: fc.constant('flip'), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
        fc.record({ k: fc.constant('tdata'), name, a: fc.constant('fill'), v: fc.constantFrom(0, 0x7f, 0x80, 0xff) }),
        fc.record({ k: fc.constant('tdata'), name, a: fc.constant('nan') }),
        fc.record({ k: fc.constant('tdata'), name, a: fc.constant('resize'), n: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 7, 8), fc.nat({ max: 4096 })) }),
        fc.record({ k: fc.constant('tdata'), name, a: fc.constant('reshape'), shape: fc.array(fc.constantFrom(0, 1, 2, 3, 4, 8, 16, 64, 512), { maxLength: 4 }), dtype: fc.constantFrom('same', 'U8', 'F32', 'F16', 'I8', 'I32', 'BF16', 'F64', 'U32', 'BOOL') }),
      ),
    });
  }
  const metaKeys = Object.keys(info.metaJson);
  if (metaKeys.length) {
    arms.push({
      weight: 5,
      arbitrary: fc.constantFrom(...metaKeys).chain((key) =>
        jsonEditArb(info.metaJson[key], info.tensors.slice(0, 4)).map((edit) => ({ k: 'meta', key, edit })),
      ),
    });
  }
  arms.push({ weight: 4, arbitrary: jsonEditArb(info.headerPaths, info.tensors.slice(0, 4)).map((edit) => ({ k: 'hjson', edit })) });
  arms.push({ weight: 1, arbitrary: fc.record({ k: fc.constant('pad'), pad: fc.constantFrom('', ' ', '\u0000', '\t', '\n', 'x', '}') }) });
  return fc.oneof(...arms);
}

/** Largest tensor a `reshape` edit builds (larger shapes are written into the header only). */
const MAX_BUILT_TENSOR_BYTES = 16 * 1024 * 1024;

/** Byte offsets of a safetensors file worth hitting: the length field and the header's first bytes. */
export const SAFETENSORS_HOT = [{ at: 0, w: 'u64' }, { at: 4, w: 'u32' }, { at: 8, w: 'u8' }];

/**
 * Apply structure edits to a safetensors seed. `reseal` (for bundles) recomputes every tensor checksum at the
 * end, so a case that edits the data still reaches the codecs; `sealMetadata(metadata, header)`, when given,
 * then recomputes whatever integrity data the format keeps over the metadata itself.
 */
export function applySafetensorsStruct(bytes, ops, { reseal = false, sealMetadata } = {}) {
  if (ops.length === 0 && !reseal) return bytes;
  const { header, data } = splitSafetensors(bytes);
  const meta = own(header, '__metadata__') ? header.__metadata__ : undefined;
  // Tensors in data order, each with its own (editable) bytes.
  const order = Object.keys(header)
    .filter((k) => k !== '__metadata__')
    .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0])
    .map((name) => ({ name, bytes: data.slice(...header[name].data_offsets) }));
  let pad = ' ';
  let checksumsTouched = false;
  // Checksum updates are applied in one parse and one serialization of the `checksums` entry: per tensor, an
  // entry an edit made huge (a value nested 100000 deep) took seconds to build, which looked like a hang.
  const setChecksums = (tensors) => {
    if (!meta || typeof meta.checksums !== 'string' || tensors.length === 0) return;
    try {
      const sums = JSON.parse(meta.checksums);
      if (sums && typeof sums === 'object' && !Array.isArray(sums)) {
        for (const t of tensors) put(sums, t.name, crc32Tag(t.bytes));
        meta.checksums = JSON.stringify(sums);
      }
    } catch {
      // checksums no longer JSON, or too deep to write back (an earlier edit): leave them as they are
    }
  };
  const edited = [];
  for (const op of ops.filter((o) => o.k === 'tdata')) {
    const t = order.find((x) => x.name === op.name);
    if (!t) continue;
    const entry = header[op.name];
    switch (op.a) {
      case 'flip':
        if (t.bytes.byteLength) t.bytes[op.at % t.bytes.byteLength] ^= op.mask;
        break;
      case 'fill':
        t.bytes.fill(op.v);
        break;
      case 'nan': // a float NaN wherever the tensor holds floats: its first 4 bytes
        if (t.bytes.byteLength >= 4) t.bytes.set([0, 0, 0xc0, 0x7f]);
        break;
      case 'resize': {
        const nb = new Uint8Array(op.n);
        nb.set(t.bytes.subarray(0, op.n));
        t.bytes = nb;
        break;
      }
      case 'reshape': {
        // A different shape (and maybe dtype) with exactly the bytes it needs, so the safetensors layer accepts
        // it and the layer above has to notice. A shape too big to build (512^4 elements) keeps the old bytes:
        // then the header claims more than the data holds, which is a case too.
        const size = { U8: 1, I8: 1, BOOL: 1, F16: 2, BF16: 2, F32: 4, I32: 4, U32: 4, F64: 8 };
        const dtype = op.dtype === 'same' ? entry.dtype : op.dtype;
        const n = op.shape.reduce((a, b) => a * b, 1) * (size[dtype] ?? 1);
        if (n <= MAX_BUILT_TENSOR_BYTES) {
          const nb = new Uint8Array(n);
          nb.set(t.bytes.subarray(0, n));
          t.bytes = nb;
        }
        entry.dtype = dtype;
        entry.shape = op.shape;
        break;
      }
    }
    if (!edited.includes(t)) edited.push(t);
    checksumsTouched = true;
  }
  setChecksums(edited);
  // Lay the data out again (offsets follow the new sizes); unchanged files keep their exact layout.
  let at = 0;
  for (const t of order) {
    header[t.name].data_offsets = [at, at + t.bytes.byteLength];
    at += t.bytes.byteLength;
  }
  let newData = checksumsTouched ? concatBytes(order.map((t) => t.bytes)) : data;
  for (const op of ops) {
    if (op.k === 'meta' && meta && typeof meta[op.key] === 'string') {
      let v;
      try {
        v = JSON.parse(meta[op.key]);
      } catch {
        continue;
      }
      put(meta, op.key, emitJson(applyJsonEdit(v, op.edit)));
    }
  }
  if (reseal && meta) setChecksums(order);
  // A checksum over the metadata and the tensor table (bundle format 2) is recomputed after a re-seal or a
  // change of the table (a resized tensor moves the offsets of all after it); header edits come after it.
  if (meta && sealMetadata && (reseal || checksumsTouched)) {
    try {
      sealMetadata(meta, header);
    } catch {
      // a metadata value the sealer cannot encode (an edit made it so): left unsealed
    }
  }
  let root = header;
  for (const op of ops) {
    if (op.k === 'hjson') root = applyJsonEdit(root, op.edit);
    if (op.k === 'pad') pad = op.pad;
  }
  return joinSafetensors(emitJson(root), newData, pad);
}

// ------------------------------------------------------------------------------------------ running a case

/**
 * Run `fn` and say how it ended: a value, a typed error (its code), or a CRASH — any other exception, which
 * in this project is a bug (the reader must turn every bad input into an UltraSketchError).
 */
export function outcome(fn, isTyped) {
  try {
    return { kind: 'ok', value: fn() };
  } catch (err) {
    if (isTyped(err)) return { kind: 'typed', code: err.code, message: err.message };
    return { kind: 'crash', error: err, name: err?.name ?? typeof err, message: String(err?.message ?? err), stack: String(err?.stack ?? '') };
  }
}

/** Walk a returned value (iteratively: it may hold deeply nested JSON from a file) calling `visit` on each node. */
function walk(value, visit) {
  const seen = new Set();
  const stack = [value];
  while (stack.length) {
    const x = stack.pop();
    if (x === null || (typeof x !== 'object' && typeof x !== 'function')) {
      visit(x);
      continue;
    }
    if (seen.has(x)) continue;
    seen.add(x);
    visit(x);
    if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) continue;
    if (x instanceof Map) {
      for (const [k, v] of x) stack.push(v, k);
    } else if (x instanceof Set) {
      for (const v of x) stack.push(v);
    } else if (typeof x === 'object') {
      for (const k of Object.keys(x)) stack.push(x[k], k);
    }
  }
}

/**
 * Bytes of memory the value keeps that are not the input's: the distinct ArrayBuffers behind every typed array
 * it reaches (a view into the input costs nothing). This is what "allocates at most the input's size (times
 * the format's expansion) plus a limit" means for what a reader returns.
 */
export function retainedBytes(value, input) {
  const buffers = new Set();
  walk(value, (x) => {
    if (ArrayBuffer.isView(x) && x.buffer !== input.buffer) buffers.add(x.buffer);
    else if (x instanceof ArrayBuffer && x !== input.buffer) buffers.add(x);
  });
  let n = 0;
  for (const b of buffers) n += b.byteLength;
  return n;
}

/** A digest of everything a value holds (keys, numbers, strings, bytes), to compare two parses. */
export function digest(value) {
  let h = 2166136261;
  const enc = new TextEncoder();
  walk(value, (x) => {
    if (ArrayBuffer.isView(x)) h = fnv(h, new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    else if (x instanceof Map) h = fnv(h, enc.encode(`M${x.size}`));
    else if (x !== null && typeof x === 'object') h = fnv(h, enc.encode(Array.isArray(x) ? `A${x.length}` : `O${Object.keys(x).join('\u0000')}`));
    else h = fnv(h, enc.encode(`${typeof x}:${String(x)}`));
  });
  return h;
}

/** What two runs of the same case must agree on: the kind, the code and message, or the value's digest. */
export function signature(o) {
  if (o.kind === 'ok') return `ok:${digest(o.value)}`;
  if (o.kind === 'typed') return `typed:${o.code}:${o.message}`;
  return `crash:${o.name}:${o.message}`;
}

/** A crash's identity for de-duplication: the error's class and the first stack frame inside the project. */
export function crashKey(o) {
  const frame = o.stack.split('\n').find((l) => /packages\/|bench\//.test(l)) ?? '';
  return `${o.name}: ${o.message.replace(/\d+/g, 'N').slice(0, 80)} @ ${frame.trim().replace(/:\d+:\d+\)?$/, '')}`;
}

/** The seed of case `index` of reader `name` in a run with seed `seed`: cases are independent and replayable. */
export function caseSeed(seed, name, index) {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  h = Math.imul(h ^ index, 2654435761);
  h ^= h >>> 15;
  return (Math.imul(h, 2246822519) ^ (h >>> 13)) | 0;
}

/** Case `index`'s plan: the first value fast-check generates from the arbitrary with that case's seed. */
export function planFor(arb, seed, name, index) {
  return fc.sample(arb, { seed: caseSeed(seed, name, index), numRuns: 1 })[0];
}

export { fc };

/**
 * The properties of one case, as the tests check them: the reader ends in a value or a typed error (a crash is
 * reported unless `tolerate(o)` says it is a known, reported bug), does not write to its input, keeps and
 * allocates at most `reader.expansion` × input + `slack` bytes of ArrayBuffer memory, and reads the same
 * input the same way twice. Returns the outcome and the list of violated properties (empty: all hold).
 */
export function checkPlan(reader, seeds, plan, { isTyped, slack, tolerate = () => false }) {
  const { bytes, opts } = reader.input(seeds, plan);
  const copy = bytes.slice();
  const before = process.memoryUsage().arrayBuffers;
  const o = outcome(() => reader.parse(bytes, opts), isTyped);
  const grown = process.memoryUsage().arrayBuffers - before;
  const problems = [];
  if (o.kind === 'crash' && !tolerate(o)) problems.push(`crash: ${o.stack}`);
  const bound = reader.expansion * bytes.byteLength + slack;
  const kept = o.kind === 'ok' ? retainedBytes(o.value, bytes) : 0;
  if (kept > bound) problems.push(`keeps ${kept} bytes, more than ${reader.expansion} × ${bytes.byteLength} + ${slack}`);
  if (grown > bound) problems.push(`ArrayBuffer memory grew by ${grown} bytes, more than ${reader.expansion} × ${bytes.byteLength} + ${slack}`);
  if (Buffer.compare(copy, bytes) !== 0) problems.push('the reader modified its input');
  const again = reader.input(seeds, plan);
  const o2 = outcome(() => reader.parse(again.bytes, again.opts), isTyped);
  if (signature(o2) !== signature(o)) problems.push(`nondeterministic: ${signature(o).slice(0, 200)} then ${signature(o2).slice(0, 200)}`);
  return { outcome: o, problems, bytes };
}
