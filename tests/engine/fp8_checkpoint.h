// An FP8 checkpoint in DeepSeek-V3's layout for the engine tests (the GPU's as-stored load, the CPU's FP8 splits):
// every tensor of config.json's model from the random weights' generator (the values --random-weights SEED gives),
// the FP8-eligible matrices (fp8_on_load) quantised by the engine's quantiser to F8_E4M3 codes with a float32
// `<name>_scale_inv` grid beside them, the rest as generated.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/fp8.h"
#include "engine/kernels/twin/twin.h"
#include "engine/model/config.h"
#include "engine/weights/model_weights.h"
#include "engine/weights/safetensors.h"

namespace mlabench::test {

/// Writes dir/model.safetensors beside dir/config.json; returns how many tensors are FP8. block_gain (optional)
/// multiplies each value of a quantised matrix by a factor of its 128 x 128 block (block row, block column) before
/// quantising, so that blocks get scales of their own (random weights give every block the same one).
inline int write_fp8_checkpoint(const std::string& dir, uint64_t seed,
                                const std::function<float(int64_t, int64_t)>& block_gain = {}) {
  const ModelConfig c = load_config(dir);
  const auto manifest = tensor_manifest(c, ExpertLayout::HUB);
  std::vector<std::vector<uint8_t>> bytes;  // every tensor's storage, alive until the file is written
  std::vector<std::vector<float>> scales;
  bytes.reserve(2 * manifest.size());
  scales.reserve(manifest.size());
  std::vector<std::pair<std::string, TensorView>> tensors;
  int fp8 = 0;
  for (const auto& t : manifest) {
    TensorView v{c.dtype, t.shape, nullptr};
    bytes.emplace_back(v.nbytes());
    kernels::twin::random_fill({.out = bytes.back().data(), .out_type = c.dtype, .n = v.numel(),
                                .key = random_weights_key(seed, t.name), .fill_ones = t.shape.size() == 1});
    v.data = bytes.back().data();
    if (!fp8_on_load(t.name, t.shape)) {
      tensors.emplace_back(t.name, v);
      continue;
    }
    const int64_t n = t.shape[0], k = t.shape[1];
    std::vector<float> f(static_cast<size_t>(n * k));
    convert_to_f32(v.dtype, v.data, f.data(), f.size());
    if (block_gain)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t col = 0; col < k; ++col) f[static_cast<size_t>(r * k + col)] *= block_gain(r / 128, col / 128);
    bytes.emplace_back(f.size());
    scales.emplace_back(static_cast<size_t>(((n + 127) / 128) * ((k + 127) / 128)));
    quantize_fp8_blocks(f, n, k, bytes.back(), scales.back(), t.name.c_str());
    tensors.emplace_back(t.name, TensorView{DType::F8_E4M3, t.shape, bytes.back().data()});
    tensors.emplace_back(t.name + "_scale_inv",
                         TensorView{DType::F32, {(n + 127) / 128, (k + 127) / 128}, scales.back().data()});
    ++fp8;
  }
  safetensors_write(dir + "/model.safetensors", tensors);
  return fp8;
}

}  // namespace mlabench::test
