import { existsSync } from 'node:fs';
import { GpuContext, describeAdapter } from '@ultrasketch/runtime-webgpu';
import { nodeGpu } from '@ultrasketch/runtime-webgpu/node';
import { CalibrationBatches } from '../src/index.js';
import { type GpuTensor, GpuTrainContext, type ReductionLanes } from '../src/webgpu/index.js';

/**
 * The WebGPU training tests' device: Dawn (the `webgpu` package, through runtime-webgpu's ./node entry) on
 * SwiftShader when there is no GPU. These suites FAIL — never skip — when no adapter is found (as
 * runtime-webgpu's do), and log the adapter they ran on.
 */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

let device: Promise<GpuContext> | null = null;
const contexts = new Map<string, Promise<GpuTrainContext>>();
/**
 * A training context on the test adapter (one device shared by every context of the file). `lanes`: the
 * reduction programs' shape (1 or 64); default the context's own choice for the adapter (1 on SwiftShader).
 */
export function trainContext(lanes?: ReductionLanes): Promise<GpuTrainContext> {
  device ??= (async () => {
    const gpu = await GpuContext.create(await nodeGpu()).catch((err: Error) => {
      throw new Error(
        `no WebGPU adapter: ${err.message}. The WebGPU trainer suite needs one: apt-get install -y chromium libvulkan1 (SwiftShader) and run with VK_ICD_FILENAMES=${SWIFTSHADER_ICD}`,
      );
    });
    console.log(`[webgpu] adapter: ${describeAdapter(gpu.adapter)}`);
    return gpu;
  })();
  const key = String(lanes ?? 'default');
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = device.then((gpu) => GpuTrainContext.create(gpu, lanes === undefined ? {} : { lanes }));
    contexts.set(key, ctx);
  }
  return ctx;
}

/** Both reduction shapes, for the ops whose programs have them. */
export const LANES: ReductionLanes[] = [1, 64];

/** Deterministic uniform(−s, s) values (a small LCG: tests must not depend on Math.random). */
export function randArray(len: number, seed: number, s = 1): Float32Array {
  let x = seed >>> 0 || 1;
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = ((x / 4294967296) * 2 - 1) * s;
  }
  return out;
}

/** max |a − b| / max(max |b|, floor): the error relative to the reference's scale. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  let d = 0;
  let m = floor;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

export function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * Central differences with one Richardson step, (4·D(h/2) − D(h))/3: the h² truncation term cancels, so h can
 * stay large enough (1e-2) for f32 rounding of L not to dominate. `loss(e)` evaluates L at x + e·d.
 */
export async function fd(loss: (step: number) => Promise<number>, h: number): Promise<number> {
  const d = async (e: number) => ((await loss(e)) - (await loss(-e))) / (2 * e);
  return (4 * (await d(h / 2)) - (await d(h))) / 3;
}

export function plus(x: Float32Array, d: Float32Array, s: number): Float32Array {
  return x.map((v, i) => v + s * d[i]!);
}

export async function readAll(ctx: GpuTrainContext, ...ts: GpuTensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push(await ctx.read(t));
  return out;
}

/**
 * The CPU Trainer and a WebGPU trainer in lockstep for `steps` steps: the GPU is fed the batches the CPU draws
 * from its own calibration stream (`calib`, `seed`: the same CalibrationBatches), and `check(s, got, want)` sees
 * each step's GPU and CPU results.
 */
export async function stepInLockstep<C, G>(
  cpu: { step(): C },
  gpu: { step(windows: Int32Array): Promise<G> },
  calib: Int32Array,
  run: { batch: number; seqLen: number; steps: number },
  seed: number,
  check: (s: number, got: G, want: C) => void,
): Promise<void> {
  const batches = new CalibrationBatches(calib, run.seqLen, seed);
  const windows = new Int32Array(run.batch * (run.seqLen + 1));
  for (let s = 0; s < run.steps; s++) {
    const want = cpu.step();
    batches.fill(s, windows, 0, run.batch);
    check(s, await gpu.step(windows), want);
  }
}

/** The first `steps` batches the CPU Trainer draws from `calib` with `seed`: each `batch` windows of seqLen + 1 tokens. */
export function trainingWindows(calib: Int32Array, run: { batch: number; seqLen: number; steps: number }, seed: number): Int32Array[] {
  const batches = new CalibrationBatches(calib, run.seqLen, seed);
  return Array.from({ length: run.steps }, (_, s) => {
    const w = new Int32Array(run.batch * (run.seqLen + 1));
    batches.fill(s, w, 0, run.batch);
    return w;
  });
}
