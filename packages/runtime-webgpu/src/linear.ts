import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type GpuContext, BufferUsage } from './device.js';
import { WebGpuError } from './errors.js';
import { type BindingKind, type Dispatch, type GpuProgram, type PipelineCache, grid2d } from './program.js';
import { FLAG_ACCUMULATE, FLAG_LOGIT_ROWS, LIN_STRUCT, STEP_STRUCT, linWords, storageDecls } from './wgsl.js';

/**
 * The fused linear kernel, written once and specialised per codec.
 *
 * A codec contributes a `WeightCode`: its parameter buffers and a WGSL `decode(row, j0, &w)` that writes the
 * E weights Ŵ[row, j0 .. j0+E) of the current row block straight from the stored parameters (0 past the last
 * column), plus `rowScale(row)` applied to the finished dot product. The template around it computes, for a
 * block of rows and a tile of TB tokens,
 *
 *     y[t, rowBase + r] (+)= rowScale(r) · Σ_j Ŵ[r, j] · x[t, xOff + j]
 *
 * with one workgroup of 64 threads per row (ROWS rows in turn when the codec loads shared state into
 * workgroup memory first): each thread decodes a strided set of E-weight chunks ONCE and multiplies them with
 * all TB tokens, then the workgroup reduces. TB = 1 is the matrix–vector kernel of generation; TB = 8 is the
 * small matrix–matrix kernel of prefill (each decoded weight serves 8 tokens). Nothing is ever expanded to a
 * dense matrix in GPU memory: what is resident is exactly the codec's parameters (plus, for the sketch, the
 * hash offsets derived from its seed — see sketch.ts).
 *
 * The same `decode` also serves the embedding lookup (`gather`): the rows of the tokens of the batch.
 */

export interface WeightCode {
  /** Part of the cache key: everything that changes the WGSL of this code. */
  readonly key: string;
  /** Its parameter buffers (bindings 4.. in the linear program, in this order). */
  readonly buffers: ReadonlyArray<{ name: string; type?: string }>;
  /**
   * WGSL: helpers, `fn decode4(row: u32, j0: u32) -> vec4<f32>` (weights j0..j0+3 of the block's row; values
   * past the last column may be anything finite — the template masks them) and `fn rowScale(row: u32) -> f32`.
   */
  readonly wgsl: string;
  /** Optional: `fn prologue(tid: u32)` loading shared parameters into workgroup memory (linear program only). */
  readonly prologue?: boolean;
  /** Passes over 64/lanes rows each per workgroup (default 1); > 1 when a prologue's load is worth sharing. */
  readonly iterations?: number;
}

export const WORKGROUP = 64;
/** Tokens per tile of the batched (prefill) variant. */
export const PREFILL_TILE = 8;

