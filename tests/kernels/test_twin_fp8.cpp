// Twins of the FP8 quantisers (engine/kernels/twin/fp8_quantize.cpp) against engine/core/fp8.h, which the CPU
// engine's W8A8 linear is built on: fp8_quantize_rows's codes times its scales are fake_quantize_fp8_row's values
// bit for bit (both scale layouts, F32 and BF16 inputs, short last groups, zero, NaN, infinite and denormal groups);
// fp8_quantize_blocks is quantize_fp8_blocks at padded leading dimensions and leaves every padding alone; and the
// product the FP8 GEMM computes from them (Blas::linear_fp8's formula) is cpu::linear's with an F8 weight to the
// tolerance tests/kernels/test_cuda_fp8.cpp asks of cuBLASLt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/core/tensor.h"
#include "engine/kernels/cpu/ops.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint8_t kCodePoison = 0xa5;

int64_t groups_of(int64_t k) { return (k + kFp8Block - 1) / kFp8Block; }

bool same_value(float a, float b) { return std::isnan(a) ? std::isnan(b) : std::memcmp(&a, &b, 4) == 0; }

// Activation rows with the cases the quantiser must get right: row 0 zeros, row 1 a NaN, row 2 a group of float32
// denormals (its scale underflows to the smallest denormal), row 3 an infinity, the rest normal values whose
// magnitude varies from row to row (1e-3 to 1e3).
std::vector<float> activation_rows(int64_t rows, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(-3.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.0f, mag(rng));
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(r * k + c)] = r == 0 ? 0.0f : nd(rng) * scale;
  }
  std::uniform_int_distribution<int64_t> col(0, k - 1);
  if (rows > 1) x[static_cast<size_t>(k + col(rng))] = kNaN;
  if (rows > 2)
    for (int64_t c = 0; c < std::min<int64_t>(k, kFp8Block); ++c)
      x[static_cast<size_t>(2 * k + c)] = static_cast<float>(static_cast<int>(c * 5) - 300) *
                                          std::numeric_limits<float>::denorm_min();
  if (rows > 3) x[static_cast<size_t>(3 * k + col(rng))] = -kInf;
  return x;
}

struct RowsCase {
  int64_t rows, k;
  DType x_type;
  bool groups_major;
};

// Runs the twin on x (as F32 or rounded to BF16) with padded leading dimensions and scale strides; checks codes
// times scales against fake_quantize_fp8_row and that no padding was written.
void check_rows_case(const RowsCase& c, std::mt19937& rng) {
  const std::string what = fmt::format("rows {} k {} {} {}", c.rows, c.k, dtype_name(c.x_type),
                                       c.groups_major ? "groups major" : "rows major");
  const int64_t groups = groups_of(c.k), ld_x = c.k + 3, ld_q = c.k + 5;
  std::vector<float> x = activation_rows(c.rows, c.k, rng);
  std::vector<float> xf(static_cast<size_t>(c.rows * ld_x), kNaN);
  std::vector<uint16_t> xh(xf.size(), 0x7fc0);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.k; ++j) {
      const size_t i = static_cast<size_t>(r * ld_x + j);
      xh[i] = f32_to_bf16(x[static_cast<size_t>(r * c.k + j)]);
      xf[i] = c.x_type == DType::BF16 ? bf16_to_f32(xh[i]) : x[static_cast<size_t>(r * c.k + j)];
    }
  const int64_t srs = c.groups_major ? 1 : groups + 2, sgs = c.groups_major ? c.rows + 1 : 1;
  const int64_t scale_size = c.groups_major ? groups * sgs : c.rows * srs;
  std::vector<uint8_t> q(static_cast<size_t>(c.rows * ld_q), kCodePoison);
  std::vector<float> scale(static_cast<size_t>(scale_size), kNaN);
  twin::fp8_quantize_rows({.x = c.x_type == DType::BF16 ? static_cast<const void*>(xh.data()) : xf.data(),
                           .x_type = c.x_type, .ld_x = ld_x, .q = q.data(), .ld_q = ld_q, .scale = scale.data(),
                           .scale_row_stride = srs, .scale_group_stride = sgs, .rows = c.rows, .k = c.k});
  std::vector<bool> scale_written(scale.size(), false);
  int bad = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    std::vector<float> fake(xf.begin() + r * ld_x, xf.begin() + r * ld_x + c.k);
    fake_quantize_fp8_row(fake.data(), c.k);
    for (int64_t j = 0; j < c.k; ++j) {
      const int64_t si = r * srs + (j / kFp8Block) * sgs;
      scale_written[static_cast<size_t>(si)] = true;
      const float got = e4m3_to_f32(q[static_cast<size_t>(r * ld_q + j)]) * scale[static_cast<size_t>(si)];
      if (!same_value(got, fake[static_cast<size_t>(j)]) && ++bad <= 5)
        ADD_FAILURE() << what << ": [" << r << ", " << j << "] x " << xf[static_cast<size_t>(r * ld_x + j)]
                      << " codes * scale " << got << " fake_quantize_fp8_row " << fake[static_cast<size_t>(j)];
    }
    for (int64_t j = c.k; j < ld_q; ++j) ASSERT_EQ(q[static_cast<size_t>(r * ld_q + j)], kCodePoison) << what;
  }
  ASSERT_EQ(bad, 0) << what;
  for (size_t i = 0; i < scale.size(); ++i)
    ASSERT_EQ(scale_written[i], !std::isnan(scale[i])) << what << ": scale slot " << i;
}

