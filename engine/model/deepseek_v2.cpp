// DeepSeek-V2 / V2-Lite forward pass on the CPU, float32 math on the stored weights: the reference twin of the
// GPU engine. Semantics are the HF remote code's (modeling_deepseek.py), as engine.md §2 records them:
//   - pre-norm residual blocks; RMSNorm in float32, normalise then multiply by the weight;
//   - MLA: q through q_proj or q_a_proj -> q_a_layernorm -> q_b_proj; kv_a_proj_with_mqa gives the latent
//     c_kv (normalised by kv_a_layernorm) and ONE k_pe shared by all heads; RoPE only on the rope dims, on
//     consecutive pairs (2i, 2i+1), with the YaRN table; softmax scale qk_head_dim^-0.5 * mscale^2;
//   - the cache holds only [c_kv ; k_pe] per token per layer (kv_lora_rank + qk_rope_head_dim values);
//   - FFN: dense SwiGLU for the first first_k_dense_replace layers (and off the moe_layer_freq grid), else
//     DeepSeekMoE: float32 router GEMM + softmax, greedy or group-limited top-k, routed experts weighted,
//     shared experts added unweighted.
// Shapes below: T new tokens, S = tokens in the cache after appending them, nh heads.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/kernels/cpu/moe_router.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/model/cpu_model.h"

namespace mlabench {

namespace {

// q_a_layernorm and kv_a_layernorm are built with the RMSNorm class default eps in both the remote code and
// transformers, not with config.rms_norm_eps.
constexpr float kLatentNormEps = 1e-6f;
// Attention loops go parallel only when there is enough work to pay for waking threads.
constexpr int64_t kParallelMinWork = int64_t{1} << 18;

class DeepseekV2Cpu final : public CpuModel {
 public:
  DeepseekV2Cpu(ModelConfig c, ModelWeights w, MlaAttention mode) : CpuModel(std::move(c), std::move(w)), mode_(mode) {}

  CpuKvCache new_cache() const override {
    return CpuKvCache(config_.n_layers, config_.kv_lora_rank + config_.qk_rope_head_dim, 0);
  }

  void forward(std::span<const int32_t> tokens, CpuKvCache& cache, float* logits, bool last_only) override {
    const auto T = static_cast<int64_t>(tokens.size());
    const int64_t H = config_.hidden_size;
    const int64_t pos0 = cache.grow(T);
    const bool absorbed = mode_ == MlaAttention::ABSORBED || (mode_ == MlaAttention::AUTO && T == 1);

    std::vector<float> x(static_cast<size_t>(T * H));  // residual stream [T, H]
    std::vector<float> xn(x.size()), delta(x.size());  // normed input, block output [T, H]
    cpu::embedding(x.data(), weights_.embed, tokens.data(), T);
    for (int64_t l = 0; l < config_.n_layers; ++l) {
      const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
      const auto eps = static_cast<float>(config_.rms_norm_eps);
      cpu::rms_norm(xn.data(), H, x.data(), H, L.input_norm.data(), T, H, eps);
      attention(l, L, xn.data(), T, pos0, cache, absorbed, delta.data());
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
      cpu::rms_norm(xn.data(), H, x.data(), H, L.post_norm.data(), T, H, eps);
      if (L.is_moe) {
        moe(L, xn.data(), T, delta.data());
      } else {
        swiglu_mlp(L.mlp, xn.data(), T, delta.data());
      }
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    }
    lm_head(x.data(), T, logits, last_only);
  }

