import { createHash } from 'node:crypto';
import { type Stats, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import {
  GGUF_LIMITS,
  type GgufHeader,
  type Llama2cLayout,
  type ModelDescription,
  type SafetensorsHeader,
  type SafetensorsTensor,
  type SafetensorsTensorInfo,
  describeGgufModel,
  describeHfConfig,
  parseGgufHeader,
  parseHfShardIndex,
  parseSafetensorsHeader,
} from '@ultrasketch/format';
import { type ModelConfig, type TensorSource, configFromDescription, ggufSource, safetensorsSource } from '@ultrasketch/model';
import { describeFileKind } from './files.js';
import { RandomAccessFile } from './randomAccess.js';
import { type LoadedTokenizer, MAX_CONFIG_JSON_BYTES, ggufTokenizer } from './tokenizers.js';
import { hfTokenizerFiles, readJsonFile, tokenizerFromPath } from './tokenizer-files.js';

/**
 * Models as people have them (docs/inputs.md): a Hugging Face directory (config.json, model.safetensors or
 * shards with model.safetensors.index.json, tokenizer.json), a `.safetensors` file with its config.json beside
 * it, or a GGUF file — besides llama2.c checkpoints and `.usk` bundles. Each is recognised by its content and
 * structure, not its name, and opened as a *source*: the config, the tokenizer, and the weights one tensor at a
 * time (each tensor's byte range read from the file when asked for), so a multi-GB model is never in memory
 * whole unless the caller asks for all of it (`loadModel`).
 */

/** Where a model's weights came from (reports, provenance, `inspect`). */
export type ModelFormat = Llama2cLayout | 'hf' | 'hf-sharded' | 'gguf';

/** What a path holds, told by content and structure. */
export type ModelPathKind = 'llama2c' | 'usk' | 'hf-directory' | 'safetensors' | 'gguf';

const GGUF_MAGIC_BYTES = [0x47, 0x47, 0x55, 0x46];

/** Files of an HF directory, by name. */
export const HF_FILES = {
  config: 'config.json',
  weights: 'model.safetensors',
  index: 'model.safetensors.index.json',
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  generationConfig: 'generation_config.json',
} as const;

function statOrNotFound(path: string, what: string, hint?: string): Stats {
  try {
    return statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `${what} not found`, { source: path, hint: hint ?? 'check the path', cause: err });
    }
    throw fromSystemError(err, path, 'open');
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * What `path` is: a directory is an HF directory; a file starting with "GGUF" is GGUF; a file with a safetensors
 * header is a `.usk` bundle when its metadata says so (or it is named `.usk`), else a plain safetensors file;
 * anything else is taken for a llama2.c checkpoint (whose reader then checks it). A FIFO or device is refused
 * (E_NOT_A_FILE) without being opened for a blocking read.
 */
export function detectModelPath(path: string, what = 'model'): ModelPathKind {
  const st = statOrNotFound(path, what);
  if (st.isDirectory()) return 'hf-directory';
  if (!st.isFile()) {
    throw new UltraSketchError(ErrorCodes.NOT_A_FILE, `${what} is ${describeFileKind(st)}, not a regular file or a model directory`, {
      source: path,
      hint: 'pass a model file or directory; a pipe or device is never read',
    });
  }
  const file = RandomAccessFile.open(path, what);
  try {
    const head = file.read(0, Math.min(16, file.size), 'the first bytes');
    if (head.byteLength >= 4 && GGUF_MAGIC_BYTES.every((b, i) => head[i] === b)) return 'gguf';
    if (head.byteLength < 10) return 'llama2c';
    const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
    // A llama2.c checkpoint never starts like this: its first 8 bytes (dim and hidden_dim, or "ak42" and a
    // version) read as a u64 far larger than any file.
    if (!(n >= 2n && n <= BigInt(file.size - 8) && head[8] === 0x7b)) return 'llama2c';
    if (extname(path).toLowerCase() === '.usk') return 'usk';
    let header: SafetensorsHeader;
    try {
      header = readSafetensorsHeader(file, path);
    } catch (err) {
      // A damaged bundle gets the bundle reader's precise errors; a damaged model file next to its config.json
      // gets the safetensors reader's.
      if (isFile(join(dirname(path), HF_FILES.config))) throw err;
      return 'usk';
    }
    return header.metadata.format === 'ultrasketch.usk' ? 'usk' : 'safetensors';
  } finally {
    file.close();
  }
}

/** A safetensors file's header, read from its first bytes only. */
export function readSafetensorsHeader(file: RandomAccessFile, source: string): SafetensorsHeader {
  let head = file.read(0, Math.min(file.size, 8), 'the header length');
  for (;;) {
    const r = parseSafetensorsHeader(head, file.size, source);
    if (r.done) return r.header;
    head = file.read(0, r.needBytes, 'the header');
  }
}

/** A GGUF header, read from the first bytes of the file (more as the parser asks for them). */
export function readGgufHeader(file: RandomAccessFile, source: string): GgufHeader {
  let head = file.read(0, Math.min(file.size, 1 << 20), 'the header');
  for (;;) {
    const r = parseGgufHeader(head, file.size, source, GGUF_LIMITS);
    if (r.done) return r.header;
    head = file.read(0, r.needBytes, 'the header');
  }
}

/** One file a model was read from. */
export interface SourceFile {
  path: string;
  /** What it is to the model: weights, config, tokenizer, ... */
  role: 'weights' | 'config' | 'tokenizer' | 'index';
  bytes: number;
}

/** A model opened for reading one tensor at a time. Close it when done (it holds the weight files open). */
export interface ModelSource {
  /** The path as given (a directory, or a file). */
  path: string;
  format: 'hf' | 'hf-sharded' | 'gguf';
  config: ModelConfig;
  description: ModelDescription;
  tensors: TensorSource;
  tokenizer: LoadedTokenizer;
  /** Every file read (weights, configs, tokenizer files), for reports and the output-is-input check. */
  files: SourceFile[];
  /** Bytes of the weight files. */
  fileBytes: number;
  /** Tensors by stored type (safetensors dtype or GGUF type): {"BF16": 56}. */
  dtypes: Record<string, number>;
  /** Every tensor as stored: its own name, shape (outermost first), type, bytes, and the file holding it. */
  listTensors(): Array<{ name: string; shape: number[]; dtype: string; bytes: number; offset: number; file: string }>;
  /**
   * SHA-256 of the weights (computed on first call, reading the files once in chunks): of the weight file
   * itself for one file; for shards, of the lines "<sha256>  <file name>\n" of every shard sorted by name (what
   * `sha256sum model-*.safetensors | sort -k2` prints), so it names the set of files whatever their order.
   */
  sha256(): string;
  close(): void;
}

export interface OpenSourceOptions {
  /** A tokenizer to use instead of the model's own (tokenizer.json or a llama2.c tokenizer file). */
  tokenizerPath?: string;
  /** Skip the tokenizer entirely (a reference model scores another model's tokens). */
  noTokenizer?: boolean;
}

/** Open an HF directory, a `.safetensors` file with its config.json beside it, or a GGUF file. */
export function openModelSource(path: string, options: OpenSourceOptions = {}): ModelSource {
  const kind = detectModelPath(path);
  if (kind === 'hf-directory') return openHfDirectory(path, options);
  if (kind === 'safetensors') return openSafetensorsFile(path, options);
  if (kind === 'gguf') return openGgufFile(path, options);
  throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${kind === 'usk' ? 'a .usk bundle' : 'a llama2.c checkpoint'} is not opened as a streamed source`, {
    source: path,
    hint: kind === 'usk' ? 'use loadBundle/openModel for bundles' : 'use loadModel for llama2.c checkpoints',
  });
}

/** The end-of-sequence ids config.json and generation_config.json name (generation_config.json may list several: Llama 3). */
function hfEosIds(dir: string, desc: ModelDescription, files: SourceFile[]): number[] {
  const ids = [...desc.eosTokenIds];
  const gen = join(dir, HF_FILES.generationConfig);
  if (isFile(gen)) {
    const json = readJsonFile(gen, 'generation_config.json');
    files.push({ path: gen, role: 'config', bytes: statSync(gen).size });
    const v = (json as Record<string, unknown> | null)?.eos_token_id;
    const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
    for (const id of list) {
      if (!Number.isInteger(id) || (id as number) < 0) {
        throw new UltraSketchError(ErrorCodes.BAD_HEADER, `eos_token_id ${JSON.stringify(v)} is not a token id or a list of them`, { source: gen });
      }
      ids.push(id as number);
    }
  }
  return [...new Set(ids)];
}

function hfConfig(dir: string, files: SourceFile[], given: string): { desc: ModelDescription; config: ModelConfig } {
  const path = join(dir, HF_FILES.config);
  if (!isFile(path)) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `no ${HF_FILES.config} in ${dir}`, {
      source: given,
      hint: `add the model's ${HF_FILES.config} (from its Hugging Face repository) to ${dir}: it holds the sizes the weights are read with`,
    });
  }
  const json = readJsonFile(path, HF_FILES.config, MAX_CONFIG_JSON_BYTES);
  files.push({ path, role: 'config', bytes: statSync(path).size });
  const desc = describeHfConfig(json, path);
  return { desc, config: configFromDescription(desc, { source: path }) };
}