TEST(TwinFp8, QuantizeRowsIsFakeQuantizeFp8Row) {
  std::mt19937 rng(2001);
  for (int64_t k : {2048, 1408, 272, 16, 130})
    for (int64_t rows : {1, 5, 37})
      for (DType t : {DType::F32, DType::BF16})
        for (bool groups_major : {false, true}) check_rows_case({rows, k, t, groups_major}, rng);
}

TEST(TwinFp8, QuantizeRowsScalesAreTheGroupAmaxOver448) {
  // One row of three groups, the last of 16 values: amax 448 (scale exactly 1, codes f32_to_e4m3(x)), amax 0 (scale
  // 1, codes 0), and a NaN beside 2.5 (skipped by the amax; its code the NaN code with x's sign).
  std::vector<float> x(272, 0.0f);
  for (int j = 0; j < 128; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j) * 3.5f - 220.0f;
  x[5] = -448.0f;
  x[256] = std::copysign(kNaN, -1.0f);
  x[257] = 2.5f;
  x[258] = kNaN;
  std::vector<uint8_t> q(x.size());
  std::vector<float> s(3);
  twin::fp8_quantize_rows({.x = x.data(), .x_type = DType::F32, .ld_x = 272, .q = q.data(), .ld_q = 272,
                           .scale = s.data(), .scale_row_stride = 3, .scale_group_stride = 1, .rows = 1, .k = 272});
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_EQ(s[1], 1.0f);
  EXPECT_EQ(s[2], fp8_block_scale(2.5f));
  for (int j = 0; j < 128; ++j) EXPECT_EQ(q[static_cast<size_t>(j)], f32_to_e4m3(x[static_cast<size_t>(j)])) << j;
  for (int j = 128; j < 256; ++j) EXPECT_EQ(q[static_cast<size_t>(j)], 0) << j;
  EXPECT_EQ(q[256], 0xff) << "-NaN keeps its sign";
  EXPECT_EQ(q[257], 0x7e) << "the group's amax maps to 448";
  EXPECT_EQ(q[258], 0x7f);
}

TEST(TwinFp8, QuantizeRowsInfinityMakesItsGroupNaNAndZero) {
  // amax infinite: scale infinite, the infinities' quotient NaN (coded with x's sign), every finite value 0 with its
  // sign; fake_quantize_fp8_row turns the whole group into NaN (0 times an infinite scale), and so do codes * scale.
  std::vector<float> x{1.0f, -kInf, -3.0f, kInf};
  std::vector<uint8_t> q(4);
  float s = 0;
  twin::fp8_quantize_rows({.x = x.data(), .x_type = DType::F32, .ld_x = 4, .q = q.data(), .ld_q = 4, .scale = &s,
                           .scale_row_stride = 1, .scale_group_stride = 1, .rows = 1, .k = 4});
  EXPECT_EQ(s, kInf);
  EXPECT_EQ(q, (std::vector<uint8_t>{0x00, 0xff, 0x80, 0x7f}));
}

