/**
 * Safety limits every reader enforces BEFORE allocating memory from a size it read from a file.
 * Each guards against a crafted or corrupt file making us allocate gigabytes or loop forever.
 * They are generous for real models (Llama-3 70B fits) and tiny next to what a hostile header can claim.
 */
export const LIMITS = {
  /** Largest model width (dim) or FFN hidden width we accept. Llama-3 405B has hidden 53248. */
  maxModelDim: 1 << 17,
  /** Most decoder layers. */
  maxLayers: 1024,
  /** Most attention heads. */
  maxHeads: 4096,
  /** Largest vocabulary. Real tokenizers have up to ~256k entries. */
  maxVocab: 1 << 22,
  /** Longest context (seq_len). */
  maxSeqLen: 1 << 21,
  /** Largest quantization group size in a llama2.c v2 file. */
  maxGroupSize: 1 << 16,
  /** Longest single token string in a tokenizer file, in bytes. */
  maxTokenBytes: 1 << 16,
  /** Largest safetensors JSON header, in bytes (the reference implementation uses 100 MB). */
  maxSafetensorsHeaderBytes: 100 * 1024 * 1024,
  /** Most tensors in one safetensors file (bounds the per-tensor work and the Map we build). */
  maxTensorCount: 1 << 20,
  /**
   * Deepest nesting of JSON objects and arrays in a safetensors header or a bundle's metadata value (the
   * top-level value is depth 1). Real headers nest 3 deep (header → tensor → shape); the bound keeps
   * recursive code that later touches a value (JSON.stringify in an error message) off the stack limit.
   */
  maxJsonDepth: 64,
  /** Most dimensions of one tensor. */
  maxTensorRank: 8,
  /**
   * Largest single dimension of a tensor. (Written as 2 ** 31, not 1 << 31: in JavaScript the shift
   * gives -2147483648, which would reject every tensor.)
   */
  maxTensorDim: 2 ** 31,
  /** Largest tensor, in elements. */
  maxTensorElements: 2 ** 40,
} as const;

/** The limits as plain numbers, so a caller (or a test) can pass tighter ones to a reader. */
export type Limits = { readonly [K in keyof typeof LIMITS]: number };
