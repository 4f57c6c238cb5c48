// Llama-architecture forward pass on the CPU (Llama-2 MHA, Llama-3 GQA, DeepSeek LLM 7B/67B), float32 math on
// the stored weights, transformers' LlamaForCausalLM semantics:
//   - pre-norm residual blocks, RMSNorm (eps from config), SwiGLU MLP;
//   - RoPE on the whole head, pairs (i, i + head_dim/2): HF checkpoints store q/k rows permuted for this
//     "rotate_half" form; default or llama3 frequency scaling;
//   - GQA: query head h reads KV head h / (n_heads / n_kv_heads); the cache keeps K (after RoPE) and V.
// Shapes: T new tokens, nh query heads, nkv KV heads, hd head_dim.
#include <vector>

#include "engine/kernels/cpu/ops.h"
#include "engine/model/cpu_model.h"

namespace mlabench {

namespace {

class LlamaCpu final : public CpuModel {
 public:
  LlamaCpu(ModelConfig c, ModelWeights w) : CpuModel(std::move(c), std::move(w)) {}

  CpuKvCache new_cache() const override {
    const int64_t w = config_.n_kv_heads * config_.head_dim;
    return CpuKvCache(config_.n_layers, w, w);
  }

  void forward(std::span<const int32_t> tokens, CpuKvCache& cache, float* logits, bool last_only) override {
    const ModelConfig& c = config_;
    const auto T = static_cast<int64_t>(tokens.size());
    const int64_t H = c.hidden_size, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
    const int64_t kvw = nkv * hd, group = nh / nkv;
    const auto eps = static_cast<float>(c.rms_norm_eps);
    const auto scale = static_cast<float>(rope_.softmax_scale);
    const int64_t pos0 = cache.grow(T);

    std::vector<float> x(static_cast<size_t>(T * H)), xn(x.size()), delta(x.size());  // [T, H]
    std::vector<float> q(static_cast<size_t>(T * nh * hd)), o(q.size());              // [T, nh * hd]
    std::vector<float> cs(static_cast<size_t>(hd / 2)), sn(cs.size());
    cpu::embedding(x.data(), weights_.embed, tokens.data(), T);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
      cpu::rms_norm(xn.data(), H, x.data(), H, L.input_norm.data(), T, H, eps);
      cpu::linear(q.data(), nh * hd, xn.data(), H, T, L.q_proj);
      cpu::linear(cache.k(l, pos0), kvw, xn.data(), H, T, L.k_proj);  // [T, nkv * hd] straight into the cache
      cpu::linear(cache.v(l, pos0), kvw, xn.data(), H, T, L.v_proj);
      for (int64_t t = 0; t < T; ++t) {
        rope_cos_sin(rope_, pos0 + t, cs.data(), sn.data());
        for (int64_t h = 0; h < nh; ++h) cpu::rope(q.data() + (t * nh + h) * hd, hd, cs.data(), sn.data(), false);
        for (int64_t g = 0; g < nkv; ++g) cpu::rope(cache.k(l, pos0 + t) + g * hd, hd, cs.data(), sn.data(), false);
      }
#pragma omp parallel if (T * nh * (pos0 + T) * hd >= (int64_t{1} << 18))
      {
        std::vector<float> scores(static_cast<size_t>(pos0 + T));
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t h = 0; h < nh; ++h) {
            const int64_t g = h / group;
            const cpu::AttentionKeys k{.k1 = cache.k(l, 0) + g * hd,
                                       .k1_stride = kvw,
                                       .d1 = hd,
                                       .v = cache.v(l, 0) + g * hd,
                                       .v_stride = kvw,
                                       .dv = hd};
            cpu::attention_one_query(o.data() + (t * nh + h) * hd, q.data() + (t * nh + h) * hd, nullptr, k,
                                     pos0 + t + 1, scale, scores.data());
          }
      }
      cpu::linear(delta.data(), H, o.data(), nh * hd, T, L.o_proj);  // [T, H]
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
      cpu::rms_norm(xn.data(), H, x.data(), H, L.post_norm.data(), T, H, eps);
      swiglu_mlp(L.mlp, xn.data(), T, delta.data());
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    }
    lm_head(x.data(), T, logits, last_only);
  }
};

}  // namespace

std::unique_ptr<CpuModel> make_llama_cpu(ModelConfig c, ModelWeights w) {
  return std::make_unique<LlamaCpu>(std::move(c), std::move(w));
}

}  // namespace mlabench