export function linearProgram(code: WeightCode, tb: number, lanes: number, xVec4 = false): GpuProgram {
  if (![1, 2, 4, 8, 16, 32, 64].includes(lanes)) throw new RangeError(`lanes ${lanes} must be a power of two ≤ 64`);
  const iters = code.iterations ?? 1;
  const slots = WORKGROUP / lanes;
  const bindings: BindingKind[] = ['uniform', 'uniform', 'read', 'rw', ...code.buffers.map(() => 'read' as const)];
  const T = Array.from({ length: tb }, (_, t) => t);
  // Unrolled over the TB tokens (scalar accumulators, no private arrays: software adapters keep those in memory).
  // xVec4: x rows start on 16-byte boundaries (xStride and xOff multiples of 4), so x is read as vec4s.
  const xbases = T.map((t) => `    let xb${t} = (min(t0 + ${t}u, nTok - 1u) * lin.xStride + lin.xOff)${xVec4 ? ' / 4u' : ''};`).join('\n');
  const accs = T.map((t) => `    var a${t} = 0.0;`).join('\n');
  const dots = T.map((t) =>
    xVec4
      ? `        a${t} += dot(w, x[xb${t} + ch]);`
      : `        a${t} += dot(w, vec4<f32>(x[xb${t} + j0], x[xb${t} + j0 + 1u], x[xb${t} + j0 + 2u], x[xb${t} + j0 + 3u]));`,
  ).join('\n');
  // The tail's x values past the last column meet zero weights; vec4 reads stay inside the buffer (robust access).
  const tailDots = T.map((t) =>
    xVec4
      ? `        a${t} += dot(w, x[xb${t} + nFull]);`
      : `        a${t} += dot(w, vec4<f32>(x[xb${t} + j0], x[xb${t} + min(j0 + 1u, lastCol)], x[xb${t} + min(j0 + 2u, lastCol)], x[xb${t} + min(j0 + 3u, lastCol)]));`,
  ).join('\n');
  const finish =
    lanes === 1
      ? `    if (live) {
      let scale = rowScale(row);
${T.map((t) => `      if (t0 + ${t}u < nTok) {\n        store((t0 + ${t}u) * lin.yStride + lin.rowBase + row, a${t} * scale);\n      }`).join('\n')}
    }`
      : `${T.map((t) => `    red[${t}u * WG + tid] = a${t};`).join('\n')}
    workgroupBarrier();
    if (live) {
      for (var t = lane; t < TB; t += LANES) {
        if (t0 + t < nTok) {
          var s = 0.0;
          for (var l = 0u; l < LANES; l++) {
            s += red[t * WG + slot * LANES + l];
          }
          store((t0 + t) * lin.yStride + lin.rowBase + row, s * rowScale(row));
        }
      }
    }
    workgroupBarrier();`;
  const wgsl = /* wgsl */ `
// Fused linear (${code.key}), ${tb === 1 ? 'matrix-vector' : `${tb}-token tile`}: for a block of rows of the stored
// weight, y[t, rowBase + r] (+)= rowScale(r) * sum_j W[r, j] * x[t, xOff + j], decoding W four weights at a
// time from the codec's parameters (decode4). ${lanes} thread(s) per row, ${slots} rows per workgroup pass,
// ${iters} pass(es) per workgroup.
${STEP_STRUCT}
${LIN_STRUCT}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> lin: Lin;
@group(0) @binding(2) var<storage, read> x: array<${xVec4 ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${storageDecls(4, code.buffers)}
const WG: u32 = ${WORKGROUP}u;
const TB: u32 = ${tb}u;
const LANES: u32 = ${lanes}u;
const SLOTS: u32 = ${slots}u;
const ITERS: u32 = ${iters}u;
${lanes === 1 ? '' : `var<workgroup> red: array<f32, ${WORKGROUP * tb}>;`}
${code.wgsl}

fn store(o: u32, v: f32) {
  if ((lin.flags & 1u) != 0u) {
    y[o] = y[o] + v;
  } else {
    y[o] = v;
  }
}

// decode4 with the weights past the last column set to 0 (the row's last, partial chunk).
fn decodeTail(row: u32, j0: u32) -> vec4<f32> {
  let w = decode4(row, j0);
  return select(vec4<f32>(0.0), w, vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(lin.cols));
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let nTok = select(step.n, step.logitRows, (lin.flags & 2u) != 0u);
  let t0 = wid.z * TB;
  let first = (wid.x + wid.y * lin.gridX) * SLOTS * ITERS;
  if (first >= lin.rows || t0 >= nTok) {
    return;
  }
  ${code.prologue ? 'prologue(tid);\n  workgroupBarrier();' : ''}
  let lane = tid % LANES;
  let slot = tid / LANES;
  let nFull = lin.cols / 4u;
  let lastCol = lin.cols - 1u;
  for (var it = 0u; it < ITERS; it++) {
    if (first + it * SLOTS >= lin.rows) {
      break;
    }
    let row = first + it * SLOTS + slot;
    let live = row < lin.rows;
${xbases}
${accs}
    if (live) {
      for (var ch = lane; ch < nFull; ch += LANES) {
        let j0 = ch * 4u;
        let w = decode4(row, j0);
${dots}
      }
      if (nFull * 4u < lin.cols && nFull % LANES == lane) {
        let j0 = nFull * 4u;
        let w = decodeTail(row, j0);
${tailDots}
      }
    }
${finish}
  }
}
`;
  return {
    name: `linear:${code.key}:tb${tb}:l${lanes}${xVec4 ? ':x4' : ''}`,
    cacheKey: `linear|${code.key}|tb${tb}|lanes${lanes}|iters${iters}|x${xVec4 ? 4 : 1}`,
    bindings,
    wgsl,
  };
}

