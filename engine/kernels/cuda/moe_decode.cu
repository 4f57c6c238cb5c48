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
// The route form (MoeDecodeFfnParams::route, issue 16 round 13): no router launch before these two. The router's
// top-k of one token is one warp's few microseconds of work but cost a launch of ~7 us in a graphed step (issue 20
// round 7); here each routed gate/up CTA picks the experts itself from the logits after its wait (the router GEMM
// is the launch before), and each down CTA before its wait (the logits are two launches old by then), with the
// router kernel's warp code (router_warp.cuh), so the experts and weights are the router's bit for bit.
// FP8 weights (issue 20): the same two launches on e4m3 codes, the activations quantised inside (below): x by every
// gate/up CTA as it reads it, act once a 128-column group by the group's last gate/up CTA.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/router_warp.cuh"
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

// Sums v[r] over the CTA of W warps (warp shuffles, then the warps in order through red); thread r < R gets the
// total of r.
template <int R, int W>
__device__ __forceinline__ float cta_sum(float (&v)[R], float (&red)[W][R], int tid) {
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
    for (int w = 0; w < W; ++w) s += red[w][tid];
  return s;
}

// A gate/up CTA's end: its C gate and C up sums over the CTA (thread r < C gets gate column r, thread C + r its up
// row; the gate total joins it through shared memory), silu(gate) * up into act columns [u0, u0 + C) in BF16.
template <int C, int W>
__device__ __forceinline__ void store_act_columns(float (&acc)[2 * C], float (&red)[W][2 * C], int tid, void* act,
                                                  int64_t u0) {
  __shared__ float gate[C];
  const float total = cta_sum(acc, red, tid);
  if (tid < C) gate[tid] = total;
  __syncthreads();
  if (tid >= C && tid < 2 * C)
    static_cast<__nv_bfloat16*>(act)[u0 + tid - C] = __float2bfloat16_rn(silu_times(gate[tid - C], total));
}

