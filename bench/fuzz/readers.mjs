/**
 * The readers under fuzz: one entry per reader, so adding one (the GGUF and Hugging Face readers when they land)
 * is one more entry. An entry has
 * - `name`;
 * - `seeds()`: the real, valid files cases start from (async: a bundle is made by compressing a model);
 * - `arbitrary(seeds)`: a fast-check arbitrary of plans {seed, struct, bytes, opts} built from the seeds'
 *   structure (see lib.mjs);
 * - `input(seeds, plan)`: the plan applied: the bytes to read and the reader's options;
 * - `parse(bytes, opts, index)`: the reader itself, as the toolkit calls it (`index`, the case's number, is
 *   for the harness's own self-test readers only);
 * - `expansion`: how many bytes the reader may legitimately keep per input byte (the allocation bound is
 *   expansion × input + ALLOCATION_SLACK_BYTES), with the reason next to it.
 *
 * `fuzzReaders(m)` takes the modules to test, so the tests pass the TypeScript sources and bench/fuzz.mjs the
 * built dist/: m = {core, format, model, pipeline?, sharedFile(rel) → bytes | undefined, bundleSeeds() →
 * Promise<[{label, bytes}]>, registerCodecs?()}.
 */
import {
  applyByteOps,
  applyJsonEdit,
  applySafetensorsStruct,
  emitJson,
  jsonEditArb,
  jsonPaths,
  byteOpArb,
  fc,
  int32Value,
  safetensorsInfo,
  safetensorsStructArb,
  SAFETENSORS_HOT,
  F32_EDGES,
} from './lib.mjs';

/**
 * Memory a read may use beyond its proportional share: object headers, Maps, the Tokenizer's fixed tables and
 * working buffers, one codec's scratch. Far below what a hostile size field could make a reader allocate.
 */
export const ALLOCATION_SLACK_BYTES = 16 * 1024 * 1024;

/** Most bytes a plan's "make the file the size its header now claims" may grow a seed to (cases stay cheap). */
const FIT_MAX_BYTES = 8 * 1024 * 1024;

const LEGACY_FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];

/**
 * A plan over several seeds: pick one (by `weights`), then up to 3 structure edits, and in `byteShare` plans of
 * 5 also 1–3 raw byte edits.
 */
function planArb(seeds, perSeed, { weights, byteShare = 3 } = {}) {
  const pick = weights ? fc.oneof(...seeds.map((_, i) => ({ weight: weights[i], arbitrary: fc.constant(i) }))) : fc.nat({ max: seeds.length - 1 });
  return pick.chain((i) => {
    const p = perSeed(seeds[i], i);
    return fc.record({
      seed: fc.constant(i),
      struct: p.struct ? fc.array(p.struct, { maxLength: 3 }) : fc.constant([]),
      bytes: fc.oneof({ weight: 5 - byteShare, arbitrary: fc.constant([]) }, { weight: byteShare, arbitrary: fc.array(p.bytes, { minLength: 1, maxLength: 3 }) }),
      opts: p.opts ?? fc.constant({}),
    });
  });
}

/** Resize a llama2.c file to the size its (edited) header describes, when that is a sane size. */
function fitLlama2c(b, format) {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const versioned = b.byteLength >= 41 && v.getUint32(0, true) === format.LLAMA2C_MAGIC;
  const base = versioned ? 8 : 0;
  if (b.byteLength < base + 28) return b;
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = Array.from({ length: 7 }, (_, i) => v.getInt32(base + 4 * i, true));
  const sharedClassifier = versioned ? v.getUint8(36) === 1 : vocab > 0;
  const config = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier };
  const want = versioned ? format.v2FileBytes(config, v.getInt32(37, true)) : format.legacyFileBytes(config);
  if (!Number.isSafeInteger(want) || want < 0 || want > FIT_MAX_BYTES) return b;
  const out = new Uint8Array(want);
  out.set(b.subarray(0, Math.min(want, b.byteLength)));
  return out;
}