function hfTokenizer(dir: string, config: ModelConfig, eosIds: number[], options: OpenSourceOptions, files: SourceFile[]): LoadedTokenizer {
  let tok: LoadedTokenizer;
  if (options.tokenizerPath !== undefined) tok = tokenizerFromPath(options.tokenizerPath, config, eosIds);
  else {
    const json = join(dir, HF_FILES.tokenizer);
    if (!isFile(json)) {
      throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `no ${HF_FILES.tokenizer} in ${dir}`, {
        source: json,
        hint: `add the model's ${HF_FILES.tokenizer} (and ${HF_FILES.tokenizerConfig}) from its Hugging Face repository to ${dir}, or pass --tokenizer FILE`,
      });
    }
    const cfg = join(dir, HF_FILES.tokenizerConfig);
    tok = hfTokenizerFiles({ tokenizerJson: json, ...(isFile(cfg) ? { tokenizerConfig: cfg } : {}) }, config, eosIds);
  }
  for (const f of tok.files) files.push({ path: f, role: 'tokenizer', bytes: statSync(f).size });
  return tok;
}

/** A safetensors tensor whose bytes are read from the file only when `data` is used. */
function lazyTensor(file: RandomAccessFile, name: string, info: SafetensorsTensorInfo): SafetensorsTensor {
  return {
    dtype: info.dtype,
    shape: info.shape,
    dataOffsets: info.dataOffsets,
    get data() {
      return file.read(info.fileOffset, info.byteLength, `tensor ${name}`);
    },
  };
}

