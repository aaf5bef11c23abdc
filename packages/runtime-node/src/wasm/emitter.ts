/**
 * A small WebAssembly binary emitter: just enough of the format to write numeric kernels by hand.
 *
 * What it covers (WebAssembly core spec 2.0 §5 "Binary format", plus the fixed-width SIMD proposal that is
 * part of 2.0):
 * - a module with a type section, imported functions (a decode program calls other modules' kernels) and at most
 *   ONE imported memory (`env.memory`, optionally shared), a function section, an export section (functions
 *   only) and a code section;
 * - LEB128 integers (unsigned for indices/sizes/opcodes, signed for `i32.const`);
 * - the instructions the kernels use: locals, block/loop/br/br_if, i32 arithmetic and comparisons,
 *   f32 load/store/add/mul, call, memory.copy, and the SIMD subset v128.load/store/const,
 *   f32x4.splat/add/mul/extract_lane.
 *
 * Everything else (globals, tables, data segments, i64/f64, ...) is deliberately absent; add it when a
 * kernel needs it. The output is checked by `WebAssembly.validate` in the tests and at start-up.
 */

/** Value types (spec §5.3.1; v128 from the SIMD extension). */
export const ValType = {
  i32: 0x7f,
  i64: 0x7e,
  f32: 0x7d,
  f64: 0x7c,
  v128: 0x7b,
} as const;
export type ValTypeName = keyof typeof ValType;

/** Append n as unsigned LEB128 (7 bits per byte, low group first, high bit = "more"). */
export function writeUleb(out: number[], n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`uleb: ${n} is not a u32`);
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

/** Append n as signed LEB128 (two's complement; stop when the remaining bits are all sign bits). */
export function writeSleb(out: number[], n: number): void {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`sleb: ${n} is not an i32`);
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7; // arithmetic shift keeps the sign
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function writeName(out: number[], s: string): void {
  const bytes = new TextEncoder().encode(s);
  writeUleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/** Single-byte opcodes (spec §5.4). */
const OP = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  br_if: 0x0d,
  return: 0x0f,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
  f32_load: 0x2a,
  f32_store: 0x38,
  i32_const: 0x41,
  f32_const: 0x43,
  i32_eqz: 0x45,
  i32_lt_s: 0x48,
  i32_lt_u: 0x49,
  i32_gt_u: 0x4b,
  i32_le_u: 0x4d,
  i32_ge_u: 0x4f,
  i32_add: 0x6a,
  i32_sub: 0x6b,
  i32_mul: 0x6c,
  i32_and: 0x71,
  i32_shl: 0x74,
  i32_shr_u: 0x76,
  f32_add: 0x92,
  f32_mul: 0x94,
} as const;

/**
 * SIMD opcodes: the prefix byte 0xfd followed by the sub-opcode as *unsigned LEB128* — so 0xe4 is written
 * as the two bytes e4 01. Numbers from the SIMD proposal's BinarySIMD.md (final, as merged into spec 2.0).
 */
const SIMD_PREFIX = 0xfd;
const SIMD = {
  v128_load: 0x00, // memarg
  v128_store: 0x0b, // memarg
  v128_const: 0x0c, // 16 immediate bytes
  f32x4_splat: 0x13,
  f32x4_extract_lane: 0x1f, // lane index byte
  f32x4_add: 0xe4,
  f32x4_mul: 0xe6,
} as const;

/** Empty block type (a block/loop that takes and leaves nothing on the stack). */
const BLOCKTYPE_EMPTY = 0x40;

