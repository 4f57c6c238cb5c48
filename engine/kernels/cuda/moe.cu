// CUDA kernels of the DeepSeekMoE layer (twins in engine/kernels/twin/moe.cpp): the router (softmax or sigmoid
// scores, greedy or group-limited top-k, one warp per token; at decode fused with the post-attention norm and the
// router GEMM, norm_router), the stable expert sort of (token, expert) pairs (one
// block, deterministic), the row gather into expert order, the weighted combine back into token order, and the pointer
// arrays of the per-pair batched GEMM.
//
// Out-of-range expert ids cannot come from the router; should they reach moe_permute anyway, the pair gets
// rank -1 and is not counted, and gather/combine skip pairs of negative rank (and PADDED rows past capacity),
// so nothing is written outside the buffers. The twins refuse such input instead.
//
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/norm_rows.cuh"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/router_warp.cuh"
#include "engine/kernels/twin/moe_checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- router ------------------------------------------------------------------------------------------------

constexpr int kRouterWarps = 4;          // tokens per block
constexpr int kRouterMaxExperts = 2048;  // shared memory: kRouterWarps * n_experts floats
using router_warp::kMaxTopK;
using router_warp::route_token;

__global__ void __launch_bounds__(kRouterWarps * 32) router_kernel(const RouterParams p) {
  extern __shared__ float router_smem[];
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouterWarps + warp;
  if (t >= p.n_tokens) return;  // whole warps leave together
  const int E = p.n_experts;
  float* s = router_smem + warp * E;
  for (int e = lane; e < E; e += 32) s[e] = p.logits[t * E + e];  // coalesced: 32 consecutive logits per step
  __syncwarp();
  route_token(p, s, lane, p.topk_idx + t * p.top_k, p.topk_weight + t * p.top_k);
}

// ---- the MoE layer's decode entry: post-attention norm, router GEMM and top-k in one launch ------------------

constexpr int kNormRouterThreads = 256, kNormRouterWarps = kNormRouterThreads / 32;
constexpr int kNormRouterExperts = 2;  // experts a CTA: V2-Lite's 64 in 32 CTAs, DeepSeek-V2's 160 in 80

__device__ __forceinline__ float norm_router_block_sum(float v, float* warp_sums) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < kNormRouterWarps; ++w) t += warp_sums[w];  // every thread adds in the same order
  __syncthreads();
  return t;
}

// Row t's residual + delta into h (shared), returning 1 / sqrt(mean square + eps) (IEEE, as rms_norm).
__device__ float norm_router_row(const RmsNormParams& q, int64_t t, float* h, float* warp_sums) {
  const float* x = q.residual + t * q.ld_residual;
  const float* d = q.delta ? q.delta + t * q.ld_delta : nullptr;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < q.dim; i += kNormRouterThreads) {
    const float v = d ? __fadd_rn(x[i], d[i]) : x[i];
    h[i] = v;
    ss = fmaf(v, v, ss);
  }
  ss = norm_router_block_sum(ss, warp_sums);
  return 1.0f / sqrtf(ss / static_cast<float>(q.dim) + q.eps);
}

