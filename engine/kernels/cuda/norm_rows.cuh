// A product kernel's own RMSNorm of its input rows (SkinnyGemmParams::norm, Fp8SkinnyGemmParams::norm): the values
// rms_norm would write to norm.out, computed in every CTA from the norm's inputs (the residual row, delta and weight:
// a few KB each, L2-resident), so a decode step's projection needs no norm launch before it (docs/perf-notes.md,
// issue 16 round 12: each launch of a graphed batch-1 step costs 2-7 us whatever it computes).
//
// Bit for bit rms_norm's values, because the sum of squares is added in rms_norm_kernel's order: with 4-wide groups
// (the launchers take this form only where rms_norm's launcher picks width 4) and rms_norm_threads(dim / 4) threads,
// thread t sums the squares of groups t, t + threads, ... in order (fmaf, as rms_norm_kernel writes it), each warp
// adds its 32 partials by a butterfly of shuffles, and the warps' sums are added in warp order (block_sum). A CTA
// of kBlock threads computes those virtual threads' partials (virtual warp w on its warp w % (kBlock / 32)), so
// the order, not the CTA's size, decides the sum. The normalised value is __fmul_rn(__fmul_rn(x + d, inv), w) and
// inv = 1 / sqrtf(ss / dim + eps), IEEE division and square root, as in rms_norm_kernel.
//
// The launch's CTAs also write the norm's outputs for later kernels, each a share: residual_out (x + d), out, out2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::norm_rows {

/// rms_norm's block size for a row of `vecs` 4-wide groups (elementwise.cu's launcher uses this too): about two
/// groups a thread, a whole number of warps, 32 to 1,024.
__host__ __device__ constexpr int rms_norm_threads(int64_t vecs) {
  const int64_t t = ((vecs + 1) / 2 + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

// The 4 values of group v of row r: residual (+ delta), added as rms_norm_kernel adds them.
__device__ __forceinline__ float4 residual_group(const RmsNormParams& p, int64_t r, int64_t v) {
  float4 a = __ldg(reinterpret_cast<const float4*>(p.residual + r * p.ld_residual) + v);
  if (p.delta != nullptr) {
    const float4 d = __ldg(reinterpret_cast<const float4*>(p.delta + r * p.ld_delta) + v);
    a.x += d.x;
    a.y += d.y;
    a.z += d.z;
    a.w += d.w;
  }
  return a;
}

/// 1 / sqrt(mean(row r^2) + eps) for rows r < m (m <= kRows) as rms_norm_kernel computes it, into inv[r] in every
/// thread. All rows in one pass (their loads in flight together, one pair of barriers), each row's sum in
/// rms_norm_kernel's order. Every thread of the CTA calls it (it synchronises); sums: kRows x 32 floats of shared
/// memory.
template <int kBlock, int kRows>
__device__ __forceinline__ void inv_rms(const RmsNormParams& p, int m, float (*sums)[32], float (&inv)[kRows]) {
  static_assert(kBlock % 32 == 0, "whole warps");
  const int64_t vecs = p.dim / 4;
  const int threads = rms_norm_threads(vecs), warps = threads / 32;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  for (int vw = warp; vw < warps; vw += kBlock / 32) {
    float ss[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) ss[r] = 0.0f;
    for (int64_t v = vw * 32 + lane; v < vecs; v += threads)
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r >= m) break;
        const float4 a = residual_group(p, r, v);
        ss[r] = fmaf(a.x, a.x, ss[r]);
        ss[r] = fmaf(a.y, a.y, ss[r]);
        ss[r] = fmaf(a.z, a.z, ss[r]);
        ss[r] = fmaf(a.w, a.w, ss[r]);
      }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= m) break;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ss[r] += __shfl_xor_sync(0xffffffffu, ss[r], o);
      if (lane == 0) sums[r][vw] = ss[r];
    }
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float total = 0.0f;
    if (r < m)
      for (int w = 0; w < warps; ++w) total += sums[r][w];
    inv[r] = r < m ? 1.0f / sqrtf(total / static_cast<float>(p.dim) + p.eps) : 0.0f;
  }
  __syncthreads();  // sums may be reused
}

/// The norm weight's group v (a model weight: a kernel may request it before its PDL wait).
__device__ __forceinline__ float4 weight_group(const RmsNormParams& p, int64_t v) {
  return __ldg(reinterpret_cast<const float4*>(p.weight) + v);
}

/// The normalised values of group v of row r in float32, before out's rounding; w: the weight's group v.
__device__ __forceinline__ void values(const RmsNormParams& p, int64_t r, int64_t v, float inv, const float4& w,
                                       float (&o)[4]) {
  const float4 a = residual_group(p, r, v);
  o[0] = __fmul_rn(__fmul_rn(a.x, inv), w.x);  // normalise, then weight (HF order)
  o[1] = __fmul_rn(__fmul_rn(a.y, inv), w.y);
  o[2] = __fmul_rn(__fmul_rn(a.z, inv), w.z);
  o[3] = __fmul_rn(__fmul_rn(a.w, inv), w.w);
}

__device__ __forceinline__ void values(const RmsNormParams& p, int64_t r, int64_t v, float inv, float (&o)[4]) {
  values(p, r, v, inv, weight_group(p, v), o);
}

/// A float32 value as a store of type t rounds it (round to nearest even; F32 unchanged).
__device__ __forceinline__ float rounded(float v, DType t) {
  if (t == DType::BF16) return __bfloat162float(__float2bfloat16_rn(v));
  if (t == DType::F16) return __half2float(__float2half_rn(v));
  return v;
}

__device__ __forceinline__ void store(void* base, DType t, int64_t i, float v) {
  if (t == DType::BF16)
    static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
  else if (t == DType::F16)
    static_cast<__half*>(base)[i] = __float2half_rn(v);
  else
    static_cast<float*>(base)[i] = v;
}

/// Row r's outputs (residual_out, out, out2): CTA `cta` of `ctas` writes the groups cta, cta + ctas, ... of each
/// kBlock (the launch's CTAs share the writes; later kernels read them after their wait).
template <int kBlock>
__device__ __forceinline__ void write_outputs(const RmsNormParams& p, int64_t r, float inv, int64_t cta,
                                              int64_t ctas) {
  for (int64_t v = cta * kBlock + threadIdx.x; v < p.dim / 4; v += ctas * kBlock) {
    if (p.residual_out != nullptr)
      reinterpret_cast<float4*>(p.residual_out + r * p.ld_residual_out)[v] = residual_group(p, r, v);
    float o[4];
    values(p, r, v, inv, o);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      store(p.out, p.out_type, r * p.ld_out + 4 * v + j, o[j]);
      if (p.out2 != nullptr) store(p.out2, p.out2_type, r * p.ld_out2 + 4 * v + j, o[j]);
    }
  }
}

}  // namespace mlabench::kernels::cuda::norm_rows