/**
 * One function's body under construction. Instructions are appended with chainable methods named after
 * their text-format mnemonics, so a kernel reads like its .wat:  `f.get(a).get(b).i32Add().set(c)`.
 * Parameters are locals 0..params-1; `local(type)` declares further locals and returns their index.
 */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly extraLocals: ValTypeName[] = [];

  constructor(
    readonly params: readonly ValTypeName[],
    readonly results: readonly ValTypeName[] = [],
  ) {}

  /** Declare a new local of `type` (zero-initialised on entry, as wasm guarantees) and return its index. */
  local(type: ValTypeName): number {
    this.extraLocals.push(type);
    return this.params.length + this.extraLocals.length - 1;
  }

  private op(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }

  private simd(sub: number): this {
    this.code.push(SIMD_PREFIX);
    writeUleb(this.code, sub);
    return this;
  }

  /** memarg = alignment exponent (log2 bytes, a hint) + constant byte offset added to the address. */
  private memarg(alignLog2: number, offset: number): this {
    writeUleb(this.code, alignLog2);
    writeUleb(this.code, offset);
    return this;
  }

  // --- locals and constants
  get(i: number): this {
    this.op(OP.local_get);
    writeUleb(this.code, i);
    return this;
  }
  set(i: number): this {
    this.op(OP.local_set);
    writeUleb(this.code, i);
    return this;
  }
  tee(i: number): this {
    this.op(OP.local_tee);
    writeUleb(this.code, i);
    return this;
  }
  i32Const(v: number): this {
    this.op(OP.i32_const);
    writeSleb(this.code, v | 0);
    return this;
  }
  f32Const(v: number): this {
    this.op(OP.f32_const);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }

  // --- control
  block(): this {
    return this.op(OP.block, BLOCKTYPE_EMPTY);
  }
  loop(): this {
    return this.op(OP.loop, BLOCKTYPE_EMPTY);
  }
  end(): this {
    return this.op(OP.end);
  }
  /** Branch to the label `depth` levels out (0 = innermost enclosing block/loop). */
  br(depth: number): this {
    this.op(OP.br);
    writeUleb(this.code, depth);
    return this;
  }
  brIf(depth: number): this {
    this.op(OP.br_if);
    writeUleb(this.code, depth);
    return this;
  }
  /** call of function `index` (imported functions first, then the module's own, in the order added). */
  call(index: number): this {
    this.code.push(0x10);
    writeUleb(this.code, index);
    return this;
  }
  /** memory.copy (bulk memory): pops dst, src, n (bytes) and copies, overlapping ranges as memmove does. */
  memoryCopy(): this {
    this.code.push(0xfc);
    writeUleb(this.code, 10);
    this.code.push(0x00, 0x00);
    return this;
  }
  /** memory.fill (bulk memory): pops dst, value (a byte, in an i32), n (bytes) and fills. */
  memoryFill(): this {
    this.code.push(0xfc);
    writeUleb(this.code, 11);
    this.code.push(0x00);
    return this;
  }
  return(): this {
    return this.op(OP.return);
  }

  // --- i32
  i32Add(): this {
    return this.op(OP.i32_add);
  }
  i32Sub(): this {
    return this.op(OP.i32_sub);
  }
  i32Mul(): this {
    return this.op(OP.i32_mul);
  }
  i32And(): this {
    return this.op(OP.i32_and);
  }
  i32Shl(): this {
    return this.op(OP.i32_shl);
  }
  i32ShrU(): this {
    return this.op(OP.i32_shr_u);
  }
  i32Eqz(): this {
    return this.op(OP.i32_eqz);
  }
  i32LtS(): this {
    return this.op(OP.i32_lt_s);
  }
  i32LtU(): this {
    return this.op(OP.i32_lt_u);
  }
  i32GtU(): this {
    return this.op(OP.i32_gt_u);
  }
  i32LeU(): this {
    return this.op(OP.i32_le_u);
  }
  i32GeU(): this {
    return this.op(OP.i32_ge_u);
  }

  // --- f32 scalar
  f32Load(offset = 0): this {
    return this.op(OP.f32_load).memarg(2, offset);
  }
  f32Store(offset = 0): this {
    return this.op(OP.f32_store).memarg(2, offset);
  }
  f32Add(): this {
    return this.op(OP.f32_add);
  }
  f32Mul(): this {
    return this.op(OP.f32_mul);
  }

  // --- SIMD (v128 / f32x4)
  /** Load 16 bytes. Alignment hint 2^2 = 4 bytes: our rows are only float-aligned; wasm allows any. */
  v128Load(offset = 0): this {
    return this.simd(SIMD.v128_load).memarg(2, offset);
  }
  v128Store(offset = 0): this {
    return this.simd(SIMD.v128_store).memarg(2, offset);
  }
  /** v128.const with all 16 bytes zero. */
  v128Zero(): this {
    this.simd(SIMD.v128_const);
    for (let i = 0; i < 16; i++) this.code.push(0);
    return this;
  }
  f32x4Splat(): this {
    return this.simd(SIMD.f32x4_splat);
  }
  f32x4Add(): this {
    return this.simd(SIMD.f32x4_add);
  }
  f32x4Mul(): this {
    return this.simd(SIMD.f32x4_mul);
  }
  f32x4ExtractLane(lane: number): this {
    if (lane < 0 || lane > 3) throw new RangeError(`f32x4 lane ${lane}`);
    return this.simd(SIMD.f32x4_extract_lane).op(lane);
  }

  /** The function's entry in the code section: size, local declarations (run-length grouped), body, end. */
  encodeBody(): number[] {
    const body: number[] = [];
    const groups: Array<[number, ValTypeName]> = [];
    for (const t of this.extraLocals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    writeUleb(body, groups.length);
    for (const [count, t] of groups) {
      writeUleb(body, count);
      body.push(ValType[t]);
    }
    for (const b of this.code) body.push(b);
    body.push(OP.end);
    const out: number[] = [];
    writeUleb(out, body.length);
    for (const b of body) out.push(b);
    return out;
  }
}