 private:
  // Multi-head latent attention of T new tokens at positions pos0.. against all S = pos0 + T cached tokens.
  void attention(int64_t l, const LayerWeights& L, const float* xn, int64_t T, int64_t pos0, CpuKvCache& cache,
                 bool absorbed, float* out) const {
    const ModelConfig& c = config_;
    const int64_t H = c.hidden_size, nh = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim;
    const int64_t vd = c.v_head_dim, kvl = c.kv_lora_rank, qk = c.qk_head_dim(), cw = kvl + rd;

    // Queries.
    std::vector<float> q(static_cast<size_t>(T * nh * qk));  // [T, nh * (nope + rope)]
    if (c.q_lora_rank > 0) {
      std::vector<float> cq(static_cast<size_t>(T * c.q_lora_rank));  // [T, q_lora]
      cpu::linear(cq.data(), c.q_lora_rank, xn, H, T, L.q_a_proj);
      cpu::rms_norm(cq.data(), c.q_lora_rank, cq.data(), c.q_lora_rank, L.q_a_norm.data(), T, c.q_lora_rank,
                    kLatentNormEps);
      cpu::linear(q.data(), nh * qk, cq.data(), c.q_lora_rank, T, L.q_b_proj);
    } else {
      cpu::linear(q.data(), nh * qk, xn, H, T, L.q_proj);
    }

    // Compressed KV: [c_kv (kvl) ; k_pe (rope)] per token, normalised and rotated straight into the cache.
    std::vector<float> ckv(static_cast<size_t>(T * cw));  // [T, kvl + rope]
    cpu::linear(ckv.data(), cw, xn, H, T, L.kv_a_proj);
    std::vector<float> cs(static_cast<size_t>(rd / 2)), sn(cs.size());
    for (int64_t t = 0; t < T; ++t) {
      float* slot = cache.k(l, pos0 + t);
      cpu::rms_norm(slot, cw, ckv.data() + t * cw, cw, L.kv_a_norm.data(), 1, kvl, kLatentNormEps);
      std::copy_n(ckv.data() + t * cw + kvl, rd, slot + kvl);
      rope_cos_sin(rope_, pos0 + t, cs.data(), sn.data());
      cpu::rope(slot + kvl, rd, cs.data(), sn.data(), true);
      for (int64_t h = 0; h < nh; ++h)
        cpu::rope(q.data() + t * nh * qk + h * qk + nope, rd, cs.data(), sn.data(), true);
    }

    const int64_t S = pos0 + T;
    const float* latent = cache.k(l, 0);  // [S, cw]: c_kv at +0, k_pe at +kvl
    const auto scale = static_cast<float>(rope_.softmax_scale);
    std::vector<float> o(static_cast<size_t>(T * nh * vd));  // [T, nh * v]
    if (!absorbed) {
      // Decompressed: per-head k_nope and v for every cached token from kv_b_proj, then ordinary MHA whose
      // keys are [k_nope_h ; k_pe] (192 wide at V2 shapes) and values v_h (128).
      const int64_t kvw = nope + vd;
      std::vector<float> kv(static_cast<size_t>(S * nh * kvw));  // [S, nh * (nope + v)]
      cpu::linear(kv.data(), nh * kvw, latent, cw, S, L.kv_b_proj);
#pragma omp parallel if (T * nh * S * qk >= kParallelMinWork)
      {
        std::vector<float> scores(static_cast<size_t>(S));
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t h = 0; h < nh; ++h) {
            const cpu::AttentionKeys k{.k1 = kv.data() + h * kvw,
                                       .k1_stride = nh * kvw,
                                       .d1 = nope,  // k_nope_h
                                       .k2 = latent + kvl,
                                       .k2_stride = cw,
                                       .d2 = rd,  // shared k_pe
                                       .v = kv.data() + h * kvw + nope,
                                       .v_stride = nh * kvw,
                                       .dv = vd};
            const float* qh = q.data() + t * nh * qk + h * qk;
            cpu::attention_one_query(o.data() + t * nh * vd + h * vd, qh, qh + nope, k, pos0 + t + 1, scale,
                                     scores.data());
          }
      }
    } else {
      // Absorbed: q_lat_h = W_UK_h^T q_nope_h, so q.k = q_lat_h . c_j + q_pe_h . k_pe_j: MQA with one KV head
      // of width kvl + rope (576 at V2 shapes) whose values are the latent itself (512); W_UV_h afterwards.
      for (int64_t h = 0; h < nh; ++h) {
        const TensorView w_uk = L.kv_b_proj.slice_rows(h * (nope + vd), nope);        // [nope, kvl]
        const TensorView w_uv = L.kv_b_proj.slice_rows(h * (nope + vd) + nope, vd);   // [v, kvl]
        std::vector<float> q_lat(static_cast<size_t>(T * kvl)), o_lat(q_lat.size());  // [T, kvl]
        cpu::linear_transposed(q_lat.data(), kvl, q.data() + h * qk, nh * qk, T, w_uk);
#pragma omp parallel if (T * S * cw >= kParallelMinWork)
        {
          std::vector<float> scores(static_cast<size_t>(S));
#pragma omp for schedule(static)
          for (int64_t t = 0; t < T; ++t) {
            const cpu::AttentionKeys k{.k1 = latent,
                                       .k1_stride = cw,
                                       .d1 = kvl,  // c_kv
                                       .k2 = latent + kvl,
                                       .k2_stride = cw,
                                       .d2 = rd,  // k_pe
                                       .v = latent,
                                       .v_stride = cw,
                                       .dv = kvl};  // values: c_kv again
            cpu::attention_one_query(o_lat.data() + t * kvl, q_lat.data() + t * kvl,
                                     q.data() + t * nh * qk + h * qk + nope, k, pos0 + t + 1, scale, scores.data());
          }
        }
        cpu::linear(o.data() + h * vd, nh * vd, o_lat.data(), kvl, T, w_uv);  // [T, v] into head h's columns
      }
    }
    cpu::linear(out, H, o.data(), nh * vd, T, L.o_proj);  // [T, H]
  }