interface ShardSet {
  files: Array<{ file: RandomAccessFile; header: SafetensorsHeader; name: string }>;
  /** Tensor name → where it is. */
  lookup: Map<string, { file: RandomAccessFile; header: SafetensorsHeader }>;
}

function closeAll(files: Array<{ file: RandomAccessFile }>): void {
  for (const f of files) f.file.close();
}

function sourceFromShards(
  given: string,
  format: 'hf' | 'hf-sharded',
  shards: ShardSet,
  desc: ModelDescription,
  config: ModelConfig,
  tokenizer: LoadedTokenizer,
  files: SourceFile[],
): ModelSource {
  const tensors = safetensorsSource(
    {
      keys: () => shards.lookup.keys(),
      get: (name) => {
        const at = shards.lookup.get(name);
        const info = at?.header.tensors.get(name);
        return at && info ? lazyTensor(at.file, name, info) : undefined;
      },
    },
    given,
  );
  const dtypes: Record<string, number> = {};
  for (const [name, at] of shards.lookup) {
    const d = at.header.tensors.get(name)!.dtype;
    dtypes[d] = (dtypes[d] ?? 0) + 1;
  }
  let hash: string | undefined;
  return {
    listTensors: () =>
      shards.files.flatMap((s) =>
        [...s.header.tensors].map(([name, t]) => ({ name, shape: t.shape, dtype: t.dtype, bytes: t.byteLength, offset: t.fileOffset, file: s.name })),
      ),
    path: given,
    format,
    config,
    description: desc,
    tensors,
    tokenizer,
    files,
    fileBytes: shards.files.reduce((n, s) => n + s.file.size, 0),
    dtypes,
    sha256: () => {
      if (hash === undefined) {
        if (shards.files.length === 1) hash = shards.files[0]!.file.sha256();
        else {
          const lines = shards.files
            .map((s) => `${s.file.sha256()}  ${s.name}\n`)
            .sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : a.slice(66) > b.slice(66) ? 1 : 0));
          hash = createHash('sha256').update(lines.join('')).digest('hex');
        }
      }
      return hash;
    },
    close: () => closeAll(shards.files),
  };
}

