// --random-weights: a model from config.json alone, for running full-size shapes without the checkpoint.
// Counter-based (splitmix64 of seed, tensor-name hash and element index), so the values do not depend on thread
// count or fill order and a GPU can generate the same ones.
#include <cmath>
#include <cstring>
#include <map>

#include "engine/core/check.h"
#include "engine/weights/model_weights.h"

namespace mlabench {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

constexpr double kStd = 0.02;

}  // namespace

ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  ModelWeights w;
  const auto manifest = tensor_manifest(c, ExpertLayout::HUB);
  const double half_width = std::sqrt(3.0) * kStd;
  std::map<std::string, TensorView> views;
  for (const auto& t : manifest) {
    TensorView v;
    v.dtype = c.dtype;
    v.shape = t.shape;
    const int64_t n = v.numel();
    w.owned.emplace_back((v.nbytes() + 7) / 8);
    void* buf = w.owned.back().data();
    v.data = buf;
    const bool norm = t.shape.size() == 1;
    const uint64_t key = splitmix64(seed ^ fnv1a64(t.name));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float x = 1.0f;
      if (!norm) {
        const uint64_t r = splitmix64(key + static_cast<uint64_t>(i));
        const double u = static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
        x = static_cast<float>((2.0 * u - 1.0) * half_width);
      }
      switch (c.dtype) {
        case DType::BF16:
          static_cast<uint16_t*>(buf)[i] = f32_to_bf16(x);
          break;
        case DType::F16:
          static_cast<uint16_t*>(buf)[i] = f32_to_f16(x);
          break;
        default:
          static_cast<float*>(buf)[i] = x;
          break;
      }
    }
    w.stored_bytes += v.nbytes();
    views[t.name] = v;
  }
  bind_weights(
      c, ExpertLayout::HUB, [&](const std::string& name) { return views.at(name); }, w);
  w.source = fmt::format("random (seed {})", seed);
  return w;
}

}  // namespace mlabench