// grid ceil(E / kNormRouterExperts): CTA b owns experts [2 b, 2 b + 2). Dynamic shared memory: a row [hidden],
// then the last CTA's top-k scratch [kNormRouterWarps][E]. Residual, out and out2 are written by the last CTA
// only, after every CTA has read the residual (each arrives after its reads).
__global__ void __launch_bounds__(kNormRouterThreads) norm_router_kernel(const NormRouterParams p) {
  extern __shared__ float nr_smem[];
  __shared__ float warp_sums[kNormRouterWarps];
  __shared__ bool last;
  const RmsNormParams& q = p.norm;
  const int64_t H = q.dim, T = q.n_rows;
  const int E = p.router.n_experts, tid = threadIdx.x;
  const int e0 = static_cast<int>(blockIdx.x) * kNormRouterExperts;
  const int n_mine = min(kNormRouterExperts, E - e0);
  // The router's and the norm's weights never change: into L2 before the wait (one 128-byte line a thread).
  for (int64_t b = tid * 32; b < n_mine * H; b += kNormRouterThreads * 32)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p.router_w + e0 * H + b));
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): residual and delta come from the launches before
  griddep_launch_dependents();
  float* h = nr_smem;
  for (int64_t t = 0; t < T; ++t) {
    const float inv = norm_router_row(q, t, h, warp_sums);
    for (int64_t i = tid; i < H; i += kNormRouterThreads) h[i] = __fmul_rn(__fmul_rn(h[i], inv), q.weight[i]);
    __syncthreads();
    for (int j = 0; j < n_mine; ++j) {  // uniform over the block
      const float* w = p.router_w + (e0 + j) * H;
      float acc = 0.0f;
      for (int64_t i = tid; i < H; i += kNormRouterThreads) acc = fmaf(h[i], w[i], acc);
      acc = norm_router_block_sum(acc, warp_sums);
      if (tid == 0) p.logits[t * E + e0 + j] = acc;
    }
  }
  // Arrive: this CTA's logits are written and its reads of the residual done.
  __threadfence();
  __syncthreads();
  if (tid == 0) last = atomicAdd(p.arrivals, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int lane = tid & 31, warp = tid >> 5;
  float* s = nr_smem + H + warp * E;
  for (int64_t t = warp; t < T; t += kNormRouterWarps) {
    for (int e = lane; e < E; e += 32) s[e] = __ldcg(p.logits + t * E + e);  // other CTAs' stores: from L2
    __syncwarp();
    route_token(p.router, s, lane, p.router.topk_idx + t * p.router.top_k, p.router.topk_weight + t * p.router.top_k);
    __syncwarp();
  }
  for (int64_t t = 0; t < T; ++t) {
    const float inv = norm_router_row(q, t, h, warp_sums);  // the same sums, so the same inv as above
    float* x = q.residual_out ? q.residual_out + t * q.ld_residual_out : q.residual + t * q.ld_residual;
    for (int64_t i = tid; i < H; i += kNormRouterThreads) {
      const float y = __fmul_rn(__fmul_rn(h[i], inv), q.weight[i]);
      if (q.delta) x[i] = h[i];
      norm_rows::store(q.out, q.out_type, t * q.ld_out + i, y);
      if (q.out2) norm_rows::store(q.out2, q.out2_type, t * q.ld_out2 + i, y);
    }
    __syncthreads();  // h is the next row's
  }
  if (tid == 0) *p.arrivals = 0u;  // the next launch (a graph replay too) starts from zero
}

// ---- permute -----------------------------------------------------------------------------------------------

constexpr int kPermuteThreads = 1024;    // 32 warps: the per-warp tables are [n_experts][32] (row stride 33)
static_assert(kPermuteThreads == kMoePermuteChunk, "a chunk is one pair per thread");
constexpr int kPermuteStride = 33;       // padded: lanes of different experts, or of different warps, hit
                                         // different banks
constexpr int kPermuteMaxExperts = 512;  // 2 * 33 + 1 ints of shared memory per expert

// Ranks of the pairs [base, base + kPermuteThreads), one per thread in pair order (e: this thread's pair's expert,
// -1 for none or one out of range), on top of total[e] (pairs of expert e before base), which it advances. Within a
// warp, __match_any gives each pair its rank among the warp's pairs of the same expert; a per-expert scan over the 32
// warps (one warp per expert, shuffles) turns the warp counts into bases. wcount must be all zeros on entry and is
// left so. Pair order alone decides every rank: deterministic, no atomics.
__device__ __forceinline__ void permute_chunk(const MoePermuteParams& p, int64_t base, int32_t e, int32_t* wcount,
                                              int32_t* wbase, int32_t* total) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, E = p.n_experts;
  const int64_t q = base + tid, n_pairs = p.n_tokens * p.top_k;
  const unsigned lanes_below = (1u << lane) - 1u;
  const unsigned same = __match_any_sync(kFull, e);
  const int r = __popc(same & lanes_below);
  if (e >= 0 && r == 0) wcount[e * kPermuteStride + warp] = __popc(same);
  __syncthreads();
  for (int x = warp; x < E; x += 32) {
    const int c = wcount[x * kPermuteStride + lane];
    wcount[x * kPermuteStride + lane] = 0;  // ready for the next chunk (its writes come after the next barrier)
    int incl = c;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += v;
    }
    const int before = total[x];
    wbase[x * kPermuteStride + lane] = before + incl - c;
    __syncwarp();
    if (lane == 31) total[x] = before + incl;
  }
  __syncthreads();
  if (q < n_pairs) p.rank[q] = e >= 0 ? wbase[e * kPermuteStride + warp] + r : -1;
}

