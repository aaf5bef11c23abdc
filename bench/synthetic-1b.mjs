#!/usr/bin/env node
/**
 * Memory at scale (issue 11, done-when 4): compress a Llama-3.2-1B-shaped model and report the peak resident
 * memory of the process.
 *
 * No real 1B model can be downloaded on these machines, so this writes a synthetic one with the real model's
 * shapes — a Hugging Face directory with Llama-3.2-1B's config.json (hidden 2048, intermediate 8192, 16 layers, 32
 * heads / 8 KV heads, vocabulary 128,256, tied embedding, llama3 RoPE scaling), a 2.47 GB bf16 model.safetensors of
 * 1,235,814,400 parameters and a byte-level tokenizer.json — into a temporary directory (never into the
 * repository; removed at the end unless --keep). Weights are uniform random with the standard deviation Llama's
 * initialisation uses (0.02; norms 1), so every codec does the work it would do on the real model (the numbers of
 * quality mean nothing). The file is written tensor by tensor, so this script needs little memory itself.
 *
 * Then, each under `/usr/bin/time -v` (the kernel's maximum resident set size, children included):
 *   ultrasketch compress DIR --codec littlebit --bpw 0.55 -o DIR/littlebit.usk
 *   ultrasketch compress DIR --codec sketch --bpw 0.5 -o DIR/sketch.usk
 *   ultrasketch generate BUNDLE --prompt Hi --steps 8 --temperature 0 --json
 * and prints a JSON summary (peak RSS in GiB, wall seconds, bundle sizes and bits, the generated ids) and a
 * Markdown table for docs/results.md. The target is a peak RSS ≤ 4 GB for each compress.
 *
 * Usage: node bench/synthetic-1b.mjs [--dir DIR] [--keep] [--codecs littlebit,sketch] [--layers N]
 *   --layers N   write only N decoder layers (a quick check of the script; the figures are for N = 16)
 * Run it from the repository root after `pnpm build`; it takes tens of minutes on two cores.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printHelp } from './lib.mjs';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const CLI = join(ROOT, 'apps/cli/dist/cli.js');

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
if (flag('--help')) printHelp(import.meta.url);
if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run pnpm build first`);
  process.exit(2);
}

// Llama-3.2-1B (meta-llama/Llama-3.2-1B config.json).
const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 2048,
  intermediate_size: 8192,
  num_hidden_layers: Number(value('--layers', '16')),
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 64,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  hidden_act: 'silu',
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: true,
  bos_token_id: 128000,
  eos_token_id: 128001,
  torch_dtype: 'bfloat16',
};

/** Every tensor with its shape and the value range of its uniform random weights (norms: constant 1). */
function tensorList(c) {
  const d = c.hidden_size;
  const h = c.intermediate_size;
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  const std = 0.02;
  const a = std * Math.sqrt(3); // uniform [-a, a] has this standard deviation
  const list = [{ name: 'model.embed_tokens.weight', shape: [c.vocab_size, d], a }];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    list.push(
      { name: `${p}input_layernorm.weight`, shape: [d], one: true },
      { name: `${p}post_attention_layernorm.weight`, shape: [d], one: true },
      { name: `${p}self_attn.q_proj.weight`, shape: [q, d], a },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, d], a },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, d], a },
      { name: `${p}self_attn.o_proj.weight`, shape: [d, q], a },
      { name: `${p}mlp.gate_proj.weight`, shape: [h, d], a },
      { name: `${p}mlp.up_proj.weight`, shape: [h, d], a },
      { name: `${p}mlp.down_proj.weight`, shape: [d, h], a },
    );
  }
  list.push({ name: 'model.norm.weight', shape: [d], one: true });
  return list;
}

/** The safetensors file, written tensor by tensor in chunks (bf16, the upper half of each float32, rounded). */
function writeModel(path, tensors, seed) {
  let offset = 0;
  const header = {};
  header.__metadata__ = { format: 'pt' };
  for (const t of tensors) {
    const n = t.shape.reduce((x, y) => x * y, 1);
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + 2 * n] };
    offset += 2 * n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    let state = seed >>> 0 || 1;
    const CHUNK = 1 << 22;
    const f = new Float32Array(CHUNK);
    const u = new Uint32Array(f.buffer);
    const out = new Uint16Array(CHUNK);
    for (const t of tensors) {
      let left = t.shape.reduce((x, y) => x * y, 1);
      while (left > 0) {
        const m = Math.min(CHUNK, left);
        for (let i = 0; i < m; i++) {
          if (t.one) f[i] = 1;
          else {
            // xorshift32: fast, and deterministic for a given --seed.
            state ^= state << 13;
            state ^= state >>> 17;
            state ^= state << 5;
            f[i] = t.a * (2 * ((state >>> 0) / 4294967296) - 1);
          }
          const v = u[i];
          out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
        }
        writeSync(fd, new Uint8Array(out.buffer, 0, 2 * m));
        left -= m;
      }
    }
  } finally {
    closeSync(fd);
  }
  return 8 + Buffer.byteLength(json) + offset;
}

