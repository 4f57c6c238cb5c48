// moe_decode_ffn: one token's routed and shared experts in two launches (kernel_params.h, MoeDecodeFfnParams).
// Twin: twin::moe_decode_ffn (engine/kernels/twin/skinny_gemm.cpp).
//
// Why (docs/perf-notes.md, issue 16 round 7): at batch 1 a V2-Lite MoE layer reads ~138 MB of expert weights, and
// its PAIR path spread them over six launches (shared gate/up, gather, routed gate/up, shared down, routed down,
// combine), each with its own ramp-up and tail. Here:
//   - gate/up: one CTA per 4 act columns (4 gate rows and the matching 4 up rows, 8 weight chunks in flight a
//     thread), the shared experts' columns first: they depend on no earlier kernel but the norm that wrote x, so
//     their CTAs request their weights before the PDL wait and fill the GPU while the router's top-k ends; the
//     routed columns read the expert index after the wait. x is read straight from the layer input (no gather).
//   - down: one CTA per 4 output rows over the concatenated columns [shared | pair 0 | ... | pair K-1], each pair's
//     columns scaled by its routing weight, so the combine is part of the sum and out is written once. The router
//     ran two launches earlier, so the expert indices and the first weight chunks are read before the wait; every
//     thread requests its next chunk before it uses the current one.
// Sums: per thread over its chunks, then the warp by shuffles, then the 8 warps in order (deterministic).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/weight_stream.cuh"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace {

using stream::load_stream;
using stream::silu_times;
using stream::unpack_chunk;

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kGateCols = 4;  // act columns a gate/up CTA
constexpr int kDownRows = 4;  // out rows a down CTA

// Sums v[r] over the CTA (warp shuffles, then the warps in order through red); thread r < R gets the total of r.
template <int R>
__device__ __forceinline__ float cta_sum(float (&v)[R], float (&red)[kWarps][R], int tid) {
  const int warp = tid >> 5, lane = tid & 31;
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[r] += __shfl_xor_sync(0xffffffffu, v[r], off);
    if (lane == 0) red[warp][r] = v[r];
  }
  __syncthreads();
  float s = 0.0f;
  if (tid < R)
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += red[w][tid];
  return s;
}

