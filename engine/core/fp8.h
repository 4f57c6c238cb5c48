// FP8 (OCP E4M3, "e4m3fn": 4 exponent bits of bias 7, 3 mantissa bits, no infinities, 0x7f/0xff NaN, largest
// finite 448) and the block-scaled layouts DeepSeek-V3's FP8 checkpoints and kernels use (issue 20):
//   - weights [N, K]: 128 x 128 blocks, one float32 scale each, stored as `weight_scale_inv` [ceil(N/128),
//     ceil(K/128)]: the value is e4m3 x scale_inv (scale_inv = amax(block) / 448, so the block's largest magnitude
//     maps to 448);
//   - activations: 1 x 128 groups of a row, scaled the same way at run time (DeepSeek-V3's act_quant).
// These are the plain definitions every FP8 kernel is a twin of: rounding to nearest even, finite values beyond 448
// saturate to +-448 (a quantiser's scale keeps them in range anyway), NaN stays NaN; an infinite weight is refused.
#pragma once

#include <cstdint>
#include <span>

namespace mlabench {

inline constexpr float kE4m3Max = 448.0f;
inline constexpr int64_t kFp8Block = 128;

/// \brief The row stride of a weight's 128 x 128 scale grid as the GPU engine holds it: ceil(k / 128) rounded up to
/// a multiple of 4 floats (cuBLASLt's BLK128x128_32F layout keeps each row of scales 16-byte aligned; the padding
/// holds no scale). DeepSeek-V3's checkpoints store the grid unpadded ([ceil(n/128), ceil(k/128)]).
constexpr int64_t fp8_weight_scale_ld(int64_t k) { return ((k + kFp8Block - 1) / kFp8Block + 3) / 4 * 4; }

/// \brief The value of an e4m3fn code (NaN for 0x7f and 0xff).
float e4m3_to_f32(uint8_t code);
/// \brief The nearest e4m3fn code to f (ties to an even mantissa), finite magnitudes past 448 saturated to 448, NaN
/// (either sign) to 0x7f | sign; +-infinity saturates like any finite overflow.
uint8_t f32_to_e4m3(float f);

/// \brief f32_to_e4m3(x / scale) with a NaN code carrying x's sign: the sign of a NaN quotient is the platform's
/// (x86's default NaN is negative, the GPU's positive), so every quantiser twin and kernel fixes it this way.
uint8_t quantize_e4m3(float x, float scale);

/// \brief The scale that maps a block's largest magnitude `amax` to 448: amax / 448, or 1 for an all-zero block (its
/// codes are 0 whatever the scale).
float fp8_block_scale(float amax);

/// \brief Quantises w [n, k] (row-major float32) into e4m3 codes [n, k] and one scale_inv per 128 x 128 block,
/// [ceil(n/128), ceil(k/128)] row-major: code = e4m3(w / scale_inv). Throws Error naming `what` if w holds an
/// infinity or a NaN (a checkpoint with either is broken; FP8 would hide it).
void quantize_fp8_blocks(std::span<const float> w, int64_t n, int64_t k, std::span<uint8_t> codes,
                         std::span<float> scale_inv, const char* what);

/// \brief What the FP8 GEMM computes with an activation row: each group of 128 values (the last one shorter) replaced
/// by e4m3(x / s) * s, s = fp8_block_scale(amax of the group). NaN stays NaN. In place.
void fake_quantize_fp8_row(float* x, int64_t k);

}  // namespace mlabench
