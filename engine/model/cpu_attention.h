// The CPU reference engine's attention kinds (engine/model/cpu_model.h), float32 math on the stored weights: MLA
// (DeepSeek-V2's multi-head latent attention, with or without q_lora_rank) and GQA (MHA and MQA as its two ends).
// Each takes one layer's normed input for T new tokens at positions pos0.., writes their keys (and values) into
// the layer's cache slots, which the caller has already grown, attends causally over the S = pos0 + T cached
// tokens and returns the o_proj output.
#pragma once

#include <cstdint>

#include "engine/kv_cache/cpu_kv_cache.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/weights/model_weights.h"

namespace mlabench::cpu {

/// Floats per token per layer in the cache of an attention kind.
struct KvWidths {
  int64_t k = 0;  // MLA: kv_lora_rank + qk_rope_head_dim (the latent [c_kv ; k_pe]); GQA: n_kv_heads * head_dim
  int64_t v = 0;  // MLA: 0 (the values are the latent); GQA: n_kv_heads * head_dim
};

/// \brief The cache widths of c.attention.
KvWidths kv_cache_widths(const ModelConfig& c);

/// \brief Multi-head latent attention of layer `layer` (weights L): xn [T, H] -> out [T, H]. `absorbed` picks the
/// form: W_UK folded into the query and W_UV applied after attention (MQA over the latent), or per-head keys and
/// values decompressed from the cache with kv_b_proj. Both compute the same function.
void mla_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, bool absorbed, CpuKvCache& cache, float* out);

/// \brief Grouped-query attention of layer `layer` (weights L): xn [T, H] -> out [T, H]. Query head h reads KV
/// head h / (n_heads / n_kv_heads); the cache keeps K (after RoPE) and V.
void gqa_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, CpuKvCache& cache, float* out);

}  // namespace mlabench::cpu
