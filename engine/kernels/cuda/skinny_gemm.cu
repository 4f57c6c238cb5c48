// skinny_gemm: y_b[m, n] (+)= x_b[m, k] . w_b[n, k]^T for m <= 8 rows, the GEMMs of a decode step at small batches.
// Twin: twin::skinny_gemm (engine/kernels/twin/skinny_gemm.cpp).
//
// At m rows a GEMM reads n x k weights for 2 m n k FLOPs: memory-bound, so the kernel is built to stream the
// weights at the copy bandwidth (cuBLAS reached 40-75% of it on V2-Lite's batch-1 projections, H200,
// docs/perf-notes.md issue 16 round 2):
//   - a CTA of 256 threads owns R consecutive output features (R = 8, 4, 2 or 1: as many as keep >= 2 CTAs per SM)
//     and splits k across its threads in 16-byte chunks (8 BF16), so each thread has R independent 16-byte weight
//     loads in flight (non-coherent, no L1 allocation: every weight is read once) before it does any math;
//   - the m rows of x (L2-resident, reused by every CTA) are read per chunk and applied to all R weight chunks;
//   - the m x R partial sums are reduced across the warp by shuffles, then across the 8 warps in shared memory in
//     warp order (deterministic), and one thread per output writes y (beta 1 adds the old value).
// SwiGLU epilogue: a CTA's rows are gate rows and the matching up rows, and the thread that sums output j writes
// silu(gate) * up in BF16 (a decode step's SwiGLU without the float32 [m, 2n] round trip or a silu_mul launch).
// Problems of a batch are grid y; w_index gives each its weight block (a MoE layer's expert per token-expert pair),
// so the pairs of a decode step need no pointer arrays.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "engine/core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void unpack_bf16x8(const uint4& v, float (&f)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    f[2 * j] = __uint_as_float(u[j] << 16);
    f[2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
  }
}

// silu(g) * u exactly as silu_mul's kernel and twin compute it.
__device__ __forceinline__ float silu_times(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// grid (ceil(n / R), batch) (kSwiglu: ceil(n / (R / 2))); block kThreads. M: m rounded up to a power of two (rows
// >= m are skipped). kSwiglu: the CTA's R weight rows are R / 2 gate rows and the matching R / 2 up rows.
template <int M, int R, bool kSwiglu>
__global__ void __launch_bounds__(kThreads) skinny_gemm_kernel(const SkinnyGemmParams p) {
  __shared__ float red[kWarps][M * R];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t b = blockIdx.y;
  // Weight row of the CTA's r-th row (n: out of range).
  constexpr int kHalf = R / 2;
  auto w_row = [&](int r) -> int64_t {
    if constexpr (kSwiglu) {
      const int64_t j = static_cast<int64_t>(blockIdx.x) * kHalf + (r % kHalf);
      return j < p.n ? (r < kHalf ? j : p.n + j) : -1;
    } else {
      const int64_t j = static_cast<int64_t>(blockIdx.x) * R + r;
      return j < p.n ? j : -1;
    }
  };
  const auto* x = static_cast<const uint16_t*>(p.x) + b * p.stride_x;
  const int64_t chunks = p.k / 8;
  uint4 wv[R];
  auto load_weights = [&](const uint16_t* w, int64_t c) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = w_row(r);
      wv[r] = row >= 0 ? load_stream(reinterpret_cast<const uint4*>(w + row * p.ldw) + c) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  // Under a programmatic dependent launch (pdl.cuh) the weights of the first chunk (at k <= 2048, all of the
  // thread's weights) are requested before the wait: they depend on no earlier kernel unless an expert index picks
  // them, so their stream overlaps the previous kernel's tail.
  const uint16_t* w = static_cast<const uint16_t*>(p.w) + b * p.stride_w;
  bool loaded = false;
  if (p.w_index == nullptr && tid < chunks) {
    load_weights(w, tid);
    loaded = true;
  }
  griddep_wait();
  griddep_launch_dependents();
  if (p.w_index != nullptr) w = static_cast<const uint16_t*>(p.w) + p.w_index[b] * p.stride_w;
  float acc[M][R];
#pragma unroll
  for (int i = 0; i < M; ++i)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[i][r] = 0.0f;

  for (int64_t c = tid; c < chunks; c += kThreads) {
    if (!loaded) load_weights(w, c);
    loaded = false;
#pragma unroll
    for (int i = 0; i < M; ++i) {
      if (i >= p.m) break;
      float xf[8];
      unpack_bf16x8(__ldg(reinterpret_cast<const uint4*>(x + i * p.ldx) + c), xf);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[8];
        unpack_bf16x8(wv[r], wf);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][r] = fmaf(xf[j], wf[j], acc[i][r]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < M; ++i)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float v = acc[i][r];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) red[warp][i * R + r] = v;
    }
  __syncthreads();
  if constexpr (kSwiglu) {
    if (tid < M * kHalf) {
      const int i = tid / kHalf, r = tid % kHalf;
      const int64_t j = static_cast<int64_t>(blockIdx.x) * kHalf + r;
      if (i < p.m && j < p.n) {
        float g = 0.0f, u = 0.0f;
#pragma unroll
        for (int v = 0; v < kWarps; ++v) {
          g += red[v][i * R + r];
          u += red[v][i * R + kHalf + r];
        }
        static_cast<__nv_bfloat16*>(p.act)[b * p.stride_act + i * p.ld_act + j] = __float2bfloat16_rn(silu_times(g, u));
      }
    }
  } else if (tid < M * R) {
    const int i = tid / R, r = tid % R;
    const int64_t row = w_row(r);
    if (i < p.m && row >= 0) {
      float s = 0.0f;
#pragma unroll
      for (int v = 0; v < kWarps; ++v) s += red[v][tid];
      float* y = p.y + b * p.stride_y + i * p.ldy + row;
      *y = p.beta == 0.0f ? s : *y + s;
    }
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    return sms > 0 ? sms : 132;
  }();
  return n;
}

