// FP8 e4m3fn and its block quantisers (engine/core/fp8.h): every code decoded and re-encoded, the encoder against a
// nearest-value search (ties to even) over values between and around every pair of codes, saturation, NaN, and the
// round-trip error bounds of the 128 x 128 weight blocks and 1 x 128 activation groups.
#include "engine/core/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tests/test_util.h"

namespace mlabench {
namespace {

// The reference encoder: the finite code nearest to f, ties to the even code (the even mantissa), saturated.
uint8_t nearest_code(float f) {
  if (std::isnan(f)) return std::signbit(f) ? 0xff : 0x7f;
  const float a = std::fabs(f);
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7e; ++c) {
    const double d = std::fabs(static_cast<double>(e4m3_to_f32(static_cast<uint8_t>(c))) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
  }
  if (a >= kE4m3Max) best = 0x7e;
  return static_cast<uint8_t>(best | (std::signbit(f) ? 0x80 : 0));
}

TEST(Fp8, DecodesTheE4m3fnCodes) {
  EXPECT_EQ(e4m3_to_f32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9)) << "smallest subnormal";
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_f32(0x08), std::ldexp(1.0f, -6)) << "smallest normal";
  EXPECT_EQ(e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_f32(0x39), 1.125f);
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f) << "largest finite";
  EXPECT_EQ(e4m3_to_f32(0xfe), -448.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_EQ(e4m3_to_f32(0x77), 240.0f) << "no infinity: exponent 15 holds finite values";
}

TEST(Fp8, EveryCodeRoundTripsAndTheEncoderIsTheNearestEvenCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(static_cast<uint8_t>(c))), c) << "code " << c;
  }
  // Between and around each pair of neighbouring codes: the midpoint (a tie), a float either side of it, values a
  // quarter of the way, and the same mirrored to negative.
  std::vector<float> probes{0.0f, 1e-30f, std::numeric_limits<float>::denorm_min(), 447.9f, 448.0f, 455.9f, 464.0f,
                            470.0f, 1e6f, std::numeric_limits<float>::infinity()};
  for (int c = 0; c < 0x7e; ++c) {
    const float lo = e4m3_to_f32(static_cast<uint8_t>(c)), hi = e4m3_to_f32(static_cast<uint8_t>(c + 1));
    const float mid = lo + (hi - lo) / 2;  // exact: neighbouring codes differ in the last of few bits
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), lo + (hi - lo) / 4,
                    hi - (hi - lo) / 4})
      probes.push_back(x);
  }
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> expo(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) probes.push_back(std::exp2(expo(rng)));
  for (float p : probes)
    for (float x : {p, -p}) ASSERT_EQ(f32_to_e4m3(x), nearest_code(x)) << "x = " << x;
}