TEST(TwinFp8, QuantizeRowsRefusesOverlappingScalesAndBadTypes) {
  std::vector<float> x(2 * 256, 1.0f), s(8);
  std::vector<uint8_t> q(x.size());
  Fp8QuantizeRowsParams p{.x = x.data(), .x_type = DType::F32, .ld_x = 256, .q = q.data(), .ld_q = 256,
                          .scale = s.data(), .scale_row_stride = 2, .scale_group_stride = 1, .rows = 2, .k = 256};
  EXPECT_NO_THROW(twin::fp8_quantize_rows(p));
  p.scale_row_stride = 1;  // rows 0 and 1 of group 1 and 0 share a slot
  EXPECT_THROW(twin::fp8_quantize_rows(p), Error);
  p.scale_group_stride = 2;  // groups major
  EXPECT_NO_THROW(twin::fp8_quantize_rows(p));
  p.ld_x = 255;
  EXPECT_THROW(twin::fp8_quantize_rows(p), Error);
  p.ld_x = 256;
  p.x_type = DType::F16;
  EXPECT_THROW(twin::fp8_quantize_rows(p), Error);
}

// A weight [n, k] quantised by the twin at padded leading dimensions (scale_ld = fp8_weight_scale_ld(k)) equals
// quantize_fp8_blocks's packed result, scale by scale and code by code; the padding of q and of the scale grid keeps
// its poison.
void check_blocks_case(int64_t n, int64_t k, DType t, std::mt19937& rng) {
  const std::string what = fmt::format("n {} k {} {}", n, k, dtype_name(t));
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const int64_t ld_w = k + 7, ld_q = k + 16, scale_ld = fp8_weight_scale_ld(k), nb = groups_of(n), kb = groups_of(k);
  std::vector<float> wf(static_cast<size_t>(n * ld_w), kNaN), packed(static_cast<size_t>(n * k));
  std::vector<uint16_t> wh(wf.size(), 0x7fc0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      // One block row in 128 scaled far down, so block scales differ by orders of magnitude.
      const float v = nd(rng) * ((r / kFp8Block) % 3 == 2 ? 1e-3f : 1.0f);
      const size_t i = static_cast<size_t>(r * ld_w + c);
      wh[i] = f32_to_bf16(v);
      wf[i] = t == DType::BF16 ? bf16_to_f32(wh[i]) : v;
      packed[static_cast<size_t>(r * k + c)] = wf[i];
    }
  std::vector<uint8_t> q(static_cast<size_t>(n * ld_q), kCodePoison), want_q(packed.size());
  std::vector<float> scale(static_cast<size_t>(nb * scale_ld), kNaN), want_s(static_cast<size_t>(nb * kb));
  twin::fp8_quantize_blocks({.w = t == DType::BF16 ? static_cast<const void*>(wh.data()) : wf.data(), .w_type = t,
                             .ld_w = ld_w, .q = q.data(), .ld_q = ld_q, .scale_inv = scale.data(),
                             .scale_ld = scale_ld, .n = n, .k = k});
  quantize_fp8_blocks(packed, n, k, want_q, want_s, "test");
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t j = 0; j < scale_ld; ++j) {
      const float got = scale[static_cast<size_t>(b * scale_ld + j)];
      if (j < kb)
        ASSERT_EQ(got, want_s[static_cast<size_t>(b * kb + j)]) << what << ": block (" << b << ", " << j << ")";
      else
        ASSERT_TRUE(std::isnan(got)) << what << ": padding (" << b << ", " << j << ") of the scale grid was written";
    }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < ld_q; ++c) {
      const uint8_t got = q[static_cast<size_t>(r * ld_q + c)];
      ASSERT_EQ(got, c < k ? want_q[static_cast<size_t>(r * k + c)] : kCodePoison) << what << ": [" << r << ", " << c
                                                                                   << "]";
    }
}

TEST(TwinFp8, QuantizeBlocksIsQuantizeFp8Blocks) {
  std::mt19937 rng(2002);
  for (int64_t n : {1408, 200, 130})
    for (int64_t k : {2048, 1408, 272})
      for (DType t : {DType::F32, DType::BF16}) check_blocks_case(n, k, t, rng);
}

