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
/// values decompressed from the cache with kv_b_proj. Both compute the same function. `fp8_kv`: each token's cache
/// slot is rounded as FlashMLA's FP8 layout holds it (round_mla_slot_fp8) before anything reads it.
void mla_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, bool absorbed, bool fp8_kv, CpuKvCache& cache, float* out);

/// \brief --kv-cache-dtype fp8, MLA: the latent's kv_lora values through e4m3 in groups of 128 with a float32 scale
/// each (amax / 448), the rope values that follow it through BF16. In place.
void round_mla_slot_fp8(float* slot, int64_t kv_lora, int64_t rope);
/// \brief --kv-cache-dtype fp8, GQA/MHA: each head's head_dim values through e4m3 with one scale (a scale per 128
/// values where head_dim is larger). In place, n_heads heads.
void round_heads_fp8(float* heads, int64_t n_heads, int64_t head_dim);


/// \brief Grouped-query attention of layer `layer` (weights L): xn [T, H] -> out [T, H]. Query head h reads KV
/// head h / (n_heads / n_kv_heads); the cache keeps K (after RoPE) and V.
void gqa_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, bool fp8_kv, CpuKvCache& cache, float* out);

}  // namespace mlabench::cpu
