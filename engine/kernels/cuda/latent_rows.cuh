// MLA's new latent rows (latent_append: kv_a_layernorm, RoPE on k_pe and on q's rope columns, the row to the cache)
// as device code a CTA runs a row at a time, shared by latent_append_kernel (elementwise.cu) and the W_UK launch
// that runs it beside its product (skinny_gemm_kn_kernel with SkinnyGemmParams::append, skinny_gemm.cu), so both
// compute the same bits. Also the block sum and the FP8 slot store the elementwise kernels share.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/norm_rows.cuh"
#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::latent_rows {

// Sum over the block, the same in every thread. Fixed shapes of shuffles and a fixed-order sum of the warps'
// partials, so a row's result does not depend on timing.
__device__ __forceinline__ float block_sum(float x, float* warp_sums) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  const int warp = static_cast<int>(threadIdx.x) / 32, n_warps = static_cast<int>(blockDim.x + 31) / 32;
  if (threadIdx.x % 32 == 0) warp_sums[warp] = x;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < n_warps; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums is reused by the next row
  return total;
}

// An F8_E4M3 slot (kernel_params.h Fp8SlotLayout) from float32 x[0, width), as twin::write_fp8_slot: warp `warp` of
// the caller's `n_warps` takes groups warp, warp + n_warps, ... (amax over the group by its lanes, NaN left out as
// fmaxf leaves it, the scale, the codes), thread `thread` of `n_threads` the BF16 tail.
__device__ __forceinline__ void store_fp8_slot(const Fp8SlotLayout& l, const float* x, uint8_t* slot, int warp,
                                               int n_warps, int lane, int thread, int n_threads) {
  const int64_t gps = l.groups_per_segment(), n_groups = l.groups();
  for (int64_t g = warp; g < n_groups; g += n_warps) {
    const int64_t seg = g / gps, c0 = seg * l.segment + (g % gps) * kFp8Block;
    const int64_t c1 = c0 + kFp8Block < (seg + 1) * l.segment ? c0 + kFp8Block : (seg + 1) * l.segment;
    float amax = 0.0f;
    for (int64_t c = c0 + lane; c < c1; c += 32) amax = fmaxf(amax, fabsf(x[c]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float scale = fp8::block_scale(amax);
    for (int64_t c = c0 + lane; c < c1; c += 32) slot[c] = fp8::quantize(x[c], scale);
    if (lane == 0) reinterpret_cast<float*>(slot + l.scale_offset())[g] = scale;
  }
  for (int64_t i = thread; i < l.width - l.quantised; i += n_threads)
    norm_rows::store(slot + l.bf16_offset(), DType::BF16, i, x[l.quantised + i]);
}

// Row r of latent_append(p) by the calling CTA (every thread calls it: it synchronises; warp_sums: 32 floats of
// shared memory): the latent's norm (sum of squares, block reduction, scale and weight as rms_norm_kernel), written
// in place and to the cache; its rope pair(s) rotated as rope_kernel (products and sums rounded one by one), written
// in place and to the cache; then q's rope columns of every head. An F8_E4M3 pool: the row's values stay in float32
// until the block has all of them (a barrier), then its warps write the slot's groups (store_fp8_slot).
__device__ __forceinline__ void append_row(const LatentAppendParams& p, int64_t r, float* warp_sums) {
  const int64_t tid = threadIdx.x, nt = blockDim.x, half = p.rope_dim / 2, width = p.kv_lora + p.rope_dim;
  const bool fp8 = p.cache_type == DType::F8_E4M3;
  float* x = p.latent + r * p.ld;
  const int64_t dst = p.slots[r] * width;
  float ss = 0.0f;
  for (int64_t i = tid; i < p.kv_lora; i += nt) ss = fmaf(x[i], x[i], ss);
  ss = block_sum(ss, warp_sums);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(p.kv_lora) + p.eps);
  for (int64_t i = tid; i < p.kv_lora; i += nt) {
    const float y = __fmul_rn(__fmul_rn(x[i], inv), p.norm_weight[i]);
    x[i] = y;
    if (!fp8) norm_rows::store(p.cache, p.cache_type, dst + i, y);
  }
  const int64_t pos = p.positions[r];
  const float* cs = p.cos + pos * half;
  const float* sn = p.sin + pos * half;
  auto rotate = [&](float* v, int64_t i) {  // pair i of the rope columns at v, rotated in place
    const int64_t a = p.interleaved ? 2 * i : i, b = p.interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b], c = cs[i], s = sn[i];
    v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  };
  for (int64_t i = tid; i < half; i += nt) {
    float* k = x + p.kv_lora;
    rotate(k, i);
    const int64_t a = p.interleaved ? 2 * i : i, b = p.interleaved ? 2 * i + 1 : i + half;
    if (!fp8) {
      norm_rows::store(p.cache, p.cache_type, dst + p.kv_lora + a, k[a]);
      norm_rows::store(p.cache, p.cache_type, dst + p.kv_lora + b, k[b]);
    }
  }
  for (int64_t t = tid; t < p.n_heads * half; t += nt)
    rotate(p.q + r * p.ld_q + (t / half) * p.q_head_stride + p.q_rope_offset, t % half);
  if (fp8) {
    const Fp8SlotLayout l = Fp8SlotLayout::mla(p.kv_lora, p.rope_dim);
    __syncthreads();  // the normalised and rotated row is in x
    store_fp8_slot(l, x, static_cast<uint8_t*>(p.cache) + p.slots[r] * l.bytes(), static_cast<int>(tid / 32),
                   static_cast<int>(nt / 32), static_cast<int>(tid % 32), static_cast<int>(tid),
                   static_cast<int>(nt));  // the next row's writes go to another row of latent
  }
}

}  // namespace mlabench::kernels::cuda::latent_rows
