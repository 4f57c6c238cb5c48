// CPU twins of the scoring, sampling and random-weights kernels (engine/kernels/cuda/sampling.cu):
// log_softmax_gather, sample, random_fill. random_fill is also the host generator of random_weights(), so the
// host and device random weights cannot drift apart.
//
// sample works on integer probability masses: each token's softmax weight exp((l - max) / T) is evaluated with
// a polynomial made only of correctly rounded float operations (so host and device give the same bits) and
// truncated to units of 2^-40 of the top token's weight. Integer sums do not depend on summation order, so the
// kernel's parallel reductions reproduce these loops exactly; tokens below 2^-40 of the top one get mass 0 and
// are never drawn.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "core/check.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels::twin {

namespace {

// ---- shared with engine/kernels/cuda/sampling.cu: keep the two copies identical -------------------------

// Order-preserving map from float to uint32 (-0 folded into +0, so equal logits give equal keys).
uint32_t logit_key(float l) {
  uint32_t b;
  std::memcpy(&b, &l, 4);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// floor(2^40 * exp(x)) for x <= 0, through 2^t = 2^n * 2^f with t = x * log2(e), n = rint(t), f in [-1/2, 1/2]
// and a degree-6 Taylor polynomial for 2^f (relative error < 2e-7). Every step is a single correctly rounded
// float operation; `volatile` stops the compiler from fusing x * log2(e) into t - n, which the device copy
// prevents with __fmul_rn.
uint64_t sample_mass(float x) {
  volatile float t_mem = x * 1.44269504f;
  const float t = t_mem;
  if (!(t > -41.0f)) return 0;  // below 2^-41 the truncation gives 0 anyway; also catches NaN
  const float n = std::rint(t);
  const float f = t - n;  // exact
  float p = 1.5403530e-4f;
  p = std::fmaf(p, f, 1.3333558e-3f);
  p = std::fmaf(p, f, 9.6181291e-3f);
  p = std::fmaf(p, f, 5.5504109e-2f);
  p = std::fmaf(p, f, 2.4022651e-1f);
  p = std::fmaf(p, f, 6.9314718e-1f);
  p = std::fmaf(p, f, 1.0f);
  return static_cast<uint64_t>(std::ldexp(p, 40 + static_cast<int>(n)));  // exact scaling, then truncation
}

// ---------------------------------------------------------------------------------------------------------

int64_t row_argmax(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

void to_output(float x, DType t, void* out, int64_t i) {
  switch (t) {
    case DType::BF16:
      static_cast<uint16_t*>(out)[i] = f32_to_bf16(x);
      break;
    case DType::F16:
      static_cast<uint16_t*>(out)[i] = f32_to_f16(x);
      break;
    default:
      static_cast<float*>(out)[i] = x;
      break;
  }
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

void log_softmax_gather(const LogSoftmaxGatherParams& p) {
  MLABENCH_CHECK(p.vocab > 0 && p.ld >= p.vocab,
                 "log_softmax_gather: vocab {} and ld {} (need 0 < vocab <= ld). "
                 "HINT: ld is the row stride of logits in elements",
                 p.vocab, p.ld);
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const float* row = p.logits + r * p.ld;
    const int32_t t = p.targets[r];
    if (t < 0 || t >= p.vocab) {  // no host check on the device: an impossible target scores NaN there too
      p.logprob[r] = std::numeric_limits<double>::quiet_NaN();
      p.is_greedy[r] = 0;
      continue;
    }
    const int64_t am = row_argmax(row, p.vocab);
    const double mx = row[am];
    double sum = 0.0;
    for (int64_t i = 0; i < p.vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - mx);
    p.logprob[r] = static_cast<double>(row[t]) - mx - std::log(sum);
    p.is_greedy[r] = am == t ? 1 : 0;
  }
}

void sample(const SampleParams& p) {
  MLABENCH_CHECK(p.vocab > 0 && p.ld >= p.vocab && p.vocab < (int64_t{1} << 23),
                 "sample: vocab {} and ld {} (need 0 < vocab <= ld, vocab < 2^23). HINT: ld is the row stride of "
                 "logits; the 2^23 bound keeps the 2^-40 integer masses of a row within 64 bits",
                 p.vocab, p.ld);
  std::vector<uint64_t> q(static_cast<size_t>(p.vocab));
  std::vector<uint32_t> key(static_cast<size_t>(p.vocab));
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const float* row = p.logits + r * p.ld;
    const int64_t am = row_argmax(row, p.vocab);
    const float temp = p.temperature[r];
    if (!(temp > 0.0f)) {
      p.out[r] = static_cast<int32_t>(am);
      continue;
    }
    const float mx = row[am];
    uint64_t total = 0;
    for (int64_t i = 0; i < p.vocab; ++i) {
      q[i] = sample_mass((row[i] - mx) / temp);
      key[i] = logit_key(row[i]);
      total += q[i];
    }
    // Nucleus: walk logit tie groups from the top until their mass reaches ceil(top_p * total); the kept set is
    // every token whose key is >= the key of the group that reached it.
    if (total == 0) {  // only a row without a finite logit: no token has mass
      p.out[r] = static_cast<int32_t>(am);
      continue;
    }
    uint32_t cut = 0;
    if (p.top_p[r] < 1.0f) {
      const double want = std::ceil(static_cast<double>(p.top_p[r]) * static_cast<double>(total));
      const uint64_t need = std::clamp<uint64_t>(want > 0 ? static_cast<uint64_t>(want) : 0, 1, total);
      std::vector<int64_t> order(static_cast<size_t>(p.vocab));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] > key[b]; });
      uint64_t acc = 0;
      for (size_t j = 0; j < order.size();) {
        const uint32_t k = key[order[j]];
        for (; j < order.size() && key[order[j]] == k; ++j) acc += q[order[j]];
        if (acc >= need) {
          cut = k;
          break;
        }
      }
    }
    uint64_t kept = 0;
    for (int64_t i = 0; i < p.vocab; ++i)
      if (key[i] >= cut) kept += q[i];
    const double u = sampling_uniform(p.seed[r], p.step[r]);
    const uint64_t draw = std::min(static_cast<uint64_t>(u * static_cast<double>(kept)), kept - 1);
    int64_t chosen = am;  // unreachable fallback: the kept mass always covers draw
    uint64_t acc = 0;
    for (int64_t i = 0; i < p.vocab; ++i) {
      if (key[i] < cut) continue;
      acc += q[i];
      if (acc > draw) {
        chosen = i;
        break;
      }
    }
    p.out[r] = static_cast<int32_t>(chosen);
  }
}