/**
 * `while (i <u limit) { body(); i += step; }` written as a guarded do-while, so each iteration costs one
 * conditional branch (at the bottom) instead of two. The one loop shape of every hand-written kernel.
 */
export function whileLtU(f: FunctionBuilder, i: number, limit: number, step: number, body: () => void): void {
  f.block().get(i).get(limit).i32GeU().brIf(0);
  f.loop();
  body();
  f.get(i).i32Const(step).i32Add().tee(i).get(limit).i32LtU().brIf(0);
  f.end().end();
}

/**
 * Push the horizontal sum ((l0 + l1) + (l2 + l3)) of the f32x4 local `a` as an f32: the one lane order of every
 * kernel's dot products, so a product's bits do not depend on which kernel computed it.
 */
export function lanesSum(f: FunctionBuilder, a: number): void {
  f.get(a).f32x4ExtractLane(0).get(a).f32x4ExtractLane(1).f32Add();
  f.get(a).f32x4ExtractLane(2).get(a).f32x4ExtractLane(3).f32Add();
  f.f32Add();
}

export interface MemoryImport {
  module: string;
  name: string;
  /** Minimum size in 64 KiB pages. */
  minPages: number;
  /** Maximum size in pages; required when shared. */
  maxPages?: number;
  /** A shared memory (SharedArrayBuffer-backed, for worker threads). */
  shared?: boolean;
}

/**
 * A module: one imported memory and a list of exported functions. Function types are deduplicated.
 */
export class ModuleBuilder {
  private readonly functions: Array<{ name: string; fn: FunctionBuilder; typeIndex: number }> = [];
  private readonly imported: Array<{ module: string; name: string; typeIndex: number }> = [];
  private readonly types: string[] = [];

  /** `memory`: the imported memory; null: a module without memory (it only calls imported functions). */
  constructor(private readonly memory: MemoryImport | null) {
    if (memory?.shared && memory.maxPages === undefined) throw new RangeError('a shared memory needs maxPages');
  }

  private typeOf(params: readonly ValTypeName[], results: readonly ValTypeName[]): number {
    const sig = `${params.join(',')}->${results.join(',')}`;
    let typeIndex = this.types.indexOf(sig);
    if (typeIndex < 0) {
      typeIndex = this.types.length;
      this.types.push(sig);
    }
    return typeIndex;
  }

