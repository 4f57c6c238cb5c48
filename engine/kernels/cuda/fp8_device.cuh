// Device arithmetic of the FP8 kernels (issue 20) that several of them share: the group scale and the e4m3 code as
// the quantisers compute them (fp8_quantize.cu, whose file comment says why these match the twins bit for bit), and
// e4m3 codes back to float32 (exact: every e4m3 value is an F16 value).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/fp8.h"
#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::fp8 {

/// fp8_block_scale: amax / 448, 1 for an all-zero (or all-NaN) group, the smallest denormal where the quotient
/// underflows (a scale of 0 would turn every code into NaN).
__device__ __forceinline__ float block_scale(float amax) {
  if (!(amax > 0.0f)) return 1.0f;
  const float s = __fdiv_rn(amax, kE4m3Max);
  return s > 0.0f ? s : __uint_as_float(1u);
}

/// The largest of the 32 lanes' m (their part of a group's amax); fmaxf skips a NaN, as the twins' std::max does.
__device__ __forceinline__ float warp_amax(float m) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  return m;
}

/// f32_to_e4m3(x / s), the NaN code carrying x's sign (the GPU's division returns a canonical NaN).
__device__ __forceinline__ uint8_t quantize(float x, float s) {
  const float v = __fdiv_rn(x, s);
  if (isnan(v)) return static_cast<uint8_t>((__float_as_uint(x) >> 24) & 0x80u) | 0x7fu;
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

/// One warp quantises one group of an activation row (fp8_quantize_rows' arithmetic; moe_gather's FP8 form shares
/// it): lane l holds columns 128 g + l + 32 j (j < 4), so each load and each byte store of the warp is 32 consecutive
/// elements; a group past k's end (the last, shorter one) pads with zeros, which leave the amax as it is. x_row and
/// q_row point at column 0 of the row; the scale goes to *scale (written by lane 0).
template <bool kBf16>
__device__ __forceinline__ void quantize_group(const void* x_row, int64_t k, int64_t g, int lane, uint8_t* q_row,
                                               float* scale) {
  constexpr int kPerLane = static_cast<int>(kFp8Block) / 32;
  const int64_t c0 = g * kFp8Block;
  float v[kPerLane];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t c = c0 + lane + j * 32;
    if (c < k) {
      if constexpr (kBf16)
        v[j] = __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(x_row)[c]) << 16);
      else
        v[j] = static_cast<const float*>(x_row)[c];
    } else {
      v[j] = 0.0f;
    }
    amax = fmaxf(amax, fabsf(v[j]));
  }
  const float s = block_scale(warp_amax(amax));
  if (lane == 0) *scale = s;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t c = c0 + lane + j * 32;
    if (c < k) q_row[c] = quantize(v[j], s);
  }
}

/// The four e4m3 codes of `word` (low byte first) as F16 pairs (exact): x the first two, y the last two, each the
/// lower value in the lower half.
__device__ __forceinline__ uint2 f16x4(uint32_t word) {
  uint32_t lo, hi;
  asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n cvt.rn.f16x2.e4m3x2 %1, h;\n}\n"
      : "=r"(lo), "=r"(hi)
      : "r"(word));
  return make_uint2(lo, hi);
}

/// The four e4m3 codes of `word` (low byte first) as float32 values.
__device__ __forceinline__ void decode4(uint32_t word, float* f) {
  const uint2 h = f16x4(word);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&h.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&h.y));
  f[0] = a.x;
  f[1] = a.y;
  f[2] = b.x;
  f[3] = b.y;
}

/// A 16-byte chunk of e4m3 codes as 16 float32 values.
__device__ __forceinline__ void decode16(const uint4& v, float (&f)[16]) {
  decode4(v.x, f);
  decode4(v.y, f + 4);
  decode4(v.z, f + 8);
  decode4(v.w, f + 12);
}

/// Value c of an F8_E4M3 KV-cache slot (kernel_params.h Fp8SlotLayout) at `slot`, as twin::read_fp8_slot: the code
/// times its group's scale, or the BF16 tail widened (exactly).
__device__ __forceinline__ float slot_value(const Fp8SlotLayout& l, const uint8_t* slot, int64_t c) {
  if (c >= l.quantised) {
    const uint16_t b = reinterpret_cast<const uint16_t*>(slot + l.bf16_offset())[c - l.quantised];
    return __uint_as_float(static_cast<uint32_t>(b) << 16);
  }
  const int64_t g = (c / l.segment) * l.groups_per_segment() + (c % l.segment) / kFp8Block;
  const float code = __half2float(__half(__nv_cvt_fp8_to_halfraw(slot[c], __NV_E4M3)));
  return __fmul_rn(code, reinterpret_cast<const float*>(slot + l.scale_offset())[g]);
}

}  // namespace mlabench::kernels::cuda::fp8