  // DeepSeekMoE: routed experts (weighted) + shared experts (unweighted). xn [T, H] -> out [T, H].
  void moe(const LayerWeights& L, const float* xn, int64_t T, float* out) const {
    const ModelConfig& c = config_;
    const int64_t H = c.hidden_size, E = c.n_routed_experts, k = c.experts_per_token;
    std::vector<float> router_logits(static_cast<size_t>(T * E));  // [T, E], float32 GEMM
    cpu::linear(router_logits.data(), E, xn, H, T, L.router);
    std::vector<int32_t> idx(static_cast<size_t>(T * k));
    std::vector<float> w(static_cast<size_t>(T * k));
    cpu::moe_route(router_logits.data(), T, cpu::RouterParams::from_config(c), idx.data(), w.data());

    std::fill(out, out + T * H, 0.0f);
    std::vector<float> xe, he;
    for (int64_t e = 0; e < E; ++e) {  // expert by expert, as the reference accumulates
      std::vector<int64_t> rows;
      std::vector<float> gains;
      for (int64_t i = 0; i < T * k; ++i)
        if (idx[i] == e) {
          rows.push_back(i / k);
          gains.push_back(w[i]);
        }
      if (rows.empty()) continue;
      const auto n = static_cast<int64_t>(rows.size());
      xe.resize(static_cast<size_t>(n * H));
      he.resize(xe.size());
      for (int64_t r = 0; r < n; ++r) std::copy_n(xn + rows[r] * H, H, xe.data() + r * H);
      swiglu_mlp(L.experts[static_cast<size_t>(e)], xe.data(), n, he.data());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < H; ++i) out[rows[r] * H + i] += gains[r] * he[r * H + i];
    }
    if (L.has_shared) {
      std::vector<float> shared(static_cast<size_t>(T * H));
      swiglu_mlp(L.shared, xn, T, shared.data());
      for (int64_t i = 0; i < T * H; ++i) out[i] += shared[i];
    }
  }

  MlaAttention mode_;
};

}  // namespace

std::unique_ptr<CpuModel> make_deepseek_v2_cpu(ModelConfig c, ModelWeights w, MlaAttention mode) {
  return std::make_unique<DeepseekV2Cpu>(std::move(c), std::move(w), mode);
}

}  // namespace mlabench