// This thread's pair of the chunk at base: its expert, or -1 (past the pairs, or an id out of range).
__device__ __forceinline__ int32_t pair_expert(const MoePermuteParams& p, int64_t q) {
  const int32_t e = q < p.n_tokens * p.top_k ? p.topk_idx[q] : -1;
  return e >= 0 && e < p.n_experts ? e : -1;
}

// counts and offsets from the per-expert totals in shared memory (warp 0; 32 experts at a time).
__device__ __forceinline__ void permute_offsets(const MoePermuteParams& p, const int32_t* total) {
  const int lane = threadIdx.x & 31, E = p.n_experts;
  int carry = 0;
  for (int e0 = 0; e0 < E; e0 += 32) {
    const int e = e0 + lane;
    const int c = e < E ? total[e] : 0;
    int incl = c;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += v;
    }
    if (e < E) {
      p.counts[e] = c;
      p.offsets[e] = carry + incl - c;
    }
    carry += __shfl_sync(kFull, incl, 31);
  }
  if (lane == 0) p.offsets[E] = carry;
}

// One block walks every chunk of 1024 pairs in order (decode steps and small prefills).
__global__ void __launch_bounds__(kPermuteThreads) moe_permute_kernel(const MoePermuteParams p) {
  extern __shared__ int32_t permute_smem[];
  const int E = p.n_experts;
  int32_t* wcount = permute_smem;                // [E][32] pairs of expert e in warp w of this chunk (0: none)
  int32_t* wbase = wcount + E * kPermuteStride;  // [E][32] rank of warp w's first pair of expert e
  int32_t* total = wbase + E * kPermuteStride;   // [E] pairs of expert e in earlier chunks
  const int tid = threadIdx.x;
  for (int i = tid; i < E * kPermuteStride; i += kPermuteThreads) wcount[i] = 0;
  for (int e = tid; e < E; e += kPermuteThreads) total[e] = 0;
  __syncthreads();
  const int64_t n_pairs = p.n_tokens * p.top_k;
  int32_t next = pair_expert(p, tid);
  for (int64_t base = 0; base < n_pairs; base += kPermuteThreads) {
    const int32_t e = next;
    next = pair_expert(p, base + kPermuteThreads + tid);  // hide the next load
    permute_chunk(p, base, e, wcount, wbase, total);
  }
  __syncthreads();
  if (threadIdx.x < 32) permute_offsets(p, total);
}

// Many chunks (prefill): three launches over the chunks in parallel. 1: each chunk's pairs per expert into
// chunk_scratch[chunk][e].
__global__ void __launch_bounds__(kPermuteThreads) moe_permute_count_kernel(const MoePermuteParams p) {
  extern __shared__ int32_t permute_smem[];
  const int E = p.n_experts;
  for (int e = threadIdx.x; e < E; e += kPermuteThreads) permute_smem[e] = 0;
  __syncthreads();
  const int32_t e = pair_expert(p, static_cast<int64_t>(blockIdx.x) * kPermuteThreads + threadIdx.x);
  if (e >= 0) atomicAdd(&permute_smem[e], 1);  // a count: the order of the additions does not matter
  __syncthreads();
  for (int x = threadIdx.x; x < E; x += kPermuteThreads)
    p.chunk_scratch[static_cast<int64_t>(blockIdx.x) * E + x] = permute_smem[x];
}

// 2 (one block): chunk_scratch[chunk][e] becomes the pairs of expert e in earlier chunks; counts and offsets.
__global__ void __launch_bounds__(kPermuteThreads) moe_permute_scan_kernel(const MoePermuteParams p, int n_chunks) {
  extern __shared__ int32_t permute_smem[];
  const int E = p.n_experts;
  for (int e = threadIdx.x; e < E; e += kPermuteThreads) {
    int32_t acc = 0;
    for (int c = 0; c < n_chunks; ++c) {
      int32_t* slot = p.chunk_scratch + static_cast<int64_t>(c) * E + e;
      const int32_t v = *slot;
      *slot = acc;
      acc += v;
    }
    permute_smem[e] = acc;
  }
  __syncthreads();
  if (threadIdx.x < 32) permute_offsets(p, permute_smem);
}

