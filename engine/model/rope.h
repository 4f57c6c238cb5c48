// Rotary position embedding tables: inverse frequencies for default, YaRN (DeepSeek) and llama3 scaling, the
// cos/sin multiplier and the attention softmax scale that go with them.
//
// Numerics follow the reference implementations exactly where it matters for parity: inv_freq is computed in
// float32 by the same sequence of float32 operations transformers and the DeepSeek remote code use, and the
// angle is the float32 product pos * inv_freq (one rounding), whose cos/sin are then taken accurately. Far past
// 4K positions the float32 angle differs from the exact one by up to ~1e-2 rad at the highest frequency: that is
// the reference's behaviour and the model was trained with it, so we reproduce it rather than "fix" it.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace mlabench {

struct RopeTables {
  std::vector<float> inv_freq;      // [dim/2]
  float cos_sin_multiplier = 1.0f;  // YaRN: mscale(factor, mscale) / mscale(factor, mscale_all_dim)
  double softmax_scale = 1.0;       // applied to q.k before softmax
  int64_t dim = 0;
  bool interleaved = false;
};

/// \brief DeepSeek's yarn_get_mscale: 1 if scale <= 1, else 0.1 * mscale * ln(scale) + 1.
double yarn_get_mscale(double scale, double mscale);

/// \brief Tables for `c`. Softmax scale: attention_qk_dim()^-0.5 (MLA qk_nope + qk_rope, GQA head_dim), times
/// yarn_get_mscale(factor, mscale_all_dim)^2 under YaRN when mscale_all_dim != 0 (the remote code's rule).
RopeTables rope_tables(const ModelConfig& c);

/// \brief cos and sin of every frequency at position `pos` ([dim/2] each), multiplier applied.
void rope_cos_sin(const RopeTables& t, int64_t pos, float* cos_out, float* sin_out);

}  // namespace mlabench
