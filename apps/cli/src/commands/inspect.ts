import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import {
  LIMITS,
  LLAMA2C_V2_HEADER_BYTES,
  type Llama2cCheckpoint,
  isLlama2cVersioned,
  llama2cShapes,
  readLlama2cCheckpoint,
  readLlama2cTokenizer,
  readSafetensors,
} from '@ultrasketch/format';
import { type LinearKind, type ModelConfig, TensorNames, modelFromLlama2c, parameterCount } from '@ultrasketch/model';
import {
  type BundleInspection,
  type ModelSource,
  detectModelPath,
  inspectLoadedBundle,
  loadBundleFromBytes,
  openModelSource,
  readFileChecked,
  readQualitySection,
  readTrainingSection,
} from '@ultrasketch/pipeline';
import type { Command, CommandIO } from '../command.js';
import { fmtBytes, fmtInt, table, writeJson } from '../io.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'describe a .usk bundle, a model (llama2.c, HF directory, GGUF), a safetensors file or a tokenizer: config, tensors, bits, parameters, bytes',
  description:
    'Recognises the file by its content: a llama2.c checkpoint (legacy float32 or version-2 int8 "ak42"), a ' +
    'safetensors file, a .usk bundle, or a llama2.c tokenizer file. For a checkpoint it prints the layout, ' +
    'the model config, every tensor in file order (canonical Hugging Face name, llama2.c name, shape, stored ' +
    'dtype, offset and bytes in the file), the parameter count (a tied classifier counted once), the file ' +
    'size and bits per parameter (8 × file bytes / parameters). For safetensors: the tensor table from the ' +
    'header and the __metadata__. For a tokenizer: vocabulary size and a few statistics.\n\n' +
    'For a .usk bundle (validated and checksummed as when it is run): every tensor with its codec, options, ' +
    'shape, stored bits and bits per weight, and the totals of ../shared/docs/methods.md §4 recomputed from the file: ' +
    'bpwLinears (bits of the compressed linears ÷ their weights), bitsPerParam (8 × file bytes ÷ all ' +
    'parameters), fileBytes, params, and the linears kept dense; plus provenance and stored quality. ' +
    'With --json: {"kind": "usk-bundle", "totals": {...}, "tensors": [...], ...}.\n\n' +
    'For a model in the formats people have (an HF directory, a .safetensors file with its config.json beside it, a ' +
    'GGUF file; docs/inputs.md): the architecture, the config as the forward runs it and as the source states it ' +
    '(with the keys that took their documented defaults), the stored types, the parameter count, the tokenizer ' +
    '(kind, vocabulary, BOS/EOS), every file with its size, the weights\' SHA-256 (for shards: of the sorted ' +
    'per-shard hashes), and every tensor (name, shape, type, bytes). Only headers are read, so this is quick on ' +
    'multi-GB models (apart from the SHA-256, which reads the weights once). With --json: {"kind": "model", ...}.\n\n' +
    'A file is validated as it is read (a malformed file gives a typed error naming the problem).',
  positionals: [{ name: 'file', description: 'the file (or HF model directory) to describe' }],
  options: [
    { name: 'vocab', kind: 'int', valueName: 'N', min: 1, description: 'for a tokenizer file: check it has exactly N entries (the model\'s vocab_size)', defaultText: 'count the entries' },
    { name: 'json', kind: 'boolean', default: false, description: 'print one JSON object instead of tables' },
  ],
  examples: [
    'ultrasketch inspect ../shared/models/stories3M/stories3M-q80.bin',
    'ultrasketch inspect ../shared/models/stories260K/tok512.bin --json',
    'ultrasketch inspect stories260K-rtn8.usk --json',
    'ultrasketch inspect ../shared/models/stories3M/hf-sharded',
    'ultrasketch inspect ../shared/models/stories3M/gguf/stories3M-q4_k_m.gguf --json',
  ],

  async run({ positionals, options }, io) {
    const path = positionals.file!;
    const json = options.json === true;
    // Models in the formats people have are described from their headers, never read whole.
    let modelKind: string | undefined;
    try {
      modelKind = detectModelPath(path);
    } catch (err) {
      // A directory or special file that is no model: the reader below says what it is, typed.
      if (!(err instanceof UltraSketchError) || err.code === ErrorCodes.FILE_NOT_FOUND) throw err;
    }
    if (modelKind === 'hf-directory' || modelKind === 'gguf' || (modelKind === 'safetensors' && existsSync(join(dirname(path), 'config.json')))) {
      return inspectModel(path, json, io);
    }
    const bytes = readFileChecked(path, 'file');
    const kind = detectKind(path, bytes);
    if (kind === 'safetensors') {
      if (isUskBundle(path, bytes)) return inspectUsk(path, bytes, json, io);
      return inspectSafetensors(path, bytes, json, io);
    }
    if (kind === 'tokenizer') return inspectTokenizer(path, bytes, options.vocab as number | undefined, json, io);
    return inspectCheckpoint(path, bytes, json, io);
  },
};