template <int M, bool kSwiglu>
void launch_rows(const SkinnyGemmParams& p, cudaStream_t s) {
  // The most weight rows per CTA that still gives two CTAs per SM: R weight loads in flight per thread (SwiGLU:
  // at least a gate and an up row).
  const int64_t w_rows = kSwiglu ? 2 * p.n : p.n, min_rows = kSwiglu ? 2 : 1;
  int rows = M >= 8 ? 4 : 8;  // m x R sums stay within 32 registers a thread
  while (rows > min_rows && (w_rows + rows - 1) / rows * p.batch < 2 * sm_count()) rows /= 2;
  const dim3 block(kThreads);
  auto grid = [&](int r) {
    const int64_t per_cta = kSwiglu ? r / 2 : r;
    return dim3(static_cast<unsigned>((p.n + per_cta - 1) / per_cta), static_cast<unsigned>(p.batch));
  };
  switch (rows) {
    case 8:
      if constexpr (M < 8) launch_pdl(skinny_gemm_kernel<M, 8, kSwiglu>, grid(8), block, 0, s, p);
      break;
    case 4: launch_pdl(skinny_gemm_kernel<M, 4, kSwiglu>, grid(4), block, 0, s, p); break;
    case 2: launch_pdl(skinny_gemm_kernel<M, 2, kSwiglu>, grid(2), block, 0, s, p); break;
    default:
      if constexpr (!kSwiglu) launch_pdl(skinny_gemm_kernel<M, 1, false>, grid(1), block, 0, s, p);
      break;
  }
}

template <int M>
void launch_epilogue(const SkinnyGemmParams& p, cudaStream_t s) {
  if (p.swiglu)
    launch_rows<M, true>(p, s);
  else
    launch_rows<M, false>(p, s);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool skinny_gemm_supported(const SkinnyGemmParams& p) {
  return p.dtype == DType::BF16 && p.m >= 1 && p.m <= kSkinnyMaxRows && p.k % 8 == 0 && p.ldx % 8 == 0 &&
         p.ldw % 8 == 0 && p.stride_x % 8 == 0 && p.stride_w % 8 == 0 && aligned16(p.x) && aligned16(p.w) &&
         p.batch <= 65535;
}

void skinny_gemm(const SkinnyGemmParams& p, cudaStream_t s) {
  checks::check_skinny_gemm(p);
  if (p.m == 0) return;
  MLABENCH_CHECK(skinny_gemm_supported(p),
                 "skinny_gemm: dtype {}, m {}, k {}, ldx {}, ldw {}, strides {}/{}, batch {}, or x / w not 16-byte "
                 "aligned. HINT: ask skinny_gemm_supported first and take cuBLAS where it says no",
                 dtype_name(p.dtype), p.m, p.k, p.ldx, p.ldw, p.stride_x, p.stride_w, p.batch);
  switch (std::bit_ceil(static_cast<uint64_t>(p.m))) {
    case 1: launch_epilogue<1>(p, s); break;
    case 2: launch_epilogue<2>(p, s); break;
    case 4: launch_epilogue<4>(p, s); break;
    default: launch_epilogue<8>(p, s); break;
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
