/**
 * Helpers shared by the kernel benchmarks (bench/kernels-1b.mjs: runtime-node; bench/webgpu-speed.mjs:
 * runtime-webgpu): the command-line basics (help from the script's doc comment, failing with an exit code,
 * checking the packages are built), the synthetic weight matrices both time the codecs on, the on-disk cache of
 * encoded parameters, and the timing statistics. Plain ESM, no dependencies: the benchmarks import the BUILT
 * packages themselves (`dist(pkg)`), so nothing here depends on a build.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A package's built entry (packages/<pkg>/dist/index.js). */
export const dist = (pkg) => join(ROOT, 'packages', pkg, 'dist/index.js');

/** Print `message` on stderr and exit with `code` (1: the run failed; 2: the command line is wrong). */
export function fail(message, code = 1) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** Print the script's leading doc comment (its usage) on stdout and exit 0, as `--help` does. */
export function printHelp(scriptUrl) {
  const doc = readFileSync(fileURLToPath(scriptUrl), 'utf8').split('*/')[0];
  process.stdout.write(`${doc.replace(/^(#!.*\n)?\/\*\*\n/, '').replace(/^ \* ?/gm, '')}\n`);
  process.exit(0);
}

/** Fail (exit 1) unless every named package has been built. */
export function requireBuilt(pkgs) {
  for (const pkg of pkgs) {
    if (!existsSync(dist(pkg))) fail(`packages/${pkg} is not built (${relative(ROOT, dist(pkg))} is missing); run \`pnpm build\` first`);
  }
}

/** A progress line on stderr. */
export const log = (s) => process.stderr.write(`${s}\n`);

// ------------------------------------------------------------------------------------------------ weights

/**
 * A synthetic rows × cols weight matrix, the same for every codec and every run with the same seed: Laplace(0,
 * b = 0.02) (−b·sign(u)·ln(1 − 2|u|), u uniform in (−½, ½)) or normal (std 0.02). `Rng` is @ultrasketch/core's
 * seeded generator (passed in: the caller imports the built package).
 */
export function syntheticWeights(Rng, seed, rows, cols, dist = 'laplace') {
  const rng = new Rng(seed * 1_000_003 + rows * 31 + cols);
  const w = new Float32Array(rows * cols);
  if (dist === 'normal') {
    for (let i = 0; i < w.length; i++) w[i] = 0.02 * rng.normal();
  } else {
    for (let i = 0; i < w.length; i++) {
      const u = rng.next() - 0.5;
      const a = 1 - 2 * Math.abs(u);
      w[i] = (u < 0 ? 0.02 : -0.02) * Math.log(a > 0 ? a : Number.MIN_VALUE);
    }
  }
  return w;
}

// ------------------------------------------------------------------------------- encoded-parameter cache

/**
 * Save a codec's tensors (`codec.toTensors(params)`) to `file`: a 4-byte little-endian header length, a JSON
 * header {tensors: {name: {dtype, shape, offset, length}}}, the data. Written atomically (temporary file, then
 * rename), so a run killed mid-write leaves no truncated cache entry.
 */
export function saveParams(file, tensors) {
  const entries = {};
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    entries[name] = { dtype: t.dtype, shape: t.shape, offset: at, length: t.data.byteLength };
    at += t.data.byteLength;
  }
  const header = Buffer.from(JSON.stringify({ tensors: entries }));
  const out = Buffer.alloc(4 + header.length + at);
  out.writeUInt32LE(header.length, 0);
  header.copy(out, 4);
  for (const [name, t] of Object.entries(tensors)) out.set(t.data, 4 + header.length + entries[name].offset);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, out);
  renameSync(`${file}.tmp`, file);
}

/** Read what `saveParams` wrote: {name: {dtype, shape, data}} (each data a copy, for `codec.fromTensors`). */
export function loadParams(file) {
  const buf = readFileSync(file);
  const hl = buf.readUInt32LE(0);
  const { tensors } = JSON.parse(buf.subarray(4, 4 + hl).toString('utf8'));
  const out = {};
  for (const [name, e] of Object.entries(tensors)) {
    const data = new Uint8Array(e.length);
    data.set(buf.subarray(4 + hl + e.offset, 4 + hl + e.offset + e.length));
    out[name] = { dtype: e.dtype, shape: e.shape, data };
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ timing

export const now = () => performance.now();

/** This process's CPU time (user + system) in ms: on a shared machine, the time the work itself ran. */
export function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
