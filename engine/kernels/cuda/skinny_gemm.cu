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
// so the pairs of a decode step need no pointer arrays. Also: float32 operands (the router's GEMV; 4 a chunk), the
// product written in BF16 (act without swiglu: MLA's W_UV into o_proj's input), and a [k, n] weight form (w_kn:
// MLA's W_UK applied to the query, y = x . w, its own kernel below), so a decode layer's small products are all
// programmatic dependent launches (pdl.cuh) and no cuBLAS kernel breaks the chain.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/latent_rows.cuh"
#include "engine/kernels/cuda/norm_rows.cuh"
#include "engine/kernels/cuda/pdl.cuh"
#include "engine/kernels/cuda/weight_stream.cuh"
#include "engine/kernels/twin/checks.h"

namespace mlabench::kernels::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;

using stream::load_stream;
using stream::silu_times;
using stream::unpack_chunk;

// grid (ceil(n / R), batch) (kSwiglu: ceil(n / (R / 2))); block kThreads. M: m rounded up to a power of two (rows
// >= m are skipped). kSwiglu: the CTA's R weight rows are R / 2 gate rows and the matching R / 2 up rows. kF32:
// float32 operands (4 a chunk), else BF16 (8 a chunk). kXF32: BF16 weights with a float32 x, rounded to BF16 as it
// is read (x_f32). kNorm: x's values computed from p.norm's inputs (norm_rows.cuh) instead of read, the CTAs writing
// the norm's outputs.
template <int M, int R, bool kSwiglu, bool kF32, bool kXF32 = false, bool kNorm = false>
__global__ void __launch_bounds__(kThreads) skinny_gemm_kernel(const SkinnyGemmParams p) {
  static_assert(!kNorm || (!kXF32 && !(kSwiglu && kF32)), "the norm's form: BF16 (SwiGLU too) or float32 products");
  constexpr int kElems = kF32 ? 4 : 8;
  constexpr int64_t kEs = kF32 ? 4 : 2, kEsX = kXF32 ? 4 : kEs;
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
  const char* x = static_cast<const char*>(p.x) + b * p.stride_x * kEsX;
  const int64_t chunks = p.k / kElems;
  uint4 wv[R];
  auto load_weights = [&](const char* w, int64_t c) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = w_row(r);
      wv[r] = row >= 0 ? load_stream(reinterpret_cast<const uint4*>(w + row * p.ldw * kEs) + c)
                       : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  // Under a programmatic dependent launch (pdl.cuh) the weights of the first chunk (at k <= 2048 BF16, all of the
  // thread's weights) are requested before the wait: they depend on no earlier kernel unless an expert index picks
  // them (then only where the caller says the index is old enough: w_index_early), so their stream overlaps the
  // previous kernel's tail.
  const bool early = p.w_index == nullptr || p.w_index_early;
  auto weights_of = [&]() {
    const int64_t block = p.w_index != nullptr ? static_cast<int64_t>(p.w_index[b]) : b;
    return static_cast<const char*>(p.w) + block * p.stride_w * kEs;
  };
  const char* w = early ? weights_of() : nullptr;
  bool loaded = false;
  if (early && tid < chunks) {
    load_weights(w, tid);
    loaded = true;
  }
  // kNorm: the norm weight of the thread's first chunk, requested before the wait as well (a model weight).
  constexpr int kGroups = kElems / 4;  // 4-wide norm groups a chunk
  float4 norm_w[kGroups];
  if constexpr (kNorm)
    if (tid < chunks)
#pragma unroll
      for (int h = 0; h < kGroups; ++h) norm_w[h] = norm_rows::weight_group(p.norm, tid * kGroups + h);
  griddep_wait();
  griddep_launch_dependents();
  if (!early) w = weights_of();
  // The input norm's 1 / rms per row (the residual and delta are the previous launches' outputs: after the wait).
  float inv[M];
  if constexpr (kNorm) {
    __shared__ float sums[M][32];
    norm_rows::inv_rms<kThreads, M>(p.norm, static_cast<int>(p.m), sums, inv);
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (i < p.m) norm_rows::write_outputs<kThreads>(p.norm, i, inv[i], blockIdx.x, gridDim.x);
  }
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
      float xf[kElems];
      if constexpr (kNorm) {  // the norm's out as rms_norm writes it: float32, or rounded to BF16
#pragma unroll
        for (int h = 0; h < kGroups; ++h) {
          float o[4];
          const int64_t v = c * kGroups + h;
          norm_rows::values(p.norm, i, v, inv[i], c == tid ? norm_w[h] : norm_rows::weight_group(p.norm, v), o);
#pragma unroll
          for (int j = 0; j < 4; ++j) xf[4 * h + j] = kF32 ? o[j] : __bfloat162float(__float2bfloat16_rn(o[j]));
        }
      } else if constexpr (kXF32) {  // 8 float32 values (two 16-byte loads), each rounded to BF16
        const float4* xr = reinterpret_cast<const float4*>(x + i * p.ldx * kEsX) + 2 * c;
        const float4 lo = __ldg(xr), hi = __ldg(xr + 1);
        const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int j = 0; j < kElems; ++j) xf[j] = __bfloat162float(__float2bfloat16_rn(v[j]));
      } else {
        unpack_chunk<kF32>(__ldg(reinterpret_cast<const uint4*>(x + i * p.ldx * kEs) + c), xf);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[kElems];
        unpack_chunk<kF32>(wv[r], wf);
#pragma unroll
        for (int j = 0; j < kElems; ++j) acc[i][r] = fmaf(xf[j], wf[j], acc[i][r]);
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
      if (p.act != nullptr) {  // the product in BF16 (the launcher admits act only for BF16 operands)
        static_cast<__nv_bfloat16*>(p.act)[b * p.stride_act + i * p.ld_act + row] = __float2bfloat16_rn(s);
      } else {
        float* y = p.y2 != nullptr && row >= p.n_y ? p.y2 + i * p.ldy2 + (row - p.n_y)
                                                   : p.y + b * p.stride_y + i * p.ldy + row;
        *y = p.beta == 0.0f ? s : *y + s;
      }
    }
  }
}

