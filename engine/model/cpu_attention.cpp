// Attention kinds of the CPU reference engine. Semantics are the references' (engine.md §2):
//   - MLA (HF remote code modeling_deepseek.py): q through q_proj or q_a_proj -> q_a_layernorm -> q_b_proj;
//     kv_a_proj_with_mqa gives the latent c_kv (normalised by kv_a_layernorm) and ONE k_pe shared by all heads;
//     RoPE only on the rope dims, on consecutive pairs (2i, 2i+1); the cache holds only [c_kv ; k_pe] per token
//     (kv_lora_rank + qk_rope_head_dim values);
//   - GQA (transformers' LlamaAttention): RoPE on the whole head, pairs (i, i + head_dim/2), as HF checkpoints
//     store q/k rows permuted for this "rotate_half" form; the cache keeps K (after RoPE) and V per KV head.
// Both use rope.softmax_scale (rope.h). Every operation is in the order the former per-architecture files
// (deepseek_v2.cpp, llama.cpp) used, so results are bit-identical to theirs.
// Shapes below: T new tokens, S = tokens in the cache after appending them, nh query heads.
#include "engine/model/cpu_attention.h"

#include <algorithm>
#include <vector>

#include "engine/core/fp8.h"
#include "engine/kernels/cpu/ops.h"

namespace mlabench::cpu {

namespace {

// q_a_layernorm and kv_a_layernorm are built with the RMSNorm class default eps in both the remote code and
// transformers, not with config.rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;
// Attention loops go parallel only when there is enough work to pay for waking threads.
constexpr int64_t kParallelMinWork = int64_t{1} << 18;

}  // namespace

KvWidths kv_cache_widths(const ModelConfig& c) {
  switch (c.attention) {
    case AttentionKind::MLA:
      return {.k = c.kv_lora_rank + c.qk_rope_head_dim, .v = 0};
    case AttentionKind::GQA:
      return {.k = c.n_kv_heads * c.head_dim, .v = c.n_kv_heads * c.head_dim};
  }
  return {};
}

void round_mla_slot_fp8(float* slot, int64_t kv_lora, int64_t rope) {
  fake_quantize_fp8_row(slot, kv_lora);
  for (int64_t i = 0; i < rope; ++i) slot[kv_lora + i] = bf16_to_f32(f32_to_bf16(slot[kv_lora + i]));
}

void round_heads_fp8(float* heads, int64_t n_heads, int64_t head_dim) {
  for (int64_t h = 0; h < n_heads; ++h) fake_quantize_fp8_row(heads + h * head_dim, head_dim);
}

void mla_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, bool absorbed, bool fp8_kv, CpuKvCache& cache, float* out) {
  const int64_t l = layer, H = c.hidden_size, nh = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim;
  const int64_t vd = c.v_head_dim, kvl = c.kv_lora_rank, qk = c.qk_head_dim(), cw = kvl + rd;

  // Queries.
  std::vector<float> q(static_cast<size_t>(T * nh * qk));  // [T, nh * (nope + rope)]
  if (c.q_lora_rank > 0) {
    std::vector<float> cq(static_cast<size_t>(T * c.q_lora_rank));  // [T, q_lora]
    linear(cq.data(), c.q_lora_rank, xn, H, T, L.q_a_proj);
    rms_norm(cq.data(), c.q_lora_rank, cq.data(), c.q_lora_rank, L.q_a_norm.data(), T, c.q_lora_rank, kLatentNormEps);
    linear(q.data(), nh * qk, cq.data(), c.q_lora_rank, T, L.q_b_proj);
  } else {
    linear(q.data(), nh * qk, xn, H, T, L.q_proj);
  }

  // Compressed KV: [c_kv (kvl) ; k_pe (rope)] per token, normalised and rotated straight into the cache.
  std::vector<float> ckv(static_cast<size_t>(T * cw));  // [T, kvl + rope]
  linear(ckv.data(), cw, xn, H, T, L.kv_a_proj);
  std::vector<float> cs(static_cast<size_t>(rd / 2)), sn(cs.size());
  for (int64_t t = 0; t < T; ++t) {
    float* slot = cache.k(l, pos0 + t);
    rms_norm(slot, cw, ckv.data() + t * cw, cw, L.kv_a_norm.data(), 1, kvl, kLatentNormEps);
    std::copy_n(ckv.data() + t * cw + kvl, rd, slot + kvl);
    rope_cos_sin(rope, pos0 + t, cs.data(), sn.data());
    cpu::rope(slot + kvl, rd, cs.data(), sn.data(), true);
    if (fp8_kv) round_mla_slot_fp8(slot, kvl, rd);
    for (int64_t h = 0; h < nh; ++h) cpu::rope(q.data() + t * nh * qk + h * qk + nope, rd, cs.data(), sn.data(), true);
  }

  const int64_t S = pos0 + T;
  const float* latent = cache.k(l, 0);  // [S, cw]: c_kv at +0, k_pe at +kvl
  const auto scale = static_cast<float>(rope.softmax_scale);
  std::vector<float> o(static_cast<size_t>(T * nh * vd));  // [T, nh * v]
  if (!absorbed) {
    // Decompressed: per-head k_nope and v for every cached token from kv_b_proj, then ordinary MHA whose keys are
    // [k_nope_h ; k_pe] (192 wide at V2 shapes) and values v_h (128).
    const int64_t kvw = nope + vd;
    std::vector<float> kv(static_cast<size_t>(S * nh * kvw));  // [S, nh * (nope + v)]
    linear(kv.data(), nh * kvw, latent, cw, S, L.kv_b_proj);
#pragma omp parallel if (T * nh * S * qk >= kParallelMinWork)
    {
      std::vector<float> scores(static_cast<size_t>(S));
#pragma omp for collapse(2) schedule(static)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < nh; ++h) {
          const AttentionKeys k{.k1 = kv.data() + h * kvw,
                                .k1_stride = nh * kvw,
                                .d1 = nope,  // k_nope_h
                                .k2 = latent + kvl,
                                .k2_stride = cw,
                                .d2 = rd,  // shared k_pe
                                .v = kv.data() + h * kvw + nope,
                                .v_stride = nh * kvw,
                                .dv = vd};
          const float* qh = q.data() + t * nh * qk + h * qk;
          attention_one_query(o.data() + t * nh * vd + h * vd, qh, qh + nope, k, pos0 + t + 1, scale, scores.data());
        }
    }
  } else {
    // Absorbed: q_lat_h = W_UK_h^T q_nope_h, so q.k = q_lat_h . c_j + q_pe_h . k_pe_j: MQA with one KV head of
    // width kvl + rope (576 at V2 shapes) whose values are the latent itself (512); W_UV_h afterwards.
    for (int64_t h = 0; h < nh; ++h) {
      const TensorView w_uk = L.kv_b_proj.slice_rows(h * (nope + vd), nope);        // [nope, kvl]
      const TensorView w_uv = L.kv_b_proj.slice_rows(h * (nope + vd) + nope, vd);   // [v, kvl]
      std::vector<float> q_lat(static_cast<size_t>(T * kvl)), o_lat(q_lat.size());  // [T, kvl]
      linear_transposed(q_lat.data(), kvl, q.data() + h * qk, nh * qk, T, w_uk);
#pragma omp parallel if (T * S * cw >= kParallelMinWork)
      {
        std::vector<float> scores(static_cast<size_t>(S));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
          const AttentionKeys k{.k1 = latent,
                                .k1_stride = cw,
                                .d1 = kvl,  // c_kv
                                .k2 = latent + kvl,
                                .k2_stride = cw,
                                .d2 = rd,  // k_pe
                                .v = latent,
                                .v_stride = cw,
                                .dv = kvl};  // values: c_kv again
          attention_one_query(o_lat.data() + t * kvl, q_lat.data() + t * kvl, q.data() + t * nh * qk + h * qk + nope, k,
                              pos0 + t + 1, scale, scores.data());
        }
      }
      linear(o.data() + h * vd, nh * vd, o_lat.data(), kvl, T, w_uv);  // [T, v] into head h's columns
    }
  }
  linear(out, H, o.data(), nh * vd, T, L.o_proj);  // [T, H]
}

