// CUDA kernels for scoring, sampling and device random weights: log_softmax_gather, sample, random_fill. Each
// matches its twin in engine/kernels/twin/sampling.cpp (which defines what it computes).
//
//   log_softmax_gather  one block per row; one pass over the row with an online (max, sum of exp) in double and
//                       the argmax (ties to the lowest id), merged across the block with shuffles.
//   sample              one block per row on integer probability masses (see the twin): argmax pass; then
//                       for top_p < 1 a radix select over the logits' order-preserving keys, 8 bits a pass,
//                       with 256-bin mass histograms in shared memory (integer atomics, so the sums do not
//                       depend on order; warp-aggregated through __match_any_sync because logits crowd a few
//                       bins); then a walk over token ids in tiles with a block scan to find the drawn token.
//   random_fill         grid-stride, 16-byte stores, counter-based splitmix64: bit-identical to the host.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::kernels::cuda {

namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- shared with engine/kernels/twin/sampling.cpp: keep the two copies identical -------------------------

__device__ __forceinline__ uint32_t logit_key(float l) {
  uint32_t b = __float_as_uint(l);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// floor(2^40 * exp(x)) for x <= 0; see the twin. __fmul_rn keeps x * log2(e) a rounded product (no fusion).
__device__ __forceinline__ uint64_t sample_mass(float x) {
  const float t = __fmul_rn(x, 1.44269504f);
  if (!(t > -41.0f)) return 0;
  const float n = rintf(t);
  const float f = __fsub_rn(t, n);
  float p = 1.5403530e-4f;
  p = fmaf(p, f, 1.3333558e-3f);
  p = fmaf(p, f, 9.6181291e-3f);
  p = fmaf(p, f, 5.5504109e-2f);
  p = fmaf(p, f, 2.4022651e-1f);
  p = fmaf(p, f, 6.9314718e-1f);
  p = fmaf(p, f, 1.0f);
  return __float2ull_rz(ldexpf(p, 40 + static_cast<int>(n)));
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// sampling_uniform() of kernel_params.h (a host function), for the device.
__device__ __forceinline__ double uniform01(uint64_t seed, int64_t step) {
  return static_cast<double>(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(step))) >> 11) * 0x1.0p-53;
}

// ---- block helpers ---------------------------------------------------------------------------------------

// Visits every element of a row in warp-uniform iterations (all lanes of a warp run the same number of calls,
// so the callback may use warp collectives): f(index, value, valid). Body in float4 loads from the first
// 16-byte boundary; the few elements before it and after the last whole float4 go scalar.
template <class F>
__device__ __forceinline__ void visit_row(const float* row, int64_t n, F&& f) {
  const int lane = threadIdx.x & 31;
  const int64_t warp0 = threadIdx.x - lane;
  int64_t head = static_cast<int64_t>((16 - (reinterpret_cast<uintptr_t>(row) & 15)) & 15) / 4;
  if (head > n) head = n;
  const int64_t nv = (n - head) / 4;
  const int64_t tail0 = head + 4 * nv;
  if (threadIdx.x < 32) {
    const bool ok = lane < head;
    f(lane, ok ? row[lane] : 0.0f, ok);
  }
  const float4* v = reinterpret_cast<const float4*>(row + head);
  for (int64_t j0 = warp0; j0 < nv; j0 += blockDim.x) {
    const int64_t j = j0 + lane;
    const bool ok = j < nv;
    const float4 a = ok ? v[j] : make_float4(0.f, 0.f, 0.f, 0.f);
    const int64_t i = head + 4 * j;
    f(i, a.x, ok);
    f(i + 1, a.y, ok);
    f(i + 2, a.z, ok);
    f(i + 3, a.w, ok);
  }
  if (threadIdx.x < 32) {
    const int64_t i = tail0 + lane;
    const bool ok = i < n;
    f(i, ok ? row[i] : 0.0f, ok);
  }
}

struct ArgMax {
  float v;
  int64_t i;
};

__device__ __forceinline__ void argmax_merge(ArgMax& a, float v, int64_t i) {
  if (v > a.v || (v == a.v && i < a.i)) a = {v, i};
}