// 3: each chunk's ranks on top of its experts' earlier pairs.
__global__ void __launch_bounds__(kPermuteThreads) moe_permute_rank_kernel(const MoePermuteParams p) {
  extern __shared__ int32_t permute_smem[];
  const int E = p.n_experts;
  int32_t* wcount = permute_smem;
  int32_t* wbase = wcount + E * kPermuteStride;
  int32_t* total = wbase + E * kPermuteStride;
  for (int i = threadIdx.x; i < E * kPermuteStride; i += kPermuteThreads) wcount[i] = 0;
  for (int x = threadIdx.x; x < E; x += kPermuteThreads)
    total[x] = p.chunk_scratch[static_cast<int64_t>(blockIdx.x) * E + x];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPermuteThreads;
  const int32_t e = pair_expert(p, base + threadIdx.x);
  __syncthreads();
  permute_chunk(p, base, e, wcount, wbase, total);
}

// ---- gather / combine --------------------------------------------------------------------------------------

// The row pair q maps to (kernel_params.h, MoeRowMap), or -1 for a pair to skip.
__device__ __forceinline__ int64_t map_row(const MoeRowMap& m, int64_t q) {
  if (m.mode == MoeRowMode::PAIR) return q;
  const int32_t e = m.topk_idx[q], r = m.rank[q];
  if (r < 0) return -1;
  if (m.mode == MoeRowMode::PADDED) return r < m.capacity ? static_cast<int64_t>(e) * m.capacity + r : -1;
  return static_cast<int64_t>(m.offsets[e]) + r;
}

constexpr int kGatherThreads = 128;
constexpr int64_t kMaxGrid = 1 << 20;  // grid-stride beyond this

// One block per pair: the token's row copied as raw Unit-sized words (16 bytes when everything is aligned).
template <class Unit>
__global__ void __launch_bounds__(kGatherThreads) moe_gather_kernel(const MoeGatherParams p, int64_t units,
                                                                    int64_t ld_out_units, int64_t ld_x_units) {
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  const int64_t n_pairs = p.n_tokens * p.top_k;
  for (int64_t q = blockIdx.x; q < n_pairs; q += gridDim.x) {
    const int64_t row = map_row(p.map, q);
    if (row < 0) continue;
    const Unit* src = static_cast<const Unit*>(p.x) + (q / p.top_k) * ld_x_units;
    Unit* dst = static_cast<Unit*>(p.out) + row * ld_out_units;
    for (int64_t i = threadIdx.x; i < units; i += kGatherThreads) dst[i] = src[i];
  }
}

// The FP8 form: one block per pair, warp w quantising groups w, w + 4, ... of the token's row into the pair's row
// (fp8::quantize_group, fp8_quantize_rows' arithmetic: the same codes and scales bit for bit).
template <bool kBf16>
__global__ void __launch_bounds__(kGatherThreads) moe_gather_fp8_kernel(const MoeGatherParams p) {
  griddep_wait();
  griddep_launch_dependents();
  constexpr int kWarps = kGatherThreads / 32;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t n_pairs = p.n_tokens * p.top_k, groups = (p.hidden + kFp8Block - 1) / kFp8Block;
  const int64_t es = kBf16 ? 2 : 4;
  for (int64_t q = blockIdx.x; q < n_pairs; q += gridDim.x) {
    const int64_t row = map_row(p.map, q);
    if (row < 0) continue;
    const char* src = static_cast<const char*>(p.x) + (q / p.top_k) * p.ld_x * es;
    for (int64_t g = warp; g < groups; g += kWarps)
      fp8::quantize_group<kBf16>(src, p.hidden, g, lane, p.out_q + row * p.ld_out, p.out_scale + row * groups + g);
  }
}

constexpr int kCombineThreads = 256;
constexpr int kCombineMaxTopK = 64;

// Grid (tokens, column blocks): a block per token and block of kCombineThreads columns (float4s with kVec4), so a
// decode step's few tokens still spread over many SMs; the token's k rows and weights staged in shared memory.
// Products and sums are rounded separately (no FMA contraction) and j ascending, as the twin's plain loop.
// Expert row values: float32, or BF16 widened exactly (y_bf16).
template <bool kBf16>
__device__ __forceinline__ float4 combine_load4(const MoeCombineParams& p, int64_t row, int64_t i) {
  if constexpr (kBf16) {
    const uint2 h = reinterpret_cast<const uint2*>(p.y_bf16 + row * p.ld_y)[i];
    return make_float4(__uint_as_float(h.x << 16), __uint_as_float(h.x & 0xFFFF0000u), __uint_as_float(h.y << 16),
                       __uint_as_float(h.y & 0xFFFF0000u));
  } else {
    return reinterpret_cast<const float4*>(p.y + row * p.ld_y)[i];
  }
}
template <bool kBf16>
__device__ __forceinline__ float combine_load(const MoeCombineParams& p, int64_t row, int64_t i) {
  if constexpr (kBf16)
    return __uint_as_float(static_cast<uint32_t>(p.y_bf16[row * p.ld_y + i]) << 16);
  else
    return p.y[row * p.ld_y + i];
}