TEST(Fp8, SaturatesFiniteOverflowAndKeepsNan) {
  EXPECT_EQ(f32_to_e4m3(1000.0f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(f32_to_e4m3(464.0f), 0x7e) << "a tie above 448 would round to the NaN code: it saturates";
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00) << "half the smallest subnormal ties to 0 (even)";
  EXPECT_EQ(f32_to_e4m3(3 * std::ldexp(1.0f, -10)), 0x02) << "1.5 subnormal units tie to 2 (even)";
  EXPECT_EQ(f32_to_e4m3(std::ldexp(15.0f, -10)), 0x08) << "7.5 units tie up into the smallest normal";
}

TEST(Fp8, WeightBlocksRoundTripWithinHalfAnUlpOfTheirScale) {
  // 300 x 200: blocks of 128 x 128 with partial blocks on both edges, each block of its own magnitude.
  const int64_t n = 300, k = 200, nb = 3, kb = 2;
  std::vector<float> w(static_cast<size_t>(n * k));
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      w[static_cast<size_t>(r * k + c)] = g(rng) * std::ldexp(1.0f, static_cast<int>((r / 128) * 5 - (c / 128) * 9));
  for (int64_t c = 0; c < 128; ++c) w[static_cast<size_t>(128 * k + c)] = 0.0f;  // a zero row inside a block
  std::vector<uint8_t> codes(w.size());
  std::vector<float> scale(static_cast<size_t>(nb * kb));
  quantize_fp8_blocks(w, n, k, codes, scale, "w");
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t bj = 0; bj < kb; ++bj) {
      const float s = scale[static_cast<size_t>(bi * kb + bj)];
      float amax = 0;
      bool hit_max = false;
      for (int64_t r = bi * 128; r < std::min(n, bi * 128 + 128); ++r)
        for (int64_t c = bj * 128; c < std::min(k, bj * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(w[static_cast<size_t>(r * k + c)]));
      EXPECT_FLOAT_EQ(s, amax / 448.0f) << "block " << bi << "," << bj;
      for (int64_t r = bi * 128; r < std::min(n, bi * 128 + 128); ++r)
        for (int64_t c = bj * 128; c < std::min(k, bj * 128 + 128); ++c) {
          const size_t i = static_cast<size_t>(r * k + c);
          const float back = e4m3_to_f32(codes[i]) * s;
          // Half an ulp: 2^-4 of the value in e4m3's normal range, 2^-10 of the scale below it.
          const float bound = std::max(std::fabs(w[i]) * 0.0625f, s * std::ldexp(1.0f, -10)) * 1.0001f;
          ASSERT_LE(std::fabs(back - w[i]), bound) << "[" << r << ", " << c << "]";
          hit_max = hit_max || (codes[i] & 0x7f) == 0x7e;
        }
      EXPECT_TRUE(hit_max) << "the block's largest magnitude maps to 448";
    }
  // An all-zero block: scale 1, codes 0.
  std::vector<float> zeros(16, 0.0f);
  std::vector<uint8_t> zc(16, 0xaa);
  std::vector<float> zs(1);
  quantize_fp8_blocks(zeros, 4, 4, zc, zs, "zeros");
  EXPECT_EQ(zs[0], 1.0f);
  for (uint8_t c : zc) EXPECT_EQ(c, 0);
  // A non-finite weight is refused by name and position.
  std::vector<float> bad(16, 1.0f);
  bad[6] = std::numeric_limits<float>::infinity();
  test::expect_error_with([&] { quantize_fp8_blocks(bad, 4, 4, zc, zs, "layers.3.q_proj"); },
                          {"layers.3.q_proj", "[1, 2]", "HINT"});
}

TEST(Fp8, ActivationGroupsOf128RoundTripAndKeepNan) {
  std::vector<float> x(300);
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 3.0f);
  for (float& v : x) v = g(rng);
  for (int c = 128; c < 256; ++c) x[static_cast<size_t>(c)] *= 1e-3f;  // a quiet group keeps its own scale
  x[5] = 0.0f;
  std::vector<float> q = x;
  q[260] = std::numeric_limits<float>::quiet_NaN();
  fake_quantize_fp8_row(q.data(), 300);
  for (int64_t g0 = 0; g0 < 300; g0 += 128) {
    float amax = 0;
    for (int64_t c = g0; c < std::min<int64_t>(300, g0 + 128); ++c)
      if (c != 260) amax = std::max(amax, std::fabs(x[static_cast<size_t>(c)]));
    const float s = amax / 448.0f;
    for (int64_t c = g0; c < std::min<int64_t>(300, g0 + 128); ++c) {
      if (c == 260) continue;
      const float bound = std::max(std::fabs(x[static_cast<size_t>(c)]) * 0.0625f, s * std::ldexp(1.0f, -10)) * 1.0001f;
      ASSERT_LE(std::fabs(q[static_cast<size_t>(c)] - x[static_cast<size_t>(c)]), bound) << c;
    }
  }
  EXPECT_EQ(q[5], 0.0f);
  EXPECT_TRUE(std::isnan(q[260])) << "NaN is never made finite";
  EXPECT_NE(q[200], x[200]) << "the values are rounded, not copied";
}

}  // namespace
}  // namespace mlabench