function llama2cReader(m, layout) {
  const { format, model } = m;
  const v2 = layout === 'v2';
  // Header fields: offset and width. v2: magic, version, the seven ints, shared_classifier, group_size.
  const fields = v2
    ? [
        { f: 'magic', at: 0, w: 'u32' },
        { f: 'version', at: 4, w: 'i32' },
        ...LEGACY_FIELDS.map((f, i) => ({ f, at: 8 + 4 * i, w: 'i32' })),
        { f: 'shared_classifier', at: 36, w: 'u8' },
        { f: 'group_size', at: 37, w: 'i32' },
      ]
    : LEGACY_FIELDS.map((f, i) => ({ f, at: 4 * i, w: 'i32' }));
  return {
    name: v2 ? 'llama2c-v2' : 'llama2c-legacy',
    describe: v2
      ? 'readLlama2cCheckpoint + modelFromLlama2c on version-2 (Q8_0) files: stories260K re-quantized by the writer (shared and separate classifier), stories3M-q80.bin as exported by llama2.c'
      : 'readLlama2cCheckpoint + modelFromLlama2c on legacy f32 files: stories260K.bin, and stories260K re-written with a separate classifier',
    // Legacy: every float is copied once (1×). v2: each stored int8 becomes a 4-byte float (4×).
    expansion: v2 ? 4 : 1,
    async seeds() {
      const real = m.sharedFile('models/stories260K/stories260K.bin');
      if (!real) return [];
      const ckpt = format.readLlama2cCheckpoint(real, 'stories260K.bin');
      const separate = { ...ckpt.config, sharedClassifier: false };
      const weightsSeparate = { ...ckpt.weights, classifier: ckpt.weights.tokenEmbedding.slice() };
      if (!v2) return [{ label: 'stories260K.bin', bytes: real }, { label: 'stories260K, separate classifier', bytes: format.writeLlama2cLegacy(separate, weightsSeparate) }];
      const seeds = [
        { label: 'stories260K as v2, group 32', bytes: format.writeLlama2cV2(ckpt.config, ckpt.weights, 32) },
        { label: 'stories260K as v2, separate classifier, group 64', bytes: format.writeLlama2cV2(separate, weightsSeparate, 64) },
      ];
      const q80 = m.sharedFile('models/stories3M/stories3M-q80.bin');
      if (q80) seeds.push({ label: 'stories3M-q80.bin', bytes: q80 });
      return seeds;
    },
    arbitrary(seeds) {
      // The 3.3 MB stories3M file is read in one case of ten: it is the one real export.py v2 file, but slow.
      const weights = seeds.map((s) => (s.label.startsWith('stories3M') ? 1 : 5));
      return planArb(
        seeds,
        (s) => ({
          struct: fc.record({ k: fc.constant('field'), field: fc.nat({ max: fields.length - 1 }), value: int32Value(), fit: fc.boolean() }),
          bytes: byteOpArb(s.bytes.byteLength, [
            ...fields.map(({ at, w }) => ({ at, w })),
            // a float in the first norm (legacy: the embedding) and, in v2, the first scale of the embedding
            { at: v2 ? 256 : 28, w: 'f32' },
          ]),
        }),
        { weights },
      );
    },
    input(seeds, plan) {
      let b = seeds[plan.seed].bytes;
      for (const op of plan.struct) {
        const { at, w } = fields[op.field];
        b = applyByteOps(b, [{ k: 'int', at, w, ...op.value }]);
        if (op.fit) b = fitLlama2c(b, format);
      }
      return { bytes: applyByteOps(b, plan.bytes), opts: {} };
    },
    parse(bytes) {
      const ckpt = format.readLlama2cCheckpoint(bytes, 'fuzz.bin');
      return { ckpt, weights: model.modelFromLlama2c(ckpt, 'fuzz.bin') };
    },
  };
}

/** Offsets of each entry's score and length in a llama2.c tokenizer file (of a valid seed). */
function tokenizerEntries(bytes, vocab) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let at = 4;
  for (let i = 0; i < vocab; i++) {
    out.push(at);
    at += 8 + v.getInt32(at + 4, true);
  }
  return out;
}

/** Text every tokenizer case encodes and decodes: ASCII, multi-byte characters, byte fallback, a newline. */
const TOKENIZER_TEXT = 'Once upon a time, Lily saw a 猫 and a 🍰.\nThe end';