  /**
   * Import a function; returns its index for `call`. Imports come before the module's own functions in the
   * index space, so import every function before a body calls one of the module's own by index.
   */
  importFunction(module: string, name: string, params: readonly ValTypeName[], results: readonly ValTypeName[] = []): number {
    this.imported.push({ module, name, typeIndex: this.typeOf(params, results) });
    return this.imported.length - 1;
  }

  /** The parameter types of every exported function, by export name (a decode program's imports need them). */
  signatures(): Map<string, readonly ValTypeName[]> {
    return new Map(this.functions.map((f) => [f.name, f.fn.params]));
  }

  /** Add `fn` and export it under `name`. */
  addFunction(name: string, fn: FunctionBuilder): this {
    this.functions.push({ name, fn, typeIndex: this.typeOf(fn.params, fn.results) });
    return this;
  }

  emit(): Uint8Array {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]; // "\0asm", version 1
    const section = (id: number, content: number[]) => {
      out.push(id);
      writeUleb(out, content.length);
      for (const b of content) out.push(b);
    };

    // 1: type section — vec(functype), functype = 0x60 vec(param) vec(result)
    const types: number[] = [];
    writeUleb(types, this.types.length);
    for (const sig of this.types) {
      const [p, r] = sig.split('->') as [string, string];
      const params = p ? (p.split(',') as ValTypeName[]) : [];
      const results = r ? (r.split(',') as ValTypeName[]) : [];
      types.push(0x60);
      writeUleb(types, params.length);
      for (const t of params) types.push(ValType[t]);
      writeUleb(types, results.length);
      for (const t of results) types.push(ValType[t]);
    }
    section(1, types);

    // 2: import section — the functions (importdesc 0x00 typeidx), then the memory if any. limits: 0x00 min |
    // 0x01 min max | 0x03 min max (shared)
    const imports: number[] = [];
    writeUleb(imports, this.imported.length + (this.memory ? 1 : 0));
    for (const f of this.imported) {
      writeName(imports, f.module);
      writeName(imports, f.name);
      imports.push(0x00);
      writeUleb(imports, f.typeIndex);
    }
    if (this.memory) {
      writeName(imports, this.memory.module);
      writeName(imports, this.memory.name);
      imports.push(0x02); // importdesc: memory
      const { minPages, maxPages, shared } = this.memory;
      if (shared) imports.push(0x03);
      else imports.push(maxPages === undefined ? 0x00 : 0x01);
      writeUleb(imports, minPages);
      if (maxPages !== undefined) writeUleb(imports, maxPages);
    }
    section(2, imports);

    // 3: function section — the type index of each defined function
    const funcs: number[] = [];
    writeUleb(funcs, this.functions.length);
    for (const f of this.functions) writeUleb(funcs, f.typeIndex);
    section(3, funcs);

    // 7: export section — name, kind 0x00 (func), function index (after the imported functions)
    const exports: number[] = [];
    writeUleb(exports, this.functions.length);
    this.functions.forEach((f, i) => {
      writeName(exports, f.name);
      exports.push(0x00);
      writeUleb(exports, this.imported.length + i);
    });
    section(7, exports);

    // 10: code section
    const code: number[] = [];
    writeUleb(code, this.functions.length);
    for (const f of this.functions) for (const b of f.fn.encodeBody()) code.push(b);
    section(10, code);

    // 0: the custom "name" section, function names only (subsection 1: vec(funcidx name)) — so a CPU profile
    // (node --cpu-prof, the browser's profiler) shows `rmsnorm` or `blocks_v` instead of `wasm-function[12]`.
    // Engines ignore it when running; it changes no result.
    const names: number[] = [];
    writeUleb(names, this.imported.length + this.functions.length);
    this.imported.forEach((f, i) => {
      writeUleb(names, i);
      writeName(names, `${f.module}.${f.name}`);
    });
    this.functions.forEach((f, i) => {
      writeUleb(names, this.imported.length + i);
      writeName(names, f.name);
    });
    const custom: number[] = [];
    writeName(custom, 'name');
    custom.push(1);
    writeUleb(custom, names.length);
    for (const b of names) custom.push(b);
    section(0, custom);

    return new Uint8Array(out);
  }
}