/** Rows one workgroup of `linearProgram` covers. */
export function rowsPerWorkgroup(code: WeightCode, lanes: number): number {
  return (WORKGROUP / lanes) * (code.iterations ?? 1);
}

/** Embedding lookup through a codec's decode: y[t, :] = rowScale · Ŵ[token_t − rowBase, :] for tokens in this block. */
export function gatherProgram(code: WeightCode): GpuProgram {
  const bindings: BindingKind[] = ['uniform', 'uniform', 'read', 'rw', ...code.buffers.map(() => 'read' as const)];
  const wgsl = /* wgsl */ `
// Embedding lookup (${code.key}): for each token t of the batch whose id falls in this row block,
// y[t, j] = rowScale(r) * W[r, j] with r = token - rowBase, decoded four at a time from the codec's parameters.
${STEP_STRUCT}
${LIN_STRUCT}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> lin: Lin;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${storageDecls(4, code.buffers)}
${code.wgsl}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y;
  let j0 = gid.x * 4u;
  if (t >= step.n || j0 >= lin.cols) {
    return;
  }
  let tok = tokens[t];
  if (tok < lin.rowBase || tok >= lin.rowBase + lin.rows) {
    return;
  }
  let row = tok - lin.rowBase;
  let w = decode4(row, j0) * rowScale(row);
  let o = t * lin.yStride + j0;
  for (var e = 0u; e < 4u; e++) {
    if (j0 + e < lin.cols) {
      y[o + e] = w[e];
    }
  }
}
`;
  return { name: `gather:${code.key}`, cacheKey: `gather|${code.key}`, bindings, wgsl };
}

/** Where a linear reads and writes, fixed when the session is built. */
export interface LinearIO {
  x: GPUBuffer;
  /** Floats between consecutive tokens' inputs (default: inFeatures) and the first input column (default 0). */
  xStride?: number;
  xOff?: number;
  y: GPUBuffer;
  /** Floats between consecutive tokens' outputs (default: outFeatures); output row r goes to column yOff + r. */
  yStride?: number;
  yOff?: number;
  /** Add into y instead of overwriting (the residual add, fused). */
  accumulate?: boolean;
  /** The batch is the logit rows of the step (the classifier) instead of all n tokens. */
  logitRows?: boolean;
  label: string;
}

export interface GatherIO {
  tokens: GPUBuffer;
  y: GPUBuffer;
  label: string;
}

/** Everything a kernel factory gets besides the codec's parameters. */
export interface KernelBuildContext {
  gpu: GpuContext;
  cache: PipelineCache;
  /** Largest batch (tokens per pass) the session runs; scratch a kernel owns is sized for it. */
  maxBatch: number;
  /** Workgroup memory (bytes) a kernel may use to keep shared parameters resident (sketch states); 0 = never. */
  residentBytes: number;
  /** Weight name, for labels and errors. */
  name: string;
  /** Threads cooperating on one row in the linear kernels (1..64, a power of two); see `defaultLanes`. */
  lanes: number;
}

/**
 * Threads per row: 8 on hardware GPUs (eight threads read a row's consecutive chunks, 128 contiguous bytes per
 * step, and reduce once per workgroup); 1 on software adapters (SwiftShader runs a workgroup's barrier as a
 * coroutine switch, which dominated the cost: one thread per row needs no barrier at all).
 */
export function defaultLanes(software: boolean): number {
  return software ? 1 : 8;
}

/** A codec's linear on the GPU: records its dispatches for each place it is used. */
export interface GpuLinear {
  readonly codec: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Bytes of GPU memory holding this weight's parameters (what is resident: the codec's storage, no dense copy). */
  readonly paramBytes: number;
  /** The programs its dispatches use (compiled by the session's warmup). */
  programs(): GpuProgram[];
  /** Dispatches computing y (+)= Ŵ x for the batch. Called once per use when the session is built. */
  record(io: LinearIO): Dispatch[];
  /** Whether this weight can serve as an embedding table (`recordGather`). */
  readonly gatherable: boolean;
  /** Dispatches writing the embedding rows of the batch's tokens (UNSUPPORTED when not gatherable). */
  recordGather(io: GatherIO): Dispatch[];
  dispose(): void;
}