/** An HF directory: config.json, model.safetensors (or shards through the index), tokenizer.json. */
export function openHfDirectory(dir: string, options: OpenSourceOptions = {}, given = dir): ModelSource {
  const files: SourceFile[] = [];
  const { desc, config } = hfConfig(dir, files, given);
  const single = join(dir, HF_FILES.weights);
  const indexPath = join(dir, HF_FILES.index);
  const shards: ShardSet = { files: [], lookup: new Map() };
  let format: 'hf' | 'hf-sharded';
  try {
    if (isFile(single)) {
      format = 'hf';
      const file = RandomAccessFile.open(single, 'model.safetensors');
      shards.files.push({ file, header: readSafetensorsHeader(file, single), name: HF_FILES.weights });
      files.push({ path: single, role: 'weights', bytes: file.size });
      for (const name of shards.files[0]!.header.tensors.keys()) shards.lookup.set(name, shards.files[0]!);
    } else if (isFile(indexPath)) {
      format = 'hf-sharded';
      openShards(dir, indexPath, shards, files);
    } else {
      throw missingWeights(dir, given);
    }
    const tokenizer = options.noTokenizer ? noTokenizer(config) : hfTokenizer(dir, config, hfEosIds(dir, desc, files), options, files);
    return sourceFromShards(given, format, shards, desc, config, tokenizer, files);
  } catch (err) {
    closeAll(shards.files);
    throw err;
  }
}

function openShards(dir: string, indexPath: string, shards: ShardSet, files: SourceFile[]): void {
  const index = parseHfShardIndex(readJsonFile(indexPath, HF_FILES.index), indexPath);
  files.push({ path: indexPath, role: 'index', bytes: statSync(indexPath).size });
  const byName = new Map<string, ShardSet['files'][number]>();
  for (const shard of index.shards) {
    const path = join(dir, shard);
    if (!isFile(path)) {
      throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `shard ${shard}, named by ${HF_FILES.index}, is missing`, {
        source: path,
        hint: `add ${shard} to ${dir}: the model's weights are split over ${index.shards.length} shards and every one is needed`,
      });
    }
    const file = RandomAccessFile.open(path, `shard ${shard}`);
    const entry = { file, header: undefined as unknown as SafetensorsHeader, name: shard };
    shards.files.push(entry);
    entry.header = readSafetensorsHeader(file, path);
    files.push({ path, role: 'weights', bytes: file.size });
    byName.set(shard, entry);
  }
  for (const [name, shard] of index.weightMap) {
    const s = byName.get(shard)!;
    if (!s.header.tensors.has(name)) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${name} is not in ${shard}, where ${HF_FILES.index} says it is`, {
        source: join(dir, shard),
        hint: 'the index and the shards do not belong together; re-download the model',
      });
    }
    shards.lookup.set(name, s);
  }
}

function missingWeights(dir: string, given: string): UltraSketchError {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    names = [];
  }
  const gguf = names.filter((n) => n.toLowerCase().endsWith('.gguf'));
  const pickle = names.filter((n) => /\.(bin|pt|pth)$/.test(n) && n !== 'tokenizer.bin');
  const hint =
    gguf.length > 0
      ? `pass the GGUF file itself (${join(dir, gguf[0]!)})`
      : pickle.length > 0
        ? `PyTorch weights (${pickle.join(', ')}) are not read (they are Python pickles, which can run code): download or convert the model to safetensors`
        : `add the model's ${HF_FILES.weights} (or its shards with ${HF_FILES.index}) to ${dir}`;
  return new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `no ${HF_FILES.weights} or ${HF_FILES.index} in ${dir}`, { source: given, hint });
}

/**
 * A `.safetensors` file given directly: it holds tensors only, so its config.json must be beside it. When an
 * index beside it lists it as one of several shards, the whole sharded model is opened.
 */
