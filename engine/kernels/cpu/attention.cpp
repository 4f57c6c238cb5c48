// One query against a run of keys: the CPU reference for every attention form (see AttentionKeys in ops.h).
// Causality is the caller's: it passes only the keys a query may see.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/kernels/cpu/ops.h"

namespace mlabench::cpu {

void attention_one_query(float* out, const float* q1, const float* q2, const AttentionKeys& keys, int64_t n_keys,
                         float scale, float* scores) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n_keys; ++j) {
    float s = 0.0f;
    const float* k1 = keys.k1 + j * keys.k1_stride;
    for (int64_t d = 0; d < keys.d1; ++d) s += q1[d] * k1[d];
    if (keys.d2 > 0) {
      const float* k2 = keys.k2 + j * keys.k2_stride;
      for (int64_t d = 0; d < keys.d2; ++d) s += q2[d] * k2[d];
    }
    scores[j] = s * scale;
    mx = std::max(mx, scores[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.0f / sum;
  std::fill(out, out + keys.dv, 0.0f);
  for (int64_t j = 0; j < n_keys; ++j) {
    const float p = scores[j] * inv;
    const float* v = keys.v + j * keys.v_stride;
    for (int64_t d = 0; d < keys.dv; ++d) out[d] += p * v[d];
  }
}

}  // namespace mlabench::cpu
