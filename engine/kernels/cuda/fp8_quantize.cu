// The FP8 quantisers (issue 20): activation rows in 1 x 128 groups (fp8_quantize_rows, before every FP8 GEMM) and
// weights in 128 x 128 blocks (fp8_quantize_blocks, for weights generated on the device). Their twins, which define
// the results bit for bit, are in engine/kernels/twin/fp8_quantize.cpp, and so are the parameter checks both share.
//
// Bit-exactness with the twins rests on three things: the amax is a max (exact in any order); the scale and the
// quotient are IEEE divisions (__fdiv_rn: no reciprocal, no flush of denormals, which the scale of a tiny group
// is); the conversion is cvt.rn.satfinite.e4m3x2.f32 (__nv_cvt_float_to_fp8 with __NV_SATFINITE on sm_89+): round
// to nearest even, finite magnitudes past 448 to 448, which is f32_to_e4m3. NaN is the one case decided here and not
// by the instruction: the GPU's division returns a canonical NaN whose sign is not the input's, so a NaN quotient is
// coded 0x7f with the sign of x, as the twin does (tests/kernels/test_cuda_fp8.cpp checks all of it, ties, e4m3
// denormals and saturation included).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/fp8_device.cuh"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/pdl.cuh"

namespace mlabench::kernels {

namespace checks {
// Defined in engine/kernels/twin/fp8_quantize.cpp beside the twins, so kernel and twin refuse the same inputs.
void check_fp8_quantize_rows(const Fp8QuantizeRowsParams& p);
void check_fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p);
}  // namespace checks

namespace cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kBlock = static_cast<int>(kFp8Block);  // 128 values a group, 128 x 128 a weight block
constexpr int kThreads = 256;

template <bool kBf16>
__device__ __forceinline__ float load_value(const void* base, int64_t i) {
  if constexpr (kBf16) {
    return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16);
  } else {
    return static_cast<const float*>(base)[i];
  }
}

using fp8::block_scale;
using fp8::quantize;

// One warp per (row, group) (fp8::quantize_group: fmaxf skips a NaN as fake_quantize_fp8_row's std::max does).
template <bool kBf16>
__global__ void __launch_bounds__(kThreads) fp8_quantize_rows_kernel(Fp8QuantizeRowsParams p) {
  griddep_wait();
  griddep_launch_dependents();
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t groups = (p.k + kBlock - 1) / kBlock, items = p.rows * groups;
  const int64_t warps = int64_t{gridDim.x} * (kThreads / kWarp);
  const int64_t es = kBf16 ? 2 : 4;
  for (int64_t item = int64_t{blockIdx.x} * (kThreads / kWarp) + threadIdx.x / kWarp; item < items; item += warps) {
    const int64_t r = item / groups, g = item % groups;
    fp8::quantize_group<kBf16>(static_cast<const char*>(p.x) + r * p.ld_x * es, p.k, g, lane, p.q + r * p.ld_q,
                               p.scale + r * p.scale_row_stride + g * p.scale_group_stride);
  }
}

// One CTA per 128 x 128 block (grid-stride over the blocks): thread t reads column t % 128 of rows t / 128, + 2,
// + 4, ... twice, once for the amax and once to write the codes (the second pass hits L2: a block is 64 KB at
// most). Threads past the weight's right or bottom edge contribute nothing.
template <bool kBf16>
__global__ void __launch_bounds__(kThreads) fp8_quantize_blocks_kernel(Fp8QuantizeBlocksParams p) {
  griddep_wait();
  griddep_launch_dependents();
  constexpr int kRowsPerPass = kThreads / kBlock;
  __shared__ float warps_amax[kThreads / kWarp];
  const int col = static_cast<int>(threadIdx.x) % kBlock, row = static_cast<int>(threadIdx.x) / kBlock;
  const int64_t nb = (p.n + kBlock - 1) / kBlock, kb = (p.k + kBlock - 1) / kBlock;
  for (int64_t b = blockIdx.x; b < nb * kb; b += gridDim.x) {
    const int64_t bn = b / kb, bk = b % kb, c = bk * kBlock + col;
    const int64_t r1 = (bn + 1) * kBlock < p.n ? (bn + 1) * kBlock : p.n;
    float amax = 0.0f;
    if (c < p.k)
      for (int64_t r = bn * kBlock + row; r < r1; r += kRowsPerPass)
        amax = fmaxf(amax, fabsf(load_value<kBf16>(p.w, r * p.ld_w + c)));
    amax = fp8::warp_amax(amax);
    if (threadIdx.x % kWarp == 0) warps_amax[threadIdx.x / kWarp] = amax;
    __syncthreads();
    amax = warps_amax[0];
#pragma unroll
    for (int i = 1; i < kThreads / kWarp; ++i) amax = fmaxf(amax, warps_amax[i]);
    __syncthreads();  // warps_amax is rewritten by the next block of the loop
    const float s = block_scale(amax);
    if (threadIdx.x == 0) p.scale_inv[bn * p.scale_ld + bk] = s;
    if (c < p.k)
      for (int64_t r = bn * kBlock + row; r < r1; r += kRowsPerPass)
        p.q[r * p.ld_q + c] = quantize(load_value<kBf16>(p.w, r * p.ld_w + c), s);
  }
}

// Enough CTAs to fill an H100 several times over; the grid-stride loops take the rest.
constexpr int64_t kMaxCtas = int64_t{132} * 16;

}  // namespace

void fp8_quantize_rows(const Fp8QuantizeRowsParams& p, cudaStream_t s) {
  checks::check_fp8_quantize_rows(p);
  if (p.rows == 0) return;
  const int64_t items = p.rows * ((p.k + kBlock - 1) / kBlock);
  const auto ctas = static_cast<unsigned>(std::min(kMaxCtas, (items + kThreads / kWarp - 1) / (kThreads / kWarp)));
  if (p.x_type == DType::BF16)
    launch_pdl(fp8_quantize_rows_kernel<true>, dim3(ctas), dim3(kThreads), 0, s, p);
  else
    launch_pdl(fp8_quantize_rows_kernel<false>, dim3(ctas), dim3(kThreads), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

void fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p, cudaStream_t s) {
  checks::check_fp8_quantize_blocks(p);
  if (p.n == 0) return;
  const int64_t blocks = ((p.n + kBlock - 1) / kBlock) * ((p.k + kBlock - 1) / kBlock);
  const auto ctas = static_cast<unsigned>(std::min(kMaxCtas, blocks));
  if (p.w_type == DType::BF16)
    launch_pdl(fp8_quantize_blocks_kernel<true>, dim3(ctas), dim3(kThreads), 0, s, p);
  else
    launch_pdl(fp8_quantize_blocks_kernel<false>, dim3(ctas), dim3(kThreads), 0, s, p);
  MLABENCH_CUDA(cudaGetLastError());
}

}  // namespace cuda
}  // namespace mlabench::kernels