TEST(TwinFp8, QuantizeBlocksRefusesInfNaNAndShortScaleRows) {
  std::vector<float> w(200 * 300, 0.5f), s(2 * 4);
  std::vector<uint8_t> q(w.size());
  Fp8QuantizeBlocksParams p{.w = w.data(), .w_type = DType::F32, .ld_w = 300, .q = q.data(), .ld_q = 300,
                            .scale_inv = s.data(), .scale_ld = 4, .n = 200, .k = 300};
  EXPECT_NO_THROW(twin::fp8_quantize_blocks(p));
  EXPECT_EQ(s[0], 0.5f / 448.0f);
  w[12345] = kInf;
  EXPECT_THROW(twin::fp8_quantize_blocks(p), Error);
  w[12345] = kNaN;
  EXPECT_THROW(twin::fp8_quantize_blocks(p), Error);
  w[12345] = 0.5f;
  p.scale_ld = 2;  // 300 columns are 3 blocks
  EXPECT_THROW(twin::fp8_quantize_blocks(p), Error);
}

// What Blas::linear_fp8 computes, in double: y[r, j] = sum_g xs[g, r] * ws[j / 128, g] * sum_{c in g} xq[r, c] w[j, c]
// from the twins' outputs (activation scales groups major, weight grid at fp8_weight_scale_ld(k)).
std::vector<float> block_scaled_product(const std::vector<uint8_t>& xq, const std::vector<float>& xs,
                                        const std::vector<uint8_t>& wq, const std::vector<float>& ws, int64_t m,
                                        int64_t n, int64_t k) {
  const int64_t ld_s = fp8_weight_scale_ld(k);
  std::vector<float> y(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t g = 0; g * kFp8Block < k; ++g) {
        double part = 0;
        for (int64_t c = g * kFp8Block; c < std::min(k, (g + 1) * kFp8Block); ++c)
          part += static_cast<double>(e4m3_to_f32(xq[static_cast<size_t>(r * k + c)])) *
                  e4m3_to_f32(wq[static_cast<size_t>(j * k + c)]);
        acc += part * xs[static_cast<size_t>(g * m + r)] * ws[static_cast<size_t>((j / kFp8Block) * ld_s + g)];
      }
      y[static_cast<size_t>(r * n + j)] = static_cast<float>(acc);
    }
  return y;
}

TEST(TwinFp8, BlockScaledProductIsTheCpuEngineW8A8Linear) {
  std::mt19937 rng(2003);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape& s : {Shape{7, 576, 2048}, Shape{3, 200, 1408}, Shape{2, 130, 272}}) {
    std::vector<float> x(static_cast<size_t>(s.m * s.k)), w(static_cast<size_t>(s.n * s.k));
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = 0.02f * nd(rng);
    const int64_t ld_s = fp8_weight_scale_ld(s.k);
    std::vector<uint8_t> xq(x.size()), wq(w.size());
    std::vector<float> xs(static_cast<size_t>(groups_of(s.k) * s.m)), ws(static_cast<size_t>(groups_of(s.n) * ld_s));
    twin::fp8_quantize_rows({.x = x.data(), .x_type = DType::F32, .ld_x = s.k, .q = xq.data(), .ld_q = s.k,
                             .scale = xs.data(), .scale_row_stride = 1, .scale_group_stride = s.m, .rows = s.m,
                             .k = s.k});
    twin::fp8_quantize_blocks({.w = w.data(), .w_type = DType::F32, .ld_w = s.k, .q = wq.data(), .ld_q = s.k,
                               .scale_inv = ws.data(), .scale_ld = ld_s, .n = s.n, .k = s.k});
    TensorView tw{.dtype = DType::F8_E4M3, .shape = {s.n, s.k}, .data = wq.data()};
    tw.scale_inv = ws.data();
    tw.scale_ld = ld_s;
    std::vector<float> want(static_cast<size_t>(s.m * s.n));
    cpu::linear(want.data(), s.n, x.data(), s.k, s.m, tw);
    const std::vector<float> got = block_scaled_product(xq, xs, wq, ws, s.m, s.n, s.k);
    float ymax = 0, worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      ymax = std::max(ymax, std::fabs(want[i]));
      worst = std::max(worst, std::fabs(got[i] - want[i]));
    }
    EXPECT_GT(ymax, 0.1f);
    // cpu::linear rounds x's fake value and each dequantised weight to float32 and sums in float32; the GEMM's
    // products are exact. Both are within a few float32 ulps of k * |x w| of the exact product.
    EXPECT_LE(worst, 1e-5f * ymax) << s.m << " x " << s.n << " x " << s.k << ": max |y| " << ymax;
  }
}

}  // namespace
}  // namespace mlabench::kernels
