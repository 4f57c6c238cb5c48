// One token's router by one warp (softmax or sigmoid scores, greedy or group-limited top-k), as twin::router
// computes it: the router kernel and norm_router (moe.cu) and moe_decode_ffn's kernels that route the token
// themselves (moe_decode.cu) share it, so every path picks the same experts with the same weights bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels::cuda::router_warp {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kMaxTopK = 32;  // one lane holds each chosen expert

// (value, index) order of the top-k: larger value first, ties to the lower index.
__device__ __forceinline__ bool better(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

// Warp-wide best (value, index); every lane gets the answer (xor butterfly).
__device__ __forceinline__ void warp_best(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int oi = __shfl_xor_sync(kFull, i, o);
    if (better(ov, oi, v, i)) v = ov, i = oi;
  }
}

// Lane `lane` owns experts lane, lane + 32, ...: its best not yet taken one (taken experts hold -3, below the
// start value -2; every score is >= 0, masked ones are 0 and stay selectable).
__device__ __forceinline__ void lane_best(const float* s, int E, int lane, float& v, int& i) {
  v = -2.0f;
  i = INT32_MAX;
  for (int e = lane; e < E; e += 32)
    if (s[e] > v) v = s[e], i = e;  // ascending e: strict > keeps the lower index on ties
}

// One token's scores and top-k by one warp: s[0, E) holds the token's logits on entry (scratch after); lane k < top_k
// writes the k-th expert and its weight to idx[k] and weight[k] (global or shared memory).
__device__ __forceinline__ void route_token(const RouterParams& p, float* s, int lane, int32_t* idx, float* weight) {
  const int E = p.n_experts, K = p.top_k;
  if (p.scoring == RouterScoring::SIGMOID) {
    // Each score on its own: 1 / (1 + exp(-l)) with an IEEE division, as the twin. Scores stay in [0, 1], so
    // the top-k sentinels below (-2, -3) keep working.
    for (int e = lane; e < E; e += 32) s[e] = 1.0f / (1.0f + expf(-s[e]));
  } else {
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, s[e]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) {
      const float x = expf(s[e] - mx);
      s[e] = x;
      sum += x;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
    for (int e = lane; e < E; e += 32) s[e] /= sum;  // division, not a reciprocal multiply: as the twin
  }
  __syncwarp();

  if (p.method == RouterMethod::GROUP_LIMITED_GREEDY) {
    const int G = p.n_group, per = E / G;
    float gs = -2.0f;  // lanes past the groups never win
    if (lane < G) {
      gs = s[lane * per];
      for (int i = 1; i < per; ++i) gs = fmaxf(gs, s[lane * per + i]);
    }
    unsigned keep = 0;
    for (int k = 0; k < p.topk_group; ++k) {
      float v = (keep >> lane) & 1u ? -2.0f : gs;
      int g = lane;
      warp_best(v, g);
      keep |= 1u << g;
    }
    __syncwarp();
    for (int e = lane; e < E; e += 32)
      if (!((keep >> (e / per)) & 1u)) s[e] = 0.0f;
    __syncwarp();
  }

  // Each lane keeps its own best; after a pick only the owner of the picked expert rescans.
  float lv;
  int li;
  lane_best(s, E, lane, lv, li);
  int my_idx = 0;
  float my_val = 0.0f, wsum = 0.0f;
  for (int k = 0; k < K; ++k) {
    float v = lv;
    int i = li;
    warp_best(v, i);
    if (lane == k) my_idx = i, my_val = v;
    wsum += v;  // the twin's order: k ascending
    if (lane == (i & 31)) {
      s[i] = -3.0f;
      lane_best(s, E, lane, lv, li);
    }
  }
  if (lane < K) {
    // Expert parallelism: the local id of an expert this rank holds, kExpertElsewhere for another rank's.
    const int local = my_idx - p.held_begin;
    idx[lane] = p.held_count == 0 ? my_idx : local >= 0 && local < p.held_count ? local : kExpertElsewhere;
    weight[lane] = (K > 1 && p.norm_topk_prob) ? my_val / (wsum + 1e-20f) : my_val * p.routed_scaling_factor;
  }
}

}  // namespace mlabench::kernels::cuda::router_warp
