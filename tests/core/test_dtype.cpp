// Exactness of the stored-dtype conversions: every one of the 65,536 half and bfloat16 bit patterns, and
// float32 -> half / bfloat16 rounding against the compiler's own _Float16 and hand-checked ties.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/check.h"
#include "engine/core/dtype.h"

namespace mlabench {
namespace {

float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t f32_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(DType, EveryHalfConvertsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 ref;
    const auto h16 = static_cast<uint16_t>(h);
    std::memcpy(&ref, &h16, 2);
    const float want = static_cast<float>(ref), got = f16_to_f32(h16);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      EXPECT_EQ(f32_bits(got), f32_bits(want)) << std::hex << h;
      EXPECT_EQ(f32_to_f16(got), h16) << std::hex << h << ": half -> float -> half must round-trip";
    }
  }
}

TEST(DType, FloatToHalfRoundsLikeTheCompiler) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    // Values spread over the half range, subnormals and overflow included.
    const float f =
        std::ldexp(static_cast<float>(any(rng)) / 4294967296.0f - 0.5f, static_cast<int>(any(rng) % 44) - 26);
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &ref, 2);
    ASSERT_EQ(f32_to_f16(f), want) << f;
  }
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00) << "65520 rounds to infinity";
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(DType, BFloat16) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    EXPECT_EQ(f32_bits(f), h << 16);
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
  // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, Names) {
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_EQ(dtype_from_name("F8_E4M3"), DType::F8_E4M3);
  EXPECT_FALSE(dtype_from_name("bf16").has_value());
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_from_torch_name("float16"), DType::F16);
  EXPECT_EQ(dtype_torch_name(DType::BF16), "bfloat16");
  float out[2];
  const uint16_t in[2] = {0x3c00, 0xc000};
  convert_to_f32(DType::F16, in, out, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_THROW(convert_to_f32(DType::I32, in, out, 1), Error);
}

}  // namespace
}  // namespace mlabench