template <bool kVec4, bool kBf16>
__global__ void __launch_bounds__(kCombineThreads) moe_combine_kernel(const MoeCombineParams p) {
  __shared__ int64_t rows[kCombineMaxTopK];
  __shared__ float weights[kCombineMaxTopK];
  griddep_wait();  // a programmatic dependent launch (pdl.cuh): the inputs come from the previous kernel
  griddep_launch_dependents();
  const int K = p.top_k;
  for (int64_t t = blockIdx.x; t < p.n_tokens; t += gridDim.x) {
    __syncthreads();  // the previous token's rows are no longer read
    for (int j = threadIdx.x; j < K; j += kCombineThreads) {
      rows[j] = map_row(p.map, t * K + j);
      weights[j] = p.topk_weight[t * K + j];
    }
    __syncthreads();
    float* o = p.out + t * p.ld_out;
    const int64_t first = static_cast<int64_t>(blockIdx.y) * kCombineThreads + threadIdx.x,
                  step = static_cast<int64_t>(gridDim.y) * kCombineThreads;
    if constexpr (kVec4) {
      for (int64_t i = first; i < p.hidden / 4; i += step) {
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int j = 0; j < K; ++j) {
          if (rows[j] < 0) continue;
          const float4 y = combine_load4<kBf16>(p, rows[j], i);
          const float w = weights[j];
          acc.x = __fadd_rn(acc.x, __fmul_rn(w, y.x));
          acc.y = __fadd_rn(acc.y, __fmul_rn(w, y.y));
          acc.z = __fadd_rn(acc.z, __fmul_rn(w, y.z));
          acc.w = __fadd_rn(acc.w, __fmul_rn(w, y.w));
        }
        float4* dst = reinterpret_cast<float4*>(o) + i;
        if (p.accumulate) {
          const float4 prev = *dst;
          acc.x = __fadd_rn(prev.x, acc.x);
          acc.y = __fadd_rn(prev.y, acc.y);
          acc.z = __fadd_rn(prev.z, acc.z);
          acc.w = __fadd_rn(prev.w, acc.w);
        }
        *dst = acc;
      }
    } else {
      for (int64_t i = first; i < p.hidden; i += step) {
        float acc = 0.0f;
        for (int j = 0; j < K; ++j)
          if (rows[j] >= 0) acc = __fadd_rn(acc, __fmul_rn(weights[j], combine_load<kBf16>(p, rows[j], i)));
        o[i] = p.accumulate ? __fadd_rn(o[i], acc) : acc;
      }
    }
  }
}

// ---- pair pointers -----------------------------------------------------------------------------------------

__global__ void moe_pair_pointers_kernel(const MoePairPointersParams p) {
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < p.n_pairs;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p.a[q] = p.weights + p.topk_idx[q] * p.expert_stride_bytes;
    p.b[q] = p.x + q * p.ld_x_bytes;
    p.c[q] = p.y + q * p.ld_y_bytes;
  }
}

void check_map(const MoeRowMap& m, const char* who) {
  MLABENCH_CHECK(m.mode == MoeRowMode::PAIR || m.mode == MoeRowMode::PADDED || m.mode == MoeRowMode::COMPACT,
                 "{}: row map mode {}. HINT: PAIR, PADDED or COMPACT", who, static_cast<int>(m.mode));
  MLABENCH_CHECK(m.mode == MoeRowMode::PAIR || (m.topk_idx && m.rank), "{}: topk_idx and rank are needed "
                 "outside PAIR mode. HINT: pass the moe_permute outputs", who);
  MLABENCH_CHECK(m.mode != MoeRowMode::COMPACT || m.offsets, "{} (COMPACT): offsets is null. HINT: pass "
                 "moe_permute's offsets", who);
  MLABENCH_CHECK(m.mode != MoeRowMode::PADDED || m.capacity > 0, "{} (PADDED): capacity {} <= 0. HINT: set the "
                 "rows reserved per expert", who, m.capacity);
}

