// CPU reference kernels against straightforward double-precision loops on random data (fresh seeds per case;
// output buffers poisoned with NaN so an unwritten element fails).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>

#include "engine/core/fp8.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/model/cpu_attention.h"

namespace mlabench {
namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

struct Weight {
  std::vector<uint16_t> half;  // bf16 or f16 bits
  std::vector<float> f32;      // the exact values the stored ones represent
  TensorView view;
};

Weight make_weight(DType t, int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  Weight w;
  w.f32.resize(static_cast<size_t>(n * k));
  w.half.resize(w.f32.size());
  for (size_t i = 0; i < w.f32.size(); ++i) {
    const float x = nd(rng);
    if (t == DType::BF16) {
      w.half[i] = f32_to_bf16(x);
      w.f32[i] = bf16_to_f32(w.half[i]);
    } else if (t == DType::F16) {
      w.half[i] = f32_to_f16(x);
      w.f32[i] = f16_to_f32(w.half[i]);
    } else {
      w.f32[i] = x;
    }
  }
  w.view = {t, {n, k}, t == DType::F32 ? static_cast<const void*>(w.f32.data()) : w.half.data()};
  return w;
}

std::vector<float> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

class LinearTest : public ::testing::TestWithParam<DType> {};

TEST_P(LinearTest, MatchesDoubleReference) {
  std::mt19937 rng(static_cast<unsigned>(GetParam()) + 1);
  // The last shape is above the threshold where linear() goes multi-threaded.
  for (auto [rows, n, k] : {std::tuple{1, 1, 1}, {3, 17, 33}, {5, 40, 129}, {2, 300, 64}, {4, 300, 256}}) {
    const Weight w = make_weight(GetParam(), n, k, rng);
    const int64_t ldx = k + 3, ldy = n + 2;  // strided rows
    const std::vector<float> x = randn(static_cast<size_t>(rows * ldx), rng);
    std::vector<float> y(static_cast<size_t>(rows * ldy), kPoison);
    cpu::linear(y.data(), ldy, x.data(), ldx, rows, w.view);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0;
        for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(x[r * ldx + i]) * w.f32[j * k + i];
        ASSERT_NEAR(y[r * ldy + j], ref, 1e-5 * (1 + std::sqrt(static_cast<double>(k)))) << r << "," << j;
      }
    for (int64_t r = 0; r < rows; ++r)  // padding between rows untouched
      for (int64_t j = n; j < ldy; ++j) EXPECT_TRUE(std::isnan(y[r * ldy + j]));

    // y = x . w, x [rows, n]
    const std::vector<float> xt = randn(static_cast<size_t>(rows * n), rng);
    std::vector<float> yt(static_cast<size_t>(rows * k), kPoison);
    cpu::linear_transposed(yt.data(), k, xt.data(), n, rows, w.view);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < k; ++i) {
        double ref = 0;
        for (int64_t j = 0; j < n; ++j) ref += static_cast<double>(xt[r * n + j]) * w.f32[j * k + i];
        ASSERT_NEAR(yt[r * k + i], ref, 1e-5 * (1 + std::sqrt(static_cast<double>(n))));
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LinearTest, ::testing::Values(DType::F32, DType::BF16, DType::F16),
                         [](const auto& i) { return std::string(dtype_name(i.param)); });

// FP8 weights (--weights-dtype fp8): linear() is W8A8, the dequantised codes against activations rounded through e4m3
// in 1 x 128 groups; linear_transposed() dequantises the weights only. Views of rows that start inside a 128-row
// scale block, and a sub-tensor of a 3-D [E, N, K] tensor, find their own scales.
TEST(CpuOps, Fp8WeightsAreW8A8) {
  std::mt19937 rng(21);
  const int64_t E = 2, n = 300, k = 200, nb = 3, kb = 2;
  std::vector<uint8_t> codes(static_cast<size_t>(E * n * k));
  std::vector<float> scales(static_cast<size_t>(E * nb * kb)), deq(codes.size());
  for (int64_t e = 0; e < E; ++e) {
    std::vector<float> w = randn(static_cast<size_t>(n * k), rng);
    for (float& v : w) v *= static_cast<float>(e + 1) * 0.05f;
    quantize_fp8_blocks(w, n, k, std::span(codes).subspan(static_cast<size_t>(e * n * k), static_cast<size_t>(n * k)),
                        std::span(scales).subspan(static_cast<size_t>(e * nb * kb), static_cast<size_t>(nb * kb)), "w");
    for (int64_t i = 0; i < n * k; ++i) {
      const auto at = static_cast<size_t>(e * n * k + i);
      deq[at] = e4m3_to_f32(codes[at]) * scales[static_cast<size_t>(e * nb * kb + (i / k / 128) * kb + (i % k) / 128)];
    }
  }
  TensorView whole{.dtype = DType::F8_E4M3, .shape = {E, n, k}, .data = codes.data(), .scale_inv = scales.data(),
                   .scale_ld = kb};
  const int64_t first = 100, rows_taken = 150;  // rows 100..249 of expert 1: across its first and second row blocks
  const TensorView w = whole.index(1).slice_rows(first, rows_taken);
  const int64_t rows = 3;
  std::vector<float> x = randn(static_cast<size_t>(rows * k), rng);
  std::vector<float> y(static_cast<size_t>(rows * rows_taken), kPoison);
  cpu::linear(y.data(), rows_taken, x.data(), k, rows, w);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> xq(x.begin() + r * k, x.begin() + (r + 1) * k);
    fake_quantize_fp8_row(xq.data(), k);
    EXPECT_NE(xq, std::vector<float>(x.begin() + r * k, x.begin() + (r + 1) * k)) << "activations are rounded";
    for (int64_t j = 0; j < rows_taken; ++j) {
      double ref = 0;
      const float* wrow = deq.data() + (n + first + j) * k;  // expert 1, row first + j
      for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(xq[static_cast<size_t>(i)]) * wrow[i];
      ASSERT_NEAR(y[static_cast<size_t>(r * rows_taken + j)], ref, 1e-5 * (1 + std::sqrt(static_cast<double>(k))))
          << r << "," << j;
    }
  }
  std::vector<float> xt = randn(static_cast<size_t>(rows * rows_taken), rng);
  std::vector<float> yt(static_cast<size_t>(rows * k), kPoison);
  cpu::linear_transposed(yt.data(), k, xt.data(), rows_taken, rows, w);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i) {
      double ref = 0;
      for (int64_t j = 0; j < rows_taken; ++j)
        ref += static_cast<double>(xt[static_cast<size_t>(r * rows_taken + j)]) * deq[static_cast<size_t>(
                   (n + first + j) * k + i)];
      ASSERT_NEAR(yt[static_cast<size_t>(r * k + i)], ref, 1e-5 * (1 + std::sqrt(static_cast<double>(rows_taken))));
    }
}

