// CpuModel: the float32 CPU forward pass over one sequence and its KV cache, for every architecture: each layer
// is the config's attention kind (cpu_attention.h: MLA or GQA) and that layer's FFN kind (dense SwiGLU or
// DeepSeekMoE), pre-norm residual blocks, final norm and lm_head. It is the reference twin of the GPU engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "engine/kv_cache/cpu_kv_cache.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench {

/// What one rank of a sharded CPU forward (engine/parallel/sharded_cpu.h) does where its pieces join. Empty: the
/// unsharded model.
struct CpuRankHooks {
  /// After the attention block's and the FFN's output [n floats] (each rank's partial sum over its heads or
  /// columns): the sum over ranks, in place. Unset under DP attention, whose attention output is whole.
  std::function<void(float* delta, int64_t n)> all_reduce;
  /// The output head: this rank's logits [rows, local_vocab] (its vocabulary rows) into logits [rows, vocab].
  std::function<void(const float* local, int64_t rows, int64_t local_vocab, float* logits)> gather_logits;
  /// DP attention (each rank attends over its own sequences with every head): the FFN and the output head run on
  /// the rows of every rank. gather_rows: this rank's [rows, width] into every rank's [all_rows, width] (rank
  /// order), returning this rank's first row there; reduce_rows: the sum over ranks of the partial FFN outputs
  /// [all_rows, width], in place, then this rank's rows [first, first + rows) into mine.
  std::function<int64_t(const float* mine, int64_t rows, int64_t width, std::vector<float>& all)> gather_rows;
  std::function<void(float* all, int64_t all_rows, int64_t width, int64_t first, int64_t rows, float* mine)>
      reduce_rows;
};

class CpuModel {
 public:
  CpuModel(ModelConfig c, ModelWeights w, MlaAttention mode);
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  /// One rank of a sharded forward: this model's weights are the rank's slices (engine/parallel/sharded_cpu.h).
  void set_rank_hooks(CpuRankHooks hooks) { hooks_ = std::move(hooks); }
  /// --kv-cache-dtype fp8: every value written to the cache is rounded as the FP8 cache holds it (cpu_attention.h).
  void set_fp8_kv_cache(bool on) { fp8_kv_ = on; }

  /// \brief A cache sized for this model's layout (the attention kind's K and V widths), empty.
  CpuKvCache new_cache() const;

  /// \brief Runs `tokens` at positions cache.n_tokens() onwards, appends their K/V to the cache, and writes the
  /// logits of the rows listed in `rows` (indices into tokens, ascending) to logits [rows.size(), vocab]; the
  /// output head runs on those rows only. `decode`: the call continues a generation by one token (MLA in
  /// MlaAttention::AUTO then takes the absorbed form; otherwise the decompressed one, as the GPU engine does for
  /// prefill chunks). Token ids must be validated by the caller.
  void forward(std::span<const int32_t> tokens, CpuKvCache& cache, std::span<const int64_t> rows, float* logits,
               bool decode);
  /// \brief The same with logits [tokens.size(), vocab] of every row, or the last row's [vocab] when last_only.
  /// A call of one token counts as a decode step.
  void forward(std::span<const int32_t> tokens, CpuKvCache& cache, float* logits, bool last_only);

 private:
  ModelConfig config_;
  ModelWeights weights_;
  RopeTables rope_;
  MlaAttention mode_;
  CpuRankHooks hooks_;
  bool fp8_kv_ = false;
};

/// \brief The CPU model of `c` (any registered attention × FFN composition).
std::unique_ptr<CpuModel> make_cpu_model(ModelConfig c, ModelWeights w, MlaAttention mode);

}  // namespace mlabench