/** One row block of a weight: its rows, the codec words of its Lin uniform, its parameter buffers. */
export interface RowBlock {
  rows: number;
  rowBase: number;
  words: readonly number[];
  buffers: GPUBuffer[];
}

/**
 * The common GpuLinear: a weight stored as row blocks (one block unless the weight is larger than the binding
 * limit), each dispatched with the same program.
 */
export class BlockedLinear implements GpuLinear {
  private readonly uniforms: GPUBuffer[] = [];
  private readonly vectorProgram: GpuProgram;
  private readonly tileProgram: GpuProgram;
  private readonly vectorProgram4: GpuProgram;
  private readonly tileProgram4: GpuProgram;
  private readonly gatherProg: GpuProgram | null;

  constructor(
    readonly codec: string,
    readonly outFeatures: number,
    readonly inFeatures: number,
    private readonly code: WeightCode,
    private readonly blocks: RowBlock[],
    private readonly b: KernelBuildContext,
    /** The code used for embedding lookups (no workgroup prologue), or null when not supported. */
    gatherCode: WeightCode | null = code.prologue ? null : code,
    private readonly owned: GPUBuffer[] = [],
  ) {
    this.vectorProgram = linearProgram(code, 1, b.lanes);
    this.tileProgram = linearProgram(code, PREFILL_TILE, b.lanes);
    this.vectorProgram4 = linearProgram(code, 1, b.lanes, true);
    this.tileProgram4 = linearProgram(code, PREFILL_TILE, b.lanes, true);
    this.gatherProg = gatherCode ? gatherProgram(gatherCode) : null;
    this.gatherable = this.gatherProg !== null;
  }

  readonly gatherable: boolean;

  get paramBytes(): number {
    const seen = new Set<GPUBuffer>();
    let total = 0;
    for (const blk of this.blocks) {
      for (const buf of blk.buffers) {
        if (!seen.has(buf)) total += buf.size;
        seen.add(buf);
      }
    }
    return total;
  }

  programs(): GpuProgram[] {
    return [this.vectorProgram, this.tileProgram, this.vectorProgram4, this.tileProgram4, ...(this.gatherProg ? [this.gatherProg] : [])];
  }

  record(io: LinearIO): Dispatch[] {
    const rowsPer = rowsPerWorkgroup(this.code, this.b.lanes);
    const flags = (io.accumulate ? FLAG_ACCUMULATE : 0) | (io.logitRows ? FLAG_LOGIT_ROWS : 0);
    const perDim = this.b.gpu.limits.workgroupsPerDimension;
    return this.blocks.map((blk, i) => {
      const [gx, gy] = grid2d(Math.ceil(blk.rows / rowsPer), perDim);
      const uniform = this.b.gpu.uniform(
        linWords({
          rows: blk.rows,
          cols: this.inFeatures,
          rowBase: (io.yOff ?? 0) + blk.rowBase,
          yStride: io.yStride ?? this.outFeatures,
          xStride: io.xStride ?? this.inFeatures,
          xOff: io.xOff ?? 0,
          flags,
          gridX: gx,
          c: blk.words,
        }),
        `${io.label}.lin${i}`,
      );
      this.uniforms.push(uniform);
      const label = `${io.label}[${i}]`;
      const aligned = (io.xStride ?? this.inFeatures) % 4 === 0 && (io.xOff ?? 0) % 4 === 0;
      const vector = aligned ? this.vectorProgram4 : this.vectorProgram;
      const tile = aligned ? this.tileProgram4 : this.tileProgram;
      // Both variants share one bind-group layout, so one bind group serves both.
      const bindGroup = this.b.cache.bindGroup(vector, [stepBuffer(this.b), uniform, io.x, io.y, ...blk.buffers], label);
      return {
        program: vector,
        bindGroup,
        grid(n: number, logitRows: number) {
          const tokens = io.logitRows ? logitRows : n;
          return tokens === 0 ? [0, 0, 0] : [gx, gy, tokens === 1 ? 1 : Math.ceil(tokens / PREFILL_TILE)];
        },
        variant(n: number, logitRows: number) {
          return (io.logitRows ? logitRows : n) === 1 ? vector : tile;
        },
        programs: [vector, tile],
        label,
      } satisfies Dispatch;
    });
  }