type Kind = 'safetensors' | 'llama2c' | 'tokenizer';

function detectKind(path: string, bytes: Uint8Array): Kind {
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors' || ext === '.usk') return 'safetensors';
  if (isLlama2cVersioned(bytes)) return 'llama2c';
  if (bytes.byteLength >= 9 && bytes[8] === 0x7b) {
    const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (n >= 2n && n <= BigInt(bytes.byteLength - 8)) return 'safetensors';
  }
  if (/^(tok.*|tokenizer)\.bin$/i.test(basename(path)) || countTokenizerEntries(bytes) !== undefined) return 'tokenizer';
  return 'llama2c';
}

/**
 * The number of entries of a llama2.c tokenizer file (int32 max_token_length, then per entry float32 score,
 * int32 length, bytes), when the entries tile the file exactly; undefined otherwise. Bounded by the file size.
 */
export function countTokenizerEntries(bytes: Uint8Array): number | undefined {
  if (bytes.byteLength < 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxLen = view.getInt32(0, true);
  if (maxLen <= 0 || maxLen > LIMITS.maxTokenBytes) return undefined;
  let offset = 4;
  let count = 0;
  while (offset + 8 <= bytes.byteLength && count < LIMITS.maxVocab) {
    const len = view.getInt32(offset + 4, true);
    if (len < 0 || len > maxLen || offset + 8 + len > bytes.byteLength) return undefined;
    offset += 8 + len;
    count++;
  }
  return offset === bytes.byteLength && count >= 3 ? count : undefined;
}

// ------------------------------------------------------------------------------------------- llama2.c

interface TensorRow {
  name: string;
  llama2cName: string;
  shape: number[];
  dtype: 'F32' | 'Q8_0';
  offset: number;
  bytes: number;
}

interface RegionRow {
  what: string;
  offset: number;
  bytes: number;
}

/** The tensors of a llama2.c file in file order, with their byte ranges (from the config alone). */
export function llama2cFileLayout(ckpt: Llama2cCheckpoint, config: ModelConfig): { tensors: TensorRow[]; regions: RegionRow[] } {
  const c = ckpt.config;
  const s = llama2cShapes(c);
  const L = c.nLayers;
  const v2 = ckpt.layout === 'v2-q8_0';
  const group = ckpt.groupSize ?? 0;
  const tensors: TensorRow[] = [];
  const regions: RegionRow[] = [];
  let offset = 0;
  const region = (what: string, bytes: number) => {
    regions.push({ what, offset, bytes });
    offset += bytes;
  };
  const f32 = (name: string, llama2cName: string, shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, llama2cName, shape, dtype: 'F32', offset, bytes: 4 * n });
    offset += 4 * n;
  };
  const matrix = (name: string, llama2cName: string, shape: number[]) => {
    if (!v2) return f32(name, llama2cName, shape);
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = n + 4 * (n / group);
    tensors.push({ name, llama2cName, shape, dtype: 'Q8_0', offset, bytes });
    offset += bytes;
  };
  const linears: Array<[string, LinearKind, number[]]> = [
    ['wq', 'q', [c.dim, c.dim]],
    ['wk', 'k', [s.kvDim, c.dim]],
    ['wv', 'v', [s.kvDim, c.dim]],
    ['wo', 'o', [c.dim, c.dim]],
  ];
  const ffn: Array<[string, LinearKind, number[]]> = [
    ['w1', 'gate', [c.hiddenDim, c.dim]],
    ['w2', 'down', [c.dim, c.hiddenDim]],
    ['w3', 'up', [c.hiddenDim, c.dim]],
  ];
  const perLayer = (items: Array<[string, LinearKind, number[]]>) => {
    for (const [l2c, kind, shape] of items) {
      for (let l = 0; l < L; l++) matrix(TensorNames.linear(l, kind), `${l2c}[${l}]`, shape);
    }
  };
  const norms = (which: 'att' | 'ffn') => {
    for (let l = 0; l < L; l++) {
      f32(which === 'att' ? TensorNames.attnNorm(l) : TensorNames.ffnNorm(l), `rms_${which}[${l}]`, [c.dim]);
    }
  };
  if (v2) {
    region(`header (magic ak42, version 2, config, group_size ${group})`, LLAMA2C_V2_HEADER_BYTES);
    norms('att');
    norms('ffn');
    f32(TensorNames.finalNorm, 'rms_final', [c.dim]);
    matrix(TensorNames.embedding, 'token_embedding', [c.vocabSize, c.dim]);
    perLayer(linears);
    perLayer(ffn);
  } else {
    region('header (7 × int32 config)', 7 * 4);
    f32(TensorNames.embedding, 'token_embedding', [c.vocabSize, c.dim]);
    norms('att');
    perLayer(linears);
    norms('ffn');
    perLayer(ffn);
    f32(TensorNames.finalNorm, 'rms_final', [c.dim]);
    region('freq_cis_real + freq_cis_imag (legacy RoPE tables, unused)', 2 * 4 * s.freqCis);
  }
  if (!config.tiedClassifier) matrix(TensorNames.classifier, 'classifier', [c.vocabSize, c.dim]);
  return { tensors, regions };
}

