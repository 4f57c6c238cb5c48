// What the attention tests share (twin tests in CI, CUDA tests on the GPU machine): random vectors, a shuffled
// paged BF16 pool with NaN in every slot no sequence owns (and its exact F32 widening), and a varlen batch builder.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/kernels/kernel_params.h"

namespace mlabench::test {

inline constexpr uint16_t kBf16NaN = 0x7fc0;

inline std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Sequence s's position p at slot table[s * max_blocks + p / bs] * bs + p % bs; blocks are shuffled, two spare
// blocks are never owned (each row's spare table entry points at one), and every slot starts as NaN.
struct PagedPool {
  int32_t block_size = 0, max_blocks = 0;
  int64_t width = 0;
  std::vector<int32_t> table;
  std::vector<uint16_t> pool;

  PagedPool(const std::vector<int32_t>& kv_len, int32_t bs, int64_t w, std::mt19937& rng) : block_size(bs), width(w) {
    int32_t total = 2;
    for (int32_t n : kv_len) {
      max_blocks = std::max(max_blocks, (n + bs - 1) / bs);
      total += (n + bs - 1) / bs;
    }
    max_blocks = std::max(max_blocks, 1) + 1;
    std::vector<int32_t> ids(static_cast<size_t>(total));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(kv_len.size() * static_cast<size_t>(max_blocks), ids[0]);  // ids[0], ids[1]: never owned
    size_t next = 2;
    for (size_t s = 0; s < kv_len.size(); ++s)
      for (int32_t b = 0; b < (kv_len[s] + bs - 1) / bs; ++b) table[s * static_cast<size_t>(max_blocks) + b] = ids[next++];
    pool.assign(static_cast<size_t>(total) * bs * w, kBf16NaN);
  }
  int64_t slot(size_t s, int64_t p) const {
    return int64_t{table[s * static_cast<size_t>(max_blocks) + static_cast<size_t>(p / block_size)]} * block_size +
           p % block_size;
  }
  uint16_t* at(size_t s, int64_t p) { return pool.data() + slot(s, p) * width; }
  // New random values in every owned slot (a V pool copied from its K pool keeps the table and the NaNs).
  void refill(const std::vector<int32_t>& kv_len, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    for (size_t s = 0; s < kv_len.size(); ++s)
      for (int32_t p = 0; p < kv_len[s]; ++p) {
        uint16_t* x = at(s, p);
        for (int64_t c = 0; c < width; ++c) x[c] = f32_to_bf16(nd(rng));
      }
  }
  /// The same pool as F32 (the engine's float32 precision): every value widened exactly, NaNs kept.
  std::vector<float> widened() const {
    std::vector<float> f(pool.size());
    std::transform(pool.begin(), pool.end(), f.begin(), bf16_to_f32);
    return f;
  }
  /// The cache as a kernel sees it, with this table or a device copy of it.
  kernels::PagedCache view(const int32_t* tables = nullptr) const {
    return {block_size, tables ? tables : table.data(), max_blocks};
  }
};

struct VarlenBuilder {
  std::vector<int32_t> cu_q{0}, kv_len;
  int32_t max_q = 0, max_kv = 0;
  void add(int32_t q_len, int32_t kv) {
    cu_q.push_back(cu_q.back() + q_len);
    kv_len.push_back(kv);
    max_q = std::max(max_q, q_len);
    max_kv = std::max(max_kv, kv);
  }
  int32_t n() const { return static_cast<int32_t>(kv_len.size()); }
  int32_t rows() const { return cu_q.back(); }
  kernels::VarlenBatch view() const { return {n(), cu_q.data(), kv_len.data(), max_q, max_kv}; }
};

}  // namespace mlabench::test
