// See rope.h for the float32 rule. The YaRN ramp follows DeepSeek's yarn_find_correction_range with
// L0 = original_max_position_embeddings (not max_position_embeddings: a trap listed in engine.md §2.4).
#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mlabench {

namespace {

// torch: base ** (arange(0, dim, 2).float() / dim), all float32.
std::vector<float> pos_freqs_f32(double base, int64_t dim) {
  std::vector<float> p(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    p[static_cast<size_t>(i)] =
        static_cast<float>(std::pow(static_cast<double>(static_cast<float>(base)), static_cast<double>(e)));
  }
  return p;
}

double yarn_correction_dim(double rotations, int64_t dim, double base, double l0) {
  return static_cast<double>(dim) * std::log(l0 / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

RopeTables rope_tables(const ModelConfig& c) {
  const RopeConfig& r = c.rope;
  RopeTables t;
  t.dim = r.dim;
  t.interleaved = r.interleaved;
  const int64_t half = r.dim / 2;
  const std::vector<float> pos_freqs = pos_freqs_f32(r.theta, r.dim);
  t.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) t.inv_freq[static_cast<size_t>(i)] = 1.0f / pos_freqs[static_cast<size_t>(i)];

  if (r.type == RopeType::YARN) {
    const auto L0 = static_cast<double>(r.original_max_position_embeddings);
    double low = std::floor(yarn_correction_dim(r.beta_fast, r.dim, r.theta, L0));
    double high = std::ceil(yarn_correction_dim(r.beta_slow, r.dim, r.theta, L0));
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(r.dim - 1));
    if (low == high) high += 0.001;  // the reference's guard against a zero-width ramp
    const auto factor = static_cast<float>(r.factor);
    for (int64_t i = 0; i < half; ++i) {
      const float extra = 1.0f / pos_freqs[static_cast<size_t>(i)];
      const float inter = 1.0f / (factor * pos_freqs[static_cast<size_t>(i)]);
      float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
      ramp = std::clamp(ramp, 0.0f, 1.0f);
      const float mask = 1.0f - ramp;  // 1: keep the original frequency, 0: interpolate fully
      t.inv_freq[static_cast<size_t>(i)] = inter * (1.0f - mask) + extra * mask;
    }
    t.cos_sin_multiplier =
        static_cast<float>(yarn_get_mscale(r.factor, r.mscale) / yarn_get_mscale(r.factor, r.mscale_all_dim));
  } else if (r.type == RopeType::LLAMA3) {
    const auto factor = static_cast<float>(r.factor);
    const auto low_wavelen =
        static_cast<float>(static_cast<double>(r.original_max_position_embeddings) / r.low_freq_factor);
    const auto high_wavelen =
        static_cast<float>(static_cast<double>(r.original_max_position_embeddings) / r.high_freq_factor);
    const auto two_pi = static_cast<float>(2.0 * std::numbers::pi);
    for (int64_t i = 0; i < half; ++i) {
      const float f = t.inv_freq[static_cast<size_t>(i)];
      const float wavelen = two_pi / f;
      float out = wavelen > low_wavelen ? f / factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth =
            (static_cast<float>(r.original_max_position_embeddings) / wavelen - static_cast<float>(r.low_freq_factor)) /
            static_cast<float>(r.high_freq_factor - r.low_freq_factor);
        out = (1.0f - smooth) * out / factor + smooth * out;
      }
      t.inv_freq[static_cast<size_t>(i)] = out;
    }
  }

  // The remote code's rule, for every attention kind: one head's q.k width, times mscale^2 under YaRN (q and k
  // each carry one mscale). The absorbed MLA form keeps this scale: its dot products are the same numbers.
  t.softmax_scale = 1.0 / std::sqrt(static_cast<double>(c.attention_qk_dim()));
  if (r.type == RopeType::YARN && r.mscale_all_dim != 0.0) {
    const double m = yarn_get_mscale(r.factor, r.mscale_all_dim);
    t.softmax_scale *= m * m;
  }
  return t;
}

void rope_cos_sin(const RopeTables& t, int64_t pos, float* cos_out, float* sin_out) {
  const auto p = static_cast<float>(pos);
  for (size_t i = 0; i < t.inv_freq.size(); ++i) {
    const float angle = p * t.inv_freq[i];  // float32 product, as the reference computes it
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * t.cos_sin_multiplier;
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * t.cos_sin_multiplier;
  }
}

}  // namespace mlabench
