/**
 * Canonical tensor names: Hugging Face's Llama naming, used by every package and stored in bundles.
 * llama2.c's names map as: w1 → gate_proj, w3 → up_proj, w2 → down_proj.
 */
export const LINEAR_KINDS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type LinearKind = (typeof LINEAR_KINDS)[number];

const LINEAR_SUFFIX: Record<LinearKind, string> = {
  q: 'self_attn.q_proj.weight',
  k: 'self_attn.k_proj.weight',
  v: 'self_attn.v_proj.weight',
  o: 'self_attn.o_proj.weight',
  gate: 'mlp.gate_proj.weight',
  up: 'mlp.up_proj.weight',
  down: 'mlp.down_proj.weight',
};

/** The attention projections that may carry a bias (q/k/v: Qwen2; all four: Llama with attention_bias). */
export type BiasKind = 'q' | 'k' | 'v' | 'o';

export const TensorNames = {
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  classifier: 'lm_head.weight',
  attnNorm: (layer: number) => `model.layers.${layer}.input_layernorm.weight`,
  ffnNorm: (layer: number) => `model.layers.${layer}.post_attention_layernorm.weight`,
  linear: (layer: number, kind: LinearKind) => `model.layers.${layer}.${LINEAR_SUFFIX[kind]}`,
  /** The bias of an attention projection: `model.layers.L.self_attn.q_proj.bias`. */
  bias: (layer: number, kind: BiasKind) => `model.layers.${layer}.${LINEAR_SUFFIX[kind].replace(/weight$/, 'bias')}`,
  /** Qwen3's per-head RMSNorm weights of q and k ([headDim]). */
  qNorm: (layer: number) => `model.layers.${layer}.self_attn.q_norm.weight`,
  kNorm: (layer: number) => `model.layers.${layer}.self_attn.k_norm.weight`,
} as const;

/** Parse a canonical linear name back into (layer, kind); undefined for anything else. */
export function parseLinearName(name: string): { layer: number; kind: LinearKind } | undefined {
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return undefined;
  const kind = LINEAR_KINDS.find((k) => LINEAR_SUFFIX[k] === m[2]);
  return kind === undefined ? undefined : { layer: Number(m[1]), kind };
}