void random_fill(const RandomFillParams& p) {
  MLABENCH_CHECK(p.out_type == DType::BF16 || p.out_type == DType::F16 || p.out_type == DType::F32,
                 "random_fill: output dtype {} (need BF16, F16 or F32). HINT: random weights are stored in the "
                 "config's torch_dtype",
                 dtype_name(p.out_type));
  MLABENCH_CHECK(p.n >= 0 && (p.n == 0 || p.out),
                 "random_fill: n = {} with out {}. HINT: pass the tensor's "
                 "buffer and element count",
                 p.n, p.out ? "set" : "null");
  MLABENCH_CHECK(p.first >= 0 && p.cols >= 0 && (p.cols == 0 || p.ld >= p.cols),
                 "random_fill: first {}, cols {}, ld {} (need first >= 0, and ld >= cols where cols > 0). HINT: a "
                 "block of a whole tensor names its first element, its row width and the whole tensor's row stride",
                 p.first, p.cols, p.ld);
  // sqrt(3) * 0.02 (standard deviation 0.02) as an exact constant, so host and device use the same double.
  constexpr double kHalfWidth = 0x1.1bc779ef0d4e8p-5;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < p.n; ++i) {
    float x = 1.0f;
    if (!p.fill_ones) {
      const uint64_t r = splitmix64(p.key + static_cast<uint64_t>(random_fill_index(p.first, p.cols, p.ld, i)));
      const double u = static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
      x = static_cast<float>((2.0 * u - 1.0) * kHalfWidth);
    }
    to_output(x, p.out_type, p.out, i);
  }
}

}  // namespace mlabench::kernels::twin