export function openSafetensorsFile(path: string, options: OpenSourceOptions = {}): ModelSource {
  const dir = dirname(path);
  if (!isFile(join(dir, HF_FILES.config))) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `a .safetensors file holds only tensors, and there is no ${HF_FILES.config} beside it`, {
      source: path,
      hint: `pass the model's directory (${HF_FILES.config}, ${HF_FILES.weights} or its shards, ${HF_FILES.tokenizer}), or put its ${HF_FILES.config} beside the file`,
    });
  }
  const indexPath = join(dir, HF_FILES.index);
  if (basename(path) === HF_FILES.weights) return openHfDirectory(dir, options, path);
  if (isFile(indexPath) && parseHfShardIndex(readJsonFile(indexPath, HF_FILES.index), indexPath).shards.includes(basename(path))) {
    return openHfDirectory(dir, options, path);
  }
  // Another name (model-q.safetensors next to a config.json): that file alone holds the weights.
  const files: SourceFile[] = [];
  const { desc, config } = hfConfig(dir, files, path);
  const file = RandomAccessFile.open(path, 'safetensors file');
  const shards: ShardSet = { files: [], lookup: new Map() };
  try {
    shards.files.push({ file, header: readSafetensorsHeader(file, path), name: basename(path) });
    files.push({ path, role: 'weights', bytes: file.size });
    for (const name of shards.files[0]!.header.tensors.keys()) shards.lookup.set(name, shards.files[0]!);
    const tokenizer = options.noTokenizer ? noTokenizer(config) : hfTokenizer(dir, config, hfEosIds(dir, desc, files), options, files);
    return sourceFromShards(path, 'hf', shards, desc, config, tokenizer, files);
  } catch (err) {
    closeAll(shards.files);
    throw err;
  }
}

/** A GGUF file: the header (metadata, vocabulary, tensor infos) from its first bytes, each tensor read when asked for. */
export function openGgufFile(path: string, options: OpenSourceOptions = {}): ModelSource {
  const file = RandomAccessFile.open(path, 'GGUF file');
  try {
    const header = readGgufHeader(file, path);
    const desc = describeGgufModel(header, path);
    const tensors = ggufSource(header, (info) => file.read(info.fileOffset, info.byteLength, `tensor ${info.name}`), path);
    const config = configFromDescription(desc, { readTensor: (n) => tensors.read(n), source: path });
    const files: SourceFile[] = [{ path, role: 'weights', bytes: file.size }];
    let tokenizer: LoadedTokenizer;
    if (options.noTokenizer) tokenizer = noTokenizer(config);
    else if (options.tokenizerPath !== undefined) {
      tokenizer = tokenizerFromPath(options.tokenizerPath, config, desc.eosTokenIds);
      for (const f of tokenizer.files) files.push({ path: f, role: 'tokenizer', bytes: statSync(f).size });
    } else tokenizer = ggufTokenizer(header, config, path, desc.eosTokenIds);
    const dtypes: Record<string, number> = {};
    for (const t of header.tensors.values()) dtypes[t.type] = (dtypes[t.type] ?? 0) + 1;
    let hash: string | undefined;
    return {
      listTensors: () => [...header.tensors.values()].map((t) => ({ name: t.name, shape: t.shape, dtype: t.type, bytes: t.byteLength, offset: t.fileOffset, file: basename(path) })),
      path,
      format: 'gguf',
      config,
      description: desc,
      tensors,
      tokenizer,
      files,
      fileBytes: file.size,
      dtypes,
      sha256: () => (hash ??= file.sha256()),
      close: () => file.close(),
    };
  } catch (err) {
    file.close();
    throw err;
  }
}

/** Placeholder for a source opened without its tokenizer: any use is a bug, said plainly. */
function noTokenizer(config: ModelConfig): LoadedTokenizer {
  const fail = (): never => {
    throw new Error('this model was opened without a tokenizer (noTokenizer)');
  };
  return {
    tokenizer: { kind: 'llama2c', vocabSize: config.vocabSize, bosId: -1, eosId: -1, encode: fail, decode: fail, createStreamDecoder: fail },
    embed: { kind: 'llama2c', bytes: new Uint8Array(0) },
    files: [],
    stopIds: [],
    kind: 'llama2c',
    description: 'none',
  };
}
