#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace mlabench {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

double log_softmax_at(const float* logits, int64_t n, int32_t idx) {
  double mx = logits[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<double>(logits[idx]) - mx - std::log(sum);
}

Sampler::Sampler(float temperature, float top_p, uint64_t seed)
    : temperature_(temperature), top_p_(top_p), rng_(seed) {}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (temperature_ <= 0.0f) return argmax(logits, n);
  std::vector<double> p(static_cast<size_t>(n));
  double mx = logits[argmax(logits, n)];
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += (p[i] = std::exp((logits[i] - mx) / temperature_));
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  // Nucleus: the smallest prefix (by descending probability) whose mass reaches top_p.
  int64_t keep = n;
  if (top_p_ < 1.0f) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      acc += p[order[i]] / sum;
      if (acc >= top_p_) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += p[order[i]];
  // Uniform in [0, 1) from the top 53 bits: defined by the standard, unlike uniform_real_distribution.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * kept;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += p[order[i]];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace mlabench
