// Token selection from logits: greedy argmax, or temperature + nucleus (top-p) sampling from a seeded
// mt19937_64 (a standard-defined generator, so a seed gives the same tokens on every platform); log-softmax
// for scoring, computed in double.
#pragma once

#include <cstdint>
#include <random>

namespace mlabench {

/// \brief Index of the largest value; ties go to the lowest index.
int32_t argmax(const float* x, int64_t n);
/// \brief log softmax(logits)[idx], in double.
double log_softmax_at(const float* logits, int64_t n, int32_t idx);

class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed);
  /// \brief The next token from logits [n]. Greedy when temperature == 0.
  int32_t sample(const float* logits, int64_t n);

 private:
  float temperature_, top_p_;
  std::mt19937_64 rng_;
};

}  // namespace mlabench