// The token's experts and routing weights into idx_s / w_s (top_k entries) for the whole CTA: in the route form
// computed from p.route.logits by warp 0 (publish: also written to route.topk_idx / topk_weight), else read from
// topk_idx / topk_weight. Every thread of the CTA calls it (it synchronises).
__device__ __forceinline__ void token_route(const MoeDecodeFfnParams& p, int32_t* idx_s, float* w_s, bool publish) {
  const int tid = threadIdx.x, lane = tid & 31;
  if (p.route.logits != nullptr) {  // p.routes(), a host function
    __shared__ float scores[kMoeDecodeRouteMaxExperts];
    if (tid < 32) {
      // From L2 (__ldcg): the logits buffer is rewritten every layer, after earlier kernels may have read it.
      for (int e = lane; e < p.n_experts; e += 32) scores[e] = __ldcg(p.route.logits + e);
      __syncwarp();
      router_warp::route_token(p.route, scores, lane, idx_s, w_s);
      __syncwarp();
      if (publish && lane < p.top_k) {
        p.route.topk_idx[lane] = idx_s[lane];
        p.route.topk_weight[lane] = w_s[lane];
      }
    }
  } else if (tid < p.top_k) {
    idx_s[tid] = __ldg(p.topk_idx + tid);
    w_s[tid] = __ldg(p.topk_weight + tid);
  }
  __syncthreads();
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
  if (!shared) {  // the last CTA is a routed one: it publishes the route form's top-k
    __shared__ int32_t idx_s[kMoeDecodeMaxTopK];
    __shared__ float w_s[kMoeDecodeMaxTopK];
    token_route(p, idx_s, w_s, blockIdx.x == gridDim.x - 1);
    const int64_t k = (u0 - SI) / I;
    wb = static_cast<const uint16_t*>(p.experts_gate_up) + static_cast<int64_t>(idx_s[k]) * 2 * I * H;
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
  store_act_columns<kGateCols>(acc, red, tid, p.act, u0);
}

// grid (H / kDownRows): CTA b owns out rows [4 b, 4 b + 4); thread t takes the 8-column chunks t, t + 256, ... of
// the concatenated columns.
__global__ void __launch_bounds__(kThreads) moe_decode_down_kernel(const MoeDecodeFfnParams p) {
  __shared__ float red[kWarps][kDownRows];
  const int tid = threadIdx.x;
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter;
  const int64_t shared_chunks = SI / 8, pair_chunks = I / 8, chunks = shared_chunks + p.top_k * pair_chunks;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kDownRows;
  // The router ran two launches before (route form: the logits were written two launches before): the experts are
  // known before the wait, and so are the first chunks' weights.
  __shared__ int32_t idx_s[kMoeDecodeMaxTopK];
  __shared__ float w_s[kMoeDecodeMaxTopK];
  token_route(p, idx_s, w_s, false);
  // Chunk c's weights for row j0 (the next rows are ld apart) and the scale of its act values.
  auto weights_of = [&](int64_t c, int64_t& ld, float& scale) -> const uint16_t* {
    if (c < shared_chunks) {
      ld = SI;
      scale = 1.0f;
      return static_cast<const uint16_t*>(p.shared_down) + j0 * SI + c * 8;
    }
    const int64_t k = (c - shared_chunks) / pair_chunks, cc = (c - shared_chunks) % pair_chunks;
    ld = I;
    scale = w_s[k];
    return static_cast<const uint16_t*>(p.experts_down) + static_cast<int64_t>(idx_s[k]) * H * I +
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
  const float total = cta_sum(acc, red, tid);
  if (tid < kDownRows) p.out[j0 + tid] = total;
}

// ---- FP8 weights (issue 20; MoeDecodeFfnParams::fp8()) -----------------------------------------------------------
// The same two launches on e4m3 weights with 128 x 128 block scales (half the bytes: V2-Lite's 69 MB a layer
// instead of 138). A thread takes 16-byte chunks = 16 values; the 8 chunks of a 128-value group are 8 neighbouring
// lanes of one loop step (the loop strides by a multiple of 8 and the sizes are multiples of 128), so a group's amax
// is three shuffles among them and the activations are quantised in the kernel, with fp8_quantize_rows' arithmetic
// (fp8_device.cuh): no quantiser launch, and x read once a CTA from L2. act is quantised once: the gate/up CTAs of
// a 128-column group (16 of them) count their arrivals on the group's counter after writing their columns, and the
// last one reads the group back from L2 and writes its codes and scale (the threadfence-reduction pattern; it then
// zeroes the counter for the next launch). The down kernel, whose hidden / 4 CTAs each read all of act, then loads
// codes where it used to quantise them again per CTA (16 IEEE divisions a 64-byte chunk of weights: the kernel ran at
// 50% of the copy bandwidth on an H100, docs/perf-notes.md issue 20 round 5). A chunk's 16 products are summed in
// float32 and added times x_scale * w_scale (times the routing weight for a pair's down columns): the W8A8 of the
// FP8 layer up to summation order.
constexpr int kFp8Threads = 128, kFp8Warps = kFp8Threads / 32;
// Act columns an FP8 gate/up CTA: 8 (the BF16 kernel's 4 measured 74% of the copy bandwidth in FP8 on an H100: each
// thread quantises its 16 x values, 16 IEEE divisions, for 8 weight chunks; 8 columns spread them over 16).
constexpr int kGateColsFp8 = 8;
constexpr int kGroupCtas = 128 / kGateColsFp8;  // gate/up CTAs a 128-column act group
static_assert(kFp8Threads == 128, "a group's last CTA quantises it a value a thread");

// The amax of a 128-value group held by 8 neighbouring lanes (16 values each), NaN skipped as fmaxf does.
__device__ __forceinline__ float group_amax(const float (&v)[16]) {
  float m = 0.0f;
#pragma unroll
  for (int e = 0; e < 16; ++e) m = fmaxf(m, fabsf(v[e]));
  const unsigned lanes = 0xffu << (threadIdx.x & 24);  // this lane's group of 8
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) m = fmaxf(m, __shfl_xor_sync(lanes, m, o));
  return m;
}

// 16 BF16 activations (two chunks) quantised with their group's scale and decoded: the e4m3 values the GEMM
// multiplies. Returns the scale.
__device__ __forceinline__ float quantize_chunk(const uint4* v16, float (&q)[16]) {
  float a[8], b[8];
  unpack_chunk<false>(__ldg(v16), a);
  unpack_chunk<false>(__ldg(v16 + 1), b);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    q[e] = a[e];
    q[8 + e] = b[e];
  }
  const float s = fp8::block_scale(group_amax(q));
#pragma unroll
  for (int e = 0; e < 16; e += 4) {
    const uint32_t word = uint32_t{fp8::quantize(q[e], s)} | uint32_t{fp8::quantize(q[e + 1], s)} << 8 |
                          uint32_t{fp8::quantize(q[e + 2], s)} << 16 | uint32_t{fp8::quantize(q[e + 3], s)} << 24;
    fp8::decode4(word, q + e);
  }
  return s;
}

__device__ __forceinline__ float dot16(const float (&x)[16], const uint4& w) {
  float wf[16];
  fp8::decode16(w, wf);
  float d = 0.0f;
#pragma unroll
  for (int e = 0; e < 16; ++e) d = fmaf(x[e], wf[e], d);
  return d;
}