// --kv-cache-dtype fp8's rounding of a cache slot: MLA's latent in groups of 128 (the last one shorter), each value
// an e4m3 code times its group's scale (amax / 448), the RoPE values in BF16; GQA a scale per head.
TEST(CpuOps, Fp8CacheSlotsHoldCodesTimesTheirGroupsScale) {
  std::mt19937 rng(5);
  const int64_t kvl = 300, rd = 16;
  const std::vector<float> slot = randn(static_cast<size_t>(kvl + rd), rng);
  std::vector<float> r = slot;
  cpu::round_mla_slot_fp8(r.data(), kvl, rd);
  for (int64_t g0 = 0; g0 < kvl; g0 += 128) {
    float amax = 0;
    for (int64_t i = g0; i < std::min(kvl, g0 + 128); ++i)
      amax = std::max(amax, std::fabs(slot[static_cast<size_t>(i)]));
    const float s = amax / 448.0f;
    for (int64_t i = g0; i < std::min(kvl, g0 + 128); ++i) {
      const float v = r[static_cast<size_t>(i)];
      EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(v / s)) * s, v) << i << ": a code times the group's scale";
      const float x = slot[static_cast<size_t>(i)];
      EXPECT_LE(std::fabs(v - x), std::max(std::fabs(x) * 0.0625f, s / 1024) * 1.0001f);
    }
  }
  for (int64_t i = kvl; i < kvl + rd; ++i)
    EXPECT_EQ(r[static_cast<size_t>(i)], bf16_to_f32(f32_to_bf16(slot[static_cast<size_t>(i)]))) << "RoPE part in BF16";
  // Two heads of 64, the second 100 times larger: each has its own scale.
  std::vector<float> heads = randn(128, rng);
  for (int i = 64; i < 128; ++i) heads[static_cast<size_t>(i)] *= 100.0f;
  std::vector<float> hr = heads;
  cpu::round_heads_fp8(hr.data(), 2, 64);
  std::vector<float> first(heads.begin(), heads.begin() + 64);
  fake_quantize_fp8_row(first.data(), 64);
  EXPECT_EQ(std::vector<float>(hr.begin(), hr.begin() + 64), first) << "head 0 with its own scale";
}

