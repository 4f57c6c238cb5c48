// The CPU model: one forward pass for every attention x FFN composition, a layer loop that reads top to bottom
// (engine.md §2.1):
//   embedding;
//   per layer: input RMSNorm -> the config's attention kind (cpu_attention.h) -> residual ->
//              post-attention RMSNorm -> the layer's FFN kind (cpu_ffn.h: dense SwiGLU or DeepSeekMoE) -> residual;
//   final RMSNorm and lm_head on the wanted rows only.
// RMSNorm in float32, normalise then multiply by the weight (the HF order). The operations and their order are
// those of the former per-architecture forward passes, so logits are bit-identical to theirs; the GPU engine is
// compared against these.
#include "engine/model/cpu_model.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/model/cpu_attention.h"
#include "engine/model/cpu_ffn.h"

namespace mlabench {

CpuModel::CpuModel(ModelConfig c, ModelWeights w, MlaAttention mode)
    : config_(std::move(c)), weights_(std::move(w)), rope_(rope_tables(config_)), mode_(mode) {
  MLABENCH_ICHECK(static_cast<int64_t>(weights_.layers.size()) == config_.n_layers,
                  "weights bound for {} layers, config has {}", weights_.layers.size(), config_.n_layers);
}

CpuKvCache CpuModel::new_cache() const {
  const cpu::KvWidths w = cpu::kv_cache_widths(config_);
  return CpuKvCache(config_.n_layers, w.k, w.v);
}

void CpuModel::forward(std::span<const int32_t> tokens, CpuKvCache& cache, std::span<const int64_t> rows, float* logits,
                       bool decode) {
  const ModelConfig& c = config_;
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t H = c.hidden_size;
  for (size_t i = 0; i < rows.size(); ++i)
    MLABENCH_CHECK(rows[i] >= 0 && rows[i] < T && (i == 0 || rows[i] > rows[i - 1]),
                   "forward: rows must be ascending indices below the {} tokens; rows[{}] is {}", T, i, rows[i]);
  const int64_t pos0 = cache.grow(T);
  // MLA: the absorbed form reads only the latent per cached token, which pays when one query meets the whole
  // cache (decode); the decompressed one builds per-head keys once for many queries (prefill).
  const bool absorbed = mode_ == MlaAttention::ABSORBED || (mode_ == MlaAttention::AUTO && decode);
  const auto eps = static_cast<float>(c.rms_norm_eps);

  std::vector<float> x(static_cast<size_t>(T * H));  // residual stream [T, H]
  std::vector<float> xn(x.size()), delta(x.size());  // normed input, block output [T, H]
  cpu::embedding(x.data(), weights_.embed, tokens.data(), T);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
    cpu::rms_norm(xn.data(), H, x.data(), H, L.input_norm.data(), T, H, eps);
    // T == 0: an empty call of a DP-attention rank with no sequence to run (it joins the gathers below only).
    if (T > 0 && c.attention == AttentionKind::MLA)
      cpu::mla_attention(c, rope_, L, l, xn.data(), T, pos0, absorbed, fp8_kv_, cache, delta.data());
    else if (T > 0 && c.attention == AttentionKind::GQA)
      cpu::gqa_attention(c, rope_, L, l, xn.data(), T, pos0, fp8_kv_, cache, delta.data());
    if (hooks_.all_reduce) hooks_.all_reduce(delta.data(), T * H);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    cpu::rms_norm(xn.data(), H, x.data(), H, L.post_norm.data(), T, H, eps);
    auto ffn = [&](const float* in, int64_t rows, float* out) {
      switch (c.ffn_kind(l)) {
        case FfnKind::DENSE:
          cpu::swiglu_mlp(L.mlp, H, in, rows, out);
          break;
        case FfnKind::MOE:
          cpu::moe_ffn(c, L, in, rows, out);
          break;
      }
    };
    if (hooks_.gather_rows) {  // DP attention: this rank's slice of the FFN over every rank's rows
      std::vector<float> all_in;
      const int64_t first = hooks_.gather_rows(xn.data(), T, H, all_in);
      const auto all_rows = static_cast<int64_t>(all_in.size()) / H;
      std::vector<float> all_out(all_in.size());
      ffn(all_in.data(), all_rows, all_out.data());
      hooks_.reduce_rows(all_out.data(), all_rows, H, first, T, delta.data());
    } else {
      ffn(xn.data(), T, delta.data());
      if (hooks_.all_reduce) hooks_.all_reduce(delta.data(), T * H);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
  }

  // Output head on the wanted rows: each row's norm and logits depend on that row alone, so these are the same
  // numbers a full-width head would give.
  const auto n = static_cast<int64_t>(rows.size());
  if (n == 0 && !hooks_.gather_rows) return;  // under DP attention every rank joins the head's collectives
  std::vector<float> h(static_cast<size_t>(n * H));  // [n, H]
  for (int64_t r = 0; r < n; ++r)
    cpu::rms_norm(h.data() + r * H, H, x.data() + rows[static_cast<size_t>(r)] * H, H, weights_.final_norm.data(), 1, H,
                  eps);
  if (!hooks_.gather_logits) {
    cpu::linear(logits, c.vocab_size, h.data(), H, n, weights_.lm_head);  // [n, V]
    return;
  }
  const int64_t local_vocab = weights_.lm_head.shape[0];  // this rank's vocabulary rows
  if (!hooks_.gather_rows) {
    std::vector<float> local(static_cast<size_t>(n * local_vocab));
    cpu::linear(local.data(), local_vocab, h.data(), H, n, weights_.lm_head);
    hooks_.gather_logits(local.data(), n, local_vocab, logits);
    return;
  }
  // DP attention: this rank's vocabulary rows for every rank's rows, gathered whole, then this rank's rows kept.
  std::vector<float> h_all;
  const int64_t first = hooks_.gather_rows(h.data(), n, H, h_all);
  const auto n_all = static_cast<int64_t>(h_all.size()) / H;
  std::vector<float> local(static_cast<size_t>(n_all * local_vocab)), all(static_cast<size_t>(n_all * c.vocab_size));
  if (n_all > 0) cpu::linear(local.data(), local_vocab, h_all.data(), H, n_all, weights_.lm_head);
  hooks_.gather_logits(local.data(), n_all, local_vocab, all.data());
  std::copy_n(all.data() + first * c.vocab_size, n * c.vocab_size, logits);
}

void CpuModel::forward(std::span<const int32_t> tokens, CpuKvCache& cache, float* logits, bool last_only) {
  const auto T = static_cast<int64_t>(tokens.size());
  std::vector<int64_t> rows(static_cast<size_t>(last_only ? std::min<int64_t>(T, 1) : T));
  std::iota(rows.begin(), rows.end(), last_only ? T - 1 : 0);
  forward(tokens, cache, rows, logits, T == 1);
}

std::unique_ptr<CpuModel> make_cpu_model(ModelConfig c, ModelWeights w, MlaAttention mode) {
  return std::make_unique<CpuModel>(std::move(c), std::move(w), mode);
}

}  // namespace mlabench