// After a gate/up CTA wrote its act columns (group grp): the group's last CTA to arrive quantises its 128 values
// (thread t value t, read from L2: the other CTAs' stores are past their fences) into act_q and act_scale with
// fp8_quantize_rows' arithmetic, and zeroes the counter. fmaxf skips a NaN as the quantiser's does.
__device__ __forceinline__ void quantise_act_group_if_last(const MoeDecodeFfnParams& p, int64_t grp, int tid) {
  __shared__ bool last;
  __shared__ float warps_amax[kFp8Warps];
  __threadfence();  // this CTA's act stores (threads 8-15, in store_act_columns) before its arrival
  __syncthreads();
  if (tid == 0) last = atomicAdd(p.act_arrivals + grp, 1u) == kGroupCtas - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // the other CTAs' stores, seen after their arrivals
  const int64_t u = grp * kFp8Block + tid;
  const float v = __uint_as_float(static_cast<uint32_t>(__ldcg(static_cast<const unsigned short*>(p.act) + u)) << 16);
  const float m = fp8::warp_amax(fabsf(v));
  if ((tid & 31) == 0) warps_amax[tid >> 5] = m;
  __syncthreads();
  float amax = warps_amax[0];
#pragma unroll
  for (int w = 1; w < kFp8Warps; ++w) amax = fmaxf(amax, warps_amax[w]);
  const float s = fp8::block_scale(amax);
  p.act_q[u] = fp8::quantize(v, s);
  if (tid == 0) {
    p.act_scale[grp] = s;
    p.act_arrivals[grp] = 0u;  // the next launch counts from zero (it runs after this grid: PDL waits for it)
  }
}

// grid (U / 8): CTA b owns act columns [8 b, 8 b + 8); their 8 gate rows lie in one scale block, and so do their 8
// up rows.
__global__ void __launch_bounds__(kFp8Threads) moe_decode_gate_up_fp8_kernel(const MoeDecodeFfnParams p) {
  constexpr int C = kGateColsFp8;
  __shared__ float red[kFp8Warps][2 * C];
  const int tid = threadIdx.x;
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter, chunks = H / 16, ld = fp8_weight_scale_ld(H);
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * C;
  const bool shared = u0 < SI;
  const uint8_t* wb = static_cast<const uint8_t*>(p.shared_gate_up);
  const float* wsb = p.shared_gate_up_scale;
  int64_t row0 = u0, up_off = SI;
  uint4 wv[2 * C];
  auto load = [&](int64_t c) {
#pragma unroll
    for (int r = 0; r < C; ++r) {
      wv[r] = load_stream(reinterpret_cast<const uint4*>(wb + (row0 + r) * H) + c);
      wv[C + r] = load_stream(reinterpret_cast<const uint4*>(wb + (row0 + up_off + r) * H) + c);
    }
  };
  bool loaded = false;
  if (shared && tid < chunks) {  // as the BF16 kernel: the shared columns' weights before the wait
    load(tid);
    loaded = true;
  }
  griddep_wait();
  griddep_launch_dependents();
  if (!shared) {  // as the BF16 kernel
    __shared__ int32_t idx_s[kMoeDecodeMaxTopK];
    __shared__ float w_s[kMoeDecodeMaxTopK];
    token_route(p, idx_s, w_s, blockIdx.x == gridDim.x - 1);
    const int64_t k = (u0 - SI) / I, e = idx_s[k];
    wb = static_cast<const uint8_t*>(p.experts_gate_up) + e * 2 * I * H;
    wsb = p.experts_gate_up_scale + e * (2 * I / kFp8Block) * ld;
    row0 = (u0 - SI) % I;
    up_off = I;
  }
  const float* ws_gate = wsb + (row0 / kFp8Block) * ld;
  const float* ws_up = wsb + ((row0 + up_off) / kFp8Block) * ld;
  float acc[2 * C];
#pragma unroll
  for (int r = 0; r < 2 * C; ++r) acc[r] = 0.0f;
  const uint4* x = static_cast<const uint4*>(p.x);
  for (int64_t c = tid; c < chunks; c += kFp8Threads) {
    if (!loaded) load(c);
    loaded = false;
    float xq[16];
    const float xs = quantize_chunk(x + 2 * c, xq);
    const int64_t g = c / 8;
    const float s_gate = xs * __ldg(ws_gate + g), s_up = xs * __ldg(ws_up + g);
#pragma unroll
    for (int r = 0; r < C; ++r) {
      acc[r] = fmaf(dot16(xq, wv[r]), s_gate, acc[r]);
      acc[C + r] = fmaf(dot16(xq, wv[C + r]), s_up, acc[C + r]);
    }
  }
  store_act_columns<C>(acc, red, tid, p.act, u0);
  quantise_act_group_if_last(p, u0 / kFp8Block, tid);
}