bool aligned(const void* ptr, int64_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

unsigned grid_for(int64_t n) { return static_cast<unsigned>(n < kMaxGrid ? n : kMaxGrid); }

template <class Unit>
void launch_gather(const MoeGatherParams& p, int64_t row_bytes, int64_t es, cudaStream_t s) {
  constexpr int64_t u = sizeof(Unit);
  launch_pdl(moe_gather_kernel<Unit>, dim3(grid_for(p.n_tokens * p.top_k)), dim3(kGatherThreads), 0, s, p,
             row_bytes / u, p.ld_out * es / u, p.ld_x * es / u);
}

}  // namespace

namespace {

// The router kernel's limits and settings (router and norm_router): experts, top-k, method, groups, scoring.
void check_router_settings(const RouterParams& p, const char* who) {
  const int32_t E = p.n_experts, K = p.top_k;
  MLABENCH_CHECK(E > 0 && E <= kRouterMaxExperts && K > 0 && K <= E && K <= kMaxTopK,
                 "{}: top_k {} of {} experts. HINT: the kernel takes 1 <= top_k <= min(n_experts, {}) and "
                 "n_experts <= {}", who, K, E, kMaxTopK, kRouterMaxExperts);
  MLABENCH_CHECK(p.method == RouterMethod::GREEDY || p.method == RouterMethod::GROUP_LIMITED_GREEDY,
                 "{}: method {}. HINT: GREEDY or GROUP_LIMITED_GREEDY", who, static_cast<int>(p.method));
  MLABENCH_CHECK(p.scoring == RouterScoring::SOFTMAX || p.scoring == RouterScoring::SIGMOID,
                 "{}: scoring {}. HINT: SOFTMAX or SIGMOID", who, static_cast<int>(p.scoring));
  MLABENCH_CHECK(p.method == RouterMethod::GREEDY || (p.n_group > 0 && p.n_group <= 32 && E % p.n_group == 0 &&
                                                      p.topk_group > 0 && p.topk_group <= p.n_group),
                 "{}: {} experts, n_group {}, topk_group {}. HINT: n_group (<= 32) must divide n_experts and "
                 "1 <= topk_group <= n_group", who, E, p.n_group, p.topk_group);
  MLABENCH_CHECK(p.held_begin >= 0 && p.held_count >= 0 && p.held_begin + p.held_count <= E &&
                     (p.held_count > 0 || p.held_begin == 0),
                 "{}: held experts [{}, {} + {}) of {}. HINT: expert parallelism holds a block of the router's "
                 "experts (held_count 0: all of them, held_begin 0)", who, p.held_begin, p.held_begin, p.held_count,
                 E);
}

size_t norm_router_smem(const NormRouterParams& p) {
  return sizeof(float) * static_cast<size_t>(p.norm.dim + kNormRouterWarps * int64_t{p.router.n_experts});
}

}  // namespace