// grid (U / kGateCols), U = shared_inter + top_k * inter: CTA b owns act columns [4 b, 4 b + 4).
__global__ void __launch_bounds__(kThreads) moe_decode_gate_up_kernel(const MoeDecodeFfnParams p) {
  __shared__ float red[kWarps][2 * kGateCols];
  const int tid = threadIdx.x;
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter, chunks = H / 8;
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * kGateCols;
  const bool shared = u0 < SI;
  // The column block's weights: gate rows row0.., up rows row0 + up_off.. of a [rows, H] block.
  const uint16_t* wb = static_cast<const uint16_t*>(p.shared_gate_up);
  int64_t row0 = u0, up_off = SI;
  uint4 wv[2 * kGateCols];
  auto load = [&](int64_t c) {
#pragma unroll
    for (int r = 0; r < kGateCols; ++r) {
      wv[r] = load_stream(reinterpret_cast<const uint4*>(wb + (row0 + r) * H) + c);
      wv[kGateCols + r] = load_stream(reinterpret_cast<const uint4*>(wb + (row0 + up_off + r) * H) + c);
    }
  };
  bool loaded = false;
  if (shared && tid < chunks) {  // x's producer (the norm) ran before the router: only the routed columns wait
    load(tid);
    loaded = true;
  }
  griddep_wait();
  griddep_launch_dependents();
  if (!shared) {
    const int64_t k = (u0 - SI) / I;
    wb = static_cast<const uint16_t*>(p.experts_gate_up) + static_cast<int64_t>(__ldg(p.topk_idx + k)) * 2 * I * H;
    row0 = (u0 - SI) % I;
    up_off = I;
  }
  float acc[2 * kGateCols];
#pragma unroll
  for (int r = 0; r < 2 * kGateCols; ++r) acc[r] = 0.0f;
  const uint4* x = static_cast<const uint4*>(p.x);
  for (int64_t c = tid; c < chunks; c += kThreads) {
    if (!loaded) load(c);
    loaded = false;
    float xf[8];
    unpack_chunk<false>(__ldg(x + c), xf);
#pragma unroll
    for (int r = 0; r < 2 * kGateCols; ++r) {
      float wf[8];
      unpack_chunk<false>(wv[r], wf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[r] = fmaf(xf[e], wf[e], acc[r]);
    }
  }
  // Thread r < 4 sums gate column r, thread 4 + r its up row; the gate total joins it through shared memory.
  __shared__ float gate[kGateCols];
  const float total = cta_sum<2 * kGateCols>(acc, red, tid);
  if (tid < kGateCols) gate[tid] = total;
  __syncthreads();
  if (tid >= kGateCols && tid < 2 * kGateCols)
    static_cast<__nv_bfloat16*>(p.act)[u0 + tid - kGateCols] =
        __float2bfloat16_rn(silu_times(gate[tid - kGateCols], total));
}

// grid (H / kDownRows): CTA b owns out rows [4 b, 4 b + 4); thread t takes the 8-column chunks t, t + 256, ... of
// the concatenated columns.
__global__ void __launch_bounds__(kThreads) moe_decode_down_kernel(const MoeDecodeFfnParams p) {
  __shared__ float red[kWarps][kDownRows];
  const int tid = threadIdx.x;
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter;
  const int64_t shared_chunks = SI / 8, pair_chunks = I / 8, chunks = shared_chunks + p.top_k * pair_chunks;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kDownRows;
  // Chunk c's weights for row j0 (the next rows are ld apart) and the scale of its act values.
  auto weights_of = [&](int64_t c, int64_t& ld, float& scale) -> const uint16_t* {
    if (c < shared_chunks) {
      ld = SI;
      scale = 1.0f;
      return static_cast<const uint16_t*>(p.shared_down) + j0 * SI + c * 8;
    }
    const int64_t k = (c - shared_chunks) / pair_chunks, cc = (c - shared_chunks) % pair_chunks;
    ld = I;
    scale = __ldg(p.topk_weight + k);
    return static_cast<const uint16_t*>(p.experts_down) + static_cast<int64_t>(__ldg(p.topk_idx + k)) * H * I +
           j0 * I + cc * 8;
  };
  uint4 cur[kDownRows] = {}, nxt[kDownRows] = {};
  float cur_scale = 0.0f, nxt_scale = 0.0f;
  auto load = [&](int64_t c, uint4 (&wv)[kDownRows], float& scale) {
    int64_t ld = 0;
    const uint16_t* w = weights_of(c, ld, scale);
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) wv[r] = load_stream(reinterpret_cast<const uint4*>(w + r * ld));
  };
  // The router (topk_idx, topk_weight) ran two launches before: the first chunks are requested before the wait.
  if (tid < chunks) load(tid, cur, cur_scale);
  griddep_wait();
  griddep_launch_dependents();
  float acc[kDownRows];
#pragma unroll
  for (int r = 0; r < kDownRows; ++r) acc[r] = 0.0f;
  const uint4* act = static_cast<const uint4*>(p.act);
  for (int64_t c = tid; c < chunks; c += kThreads) {
    if (c + kThreads < chunks) load(c + kThreads, nxt, nxt_scale);
    float xf[8];
    unpack_chunk<false>(__ldg(act + c), xf);
#pragma unroll
    for (int e = 0; e < 8; ++e) xf[e] *= cur_scale;
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) {
      float wf[8];
      unpack_chunk<false>(cur[r], wf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[r] = fmaf(xf[e], wf[e], acc[r]);
      cur[r] = nxt[r];
    }
    cur_scale = nxt_scale;
  }
  const float total = cta_sum<kDownRows>(acc, red, tid);
  if (tid < kDownRows) p.out[j0 + tid] = total;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool moe_decode_ffn_supported(const MoeDecodeFfnParams& p) {
  const bool shared_ok = p.shared_inter == 0 || (aligned16(p.shared_gate_up) && aligned16(p.shared_down));
  return p.hidden > 0 && p.hidden % 8 == 0 && p.inter > 0 && p.inter % 8 == 0 && p.shared_inter >= 0 &&
         p.shared_inter % 8 == 0 && p.top_k >= 1 && p.top_k <= kMoeDecodeMaxTopK && p.top_k <= p.n_experts &&
         aligned16(p.x) && aligned16(p.act) && aligned16(p.experts_gate_up) && aligned16(p.experts_down) && shared_ok &&
         (p.shared_inter + p.top_k * p.inter) / kGateCols < (int64_t{1} << 31) && p.hidden / kDownRows < (int64_t{1} << 31);
}

void moe_decode_ffn(const MoeDecodeFfnParams& p, cudaStream_t s) {
  checks::check_moe_decode_ffn(p);
  MLABENCH_CHECK(moe_decode_ffn_supported(p),
                 "moe_decode_ffn: hidden {}, inter {}, shared_inter {}, top_k {} of {} experts, or an operand not "
                 "16-byte aligned. HINT: ask moe_decode_ffn_supported first and take the PAIR path where it says no",
                 p.hidden, p.inter, p.shared_inter, p.top_k, p.n_experts);
  const int64_t U = p.shared_inter + p.top_k * p.inter;
  launch_pdl(moe_decode_gate_up_kernel, dim3(static_cast<unsigned>(U / kGateCols)), dim3(kThreads), 0, s, p);
  launch_pdl(moe_decode_down_kernel, dim3(static_cast<unsigned>(p.hidden / kDownRows)), dim3(kThreads), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
