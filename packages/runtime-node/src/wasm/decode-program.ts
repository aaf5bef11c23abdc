/**
 * A decode plan (model's decode-plan.ts) compiled into one WebAssembly function, `run(pos, token)`, that makes
 * every call of the plan itself: the kernels' functions are imported (wasm functions of other instances, so each
 * call is a direct wasm-to-wasm call), and each argument is pushed as a constant or computed from pos and token.
 * A generated token then costs ONE call from JS instead of the ~100 the forward makes for stories3M (each with
 * its checks, address arithmetic and argument conversion: ~5% of a float token and ~10% of a LittleBit one,
 * measured with --cpu-prof, results §2.1).
 *
 * The program is straight-line code (no loops: a plan is ~100 calls for stories3M, 93 for its float checkpoint),
 * built per session when it first generates (plan ~0.7 ms, module compile ~3 ms on the 2-core VM). It calls the same functions with the same arguments, in the
 * same order, as the forward's own path: the logits are the same bits.
 */
import type { DecodeArg, DecodeCall } from '@ultrasketch/model';
import { FunctionBuilder, ModuleBuilder, type ValTypeName } from './emitter.js';
import { type WasmExports, requireWasm } from './engine.js';
import type { RowCall } from '../threads.js';

type Fn = DecodeCall['fn'];
/**
 * Where a kernel function carries its parameter types: a property of the exported function object under a
 * registry symbol, not a module-level map, so that two copies of this package in one page or process (a bundled
 * page module beside the Node entry, sharing kernels through the global kernel registry) see each other's.
 */
const PARAMS = Symbol.for('@ultrasketch/runtime-node: wasm parameter types');
type Signed = Fn & { [PARAMS]?: DecodeCall['params'] };

/**
 * Remember the parameter types of an instance's exported functions (from the ModuleBuilder that emitted its
 * module), so a kernel can describe its calls with nothing but the functions and arguments (`recordingCall`).
 * Functions with parameters other than i32/f32 are skipped: a decode program cannot call them.
 */
export function registerSignatures(exports: WasmExports, sigs: ReadonlyMap<string, readonly ValTypeName[]>): void {
  for (const [name, params] of sigs) {
    const fn = exports[name];
    if (typeof fn === 'function' && params.every((t) => t === 'i32' || t === 'f32')) (fn as Signed)[PARAMS] = params as DecodeCall['params'];
  }
}

/** The parameter types of a registered kernel function; a typed RangeError for any other function. */
export function paramsOf(fn: Fn): DecodeCall['params'] {
  const params = (fn as Signed)[PARAMS];
  if (!params) throw new RangeError(`decode plan: ${fn.name || 'a function'} is not a registered kernel function (registerSignatures)`);
  return params;
}

/**
 * A RowCall that records each call into `calls` instead of running it: a kernel's one-token body, given this
 * instead of a direct call, describes itself for a decode plan with the same code that runs it.
 */
export function recordingCall(calls: DecodeCall[]): RowCall {
  return (fn, ...args) => {
    calls.push({ fn, params: paramsOf(fn), args });
  };
}

/** The calls `body` makes through the RowCall it is given, recorded (see `recordingCall`). */
export function recordCalls(body: (call: RowCall) => void): DecodeCall[] {
  const calls: DecodeCall[] = [];
  body(recordingCall(calls));
  return calls;
}

/** A compiled plan: run one token at position pos. */
export type DecodeProgram = (pos: number, token: number) => void;

/** Compile `calls` (see the file comment). Throws if an f32 parameter is given a symbolic argument. */
export function compileDecodeProgram(calls: readonly DecodeCall[]): DecodeProgram {
  const m = new ModuleBuilder(null);
  // one import per distinct function (a layer's products share their tile functions)
  const index = new Map<DecodeCall['fn'], number>();
  const imports: Record<string, DecodeCall['fn']> = {};
  for (const c of calls) {
    if (index.has(c.fn)) continue;
    const name = `f${index.size}`;
    index.set(c.fn, m.importFunction('k', name, c.params));
    imports[name] = c.fn;
  }
  const f = new FunctionBuilder(['i32', 'i32']);
  const [pos, token] = [0, 1];
  for (const c of calls) {
    if (c.args.length !== c.params.length) throw new RangeError(`decode program: a call has ${c.args.length} arguments for ${c.params.length} parameters`);
    c.args.forEach((a, i) => pushArg(f, a, c.params[i]!, pos, token));
    f.call(index.get(c.fn)!);
  }
  m.addFunction('run', f);
  const wasm = requireWasm();
  const instance = new wasm.Instance(new wasm.Module(m.emit()), { k: imports });
  return instance.exports.run as DecodeProgram;
}

function pushArg(f: FunctionBuilder, a: DecodeArg, type: 'i32' | 'f32', pos: number, token: number): void {
  if (type === 'f32') {
    if (typeof a !== 'number') throw new RangeError('decode program: an f32 argument must be a constant');
    f.f32Const(a);
    return;
  }
  if (typeof a === 'number') {
    f.i32Const(a);
    return;
  }
  f.i32Const(a.base);
  if (a.perPos) f.get(pos).i32Const(a.perPos).i32Mul().i32Add();
  if (a.perToken) f.get(token).i32Const(a.perToken).i32Mul().i32Add();
}
