// FP8 test inputs the kernel tests share (CPU twin tests and GPU tests alike): experts' e4m3 weights with their
// 128 x 128 scale grids as the engine holds them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "engine/core/fp8.h"

namespace mlabench::test {

inline int64_t groups_of(int64_t k) { return (k + kFp8Block - 1) / kFp8Block; }

// Each expert's stacked weight [w_rows, k] drawn at a magnitude per 128 x 128 block and quantised by
// quantize_fp8_blocks, codes `stride` bytes apart, the scale grid [blocks, scale_ld] `scale_stride` floats apart
// (padding NaN), as the engine holds FP8 weights.
struct Fp8Experts {
  std::vector<uint8_t> codes;
  std::vector<float> scale;
  int64_t stride = 0, scale_ld = 0, scale_stride = 0;
};

inline Fp8Experts quantized_experts(int32_t E, int64_t w_rows, int64_t k, int64_t stride_pad, std::mt19937& rng) {
  const int64_t blocks = groups_of(w_rows), groups = groups_of(k);
  Fp8Experts q;
  q.stride = w_rows * k + stride_pad;
  q.scale_ld = fp8_weight_scale_ld(k);
  q.scale_stride = blocks * q.scale_ld;
  q.codes.assign(static_cast<size_t>(E * q.stride), 0x7f);
  q.scale.assign(static_cast<size_t>(E * q.scale_stride), std::numeric_limits<float>::quiet_NaN());
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::uniform_int_distribution<int> mag(-3, 3);
  std::vector<float> w(static_cast<size_t>(w_rows * k)), sc(static_cast<size_t>(blocks * groups));
  std::vector<uint8_t> codes(w.size());
  std::vector<float> block_mag(static_cast<size_t>(blocks * groups));
  for (int32_t e = 0; e < E; ++e) {
    for (float& m : block_mag) m = std::ldexp(1.0f, mag(rng));
    for (int64_t j = 0; j < w_rows; ++j)
      for (int64_t c = 0; c < k; ++c)
        w[static_cast<size_t>(j * k + c)] = block_mag[static_cast<size_t>((j / 128) * groups + c / 128)] * nd(rng);
    quantize_fp8_blocks(w, w_rows, k, codes, sc, "test weights");
    std::copy(codes.begin(), codes.end(), q.codes.begin() + e * q.stride);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t g = 0; g < groups; ++g)
        q.scale[static_cast<size_t>(e * q.scale_stride + b * q.scale_ld + g)] = sc[static_cast<size_t>(b * groups + g)];
  }
  return q;
}

}  // namespace mlabench::test