TEST(CpuOps, EmbeddingRmsNormSilu) {
  std::mt19937 rng(3);
  const Weight table = make_weight(DType::BF16, 10, 8, rng);
  const int32_t ids[3] = {9, 0, 4};
  std::vector<float> e(24, kPoison);
  cpu::embedding(e.data(), table.view, ids, 3);
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 8; ++i) EXPECT_EQ(e[r * 8 + i], table.f32[ids[r] * 8 + i]);

  const std::vector<float> x = randn(2 * 50, rng), w = randn(50, rng);
  std::vector<float> y(100, kPoison);
  cpu::rms_norm(y.data(), 50, x.data(), 50, w.data(), 2, 50, 1e-6f);
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < 50; ++i) ss += static_cast<double>(x[r * 50 + i]) * x[r * 50 + i];
    const double inv = 1.0 / std::sqrt(ss / 50 + 1e-6);
    for (int i = 0; i < 50; ++i) EXPECT_NEAR(y[r * 50 + i], x[r * 50 + i] * inv * w[i], 1e-5);
  }
  std::vector<float> g = randn(20, rng), u = randn(20, rng), o(20, kPoison);
  cpu::silu_mul(o.data(), g.data(), u.data(), 20);
  for (int i = 0; i < 20; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-static_cast<double>(g[i]))) * u[i], 1e-6);
}

// Interleaved RoPE rotates (2i, 2i+1); half-split rotates (i, i + d/2). The same rotation seen through the
// permutation that maps one layout to the other.
TEST(CpuOps, RopeLayouts) {
  std::mt19937 rng(4);
  const int64_t d = 16;
  const std::vector<float> x = randn(d, rng), ang = randn(d / 2, rng);
  std::vector<float> c(d / 2), s(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    c[i] = std::cos(ang[i]);
    s[i] = std::sin(ang[i]);
  }
  std::vector<float> a = x;
  cpu::rope(a.data(), d, c.data(), s.data(), true);
  for (int64_t i = 0; i < d / 2; ++i) {
    EXPECT_NEAR(a[2 * i], x[2 * i] * c[i] - x[2 * i + 1] * s[i], 1e-6);
    EXPECT_NEAR(a[2 * i + 1], x[2 * i] * s[i] + x[2 * i + 1] * c[i], 1e-6);
  }
  std::vector<float> h(d);
  for (int64_t i = 0; i < d / 2; ++i) {  // de-interleave: evens first, then odds (the remote code's view)
    h[i] = x[2 * i];
    h[i + d / 2] = x[2 * i + 1];
  }
  cpu::rope(h.data(), d, c.data(), s.data(), false);
  for (int64_t i = 0; i < d / 2; ++i) {
    EXPECT_NEAR(h[i], a[2 * i], 1e-6);
    EXPECT_NEAR(h[i + d / 2], a[2 * i + 1], 1e-6);
  }
}

TEST(CpuOps, AttentionOneQueryWithSplitKeys) {
  std::mt19937 rng(5);
  const int64_t n = 37, d1 = 12, d2 = 4, dv = 7, ks1 = 20, ks2 = 9, vs = 11;
  const std::vector<float> q1 = randn(d1, rng), q2 = randn(d2, rng), k1 = randn(n * ks1, rng), k2 = randn(n * ks2, rng),
                           v = randn(n * vs, rng);
  std::vector<float> out(dv, kPoison), scratch(n);
  cpu::AttentionKeys keys{k1.data(), ks1, d1, k2.data(), ks2, d2, v.data(), vs, dv};
  const float scale = 0.3f;
  cpu::attention_one_query(out.data(), q1.data(), q2.data(), keys, n, scale, scratch.data());
  std::vector<double> p(n);
  double mx = -1e300, sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t i = 0; i < d1; ++i) s += static_cast<double>(q1[i]) * k1[j * ks1 + i];
    for (int64_t i = 0; i < d2; ++i) s += static_cast<double>(q2[i]) * k2[j * ks2 + i];
    p[j] = s * scale;
    mx = std::max(mx, p[j]);
  }
  for (auto& x : p) sum += (x = std::exp(x - mx));
  for (int64_t i = 0; i < dv; ++i) {
    double ref = 0;
    for (int64_t j = 0; j < n; ++j) ref += p[j] / sum * v[j * vs + i];
    EXPECT_NEAR(out[i], ref, 1e-5);
  }
  // One key: the output is that key's value whatever the scores (softmax of one element is 1).
  cpu::attention_one_query(out.data(), q1.data(), q2.data(), keys, 1, 1000.0f, scratch.data());
  for (int64_t i = 0; i < dv; ++i) EXPECT_FLOAT_EQ(out[i], v[i]);
}

}  // namespace
}  // namespace mlabench