function inspectCheckpoint(path: string, bytes: Uint8Array, json: boolean, io: CommandIO): void {
  const ckpt = readLlama2cCheckpoint(bytes, path);
  const { config } = modelFromLlama2c(ckpt, path);
  const parameters = parameterCount(config);
  const { tensors, regions } = llama2cFileLayout(ckpt, config);
  const accounted = [...tensors, ...regions].reduce((n, t) => n + t.bytes, 0);
  if (accounted !== bytes.byteLength) {
    // The reader checked the exact size, so this would be a bug in the table above.
    throw new Error(`inspect: layout accounts for ${accounted} bytes but the file has ${bytes.byteLength}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const bitsPerParameter = (8 * bytes.byteLength) / parameters;
  if (json) {
    writeJson(io, {
      kind: 'llama2c-checkpoint',
      path,
      layout: ckpt.layout,
      ...(ckpt.groupSize === undefined ? {} : { groupSize: ckpt.groupSize }),
      config,
      parameters,
      fileBytes: bytes.byteLength,
      bitsPerParameter,
      sha256,
      tensors,
      regions,
    });
    return;
  }
  const c = config;
  const out: string[] = [
    table([
      ['file', `${path} (llama2.c checkpoint)`],
      ['layout', ckpt.layout === 'v2-q8_0' ? `v2-q8_0: version 2, int8 groups of ${ckpt.groupSize} with a float32 scale each` : 'legacy-f32: float32'],
      [
        'config',
        `dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads}, kv heads ${c.nKvHeads}, ` +
          `vocab ${c.vocabSize}, seq_len ${c.seqLen}, ${c.tiedClassifier ? 'tied' : 'separate'} classifier, ` +
          `rope ${c.ropeLayout} θ=${c.ropeTheta}, norm eps ${c.normEps}`,
      ],
      ['parameters', `${fmtInt(parameters)}${c.tiedClassifier ? ' (the tied embedding/classifier counted once)' : ''}`],
      ['file bytes', fmtBytes(bytes.byteLength)],
      ['bits/param', `${bitsPerParameter.toFixed(3)} (8 × file bytes / parameters)`],
      ['sha256', sha256],
    ]),
    '',
    renderRows(
      ['offset', 'tensor', 'llama2.c', 'shape', 'dtype', 'bytes'],
      tensors.map((t) => [fmtInt(t.offset), t.name, t.llama2cName, `[${t.shape.join(', ')}]`, t.dtype, fmtInt(t.bytes)]),
    ),
    '',
    ...regions.map((r) => `other: ${r.what} at ${fmtInt(r.offset)}, ${fmtInt(r.bytes)} bytes`),
  ];
  io.stdout.write(`${out.join('\n')}\n`);
}

// ----------------------------------------------------------------------------------------- safetensors

function inspectSafetensors(path: string, bytes: Uint8Array, json: boolean, io: CommandIO): void {
  const file = readSafetensors(bytes, path);
  const tensors = [...file.tensors].map(([name, t]) => ({
    name,
    dtype: t.dtype,
    shape: t.shape,
    offset: t.data.byteOffset - bytes.byteOffset,
    bytes: t.data.byteLength,
  }));
  const elements = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  if (json) {
    writeJson(io, {
      kind: 'safetensors',
      path,
      fileBytes: bytes.byteLength,
      headerBytes: file.headerBytes,
      dataOffset: file.dataOffset,
      tensorCount: tensors.length,
      elements,
      metadata: file.metadata,
      tensors,
    });
    return;
  }
  const meta = Object.entries(file.metadata);
  const out = [
    table([
      ['file', `${path} (safetensors)`],
      ['file bytes', fmtBytes(bytes.byteLength)],
      ['header', `${fmtInt(file.headerBytes)} bytes of JSON; data starts at ${fmtInt(file.dataOffset)}`],
      ['tensors', `${fmtInt(tensors.length)}, ${fmtInt(elements)} elements`],
    ]),
    '',
    meta.length === 0
      ? 'metadata: none'
      : ['metadata:', ...meta.map(([k, v]) => `  ${k}: ${v.length > 200 ? `${v.slice(0, 200)}… (${fmtInt(v.length)} chars)` : v}`)].join('\n'),
    '',
    renderRows(
      ['offset', 'tensor', 'shape', 'dtype', 'bytes'],
      tensors.map((t) => [fmtInt(t.offset), t.name, `[${t.shape.join(', ')}]`, t.dtype, fmtInt(t.bytes)]),
    ),
  ];
  io.stdout.write(`${out.join('\n')}\n`);
}

// ------------------------------------------------------------------------------------------- .usk bundle

/** A safetensors file whose metadata says format "ultrasketch.usk" (the header is parsed, not trusted further). */
function isUskBundle(path: string, bytes: Uint8Array): boolean {
  if (extname(path).toLowerCase() === '.usk') return true;
  return readSafetensors(bytes, path).metadata.format === 'ultrasketch.usk';
}

function inspectUsk(path: string, bytes: Uint8Array, json: boolean, io: CommandIO): void {
  const ins: BundleInspection = inspectLoadedBundle(loadBundleFromBytes(bytes, path));
  if (json) {
    writeJson(io, { kind: 'usk-bundle', ...ins });
    return;
  }
  const t = ins.totals;
  const c = ins.config;
  const codecs = Object.entries(t.linearCodecs).map(([id, n]) => `${id} × ${n}`).join(', ');
  const q = readQualitySection(ins.quality);
  const tr = readTrainingSection(ins.training);
  const prov = ins.provenance as { sourcePath?: string; sourceSha256?: string; toolVersion?: string; command?: string } | null;
  const rows: Array<[string, string]> = [
    ['file', `${path} (.usk bundle, format version ${ins.formatVersion})`],
    [
      'integrity',
      (ins.integrity.metadata === 'sha256'
        ? 'metadata and tensor table: SHA-256 verified'
        : 'metadata and tensor table: NOT covered (format version 1 predates the metadata checksum; re-compress to add it)') +
        `; tensor data: CRC-32 ${ins.integrity.tensorsVerified ? 'verified' : 'not verified'}`,
    ],
    [
      'config',
      `dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads}, kv heads ${c.nKvHeads}, vocab ${c.vocabSize}, ` +
        `seq_len ${c.seqLen}, ${c.tiedClassifier ? 'tied' : 'separate'} classifier`,
    ],
    ['tokenizer', `${ins.tokenizer.kind}: ${ins.tokenizer.description}`],
    ['compressed', `${t.compressedLinears} linears (${codecs})`],
    ['bpwLinears', `${t.bpwLinears.toFixed(4)} (${fmtInt(t.linearBits)} bits ÷ ${fmtInt(t.linearWeights)} weights of the compressed linears)`],
    ['bitsPerParam', `${t.bitsPerParam.toFixed(4)} (8 × ${fmtInt(t.fileBytes)} file bytes ÷ ${fmtInt(t.params)} parameters)`],
    ['file bytes', `${fmtBytes(t.fileBytes)}: 8 + ${fmtInt(t.headerBytes)} header + ${fmtInt(t.tensorBytes)} tensor data`],
  ];
  if (t.keptDense.length > 0) {
    rows.push(['kept dense', `${t.keptDense.length} linear(s) too small for the target, stored float: ${t.keptDense.join(', ')} (all selected linears: ${t.bpwSelectedLinears.toFixed(4)} bpw)`]);
  }
  if (prov) {
    rows.push(['source', `${prov.sourcePath} (sha256 ${String(prov.sourceSha256).slice(0, 16)}…)`]);
    if (prov.command) rows.push(['command', prov.command]);
  }
  if (q) {
    rows.push([
      'quality',
      `perplexity ${q.perplexity.toFixed(4)} (float ${q.referencePerplexity.toFixed(4)}), KL ${q.kl.toExponential(3)}, top-1 ${(100 * q.top1).toFixed(2)} % on ${q.windows} window(s) of ${q.textSource}`,
    ]);
  } else if (ins.quality) {
    rows.push(['quality', 'a quality section is stored but incomplete or not finite: not shown (see --json for what it holds)']);
  }
  if (tr) {
    const r = tr.recipe;
    rows.push([
      'training',
      `${tr.steps}${tr.steps < r.steps ? ` of ${r.steps}` : ''} steps × ${r.batch} × ${r.seq} = ${fmtInt(tr.tokens)} tokens; ${r.name ? `recipe ${r.name}, ` : ''}loss ${r.loss}, data ${r.data}, lr ${r.lr}`,
    ]);
    if (tr.holdout) rows.push(['held out', `KL ${tr.holdout.kl.toExponential(3)}, top-1 ${(100 * tr.holdout.top1).toFixed(2)} % on ${tr.holdout.windows} teacher window(s) never trained on`]);
  }
  const groupRows = Object.entries(t.groups)
    .filter(([, g]) => g !== null)
    .map(([name, g]) => [name, fmtInt(g!.weights), fmtInt(g!.bits), g!.weights > 0 ? (g!.bits / g!.weights).toFixed(4) : '—']);
  const out = [
    table(rows),
    '',
    renderRows(['part', 'weights', 'bits', 'bpw'], groupRows),
    '',
    renderRows(
      ['tensor', 'codec', 'shape', 'weights', 'bits', 'bpw', 'options'],
      ins.tensors.map((r) => [
        r.name + (r.compressed ? ' *' : r.keptDense ? ' (kept dense)' : ''),
        r.codec,
        `[${r.shape.join(', ')}]`,
        fmtInt(r.weights),
        fmtInt(r.bits),
        r.bpw === null ? '—' : r.bpw.toFixed(4),
        r.options === null ? '' : JSON.stringify(r.options),
      ]),
    ),
    '(* = compressed linear, counted in bpwLinears)',
  ];
  io.stdout.write(`${out.join('\n')}\n`);
}

// ------------------------------------------------------------------------------------------ HF / GGUF

function inspectModel(path: string, json: boolean, io: CommandIO): void {
  const src: ModelSource = openModelSource(path);
  try {
    const c = src.config;
    const d = src.description;
    const parameters = parameterCount(c);
    const sha256 = src.sha256();
    const tok = src.tokenizer;
    const tokenizer = {
      kind: tok.kind,
      description: tok.description,
      vocabSize: tok.tokenizer.vocabSize,
      bosId: tok.tokenizer.bosId,
      eosId: tok.tokenizer.eosId,
      stopIds: tok.stopIds,
      files: tok.files,
    };
    const tensors = src.listTensors();
    if (json) {
      writeJson(io, {
        kind: 'model',
        path,
        format: src.format,
        architecture: d.architecture,
        config: c,
        description: d,
        parameters,
        dtypes: src.dtypes,
        fileBytes: src.fileBytes,
        bitsPerParameter: (8 * src.fileBytes) / parameters,
        sha256,
        tokenizer,
        files: src.files,
        tensors,
      });
      return;
    }
    const variants = [
      c.headDim !== undefined ? `head_dim ${c.headDim}` : '',
      c.qkvBias ? 'q/k/v bias' : '',
      c.oBias ? 'o bias' : '',
      c.qkNorm ? 'q/k norm' : '',
      c.ropeScaling ? `RoPE scaling ${c.ropeScaling.type}` : '',
    ].filter((x) => x);
    const formatName = { hf: 'Hugging Face directory', 'hf-sharded': 'Hugging Face directory, sharded', gguf: 'GGUF' }[src.format];
    const out = [
      table([
        ['model', `${path} (${formatName})`],
        ['architecture', `${d.architecture}${d.source === 'gguf' ? ' (GGUF architecture mapped to it)' : ''}`],
        [
          'config',
          `dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads}, kv heads ${c.nKvHeads}, vocab ${c.vocabSize}, ` +
            `seq_len ${c.seqLen}, ${c.tiedClassifier ? 'tied' : 'separate'} classifier, rope ${c.ropeLayout} θ=${c.ropeTheta}, norm eps ${c.normEps}` +
            (variants.length > 0 ? `; ${variants.join(', ')}` : ''),
        ],
        ...(d.defaulted.length > 0 ? [['defaults used', d.defaulted.join(', ')] as [string, string]] : []),
        ['stored types', Object.entries(src.dtypes).map(([k, n]) => `${k} × ${n}`).join(', ')],
        ['parameters', `${fmtInt(parameters)}${c.tiedClassifier ? ' (the tied embedding/classifier counted once)' : ''}`],
        ['weight bytes', `${fmtBytes(src.fileBytes)} (${((8 * src.fileBytes) / parameters).toFixed(3)} bits per parameter)`],
        ['sha256', `${sha256}${src.format === 'hf-sharded' ? ' (of the sorted per-shard SHA-256 lines)' : ''}`],
        ['tokenizer', `${tok.kind}: ${tok.description}${tok.files.length > 0 ? ` (${tok.files.join(', ')})` : ''}`],
        ['files', src.files.map((f) => `${f.path} (${f.role}, ${fmtInt(f.bytes)} bytes)`).join('; ')],
      ]),
      '',
      renderRows(
        ['tensor', 'shape', 'type', 'bytes', 'file'],
        tensors.map((t) => [t.name, `[${t.shape.join(', ')}]`, t.dtype, fmtInt(t.bytes), t.file]),
      ),
    ];
    io.stdout.write(`${out.join('\n')}\n`);
  } finally {
    src.close();
  }
}

// ------------------------------------------------------------------------------------------- tokenizer

function inspectTokenizer(path: string, bytes: Uint8Array, vocab: number | undefined, json: boolean, io: CommandIO): void {
  // The file does not store its size; count the entries, then let the library reader validate them all.
  const counted = countTokenizerEntries(bytes);
  if (vocab === undefined && counted === undefined) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'the entries do not tile the file as a llama2.c tokenizer\'s would', {
      source: path,
      hint: "the file is truncated or not a llama2.c tokenizer; pass --vocab N to check it against the model's vocabulary size",
    });
  }
  const file = readLlama2cTokenizer(bytes, vocab ?? counted!, path);
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const pieces = file.pieces.map((p) => decoder.decode(p));
  const byteFallback = pieces.filter((p) => /^<0x[0-9A-Fa-f]{2}>$/.test(p)).length;
  let minScore = Infinity;
  let maxScore = -Infinity;
  for (const s of file.scores) {
    minScore = Math.min(minScore, s);
    maxScore = Math.max(maxScore, s);
  }
  const longest = file.pieces.reduce((best, p, i) => (p.length > file.pieces[best]!.length ? i : best), 0);
  const special = [0, 1, 2].map((id) => ({ id, piece: pieces[id]! }));
  const stats = {
    kind: 'llama2c-tokenizer',
    path,
    fileBytes: bytes.byteLength,
    vocabSize: file.pieces.length,
    maxTokenLength: file.maxTokenLength,
    byteFallbackTokens: byteFallback,
    special,
    scores: { min: minScore, max: maxScore },
    longestPiece: { id: longest, bytes: file.pieces[longest]!.length, piece: pieces[longest]! },
  };
  if (json) {
    writeJson(io, stats);
    return;
  }
  io.stdout.write(
    `${table([
      ['file', `${path} (llama2.c tokenizer)`],
      ['file bytes', fmtBytes(bytes.byteLength)],
      ['vocab size', `${fmtInt(stats.vocabSize)}${vocab === undefined ? ' (counted)' : ' (checked against --vocab)'}`],
      ['max piece', `${stats.maxTokenLength} bytes (declared); longest piece id ${longest}: ${JSON.stringify(stats.longestPiece.piece)}`],
      ['byte tokens', `${byteFallback} byte-fallback pieces <0xXX>`],
      ['special', special.map((s) => `${s.id} ${JSON.stringify(s.piece)}`).join(', ')],
      ['scores', `${minScore} .. ${maxScore}`],
    ])}\n`,
  );
}

// -------------------------------------------------------------------------------------------- helpers

function renderRows(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = header.map((h) => ['offset', 'bytes', 'bits', 'weights', 'bpw'].includes(h));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (numeric[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
