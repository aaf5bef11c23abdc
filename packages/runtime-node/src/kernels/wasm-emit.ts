/**
 * More WebAssembly instructions for the hand-written kernels of the compressed codecs, on top of
 * `../wasm/emitter.ts` (which stays the dense kernels' minimal subset). `KFn` is a `FunctionBuilder` with the
 * extra opcodes appended straight to its public `code` array; encoding, locals and modules are unchanged.
 *
 * Opcode numbers: WebAssembly core spec 2.0 §5.4 (core instructions) and the fixed-width SIMD proposal's
 * BinarySIMD.md as merged into 2.0 (prefix 0xfd, sub-opcode as unsigned LEB128). Every module built from
 * these is checked by `WebAssembly.validate` in the tests; the semantics by the kernels' equality tests.
 */
import { FunctionBuilder, whileLtU, writeSleb, writeUleb } from '../wasm/emitter.js';

const SIMD_PREFIX = 0xfd;

/** Memory access width in bytes → the natural alignment exponent (a hint; unaligned access is allowed). */
const ALIGN = { 1: 0, 2: 1, 4: 2, 8: 3, 16: 4 } as const;

export class KFn extends FunctionBuilder {
  private raw(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }
  private uleb(n: number): this {
    writeUleb(this.code, n);
    return this;
  }
  private simdOp(sub: number): this {
    this.code.push(SIMD_PREFIX);
    writeUleb(this.code, sub);
    return this;
  }
  /** memarg with an explicit alignment exponent (we always give the natural one or less). */
  private mem(alignLog2: number, offset: number): this {
    if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`memarg offset ${offset}`);
    return this.uleb(alignLog2).uleb(offset);
  }

  // ---- control
  /** `if` with an empty block type (consumes an i32 condition). */
  if_(): this {
    return this.raw(0x04, 0x40);
  }
  else_(): this {
    return this.raw(0x05);
  }
  drop(): this {
    return this.raw(0x1a);
  }
  /** select: (a, b, cond) → cond ? a : b (numeric operands). */
  select(): this {
    return this.raw(0x1b);
  }

  // ---- scalar memory (alignment hint: natural for the width, except where callers know less)
  i32Load(offset = 0): this {
    return this.raw(0x28).mem(2, offset);
  }
  f64Load(offset = 0): this {
    return this.raw(0x2b).mem(3, offset);
  }
  i32Load8U(offset = 0): this {
    return this.raw(0x2d).mem(0, offset);
  }
  i32Load16U(offset = 0): this {
    return this.raw(0x2f).mem(1, offset);
  }
  i32Store(offset = 0): this {
    return this.raw(0x36).mem(2, offset);
  }
  f64Store(offset = 0): this {
    return this.raw(0x39).mem(3, offset);
  }

  // ---- i32
  i32Eq(): this {
    return this.raw(0x46);
  }
  i32Ne(): this {
    return this.raw(0x47);
  }
  i32GtS(): this {
    return this.raw(0x4a);
  }
  i32GeS(): this {
    return this.raw(0x4e);
  }
  i32LeS(): this {
    return this.raw(0x4c);
  }
  i32Or(): this {
    return this.raw(0x72);
  }
  i32Xor(): this {
    return this.raw(0x73);
  }
  i32ShrS(): this {
    return this.raw(0x75);
  }

  // ---- f32 / f64 scalar
  f32Sub(): this {
    return this.raw(0x93);
  }
  f64Const(v: number): this {
    this.raw(0x44);
    const b = new Uint8Array(new Float64Array([v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }
  f64Add(): this {
    return this.raw(0xa0);
  }
  f64Sub(): this {
    return this.raw(0xa1);
  }
  f64Mul(): this {
    return this.raw(0xa2);
  }
  f32DemoteF64(): this {
    return this.raw(0xb6);
  }
  f64PromoteF32(): this {
    return this.raw(0xbb);
  }

  // ---- SIMD memory
  /** v128.load with a byte offset, alignment hint `align` bytes (default 4: our pointers are float-aligned). */
  v128LoadA(offset = 0, align: 1 | 2 | 4 | 8 | 16 = 4): this {
    return this.simdOp(0x00).mem(ALIGN[align], offset);
  }
  v128StoreA(offset = 0, align: 1 | 2 | 4 | 8 | 16 = 4): this {
    return this.simdOp(0x0b).mem(ALIGN[align], offset);
  }
  /** Load 8 bytes and zero-extend each to 16 bits (i16x8). */
  v128Load8x8U(offset = 0): this {
    return this.simdOp(0x02).mem(0, offset);
  }
  /** Load 4 u16 and zero-extend each to 32 bits (i32x4). */
  v128Load16x4U(offset = 0): this {
    return this.simdOp(0x04).mem(1, offset);
  }
  v128Load32Splat(offset = 0): this {
    return this.simdOp(0x09).mem(2, offset);
  }
  /** Load 32 bits into lane 0, zero the rest. */
  v128Load32Zero(offset = 0): this {
    return this.simdOp(0x5c).mem(2, offset);
  }
  /** Load 64 bits into the low half, zero the rest. */
  v128Load64Zero(offset = 0): this {
    return this.simdOp(0x5d).mem(3, offset);
  }
  /** (addr, vec) → vec with lane `lane` replaced by the 32 bits at addr. */
  v128Load32Lane(lane: number, offset = 0): this {
    return this.simdOp(0x56).mem(2, offset).raw(lane);
  }

  // ---- SIMD constants and lanes
  /** v128.const from four i32 lanes. */
  v128ConstI32(a: number, b = a, c = a, d = a): this {
    this.simdOp(0x0c);
    const bytes = new Uint8Array(new Int32Array([a | 0, b | 0, c | 0, d | 0]).buffer);
    for (const x of bytes) this.code.push(x);
    return this;
  }
  v128ConstF32(a: number, b = a, c = a, d = a): this {
    this.simdOp(0x0c);
    const bytes = new Uint8Array(new Float32Array([a, b, c, d]).buffer);
    for (const x of bytes) this.code.push(x);
    return this;
  }
  /** i8x16.shuffle of two vectors with 16 lane indices (0–15 first operand, 16–31 second). */
  i8x16Shuffle(lanes: readonly number[]): this {
    if (lanes.length !== 16 || lanes.some((l) => !Number.isInteger(l) || l < 0 || l > 31)) throw new RangeError('i8x16.shuffle lanes');
    this.simdOp(0x0d);
    for (const l of lanes) this.code.push(l);
    return this;
  }
  i8x16Splat(): this {
    return this.simdOp(0x0f);
  }
  i16x8Splat(): this {
    return this.simdOp(0x10);
  }
  i32x4Splat(): this {
    return this.simdOp(0x11);
  }
  i32x4ExtractLane(lane: number): this {
    return this.simdOp(0x1b).raw(lane);
  }
  i32x4ReplaceLane(lane: number): this {
    return this.simdOp(0x1c).raw(lane);
  }
  f32x4ReplaceLane(lane: number): this {
    return this.simdOp(0x20).raw(lane);
  }

  // ---- SIMD comparisons (all lanes → all-ones / zero masks)
  i8x16Eq(): this {
    return this.simdOp(0x23);
  }
  i16x8GtU(): this {
    return this.simdOp(0x32);
  }
  i32x4Eq(): this {
    return this.simdOp(0x37);
  }
  i32x4LtS(): this {
    return this.simdOp(0x39);
  }
  i32x4GtS(): this {
    return this.simdOp(0x3b);
  }
  f32x4Gt(): this {
    return this.simdOp(0x44);
  }

  // ---- SIMD bitwise
  v128Not(): this {
    return this.simdOp(0x4d);
  }
  v128And(): this {
    return this.simdOp(0x4e);
  }
  /** a & ~b */
  v128AndNot(): this {
    return this.simdOp(0x4f);
  }
  v128Or(): this {
    return this.simdOp(0x50);
  }
  v128Xor(): this {
    return this.simdOp(0x51);
  }
  /** (a, b, mask) → (a & mask) | (b & ~mask) */
  v128Bitselect(): this {
    return this.simdOp(0x52);
  }

  // ---- i8x16 / i16x8
  i8x16ShrU(): this {
    return this.simdOp(0x6d);
  }
  i16x8ExtendLowI8x16U(): this {
    return this.simdOp(0x89);
  }
  i16x8ExtendHighI8x16U(): this {
    return this.simdOp(0x8a);
  }
  i16x8ShrU(): this {
    return this.simdOp(0x8d);
  }

  // ---- i32x4
  /** Sign-extend the low 4 i16 lanes to i32 (used to carry an f16's sign bit into bit 31 with one shift). */
  i32x4ExtendLowI16x8S(): this {
    return this.simdOp(0xa7);
  }
  i32x4ExtendHighI16x8S(): this {
    return this.simdOp(0xa8);
  }
  i32x4ExtendLowI16x8U(): this {
    return this.simdOp(0xa9);
  }
  i32x4ExtendHighI16x8U(): this {
    return this.simdOp(0xaa);
  }
  i32x4Shl(): this {
    return this.simdOp(0xab);
  }
  i32x4ShrS(): this {
    return this.simdOp(0xac);
  }
  i32x4ShrU(): this {
    return this.simdOp(0xad);
  }
  i32x4Add(): this {
    return this.simdOp(0xae);
  }
  i32x4Sub(): this {
    return this.simdOp(0xb1);
  }
  i32x4Mul(): this {
    return this.simdOp(0xb5);
  }
  i32x4MaxS(): this {
    return this.simdOp(0xb8);
  }
  i32x4MaxU(): this {
    return this.simdOp(0xb9);
  }

  // ---- i64x2
  i64x2ExtmulLowI32x4U(): this {
    return this.simdOp(0xde);
  }
  i64x2ExtmulHighI32x4U(): this {
    return this.simdOp(0xdf);
  }

  // ---- f32x4 / f64x2
  f32x4Abs(): this {
    return this.simdOp(0xe0);
  }
  f32x4Sub(): this {
    return this.simdOp(0xe5);
  }
  f32x4Max(): this {
    return this.simdOp(0xe9);
  }
  f64x2Add(): this {
    return this.simdOp(0xf0);
  }
  f64x2PromoteLowF32x4(): this {
    return this.simdOp(0x5f);
  }
  f32x4ConvertI32x4S(): this {
    return this.simdOp(0xfa);
  }
  f32x4ConvertI32x4U(): this {
    return this.simdOp(0xfb);
  }

  /** i32.const of an unsigned 32-bit value (written as its two's complement). */
  u32Const(v: number): this {
    return this.i32Const(v | 0);
  }
}

/** The kernels' guarded do-while loop (one branch per iteration): the emitter's, shared with the dense kernels. */
export { whileLtU };

/** `for (i = 0; i < limit; i++) body()` over i32 locals (signed compare; limit ≤ 0 runs nothing). */
export function forRange(f: KFn, i: number, limit: number, body: () => void): void {
  f.i32Const(0).set(i);
  f.block().get(i).get(limit).i32GeS().brIf(0);
  f.loop();
  body();
  f.get(i).i32Const(1).i32Add().tee(i).get(limit).i32LtS().brIf(0);
  f.end().end();
}

export { writeSleb };
