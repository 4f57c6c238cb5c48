// CpuModel: the float32 CPU forward pass of one architecture over one sequence and its KV cache.
// deepseek_v2.cpp and llama.cpp each implement it top to bottom in one file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "engine/kv_cache/cpu_kv_cache.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench {

class CpuModel {
 public:
  virtual ~CpuModel() = default;
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  /// \brief A cache sized for this model's layout, empty.
  virtual CpuKvCache new_cache() const = 0;

  /// \brief Runs `tokens` at positions cache.n_tokens() onwards, appends them to the cache, and writes logits:
  /// [tokens.size(), vocab] when !last_only, else the last position's [vocab]. Token ids must be validated
  /// by the caller.
  virtual void forward(std::span<const int32_t> tokens, CpuKvCache& cache, float* logits, bool last_only) = 0;

 protected:
  CpuModel(ModelConfig c, ModelWeights w)
      : config_(std::move(c)), weights_(std::move(w)), rope_(rope_tables(config_)) {}
  /// Final RMSNorm and lm_head for the rows of `hidden` [n, H] that are wanted.
  void lm_head(const float* hidden, int64_t n, float* logits, bool last_only) const;
  /// down(silu(gate(x)) * up(x)) for x [n, H] -> out [n, H] (dense MLP, each expert, the shared experts).
  void swiglu_mlp(const MlpWeights& w, const float* x, int64_t n, float* out) const;

  ModelConfig config_;
  ModelWeights weights_;
  RopeTables rope_;
};

std::unique_ptr<CpuModel> make_deepseek_v2_cpu(ModelConfig c, ModelWeights w, MlaAttention mode);
std::unique_ptr<CpuModel> make_llama_cpu(ModelConfig c, ModelWeights w);
/// \brief The CPU model for c.arch.
std::unique_ptr<CpuModel> make_cpu_model(ModelConfig c, ModelWeights w, MlaAttention mode);

}  // namespace mlabench