function tokenizerReader(m) {
  const { format, model } = m;
  return {
    name: 'tokenizer',
    describe: 'readLlama2cTokenizer + Tokenizer.fromLlama2c + encode/decode of a short text, on tok512.bin and tok4096.bin',
    // The file's pieces are copied by the reader and again by the Tokenizer, which also keeps a decoded copy of
    // each and a float per entry (each entry is ≥ 8 file bytes): at most about 4 bytes kept per file byte.
    expansion: 4,
    async seeds() {
      const out = [];
      for (const [rel, vocab] of [
        ['models/stories260K/tok512.bin', 512],
        ['models/stories3M/tok4096.bin', 4096],
      ]) {
        const bytes = m.sharedFile(rel);
        if (bytes) out.push({ label: rel.split('/').pop(), bytes, vocab, entries: tokenizerEntries(bytes, vocab) });
      }
      return out;
    },
    arbitrary(seeds) {
      return planArb(seeds, (s) => ({
        struct: fc.record({
          k: fc.constant('entry'),
          i: fc.oneof(fc.constantFrom(0, 1, 2, 3, 258, s.vocab - 1), fc.nat({ max: s.vocab - 1 })),
          f: fc.constantFrom('score', 'len'),
          value: int32Value(),
          score: fc.constantFrom(...F32_EDGES),
        }),
        bytes: byteOpArb(s.bytes.byteLength, [{ at: 0, w: 'i32' }, ...s.entries.slice(0, 8).flatMap((at) => [{ at, w: 'f32' }, { at: at + 4, w: 'i32' }])]),
        opts: fc.oneof(
          { weight: 8, arbitrary: fc.constant({}) },
          { weight: 1, arbitrary: fc.record({ vocab: fc.constantFrom(0, -1, 1, 2, 3, s.vocab - 1, s.vocab + 1, 2 ** 22, 2 ** 22 + 1, 2 ** 31 - 1, 2 ** 53, Number.NaN, 1.5, Infinity) }) },
        ),
      }));
    },
    input(seeds, plan) {
      const s = seeds[plan.seed];
      let b = s.bytes;
      for (const op of plan.struct) {
        const at = s.entries[op.i];
        b = applyByteOps(b, [op.f === 'score' ? { k: 'int', at, w: 'f32', v: op.score } : { k: 'int', at: at + 4, w: 'i32', ...op.value }]);
      }
      return { bytes: applyByteOps(b, plan.bytes), opts: { vocab: plan.opts.vocab ?? s.vocab } };
    },
    parse(bytes, opts) {
      const file = format.readLlama2cTokenizer(bytes, opts.vocab, 'fuzz.tok');
      const tokenizer = model.Tokenizer.fromLlama2c(file, 'fuzz.tok');
      const ids = tokenizer.encode(TOKENIZER_TEXT, { bos: true });
      return { file, tokenizer, ids, text: tokenizer.decode(ids) };
    },
  };
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

function safetensorsReader(m) {
  const { format } = m;
  return {
    name: 'safetensors',
    describe: 'readSafetensors + every float tensor read as float32, on stories260K/hf/model.safetensors and a bundle',
    // Tensors are views into the file; reading F16/BF16 as float32 doubles them (2×).
    expansion: 2,
    async seeds() {
      const out = [];
      const hf = m.sharedFile('models/stories260K/hf/model.safetensors');
      if (hf) out.push({ label: 'stories260K/hf/model.safetensors', bytes: hf });
      const bundles = await m.bundleSeeds();
      if (bundles.length) out.push({ ...bundles[0], label: `${bundles[0].label} (as plain safetensors)` });
      return out.map((s) => ({ ...s, info: safetensorsInfo(s.bytes) }));
    },
    arbitrary(seeds) {
      return planArb(seeds, (s) => ({ struct: safetensorsStructArb(s.info), bytes: byteOpArb(s.bytes.byteLength, SAFETENSORS_HOT) }));
    },
    input(seeds, plan) {
      return { bytes: applyByteOps(applySafetensorsStruct(seeds[plan.seed].bytes, plan.struct), plan.bytes), opts: {} };
    },
    parse(bytes) {
      const file = format.readSafetensors(bytes, 'fuzz.safetensors');
      const floats = [];
      for (const [name, t] of file.tensors) if (FLOAT_DTYPES.has(t.dtype)) floats.push(format.tensorDataToFloat32(t, name));
      return { file, floats };
    },
  };
}

/**
 * Offsets of a GGUF file's count, length, type and offset fields (and of one float value), found by walking a
 * valid seed's header independently of the reader: the places where a hostile number does the most harm.
 */
function ggufFields(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields = [{ at: 4, w: 'u32' }, { at: 8, w: 'u64' }, { at: 16, w: 'u64' }];
  const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let at = 24;
  const str = (keep) => {
    if (keep) fields.push({ at, w: 'u64' });
    at += 8 + Number(v.getBigUint64(at, true));
  };
  const value = (type, keep) => {
    if (type === 8) str(keep);
    else if (type === 9) {
      const elem = v.getUint32(at, true);
      const count = Number(v.getBigUint64(at + 4, true));
      fields.push({ at, w: 'u32' }, { at: at + 4, w: 'u64' });
      at += 12;
      for (let i = 0; i < count; i++) value(elem, i < 4);
    } else {
      if (type === 6 && keep) fields.push({ at, w: 'f32' });
      at += SCALAR[type];
    }
  };
  const kvs = Number(v.getBigUint64(16, true));
  for (let i = 0; i < kvs; i++) {
    str(true);
    fields.push({ at, w: 'u32' });
    const type = v.getUint32(at, true);
    at += 4;
    value(type, true);
  }
  const tensors = Number(v.getBigUint64(8, true));
  for (let i = 0; i < tensors; i++) {
    str(true);
    const dims = v.getUint32(at, true);
    fields.push({ at, w: 'u32' });
    at += 4;
    for (let d = 0; d < dims; d++, at += 8) fields.push({ at, w: 'u64' });
    fields.push({ at, w: 'u32' }, { at: at + 4, w: 'u64' });
    at += 12;
  }
  return fields;
}

function ggufReader(m) {
  const { format } = m;
  return {
    name: 'gguf',
    describe: 'readGguf + every tensor decoded to float32, on the stories260K GGUF files (f32, q8_0) and stories3M (q4_0, q4_k_m, q5_k_m, q6_k)',
    // Decoding widens each quantized block to float32: Q4_0 and Q4_K blocks give 32 × 4 bytes from 18 (7.1×), the
    // other types less; metadata arrays are copied (1×).
    expansion: 8,
    async seeds() {
      const out = [];
      for (const rel of [
        'models/stories260K/gguf/stories260K-f32.gguf',
        'models/stories260K/gguf/stories260K-q8_0.gguf',
        'models/stories3M/gguf/stories3M-q4_0.gguf',
        'models/stories3M/gguf/stories3M-q4_k_m.gguf',
        'models/stories3M/gguf/stories3M-q5_k_m.gguf',
        'models/stories3M/gguf/stories3M-q6_k.gguf',
      ]) {
        const bytes = m.sharedFile(rel);
        if (bytes) out.push({ label: rel.split('/').pop(), bytes, fields: ggufFields(bytes) });
      }
      return out;
    },
    arbitrary(seeds) {
      // The 2–3 MB stories3M files are read in one case of four (each decode is ~3M values).
      const weights = seeds.map((s) => (s.label.startsWith('stories3M') ? 1 : 6));
      return planArb(seeds, (s) => ({ bytes: byteOpArb(s.bytes.byteLength, s.fields) }), { weights, byteShare: 4 });
    },
    input(seeds, plan) {
      return { bytes: applyByteOps(seeds[plan.seed].bytes, plan.bytes), opts: {} };
    },
    parse(bytes) {
      const file = format.readGguf(bytes, 'fuzz.gguf');
      const floats = [];
      for (const name of file.tensors.keys()) floats.push(format.getGgufFloat32(file, name, 'fuzz.gguf'));
      return { file, floats };
    },
  };
}

/**
 * The bundle's metadata checksum (format version 2), recomputed with the format's own function after an edit so
 * that the edit reaches the checks behind it. Undefined when the format has none.
 */
export function bundleSealer(format) {
  const { metadataChecksum, USK_METADATA_CHECKSUM_KEY: key } = format;
  if (typeof metadataChecksum !== 'function' || typeof key !== 'string') return undefined;
  return (meta, header) => {
    if (!Object.prototype.hasOwnProperty.call(meta, key)) return;
    const table = Object.keys(header)
      .filter((k) => k !== '__metadata__')
      .map((name) => ({ name, dtype: header[name].dtype, shape: header[name].shape, dataOffsets: header[name].data_offsets }));
    meta[key] = metadataChecksum(meta, table);
  };
}

/** Bundles: the format layer (`readBundle`) and the pipeline's full load (`loadBundleFromBytes`). */
function bundleReader(m, level) {
  const pipeline = level === 'pipeline';
  return {
    name: pipeline ? 'bundle-load' : 'bundle',
    describe: pipeline
      ? "@ultrasketch/pipeline loadBundleFromBytes (readBundle, model config, tensors against it, embedded tokenizer, accounting) on bundles compress() made from stories260K"
      : '@ultrasketch/format readBundle (safetensors, metadata, checksums, every codec validating its tensors) on real bundles',
    // The norms are copied out as float32 (1×); a codec may widen a stored component (f16 scales to f32: 2×),
    // and the full load adds the Tokenizer (4× its small tensor). The real seeds keep under 1×.
    expansion: 4,
    async seeds() {
      return (await m.bundleSeeds()).map((s) => ({ ...s, info: safetensorsInfo(s.bytes) }));
    },
    arbitrary(seeds) {
      return planArb(seeds, (s) => ({
        struct: safetensorsStructArb(s.info),
        bytes: byteOpArb(s.bytes.byteLength, SAFETENSORS_HOT),
        // Re-seal (fix every checksum after the edits) half the time, so edits reach the codecs; skip
        // verification in one case of four, as `--no-verify` does.
        opts: fc.record({ reseal: fc.boolean(), verify: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }),
      }), { byteShare: 1 });
    },
    input(seeds, plan) {
      const b = applySafetensorsStruct(seeds[plan.seed].bytes, plan.struct, { reseal: plan.opts.reseal, sealMetadata: bundleSealer(m.format) });
      return { bytes: applyByteOps(b, plan.bytes), opts: { verifyChecksums: plan.opts.verify } };
    },
    parse(bytes, opts) {
      return pipeline ? m.pipeline.loadBundleFromBytes(bytes, 'fuzz.usk', opts) : m.format.readBundle(bytes, 'fuzz.usk', opts);
    },
  };
}

/**
 * The JSON files of a Hugging Face directory, read as the pipeline reads them: `parseJsonFile` (strict JSON:
 * size, duplicate keys, nesting) and then either the model description (`hf-config`: describeHfConfig →
 * configFromDescription) or the tokenizer (`hf-tokenizer`: HfTokenizer over @huggingface/tokenizers, then one
 * encode and decode, since a tokenizer.json can be well-formed JSON the library still trips over).
 * Edits are JSON-aware (paths of the real file: delete, set, retype, wrap, nudge, duplicate, rename) plus raw
 * byte edits of the emitted text.
 */
function hfJsonReader(m, kind) {
  const files =
    kind === 'config'
      ? ['models/stories260K/hf/config.json', 'models/stories3M/hf/config.json', 'models/stories3M/hf-sharded/model.safetensors.index.json']
      : ['models/stories260K/hf/tokenizer.json'];
  const enc = new TextEncoder();
  return {
    name: `hf-${kind}`,
    describe:
      kind === 'config'
        ? 'Hugging Face config.json (and a shard index) → parseJsonFile → describeHfConfig / parseHfShardIndex → configFromDescription, on the stories260K/stories3M hf directories'
        : 'Hugging Face tokenizer.json → parseJsonFile → HfTokenizer (@huggingface/tokenizers) → encode + decode, on the stories260K hf tokenizer',
    // The parsed JSON and the library's tables: a few times the text (vocabulary maps, merges as pairs).
    expansion: kind === 'config' ? 8 : 40,
    async seeds() {
      const out = [];
      for (const rel of files) {
        const bytes = m.sharedFile(rel);
        if (!bytes) continue;
        const json = JSON.parse(new TextDecoder().decode(bytes));
        out.push({ label: rel.split('/').slice(-2).join('/'), bytes, json, paths: jsonPaths(json, 4, kind === 'config' ? 2000 : 600) });
      }
      return out;
    },
    arbitrary(seeds) {
      return planArb(seeds, (s) => ({ struct: jsonEditArb(s.paths, ['architectures', 'model_type', 'rope_scaling', 'head_dim', 'vocab', 'merges']), bytes: byteOpArb(s.bytes.byteLength) }), {
        byteShare: 2,
      });
    },
    input(seeds, plan) {
      const seed = seeds[plan.seed];
      let bytes = seed.bytes;
      if (plan.struct.length > 0) {
        let json = structuredClone(seed.json);
        for (const e of plan.struct) json = applyJsonEdit(json, e);
        bytes = enc.encode(emitJson(json));
      }
      return { bytes: applyByteOps(bytes, plan.bytes), opts: { index: seed.label.endsWith('index.json') } };
    },
    parse(bytes, opts) {
      const source = kind === 'config' ? (opts.index ? 'model.safetensors.index.json' : 'config.json') : 'tokenizer.json';
      const json = m.pipeline.parseJsonFile(bytes, source);
      if (kind === 'config') {
        if (opts.index) return m.format.parseHfShardIndex(json, source);
        return m.model.configFromDescription(m.format.describeHfConfig(json, source), { source });
      }
      const tok = new m.model.HfTokenizer(json, { source });
      const ids = tok.encode('Once upon a time, Lily saw a big dog. 🐶', { bos: true });
      return { vocab: tok.vocabSize, ids, text: tok.decode(ids) };
    },
  };
}

export function fuzzReaders(m) {
  // readBundle resolves each weight's codec by id, so the codecs must be registered (the pipeline does this
  // itself before loading a bundle; the format layer alone does not).
  m.registerCodecs?.();
  const readers = [llama2cReader(m, 'legacy'), llama2cReader(m, 'v2'), tokenizerReader(m), safetensorsReader(m), bundleReader(m, 'format')];
  if (m.format.readGguf) readers.push(ggufReader(m));
  if (m.pipeline) readers.push(bundleReader(m, 'pipeline'));
  if (m.pipeline?.parseJsonFile && m.format.describeHfConfig && m.model.HfTokenizer) readers.push(hfJsonReader(m, 'config'), hfJsonReader(m, 'tokenizer'));
  return readers;
}

/**
 * Bundles made by the pipeline from stories260K: one per codec family, so every codec's `fromTensors`
 * validation is fuzzed (rtn with groups, binary signs, sketch, LittleBit, HashedNets).
 */
export async function compressedBundleSeeds(pipeline, modelPath) {
  const plans = [
    ['rtn 4-bit', { codec: 'rtn', codecOptions: { bits: 4 } }],
    ['binary', { codec: 'binary' }],
    ['sketch 1 bpw', { codec: 'sketch', codecOptions: { bpw: 1, groups: 4, state: 'int8' } }],
    ['littlebit 1.2 bpw', { codec: 'littlebit', codecOptions: { bpw: 1.2 }, smallMatrix: 'keep' }],
    ['hashednets 1 bpw', { codec: 'hashednets', codecOptions: { bpw: 1 } }],
  ];
  const out = [];
  for (const [label, options] of plans) {
    const { bytes } = await pipeline.compress({ model: modelPath, ...options });
    out.push({ label: `stories260K ${label}`, bytes });
  }
  return out;
}

/**
 * Two synthetic readers for checking the harness itself (`bench/fuzz.mjs --self-test`), never run otherwise:
 * `selftest-hang` spins forever on every case whose index is 3 mod 7; `selftest-faults` throws a TypeError on
 * cases 1 mod 5 (a crash), keeps 64 MiB more than it may on cases 2 mod 5 (an allocation violation), and reads
 * everything else. Their counts are known exactly, so a test can check what the harness reports.
 */
export function selfTestReaders() {
  const seeds = async () => [{ label: 'eight bytes', bytes: new Uint8Array(8) }];
  const arbitrary = () => fc.nat({ max: 255 }).map((v) => ({ seed: 0, struct: [], bytes: [{ k: 'set', at: 0, v }], opts: {} }));
  const input = (s, plan) => ({ bytes: applyByteOps(s[0].bytes, plan.bytes), opts: {} });
  // The harness passes the case's index as parse's third argument (real readers ignore it).
  return [
    {
      name: 'selftest-hang',
      describe: 'harness check: spins forever on cases 3 mod 7',
      expansion: 1,
      seeds,
      arbitrary,
      input,
      parse(bytes, _opts, i) {
        // spins (uses CPU) forever, as a reader stuck in a loop would
        if (i % 7 === 3) for (let k = 0; k >= 0; k = (k + 1) % 2);
        return { i, n: bytes.byteLength };
      },
    },
    {
      name: 'selftest-faults',
      describe: 'harness check: a TypeError on cases 1 mod 5, 64 MiB too many kept on cases 2 mod 5',
      expansion: 1,
      seeds,
      arbitrary,
      input,
      parse(bytes, _opts, i) {
        if (i % 5 === 1) return null.crash;
        if (i % 5 === 2) return { big: new Uint8Array(ALLOCATION_SLACK_BYTES + 64 * 1024 * 1024) };
        return { n: bytes.byteLength };
      },
    },
  ];
}
