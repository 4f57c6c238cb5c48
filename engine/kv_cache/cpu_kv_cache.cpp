#include "engine/kv_cache/cpu_kv_cache.h"

#include "core/check.h"

namespace mlabench {

CpuKvCache::CpuKvCache(int64_t n_layers, int64_t k_width, int64_t v_width)
    : k_width_(k_width), v_width_(v_width), k_(static_cast<size_t>(n_layers)), v_(static_cast<size_t>(n_layers)) {}

int64_t CpuKvCache::grow(int64_t n) {
  const int64_t first = n_tokens_;
  n_tokens_ += n;
  for (auto& l : k_) l.resize(static_cast<size_t>(n_tokens_ * k_width_), 0.0f);
  for (auto& l : v_) l.resize(static_cast<size_t>(n_tokens_ * v_width_), 0.0f);
  return first;
}

void CpuKvCache::truncate(int64_t n) {
  MLABENCH_ICHECK(n >= 0 && n <= n_tokens_, "truncate to {} of {} tokens", n, n_tokens_);
  n_tokens_ = n;
  for (auto& l : k_) l.resize(static_cast<size_t>(n_tokens_ * k_width_));
  for (auto& l : v_) l.resize(static_cast<size_t>(n_tokens_ * v_width_));
}

}  // namespace mlabench