// grid (H / kDownRows): CTA b owns out rows [4 b, 4 b + 4) (one scale block row); thread t takes the 16-column
// chunks t, t + 128, ... of the concatenated columns, reading act's codes and group scales.
__global__ void __launch_bounds__(kFp8Threads) moe_decode_down_fp8_kernel(const MoeDecodeFfnParams p) {
  __shared__ float red[kFp8Warps][kDownRows];
  const int tid = threadIdx.x;
  const int64_t H = p.hidden, I = p.inter, SI = p.shared_inter;
  const int64_t shared_chunks = SI / 16, pair_chunks = I / 16, chunks = shared_chunks + p.top_k * pair_chunks;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kDownRows, block = j0 / kFp8Block;
  __shared__ int32_t idx_s[kMoeDecodeMaxTopK];  // as the BF16 kernel: the experts known before the wait
  __shared__ float w_s[kMoeDecodeMaxTopK];
  token_route(p, idx_s, w_s, false);
  // Chunk c's weights for row j0 (the next rows ld apart), their scale for its group, and the routing weight.
  auto weights_of = [&](int64_t c, int64_t& ld, float& w_scale, float& route) -> const uint8_t* {
    if (c < shared_chunks) {
      ld = SI;
      w_scale = __ldg(p.shared_down_scale + block * fp8_weight_scale_ld(SI) + c / 8);
      route = 1.0f;
      return static_cast<const uint8_t*>(p.shared_down) + j0 * SI + c * 16;
    }
    const int64_t k = (c - shared_chunks) / pair_chunks, cc = (c - shared_chunks) % pair_chunks;
    const int64_t e = idx_s[k], ld_s = fp8_weight_scale_ld(I);
    ld = I;
    w_scale = __ldg(p.experts_down_scale + e * (H / kFp8Block) * ld_s + block * ld_s + cc / 8);
    route = w_s[k];
    return static_cast<const uint8_t*>(p.experts_down) + e * H * I + j0 * I + cc * 16;
  };
  uint4 cur[kDownRows] = {}, nxt[kDownRows] = {};
  float cur_ws = 0.0f, nxt_ws = 0.0f, cur_route = 0.0f, nxt_route = 0.0f;
  auto load = [&](int64_t c, uint4 (&wv)[kDownRows], float& w_scale, float& route) {
    int64_t ld = 0;
    const uint8_t* w = weights_of(c, ld, w_scale, route);
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) wv[r] = load_stream(reinterpret_cast<const uint4*>(w + r * ld));
  };
  if (tid < chunks) load(tid, cur, cur_ws, cur_route);
  griddep_wait();
  griddep_launch_dependents();
  float acc[kDownRows];
#pragma unroll
  for (int r = 0; r < kDownRows; ++r) acc[r] = 0.0f;
  const uint4* act_q = reinterpret_cast<const uint4*>(p.act_q);
  for (int64_t c = tid; c < chunks; c += kFp8Threads) {
    if (c + kFp8Threads < chunks) load(c + kFp8Threads, nxt, nxt_ws, nxt_route);
    float aq[16];
    fp8::decode16(__ldg(act_q + c), aq);
    const float as = __ldg(p.act_scale + c / 8);
    const float sc = cur_route * (as * cur_ws);
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) {
      acc[r] = fmaf(dot16(aq, cur[r]), sc, acc[r]);
      cur[r] = nxt[r];
    }
    cur_ws = nxt_ws;
    cur_route = nxt_route;
  }
  const float total = cta_sum(acc, red, tid);
  if (tid < kDownRows) p.out[j0 + tid] = total;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool moe_decode_ffn_supported(const MoeDecodeFfnParams& p) {
  const bool shared_ok = p.shared_inter == 0 || (aligned16(p.shared_gate_up) && aligned16(p.shared_down));
  const bool fp8_ok = !p.fp8() || (p.experts_down_scale && (p.shared_inter == 0 || (p.shared_gate_up_scale &&
                                                                                  p.shared_down_scale)) &&
                                   aligned16(p.act_q) && p.act_scale && p.act_arrivals &&
                                   p.hidden % kFp8Block == 0 && p.inter % kFp8Block == 0 &&
                                   p.shared_inter % kFp8Block == 0);
  if (!fp8_ok) return false;
  const bool route_ok = !p.routes() || (p.route.n_tokens == 1 && p.route.n_experts == p.n_experts &&
                                        p.route.top_k == p.top_k && p.n_experts <= kMoeDecodeRouteMaxExperts &&
                                        p.route.topk_idx && p.route.topk_weight);
  if (!route_ok) return false;
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
  const int threads = p.fp8() ? kFp8Threads : kThreads;
  launch_pdl(p.fp8() ? moe_decode_gate_up_fp8_kernel : moe_decode_gate_up_kernel,
             dim3(static_cast<unsigned>(U / (p.fp8() ? kGateColsFp8 : kGateCols))), dim3(threads), 0, s, p);
  launch_pdl(p.fp8() ? moe_decode_down_fp8_kernel : moe_decode_down_kernel,
             dim3(static_cast<unsigned>(p.hidden / kDownRows)), dim3(threads), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