/** A byte-level BPE tokenizer.json (GPT-2's byte table, no merges) with Llama 3's special tokens at their ids. */
function writeTokenizer(dir) {
  const printable = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const vocab = {};
  let extra = 0;
  for (let b = 0; b < 256; b++) vocab[String.fromCodePoint(printable.includes(b) ? b : 256 + extra++)] = b;
  // Every id of the 128,256 has a token, as in Llama 3's vocabulary: plain pieces (never produced by encoding,
  // which has no merges here, but decodable) and the 256 special tokens from 128,000 on.
  for (let id = 256; id < 128000; id++) vocab[`t${id}`] = id;
  const specials = [
    [128000, '<|begin_of_text|>'],
    [128001, '<|end_of_text|>'],
  ];
  for (let id = 128002; id < 128256; id++) specials.push([id, `<|reserved_special_token_${id - 128002}|>`]);
  for (const [id, t] of specials) vocab[t] = id;
  const json = {
    version: '1.0',
    added_tokens: specials.map(([id, content]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges: [] },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', tokenizer_class: 'PreTrainedTokenizerFast' }));
}

/** Run the CLI under /usr/bin/time -v; returns exit code, stdout, peak RSS and wall seconds. */
function timed(cliArgs) {
  const started = Date.now();
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, CLI, ...cliArgs], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr ?? '');
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: (r.stderr ?? '').split('\n').filter((l) => !/^\t/.test(l)).join('\n').trim(),
    peakRssKiB: rss ? Number(rss[1]) : null,
    seconds: (Date.now() - started) / 1000,
  };
}

const gib = (kib) => (kib === null ? null : kib / 1024 / 1024);

const dir = value('--dir') ? resolve(value('--dir')) : mkdtempSync(join(tmpdir(), 'ultrasketch-1b-'));
mkdirSync(dir, { recursive: true });
const keep = flag('--keep');
const codecs = value('--codecs', 'littlebit,sketch').split(',');
const summary = { model: {}, runs: [] };
try {
  const tensors = tensorList(CONFIG);
  const params = tensors.reduce((n, t) => n + t.shape.reduce((x, y) => x * y, 1), 0);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG, null, 2));
  writeTokenizer(dir);
  const t0 = Date.now();
  const bytes = writeModel(join(dir, 'model.safetensors'), tensors, Number(value('--seed', '1')));
  summary.model = { dir, parameters: params, layers: CONFIG.num_hidden_layers, fileBytes: bytes, dtype: 'BF16', writeSeconds: (Date.now() - t0) / 1000 };
  console.error(`wrote ${dir}/model.safetensors: ${params.toLocaleString('en-US')} parameters, ${(bytes / 1e9).toFixed(2)} GB`);

  for (const codec of codecs) {
    const bpw = codec === 'littlebit' ? '0.55' : '0.5';
    const out = join(dir, `${codec}.usk`);
    const cmd = ['compress', dir, '--codec', codec, '--bpw', bpw, '-o', out, '--json', '-q'];
    console.error(`ultrasketch ${cmd.join(' ')} ...`);
    const c = timed(cmd);
    const run = { codec, bpw: Number(bpw), command: `ultrasketch ${cmd.join(' ')}`, exit: c.code, peakRssGiB: gib(c.peakRssKiB), seconds: c.seconds };
    if (c.code !== 0) {
      run.error = c.stderr.slice(-2000);
      summary.runs.push(run);
      console.error(`  failed (exit ${c.code}): ${run.error}`);
      continue;
    }
    const report = JSON.parse(c.stdout);
    Object.assign(run, {
      bundleBytes: statSync(out).size,
      bpwLinears: report.bpwLinears,
      bitsPerParam: report.bitsPerParam,
      keptDense: report.keptDense.length,
      encodeSeconds: report.seconds.encode,
    });
    const g = timed(['generate', out, '--prompt', 'Hi', '--steps', '8', '--temperature', '0', '--json', '-q']);
    run.generate = g.code === 0 ? { tokens: JSON.parse(g.stdout).tokens, peakRssGiB: gib(g.peakRssKiB), seconds: g.seconds } : { exit: g.code, error: g.stderr.slice(-1000) };
    summary.runs.push(run);
    console.error(`  peak RSS ${run.peakRssGiB?.toFixed(2)} GiB, ${run.seconds.toFixed(0)} s, bundle ${(run.bundleBytes / 1e6).toFixed(1)} MB, bpwLinears ${run.bpwLinears.toFixed(4)}`);
  }
  console.log(JSON.stringify(summary, null, 2));
  console.log('\n| codec | command | peak RSS (GiB) | wall s | bundle MB | bpwLinears | bitsPerParam | generate (8 positions): peak RSS GiB, ids |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of summary.runs) {
    if (r.exit !== 0) {
      console.log(`| ${r.codec} | \`${r.command}\` | ${r.peakRssGiB?.toFixed(2)} | ${r.seconds.toFixed(0)} | failed | | | |`);
      continue;
    }
    const g = r.generate.tokens ? `${r.generate.peakRssGiB.toFixed(2)}, ${r.generate.tokens.join(' ')}` : `failed: ${r.generate.error}`;
    console.log(`| ${r.codec} ${r.bpw} | \`${r.command.replaceAll(dir, 'DIR')}\` | ${r.peakRssGiB.toFixed(2)} | ${r.seconds.toFixed(0)} | ${(r.bundleBytes / 1e6).toFixed(1)} | ${r.bpwLinears.toFixed(4)} | ${r.bitsPerParam.toFixed(4)} | ${g} |`);
  }
} finally {
  if (!keep) rmSync(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}