// The [k, n] form (w_kn): y_b[m, n] = x_b[m, k] . w_b[k, n], BF16. grid (ceil(n / 128), batch), block 256 = 16
// column lanes x 16 k groups: a thread owns 8 consecutive outputs (one 16-byte chunk of a weight row) and the rows
// g, g + 16, ... of k, kPre of them loaded at once (all of them at MLA's k = 128, before the PDL wait); the 16
// groups' sums are added in group order through shared memory.
constexpr int kKnCols = 16, kKnGroups = kThreads / kKnCols, kKnPre = 8;
// With p.append (the grid's last row, blockIdx.y == batch): latent_append's rows instead, CTA x the rows x,
// x + gridDim.x, ... (latent_rows.cuh), after the PDL wait (the latent row and q come from the launch before).
template <int M>
__global__ void __launch_bounds__(kThreads) skinny_gemm_kn_kernel(const SkinnyGemmParams p) {
  if (p.append.latent != nullptr && blockIdx.y == p.batch) {
    __shared__ float warp_sums[32];
    griddep_wait();
    griddep_launch_dependents();
    for (int64_t r = blockIdx.x; r < p.append.n_rows; r += gridDim.x) latent_rows::append_row(p.append, r, warp_sums);
    return;
  }
  __shared__ float red[kKnGroups][M][kKnCols * 8];
  const int cx = threadIdx.x % kKnCols, grp = threadIdx.x / kKnCols;
  const int64_t b = blockIdx.y;
  const int64_t col0 = (static_cast<int64_t>(blockIdx.x) * kKnCols + cx) * 8;
  const bool active = col0 < p.n;  // n % 8 == 0 (launcher)
  const auto* w = static_cast<const uint16_t*>(p.w) + b * p.stride_w;
  uint4 wv[kKnPre];
  auto load_rows = [&](int64_t r0) {
#pragma unroll
    for (int j = 0; j < kKnPre; ++j) {
      const int64_t r = r0 + static_cast<int64_t>(j) * kKnGroups;
      wv[j] = active && r < p.k ? load_stream(reinterpret_cast<const uint4*>(w + r * p.ldw + col0))
                                : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  load_rows(grp);  // no earlier kernel writes the weights: before the PDL wait (pdl.cuh)
  griddep_wait();
  griddep_launch_dependents();
  float acc[M][8];
#pragma unroll
  for (int i = 0; i < M; ++i)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i][e] = 0.0f;
  for (int64_t r0 = grp; r0 < p.k; r0 += static_cast<int64_t>(kKnPre) * kKnGroups) {
    if (r0 != grp) load_rows(r0);
#pragma unroll
    for (int j = 0; j < kKnPre; ++j) {
      const int64_t r = r0 + static_cast<int64_t>(j) * kKnGroups;
      if (r >= p.k) break;
      float wf[8];
      unpack_chunk<false>(wv[j], wf);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        if (i >= p.m) break;
        const int64_t at = b * p.stride_x + i * p.ldx + r;
        const float xv = p.x_f32 ? __bfloat162float(__float2bfloat16_rn(__ldg(static_cast<const float*>(p.x) + at)))
                                 : __uint_as_float(static_cast<uint32_t>(__ldg(static_cast<const uint16_t*>(p.x) + at))
                                                   << 16);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[i][e] = fmaf(xv, wf[e], acc[i][e]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < M; ++i)
#pragma unroll
    for (int e = 0; e < 8; ++e) red[grp][i][cx * 8 + e] = acc[i][e];
  __syncthreads();
  for (int t = threadIdx.x; t < M * kKnCols * 8; t += kThreads) {
    const int i = t / (kKnCols * 8), c = t % (kKnCols * 8);
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kKnCols * 8 + c;
    if (i >= p.m || col >= p.n) continue;
    float s = 0.0f;
    for (int g = 0; g < kKnGroups; ++g) s += red[g][i][c];
    if (p.act != nullptr)
      static_cast<__nv_bfloat16*>(p.act)[b * p.stride_act + i * p.ld_act + col] = __float2bfloat16_rn(s);
    else
      p.y[b * p.stride_y + i * p.ldy + col] = s;
  }
}

template <int M, bool kSwiglu, bool kF32, bool kXF32 = false, bool kNorm = false>
void launch_rows(const SkinnyGemmParams& p, cudaStream_t s) {
  // The most weight rows per CTA that still gives two CTAs per SM: R weight loads in flight per thread (SwiGLU:
  // at least a gate and an up row).
  const int64_t w_rows = kSwiglu ? 2 * p.n : p.n, min_rows = kSwiglu ? 2 : 1;
  int rows = M >= 8 ? 4 : 8;  // m x R sums stay within 32 registers a thread (16 rows: 160 registers, one CTA a SM)
  while (rows > min_rows && (w_rows + rows - 1) / rows * p.batch < 2 * gpu::device_sm_count()) rows /= 2;
  const dim3 block(kThreads);
  auto grid = [&](int r) {
    const int64_t per_cta = kSwiglu ? r / 2 : r;
    return dim3(static_cast<unsigned>((p.n + per_cta - 1) / per_cta), static_cast<unsigned>(p.batch));
  };
  switch (rows) {
    case 8:
      if constexpr (M < 8)
        launch_pdl(skinny_gemm_kernel<M, 8, kSwiglu, kF32, kXF32, kNorm>, grid(8), block, 0, s, p);
      break;
    case 4: launch_pdl(skinny_gemm_kernel<M, 4, kSwiglu, kF32, kXF32, kNorm>, grid(4), block, 0, s, p); break;
    case 2: launch_pdl(skinny_gemm_kernel<M, 2, kSwiglu, kF32, kXF32, kNorm>, grid(2), block, 0, s, p); break;
    default:
      if constexpr (!kSwiglu)
        launch_pdl(skinny_gemm_kernel<M, 1, false, kF32, kXF32, kNorm>, grid(1), block, 0, s, p);
      break;
  }
}

template <int M>
void launch_epilogue(const SkinnyGemmParams& p, cudaStream_t s) {
  if (p.w_kn) {
    if constexpr (M <= kSkinnyKnMaxRows) {
      const dim3 grid(static_cast<unsigned>((p.n + kKnCols * 8 - 1) / (kKnCols * 8)),
                      static_cast<unsigned>(p.batch + (p.append.latent != nullptr ? 1 : 0)));
      launch_pdl(skinny_gemm_kn_kernel<M>, grid, dim3(kThreads), 0, s, p);
    }
  } else if (p.norm.weight != nullptr) {  // the input norm's form: up to kSkinnyNormMaxRows rows
    if constexpr (M <= kSkinnyNormMaxRows) {
      if (p.swiglu)
        launch_rows<M, true, false, false, true>(p, s);
      else if (p.dtype == DType::F32)
        launch_rows<M, false, true, false, true>(p, s);
      else
        launch_rows<M, false, false, false, true>(p, s);
    }
  } else if (p.swiglu) {
    launch_rows<M, true, false>(p, s);
  } else if (p.dtype == DType::F32) {
    launch_rows<M, false, true>(p, s);
  } else if (p.x_f32) {
    launch_rows<M, false, false, true>(p, s);
  } else {
    launch_rows<M, false, false>(p, s);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool skinny_gemm_supported(const SkinnyGemmParams& p) {
  if (p.norm.weight != nullptr) {  // the input norm's form: BF16 or float32, norm_rows.cuh's 4-wide groups
    const RmsNormParams& n = p.norm;
    const bool plain = p.batch == 1 && !p.w_kn && !p.x_f32 && p.w_index == nullptr && p.m <= kSkinnyNormMaxRows &&
                       (p.dtype == DType::BF16 || (p.dtype == DType::F32 && !p.swiglu));
    if (!plain || !checks::is_input_norm_of(n, p.x, p.ldx, p.dtype, p.m, p.k) || !rms_norm_in_groups_of_4(n))
      return false;
    SkinnyGemmParams plain_form = p;  // the rest as the form that reads x
    plain_form.norm = {};
    return skinny_gemm_supported(plain_form);
  }
  // latent_append beside the product: the w_kn form's extra grid row, 256 threads a row as latent_append's.
  if (p.append.latent != nullptr && (!p.w_kn || p.batch + 1 > 65535)) return false;
  if (p.w_kn)  // BF16 [k, n] weights: 16-byte chunks of a row; x read an element at a time
    return p.dtype == DType::BF16 && p.m >= 1 && p.m <= kSkinnyKnMaxRows && !p.swiglu && p.w_index == nullptr &&
           p.n % 8 == 0 && p.ldw % 8 == 0 && p.stride_w % 8 == 0 && aligned16(p.w) && p.batch <= 65535;
  // BF16, or float32 without an epilogue or BF16 output: whole 16-byte chunks of x and w rows. A float32 x for
  // BF16 weights (x_f32, no SwiGLU): 8 values a chunk in two 16-byte loads.
  const int64_t per_chunk = p.dtype == DType::F32 ? 4 : 8, x_align = p.x_f32 ? 4 : per_chunk;
  const bool dtype_ok = (p.dtype == DType::BF16 && !(p.x_f32 && p.swiglu)) ||
                        (p.dtype == DType::F32 && !p.swiglu && p.act == nullptr && !p.x_f32);
  return dtype_ok && p.m >= 1 && p.m <= kSkinnyMaxRows && p.k % per_chunk == 0 && p.ldx % x_align == 0 &&
         p.ldw % per_chunk == 0 && p.stride_x % x_align == 0 && p.stride_w % per_chunk == 0 && aligned16(p.x) &&
         aligned16(p.w) && p.batch <= 65535;
}

void skinny_gemm(const SkinnyGemmParams& p, cudaStream_t s) {
  checks::check_skinny_gemm(p);
  if (p.m == 0) return;
  MLABENCH_CHECK(skinny_gemm_supported(p),
                 "skinny_gemm: dtype {}, m {}, k {}, n {}, ldx {}, ldw {}, strides {}/{}, batch {}, w_kn {}, or x / w "
                 "not 16-byte aligned. HINT: ask skinny_gemm_supported first and take cuBLAS where it says no",
                 dtype_name(p.dtype), p.m, p.k, p.n, p.ldx, p.ldw, p.stride_x, p.stride_w, p.batch, p.w_kn);
  switch (std::bit_ceil(static_cast<uint64_t>(p.m))) {
    case 1: launch_epilogue<1>(p, s); break;
    case 2: launch_epilogue<2>(p, s); break;
    case 4: launch_epilogue<4>(p, s); break;
    default: launch_epilogue<8>(p, s); break;
  }
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace mlabench::kernels::cuda
