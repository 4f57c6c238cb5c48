// KV cache of one sequence for the CPU reference engine, float32.
//   MLA: per token per layer kv_lora_rank + qk_rope_head_dim values: [RMSNorm(c_kv) ; RoPE(k_pe)], nothing else.
//        The per-head keys and values are recomputed from it (decompressed form) or never formed (absorbed).
//   MHA/GQA: per token per layer K and V of every KV head, [n_kv_heads * head_dim] each (K after RoPE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mlabench {

class CpuKvCache {
 public:
  /// k_width / v_width: floats per token per layer (v_width 0 for MLA).
  CpuKvCache(int64_t n_layers, int64_t k_width, int64_t v_width);

  int64_t n_tokens() const { return n_tokens_; }
  int64_t k_width() const { return k_width_; }
  int64_t v_width() const { return v_width_; }
  /// \brief Adds n token slots (zeroed) to every layer; returns the index of the first.
  int64_t grow(int64_t n);
  /// \brief Drops every token from index n on (to re-run a suffix).
  void truncate(int64_t n);

  float* k(int64_t layer, int64_t token) { return &k_[layer][static_cast<size_t>(token * k_width_)]; }
  float* v(int64_t layer, int64_t token) { return &v_[layer][static_cast<size_t>(token * v_width_)]; }
  const float* k(int64_t layer, int64_t token) const { return &k_[layer][static_cast<size_t>(token * k_width_)]; }
  const float* v(int64_t layer, int64_t token) const { return &v_[layer][static_cast<size_t>(token * v_width_)]; }

 private:
  int64_t n_tokens_ = 0;
  int64_t k_width_, v_width_;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace mlabench