void gqa_attention(const ModelConfig& c, const RopeTables& rope, const LayerWeights& L, int64_t layer, const float* xn,
                   int64_t T, int64_t pos0, bool fp8_kv, CpuKvCache& cache, float* out) {
  const int64_t l = layer, H = c.hidden_size, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t kvw = nkv * hd, group = nh / nkv;  // group: query heads per KV head (1 = MHA, nh = MQA)
  const auto scale = static_cast<float>(rope.softmax_scale);

  std::vector<float> q(static_cast<size_t>(T * nh * hd)), o(q.size());  // [T, nh * hd]
  linear(q.data(), nh * hd, xn, H, T, L.q_proj);
  linear(cache.k(l, pos0), kvw, xn, H, T, L.k_proj);  // [T, nkv * hd] straight into the cache
  linear(cache.v(l, pos0), kvw, xn, H, T, L.v_proj);
  std::vector<float> cs(static_cast<size_t>(hd / 2)), sn(cs.size());
  for (int64_t t = 0; t < T; ++t) {
    rope_cos_sin(rope, pos0 + t, cs.data(), sn.data());
    for (int64_t h = 0; h < nh; ++h) cpu::rope(q.data() + (t * nh + h) * hd, hd, cs.data(), sn.data(), false);
    for (int64_t g = 0; g < nkv; ++g) cpu::rope(cache.k(l, pos0 + t) + g * hd, hd, cs.data(), sn.data(), false);
    if (fp8_kv) {
      round_heads_fp8(cache.k(l, pos0 + t), nkv, hd);
      round_heads_fp8(cache.v(l, pos0 + t), nkv, hd);
    }
  }
#pragma omp parallel if (T * nh * (pos0 + T) * hd >= kParallelMinWork)
  {
    std::vector<float> scores(static_cast<size_t>(pos0 + T));
#pragma omp for collapse(2) schedule(static)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        const AttentionKeys k{.k1 = cache.k(l, 0) + g * hd,
                              .k1_stride = kvw,
                              .d1 = hd,
                              .v = cache.v(l, 0) + g * hd,
                              .v_stride = kvw,
                              .dv = hd};
        attention_one_query(o.data() + (t * nh + h) * hd, q.data() + (t * nh + h) * hd, nullptr, k, pos0 + t + 1, scale,
                            scores.data());
      }
  }
  linear(out, H, o.data(), nh * hd, T, L.o_proj);  // [T, H]
}

}  // namespace mlabench::cpu