void router(const RouterParams& p, cudaStream_t s) {
  check_router_settings(p, "router");
  const int32_t E = p.n_experts;
  MLABENCH_CHECK(p.n_tokens >= 0 && (p.n_tokens == 0 || (p.logits && p.topk_idx && p.topk_weight)),
                 "router: n_tokens {} or a null buffer. HINT: logits, topk_idx and topk_weight are needed",
                 p.n_tokens);
  if (p.n_tokens == 0) return;
  const int64_t blocks = (p.n_tokens + kRouterWarps - 1) / kRouterWarps;
  MLABENCH_CHECK(blocks <= INT32_MAX, "router: {} tokens. HINT: route fewer tokens per call", p.n_tokens);
  const size_t smem = sizeof(float) * kRouterWarps * static_cast<size_t>(E);
  launch_pdl(router_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kRouterWarps * 32), smem, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

bool norm_router_supported(const NormRouterParams& p) {
  const RouterParams& r = p.router;
  return p.norm.n_rows >= 1 && p.norm.n_rows <= kNormRouterMaxRows && p.norm.out_type == DType::F32 &&
         (p.norm.out2 == nullptr || p.norm.out2_type == DType::BF16 || p.norm.out2_type == DType::F16 ||
          p.norm.out2_type == DType::F32) &&
         r.n_experts > 0 && r.n_experts <= kRouterMaxExperts && r.top_k > 0 && r.top_k <= r.n_experts &&
         r.top_k <= kMaxTopK && p.norm.dim > 0 && norm_router_smem(p) <= 48 * 1024 && p.arrivals != nullptr;
}

void norm_router(const NormRouterParams& p, cudaStream_t s) {
  checks::check_norm_router(p);
  check_router_settings(p.router, "norm_router");
  MLABENCH_CHECK(p.router.topk_idx && p.router.topk_weight && p.arrivals,
                 "norm_router: topk_idx, topk_weight or arrivals is null. HINT: the arrival counter is one zeroed "
                 "uint32 the launches share (each leaves it zero)");
  MLABENCH_CHECK(norm_router_supported(p),
                 "norm_router: {} rows, hidden {}, {} experts, out {} / out2 {}. HINT: ask norm_router_supported and "
                 "take rms_norm, the router GEMM and router where it says no (1-{} rows, out float32, hidden + 8 x "
                 "n_experts floats within 48 KB)",
                 p.norm.n_rows, p.norm.dim, p.router.n_experts, dtype_name(p.norm.out_type),
                 dtype_name(p.norm.out2_type), kNormRouterMaxRows);
  const auto grid = static_cast<unsigned>((p.router.n_experts + kNormRouterExperts - 1) / kNormRouterExperts);
  launch_pdl(norm_router_kernel, dim3(grid), dim3(kNormRouterThreads), norm_router_smem(p), s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

void moe_permute(const MoePermuteParams& p, cudaStream_t s) {
  MLABENCH_CHECK(p.n_experts > 0 && p.n_experts <= kPermuteMaxExperts && p.top_k > 0 && p.n_tokens >= 0,
                 "moe_permute: n_experts {}, top_k {}, n_tokens {}. HINT: 1 <= n_experts <= {}, top_k >= 1",
                 p.n_experts, p.top_k, p.n_tokens, kPermuteMaxExperts);
  MLABENCH_CHECK(p.counts && p.offsets && (p.n_tokens == 0 || (p.topk_idx && p.rank)),
                 "moe_permute: a null buffer. HINT: topk_idx, counts, offsets and rank are needed");
  MLABENCH_CHECK(p.n_tokens * p.top_k <= INT32_MAX, "moe_permute: {} pairs. HINT: ranks are int32",
                 p.n_tokens * p.top_k);
  const int smem = static_cast<int>(sizeof(int32_t) * (2 * kPermuteStride + 1) * static_cast<size_t>(p.n_experts));
  const int64_t n_chunks = (p.n_tokens * p.top_k + kPermuteThreads - 1) / kPermuteThreads;
  if (p.chunk_scratch != nullptr && n_chunks >= kMoePermuteParallelChunks) {
    // One block would walk the chunks one after another (168 us for a 16K-token step of V2-Lite: 98,304 pairs).
    if (smem > 48 * 1024)
      MLABENCH_CUDA(cudaFuncSetAttribute(moe_permute_rank_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const auto grid = static_cast<unsigned>(n_chunks);
    const size_t hist = sizeof(int32_t) * static_cast<size_t>(p.n_experts);
    moe_permute_count_kernel<<<grid, kPermuteThreads, hist, s>>>(p);
    moe_permute_scan_kernel<<<1, kPermuteThreads, hist, s>>>(p, static_cast<int>(n_chunks));
    moe_permute_rank_kernel<<<grid, kPermuteThreads, smem, s>>>(p);
    MLABENCH_CUDA(cudaGetLastError());
    return;
  }
  if (smem > 48 * 1024)
    MLABENCH_CUDA(cudaFuncSetAttribute(moe_permute_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  moe_permute_kernel<<<1, kPermuteThreads, smem, s>>>(p);
  MLABENCH_CUDA(cudaGetLastError());
}

void moe_gather(const MoeGatherParams& p, cudaStream_t s) {
  MLABENCH_CHECK(p.elem_type == DType::BF16 || p.elem_type == DType::F16 || p.elem_type == DType::F32,
                 "moe_gather: elem_type {}. HINT: the GEMM dtype is BF16, F16 or F32", dtype_name(p.elem_type));
  MLABENCH_CHECK(p.hidden >= 0 && p.ld_x >= p.hidden && p.ld_out >= p.hidden && p.top_k > 0 && p.n_tokens >= 0,
                 "moe_gather: hidden {}, ld_x {}, ld_out {}, top_k {}, n_tokens {}. HINT: leading dimensions count "
                 "elements and are >= hidden", p.hidden, p.ld_x, p.ld_out, p.top_k, p.n_tokens);
  check_map(p.map, "moe_gather");
  checks::check_moe_gather_fp8(p, "moe_gather");
  const int64_t n_pairs = p.n_tokens * p.top_k;
  if (n_pairs == 0 || p.hidden == 0) return;
  if (p.out_q != nullptr) {
    MLABENCH_CHECK(p.x, "moe_gather: x is null. HINT: pass device buffers");
    const dim3 grid(grid_for(n_pairs)), block(kGatherThreads);
    if (p.elem_type == DType::BF16)
      launch_pdl(moe_gather_fp8_kernel<true>, grid, block, 0, s, p);
    else
      launch_pdl(moe_gather_fp8_kernel<false>, grid, block, 0, s, p);
    MLABENCH_CUDA(cudaGetLastError());
    return;
  }
  MLABENCH_CHECK(p.x && p.out, "moe_gather: x or out is null. HINT: pass device buffers");
  const auto es = static_cast<int64_t>(dtype_size(p.elem_type));
  const int64_t row_bytes = p.hidden * es;
  // The widest word that divides every row start and the row length: raw bytes, any dtype.
  auto fits = [&](int64_t u) {
    return row_bytes % u == 0 && (p.ld_x * es) % u == 0 && (p.ld_out * es) % u == 0 && aligned(p.x, u) &&
           aligned(p.out, u);
  };
  if (fits(16))
    launch_gather<uint4>(p, row_bytes, es, s);
  else if (fits(8))
    launch_gather<uint2>(p, row_bytes, es, s);
  else if (fits(4))
    launch_gather<uint32_t>(p, row_bytes, es, s);
  else
    launch_gather<uint16_t>(p, row_bytes, es, s);
  MLABENCH_CUDA(cudaGetLastError());
}

void moe_combine(const MoeCombineParams& p, cudaStream_t s) {
  MLABENCH_CHECK(p.hidden >= 0 && p.ld_y >= p.hidden && p.ld_out >= p.hidden && p.n_tokens >= 0,
                 "moe_combine: hidden {}, ld_y {}, ld_out {}, n_tokens {}. HINT: leading dimensions count elements "
                 "and are >= hidden", p.hidden, p.ld_y, p.ld_out, p.n_tokens);
  MLABENCH_CHECK(p.top_k > 0 && p.top_k <= kCombineMaxTopK, "moe_combine: top_k {}. HINT: 1 <= top_k <= {}",
                 p.top_k, kCombineMaxTopK);
  check_map(p.map, "moe_combine");
  if (p.n_tokens == 0 || p.hidden == 0) return;
  MLABENCH_CHECK(p.out && (p.y != nullptr) != (p.y_bf16 != nullptr) && p.topk_weight,
                 "moe_combine: out or topk_weight is null, or y and y_bf16 are both {}. HINT: pass device buffers, "
                 "the expert rows once (float32 or BF16)",
                 p.y ? "set" : "null");
  const bool bf16 = p.y_bf16 != nullptr;
  const bool vec4 = p.hidden % 4 == 0 && p.ld_y % 4 == 0 && p.ld_out % 4 == 0 &&
                    aligned(bf16 ? static_cast<const void*>(p.y_bf16) : p.y, bf16 ? 8 : 16) && aligned(p.out, 16);
  const int64_t units = vec4 ? p.hidden / 4 : p.hidden;
  const dim3 grid(grid_for(p.n_tokens), static_cast<unsigned>(std::min<int64_t>((units + kCombineThreads - 1) /
                                                                                     kCombineThreads, 65535)));
  if (vec4)
    launch_pdl(bf16 ? moe_combine_kernel<true, true> : moe_combine_kernel<true, false>, grid, dim3(kCombineThreads), 0,
               s, p);
  else
    launch_pdl(bf16 ? moe_combine_kernel<false, true> : moe_combine_kernel<false, false>, grid,
               dim3(kCombineThreads), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

void moe_pair_pointers(const MoePairPointersParams& p, cudaStream_t s) {
  MLABENCH_CHECK(p.n_pairs >= 0, "moe_pair_pointers: n_pairs {}. HINT: n_tokens * top_k", p.n_pairs);
  if (p.n_pairs == 0) return;
  MLABENCH_CHECK(p.topk_idx && p.a && p.b && p.c, "moe_pair_pointers: a null array. HINT: topk_idx, a, b and c are "
                 "device arrays of n_pairs entries");
  constexpr int kThreads = 256;
  moe_pair_pointers_kernel<<<grid_for((p.n_pairs + kThreads - 1) / kThreads), kThreads, 0, s>>>(p);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