  recordGather(io: GatherIO): Dispatch[] {
    const program = this.gatherProg;
    if (!program) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `codec ${this.codec} cannot serve as an embedding table on WebGPU`, {
        source: io.label,
        hint: 'store the embedding as float or rtn (compress --embeddings)',
      });
    }
    return this.blocks.map((blk, i) => {
      const uniform = this.b.gpu.uniform(
        linWords({ rows: blk.rows, cols: this.inFeatures, rowBase: blk.rowBase, yStride: this.inFeatures, xStride: 0, xOff: 0, flags: 0, gridX: 0, c: blk.words }),
        `${io.label}.lin${i}`,
      );
      this.uniforms.push(uniform);
      const bindGroup = this.b.cache.bindGroup(program, [stepBuffer(this.b), uniform, io.tokens, io.y, ...blk.buffers], `${io.label}[${i}]`);
      const gx = Math.ceil(Math.ceil(this.inFeatures / 4) / WORKGROUP);
      return { program, bindGroup, grid: (n: number): [number, number, number] => [gx, n, 1], label: `${io.label}[${i}]` };
    });
  }

  dispose(): void {
    for (const u of this.uniforms) u.destroy();
    for (const blk of this.blocks) for (const b of blk.buffers) b.destroy();
    for (const b of this.owned) b.destroy();
    this.uniforms.length = 0;
  }
}

// The session's Step uniform, shared by every kernel it builds (set on the build context by the session).
const STEP = new WeakMap<KernelBuildContext, GPUBuffer>();
export function setStepBuffer(b: KernelBuildContext, step: GPUBuffer): void {
  STEP.set(b, step);
}
export function stepBuffer(b: KernelBuildContext): GPUBuffer {
  const s = STEP.get(b);
  if (!s) throw new Error('kernel build context has no step buffer');
  return s;
}

// ------------------------------------------------------------------------------------------------ splitting

/**
 * Largest buffer a weight block may use: the binding limit, and at most 2^28 bytes so that bit positions inside
 * a block (up to 8 · bytes) stay below 2^31 in the kernels' u32 arithmetic.
 */
export function blockByteLimit(gpu: GpuContext): number {
  return Math.min(gpu.limits.bindingBytes, 2 ** 28);
}

/**
 * Plan row blocks: `perRow` lists, for each parameter buffer that is split by rows, its bytes per row; every
 * block's buffers (plus up to 8 bytes of alignment slack and the 4-byte tail pad) must fit the limit.
 */
export function planRowBlocks(rows: number, perRow: number[], limit: number, what: string): Array<{ row0: number; rows: number }> {
  let rowsPer = rows;
  for (const bytes of perRow) {
    if (bytes <= 0) continue;
    const fit = Math.floor((limit - 12) / bytes);
    if (fit < 1) {
      throw new WebGpuError('limits', `${what}: one row needs ${Math.ceil(bytes)} bytes, above the binding limit of ${limit}`, {
        hint: 'this runtime splits weights by rows; a single row must fit one binding',
      });
    }
    rowsPer = Math.min(rowsPer, fit);
  }
  const out: Array<{ row0: number; rows: number }> = [];
  for (let r = 0; r < rows; r += rowsPer) out.push({ row0: r, rows: Math.min(rowsPer, rows - r) });
  return out;
}

/** The bytes holding bits [firstBit, firstBit + nBits) of an LSB-first stream, from a 32-bit word boundary. */
export function sliceBits(bytes: Uint8Array, firstBit: number, nBits: number): { data: Uint8Array; bitOffset: number } {
  const startWord = Math.floor(firstBit / 32);
  const end = Math.min(bytes.length, Math.ceil((firstBit + nBits) / 8));
  return { data: bytes.subarray(startWord * 4, Math.max(startWord * 4, end)), bitOffset: firstBit - startWord * 32 };
}

/** Halves [first, first + count) of a u16 array, from an even index (so it starts on a 32-bit word). */
export function sliceHalves(a: Uint16Array, first: number, count: number): { data: Uint16Array; offset: number } {
  const start = first - (first & 1);
  return { data: a.subarray(start, first + count), offset: first - start };
}

/** Bytes of a typed array (a view, no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A zero-filled scratch storage buffer. */
export function scratchBuffer(gpu: GpuContext, bytes: number, label: string): GPUBuffer {
  return gpu.buffer(bytes, BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST, label);
}
