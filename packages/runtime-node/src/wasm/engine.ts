/**
 * The few WebAssembly JS-API types this package uses. The repository compiles with `lib: ES2023` and Node 20's
 * @types/node, neither of which declares the `WebAssembly` namespace, and declaring it globally would clash
 * with the DOM lib of browser packages; so we type the global ourselves, locally.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Grow by `pages` 64 KiB pages; returns the previous size in pages. Throws RangeError on failure. */
  grow(pages: number): number;
}
export interface WasmMemoryDescriptor {
  initial: number;
  maximum?: number;
  shared?: boolean;
}
/** A compiled module (opaque here; it can be posted to worker threads). */
export interface WasmModule {
  readonly __wasmModule?: never;
}
export type WasmExports = Record<string, unknown>;
export interface WasmInstance {
  readonly exports: WasmExports;
}
interface WasmApi {
  Memory: new (descriptor: WasmMemoryDescriptor) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  validate(bytes: Uint8Array): boolean;
}

/** `globalThis.WebAssembly`, or undefined in an engine without WebAssembly. */
export const wasmApi: WasmApi | undefined = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

export function requireWasm(): WasmApi {
  if (!wasmApi) throw new Error('WebAssembly is not available in this JavaScript engine');
  return wasmApi;
}