// Block-wide argmax (ties to the lowest id); the result in every thread. `scratch` holds 32 entries.
__device__ ArgMax block_argmax(ArgMax a, ArgMax* scratch) {
  for (int o = 16; o > 0; o >>= 1) argmax_merge(a, __shfl_xor_sync(kFull, a.v, o), __shfl_xor_sync(kFull, a.i, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = a;
  __syncthreads();
  a = lane < n_warps ? scratch[lane] : ArgMax{-INFINITY, INT64_MAX};
  for (int o = 16; o > 0; o >>= 1) argmax_merge(a, __shfl_xor_sync(kFull, a.v, o), __shfl_xor_sync(kFull, a.i, o));
  return a;
}

__device__ uint64_t block_sum(uint64_t x, uint64_t* scratch) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < n_warps ? scratch[lane] : 0;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

// Exclusive prefix sum over the block in thread order, and the block total. `scratch` holds 32 entries.
__device__ uint64_t block_exclusive_scan(uint64_t x, uint64_t* scratch, uint64_t* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  uint64_t inc = x;
  for (int o = 1; o < 32; o <<= 1) {
    const uint64_t y = __shfl_up_sync(kFull, inc, o);
    if (lane >= o) inc += y;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  uint64_t w = lane < n_warps ? scratch[lane] : 0, winc = w;
  for (int o = 1; o < 32; o <<= 1) {
    const uint64_t y = __shfl_up_sync(kFull, winc, o);
    if (lane >= o) winc += y;
  }
  *total = __shfl_sync(kFull, winc, 31);
  const uint64_t before_warp = __shfl_sync(kFull, winc - w, warp);
  return before_warp + inc - x;
}

// ---- log_softmax_gather ----------------------------------------------------------------------------------

constexpr int kScoreThreads = 512;

// Online softmax denominator: s = sum exp(x - m) over the values seen, m their max (-inf when none).
struct Lse {
  double m, s;
};

__device__ __forceinline__ Lse lse_merge(Lse a, Lse b) {
  if (b.m == -INFINITY) return a;
  if (a.m == -INFINITY) return b;
  const double m = fmax(a.m, b.m);
  return {m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
}

__global__ void __launch_bounds__(kScoreThreads) log_softmax_gather_kernel(LogSoftmaxGatherParams p) {
  const int64_t r = blockIdx.x;
  const float* row = p.logits + r * p.ld;
  ArgMax best{-INFINITY, INT64_MAX};
  Lse acc{-INFINITY, 0.0};
  visit_row(row, p.vocab, [&](int64_t i, float x, bool ok) {
    if (!ok || x == -INFINITY) return;  // -inf adds exp(-inf) = 0, and is the argmax only of an all -inf row
    argmax_merge(best, x, i);
    const double xd = x;
    if (xd > acc.m) {
      acc.s = acc.s * exp(acc.m - xd) + 1.0;
      acc.m = xd;
    } else {
      acc.s += exp(xd - acc.m);
    }
  });
  __shared__ ArgMax am_scratch[32];
  __shared__ Lse lse_scratch[32];
  best = block_argmax(best, am_scratch);
  for (int o = 16; o > 0; o >>= 1)
    acc = lse_merge(acc, Lse{__shfl_xor_sync(kFull, acc.m, o), __shfl_xor_sync(kFull, acc.s, o)});
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) lse_scratch[warp] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) acc = lse_merge(acc, lse_scratch[w]);
  const int32_t t = p.targets[r];
  if (t < 0 || t >= p.vocab) {
    p.logprob[r] = __longlong_as_double(0x7ff8000000000000ll);
    p.is_greedy[r] = 0;
    return;
  }
  // An all -inf row: the CPU argmax is id 0 and the log-probability NaN, as in the twin.
  const int64_t am = best.i == INT64_MAX ? 0 : best.i;
  p.logprob[r] = static_cast<double>(row[t]) - acc.m - log(acc.s);
  p.is_greedy[r] = am == t ? 1 : 0;
}

// ---- sample ----------------------------------------------------------------------------------------------

constexpr int kSampleThreads = 1024;
constexpr int kWalkPerThread = 16;  // token ids per thread in one tile of the final walk

// Adds q to hist[bin] (and 1 to cnt[bin]) for lanes with `has`, one shared atomic per distinct bin in the warp.
// q < 2^41, so the two 20/21-bit halves of 32 lanes sum within 32 bits.
__device__ __forceinline__ void hist_add(uint64_t* hist, uint32_t* cnt, uint32_t bin, uint64_t q, bool has) {
  const unsigned active = __ballot_sync(kFull, has);
  if (!has) return;
  const unsigned peers = __match_any_sync(active, bin);
  const unsigned hi = __reduce_add_sync(peers, static_cast<unsigned>(q >> 20));
  const unsigned lo = __reduce_add_sync(peers, static_cast<unsigned>(q & 0xfffffu));
  if ((threadIdx.x & 31) == __ffs(peers) - 1) {
    atomicAdd(reinterpret_cast<unsigned long long*>(&hist[bin]), (static_cast<unsigned long long>(hi) << 20) + lo);
    atomicAdd(&cnt[bin], static_cast<uint32_t>(__popc(peers)));
  }
}

struct RadixState {
  uint32_t prefix, mask;  // keys k with (k & mask) == prefix are still candidates for the cut
  uint64_t above;         // mass of keys above every candidate
  uint64_t kept;          // mass of keys >= the cut chosen so far
  uint64_t need;
  bool done;
};

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(SampleParams p) {
  const int64_t r = blockIdx.x;
  const float* row = p.logits + r * p.ld;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __shared__ ArgMax am_scratch[32];
  __shared__ uint64_t sum_scratch[32];
  __shared__ uint64_t hist[256];
  __shared__ uint32_t cnt[256];
  __shared__ RadixState st;
  __shared__ int64_t found;

  ArgMax best{-INFINITY, INT64_MAX};
  visit_row(row, p.vocab, [&](int64_t i, float x, bool ok) {
    if (ok) argmax_merge(best, x, i);
  });
  best = block_argmax(best, am_scratch);
  const int64_t am = best.i == INT64_MAX ? 0 : best.i;
  const float temp = p.temperature[r];
  if (!(temp > 0.0f)) {
    if (threadIdx.x == 0) p.out[r] = static_cast<int32_t>(am);
    return;
  }
  const float mx = row[am];
  const float top_p = p.top_p[r];
  uint32_t cut = 0;
  uint64_t kept = 0;
  if (!(top_p < 1.0f)) {
    uint64_t part = 0;
    visit_row(row, p.vocab, [&](int64_t, float x, bool ok) {
      if (ok) part += sample_mass(__fdiv_rn(__fsub_rn(x, mx), temp));
    });
    kept = block_sum(part, sum_scratch);
  } else {
    if (threadIdx.x == 0) st = RadixState{0, 0, 0, 0, 0, false};
    for (int level = 3; level >= 0; --level) {
      const int shift = 8 * level;
      for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0, cnt[b] = 0;
      __syncthreads();
      const uint32_t prefix = st.prefix, mask = st.mask;
      visit_row(row, p.vocab, [&](int64_t, float x, bool ok) {
        const uint32_t k = logit_key(x);
        uint64_t q = 0;
        if (ok && (k & mask) == prefix) q = sample_mass(__fdiv_rn(__fsub_rn(x, mx), temp));
        hist_add(hist, cnt, (k >> shift) & 255u, q, q > 0);
      });
      __syncthreads();
      if (warp == 0) {
        // Lane l owns bins [8l, 8l + 8). The cut's bin is the highest b whose mass at or above it (plus the
        // mass above all candidates) reaches need.
        uint64_t own = 0;
        for (int b = 8 * lane; b < 8 * lane + 8; ++b) own += hist[b];
        uint64_t suffix = own;  // mass of lanes >= this one
        for (int o = 1; o < 32; o <<= 1) {
          const uint64_t y = __shfl_down_sync(kFull, suffix, o);
          if (lane + o < 32) suffix += y;
        }
        uint64_t need = st.need;
        if (level == 3) {
          const uint64_t total = __shfl_sync(kFull, suffix, 0);
          const double want = ceil(__dmul_rn(static_cast<double>(top_p), __ull2double_rn(total)));
          need = want > 0 ? static_cast<uint64_t>(want) : 0;
          need = need < 1 ? 1 : need > total ? total : need;
        }
        uint64_t acc = st.above + (suffix - own);
        int cand = -1;
        uint64_t cand_above = 0;
        for (int b = 8 * lane + 7; b >= 8 * lane; --b) {
          if (acc + hist[b] >= need) {
            cand = b;
            cand_above = acc;
            break;
          }
          acc += hist[b];
        }
        const int chosen = __reduce_max_sync(kFull, static_cast<unsigned>(cand + 1)) - 1;
        if (cand >= 0 && cand == chosen) {
          st.prefix |= static_cast<uint32_t>(chosen) << shift;
          st.mask |= 255u << shift;
          st.above = cand_above;
          st.kept = cand_above + hist[chosen];
          st.need = need;
          st.done = cnt[chosen] <= 1 || level == 0;
        }
      }
      __syncthreads();
      if (st.done) break;
    }
    cut = st.prefix;  // the lower bits left at 0 when the cut bin held a single token: the same kept set
    kept = st.kept;
  }

  // Walk token ids in ascending order, accumulating the kept mass, to the first id where it passes draw.
  const double u = uniform01(p.seed[r], p.step[r]);
  uint64_t draw = static_cast<uint64_t>(__dmul_rn(u, __ull2double_rn(kept)));
  if (draw > kept - 1) draw = kept - 1;
  if (threadIdx.x == 0) found = -1;
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  uint64_t carry = 0;
  for (int64_t base = 0; base < p.vocab; base += static_cast<int64_t>(kWalkPerThread) * blockDim.x) {
    const int64_t first = base + static_cast<int64_t>(kWalkPerThread) * threadIdx.x;
    float x[kWalkPerThread];
    if (aligned && first + kWalkPerThread <= p.vocab) {
#pragma unroll
      for (int k = 0; k < kWalkPerThread; k += 4) {
        const float4 a = *reinterpret_cast<const float4*>(row + first + k);
        x[k] = a.x, x[k + 1] = a.y, x[k + 2] = a.z, x[k + 3] = a.w;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kWalkPerThread; ++k) x[k] = first + k < p.vocab ? row[first + k] : -INFINITY;
    }
    uint64_t q[kWalkPerThread], mine = 0;
#pragma unroll
    for (int k = 0; k < kWalkPerThread; ++k) {
      q[k] = first + k < p.vocab && logit_key(x[k]) >= cut ? sample_mass(__fdiv_rn(__fsub_rn(x[k], mx), temp)) : 0;
      mine += q[k];
    }
    uint64_t tile_total;
    uint64_t acc = carry + block_exclusive_scan(mine, sum_scratch, &tile_total);
    if (acc <= draw && draw < acc + mine) {
#pragma unroll
      for (int k = 0; k < kWalkPerThread; ++k) {
        acc += q[k];
        if (acc > draw) {
          found = first + k;
          break;
        }
      }
    }
    carry += tile_total;
    if (carry > draw) break;  // the same decision in every thread: carry is block-uniform
  }
  __syncthreads();
  if (threadIdx.x == 0) p.out[r] = static_cast<int32_t>(found >= 0 ? found : am);
}

// ---- random_fill -----------------------------------------------------------------------------------------

constexpr int kFillThreads = 256;

template <class T>
__device__ __forceinline__ T store_value(float x);
template <>
__device__ __forceinline__ float store_value<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store_value<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half store_value<__half>(float x) {
  return __float2half_rn(x);
}

template <class T>
__device__ __forceinline__ T random_value(uint64_t key, int64_t i, bool ones) {
  if (ones) return store_value<T>(1.0f);
  constexpr double kHalfWidth = 0x1.1bc779ef0d4e8p-5;  // sqrt(3) * 0.02, the twin's constant
  const double u = static_cast<double>(splitmix64(key + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
  // 2u - 1 is exact, so a fused multiply-add cannot change it; the product is one rounding as on the host.
  return store_value<T>(__double2float_rn(__dmul_rn(2.0 * u - 1.0, kHalfWidth)));
}

// Each thread writes one 16-byte chunk of kVec elements per iteration; when out is not 16-byte aligned (a
// tensor inside a packed arena) every element goes scalar.
template <class T>
__global__ void __launch_bounds__(kFillThreads) random_fill_kernel(T* out, int64_t n, uint64_t key, bool ones,
                                                                   int64_t first, int64_t cols, int64_t ld) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const auto value = [&](int64_t i) { return random_value<T>(key, random_fill_index(first, cols, ld, i), ones); };
  if ((reinterpret_cast<uintptr_t>(out) & 15) != 0) {
    for (int64_t i = tid; i < n; i += stride) out[i] = value(i);
    return;
  }
  const int64_t n_chunks = (n + kVec - 1) / kVec;
  for (int64_t c = tid; c < n_chunks; c += stride) {
    const int64_t i0 = c * kVec;
    if (i0 + kVec <= n) {
      union {
        T v[kVec];
        uint4 u;
      } chunk;
#pragma unroll
      for (int k = 0; k < kVec; ++k) chunk.v[k] = value(i0 + k);
      reinterpret_cast<uint4*>(out)[c] = chunk.u;
    } else {
      for (int64_t i = i0; i < n; ++i) out[i] = value(i);
    }
  }
}

}  // namespace

void log_softmax_gather(const LogSoftmaxGatherParams& p, cudaStream_t s) {
  if (p.n_rows == 0) return;
  MLABENCH_CHECK(p.n_rows > 0 && p.n_rows < (int64_t{1} << 31) && p.vocab > 0 && p.ld >= p.vocab,
                 "log_softmax_gather: n_rows {}, vocab {}, ld {} (need 0 <= n_rows < 2^31, 0 < vocab <= ld). "
                 "HINT: ld is the row stride of logits in elements",
                 p.n_rows, p.vocab, p.ld);
  MLABENCH_CHECK(p.logits && p.targets && p.logprob && p.is_greedy,
                 "log_softmax_gather: a null pointer among logits, targets, logprob, is_greedy. HINT: all four are "
                 "device buffers of n_rows entries (logits n_rows * ld)");
  log_softmax_gather_kernel<<<static_cast<unsigned>(p.n_rows), kScoreThreads, 0, s>>>(p);
  MLABENCH_CUDA(cudaGetLastError());
}

void sample(const SampleParams& p, cudaStream_t s) {
  if (p.n_rows == 0) return;
  MLABENCH_CHECK(
      p.n_rows > 0 && p.n_rows < (int64_t{1} << 31) && p.vocab > 0 && p.vocab < (int64_t{1} << 23) && p.ld >= p.vocab,
      "sample: n_rows {}, vocab {}, ld {} (need 0 <= n_rows < 2^31, 0 < vocab <= ld, vocab < 2^23). "
      "HINT: ld is the row stride of logits; the 2^23 bound keeps a row's 2^-40 integer masses within 64 bits",
      p.n_rows, p.vocab, p.ld);
  MLABENCH_CHECK(p.logits && p.temperature && p.top_p && p.seed && p.step && p.out,
                 "sample: a null pointer among logits, temperature, top_p, seed, step, out. HINT: every per-row "
                 "array is a device buffer of n_rows entries");
  sample_kernel<<<static_cast<unsigned>(p.n_rows), kSampleThreads, 0, s>>>(p);
  MLABENCH_CUDA(cudaGetLastError());
}

void random_fill(const RandomFillParams& p, cudaStream_t s) {
  if (p.n == 0) return;
  MLABENCH_CHECK(p.n > 0 && p.out,
                 "random_fill: n = {} with out {}. HINT: pass the tensor's device "
                 "buffer and element count",
                 p.n, p.out ? "set" : "null");
  MLABENCH_CHECK(p.first >= 0 && p.cols >= 0 && (p.cols == 0 || p.ld >= p.cols),
                 "random_fill: first {}, cols {}, ld {} (need first >= 0, and ld >= cols where cols > 0). HINT: a "
                 "block of a whole tensor names its first element, its row width and the whole tensor's row stride",
                 p.first, p.cols, p.ld);
  const int64_t vec = p.out_type == DType::F32 ? 4 : 8;
  // Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
  const int64_t want = (p.n + vec * kFillThreads - 1) / (vec * kFillThreads);
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? want : 4096);
  switch (p.out_type) {
    case DType::BF16:
      random_fill_kernel<<<blocks, kFillThreads, 0, s>>>(static_cast<__nv_bfloat16*>(p.out), p.n, p.key, p.fill_ones,
                                                            p.first, p.cols, p.ld);
      break;
    case DType::F16:
      random_fill_kernel<<<blocks, kFillThreads, 0, s>>>(static_cast<__half*>(p.out), p.n, p.key, p.fill_ones,
                                                            p.first, p.cols, p.ld);
      break;
    case DType::F32:
      random_fill_kernel<<<blocks, kFillThreads, 0, s>>>(static_cast<float*>(p.out), p.n, p.key, p.fill_ones,
                                                            p.first, p.cols, p.ld);
      break;
    default:
      MLABENCH_FAIL(
          "random_fill: output dtype {} (need BF16, F16 or F32). HINT: random weights are "
          "stored in the config's torch_dtype",
          dtype_name(p.out_type));
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
