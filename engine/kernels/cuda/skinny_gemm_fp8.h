// The FP8 (e4m3, W8A8, DeepSeek-V3 block scales) few-row GEMM of decode: skinny_gemm's weight-streaming shape for
// the weights `--weights-dtype fp8` holds (engine/core/fp8.h), fed by fp8_quantize_rows (groups-major scales, as
// Blas::linear_fp8 reads them). Kernel: engine/kernels/cuda/skinny_gemm_fp8.cu; twin and parameter check:
// engine/kernels/twin/skinny_gemm_fp8.cpp. The twin compiles in every build; the launcher only where the build has
// nvcc (MLABENCH_HAS_CUDA), with kernels.h's conventions: no synchronisation, no allocation, graph-capturable.
#pragma once

#include <cstdint>

#include "engine/core/dtype.h"
#include "engine/kernels/kernel_params.h"

namespace mlabench::kernels {

/// y [m, n] (float32, ldy) = the W8A8 product of xq [m, k] (e4m3, ld_x) and w [n, k] (e4m3, ld_w), for m <= 16:
///   y[r, j] = sum_g x_scale[g * x_scale_group_stride + r] * w_scale[(j / 128) * w_scale_ld + g]
///                   * sum_{c in group g} e4m3(xq[r, c]) * e4m3(w[j, c]),
/// g over the ceil(k / 128) groups of 128 k values (the last one shorter). x_scale is fp8_quantize_rows's output
/// in its groups-major layout (scale_row_stride 1, scale_group_stride >= m); w_scale is the weight's 128 x 128
/// block grid [ceil(n / 128), w_scale_ld >= ceil(k / 128)] (the engine's w_scale_ld is fp8_weight_scale_ld(k): its
/// padding holds no scale and is never read). Each group's products are summed in float32 (every e4m3 product is
/// exact in float32), that sum is multiplied by (x_scale * w_scale), and the terms are added over the groups.
/// k must be a multiple of 16 (e4m3 rows are read 16 bytes at a time). y's columns past n are not written. With y2
/// set the columns from n_y on are written to y2 instead (the same sums: one launch for two projections).
///
/// Fused form: x set and xq, x_scale null. x [m, k] (x_type F32 or BF16, ld_x elements) is quantised by the product
/// itself, exactly as fp8_quantize_rows quantises it (the same codes and scales, bit for bit), so y is the two-launch
/// form's y; the kernel does it once a CTA into shared memory, where it fits (skinny_gemm_fp8_supported), which
/// saves decode a launch and a round trip of the codes per projection. x_scale_group_stride is then unused.
struct Fp8SkinnyGemmParams {
  float* y = nullptr;
  int64_t ldy = 0;
  const uint8_t* xq = nullptr;
  int64_t ld_x = 0;
  const float* x_scale = nullptr;
  int64_t x_scale_group_stride = 0;
  const void* x = nullptr;  // the fused form's unquantised rows (ld_x elements of x_type)
  DType x_type = DType::F32;
  const uint8_t* w = nullptr;
  int64_t ld_w = 0;
  const float* w_scale = nullptr;
  int64_t w_scale_ld = 0;
  int64_t m = 0, n = 0, k = 0;
  // Split output (two projections of one x over adjacent weight rows, e.g. MLA's q_proj and kv_a_proj): where y2 is
  // set, columns [0, n_y) go to y (ldy >= n_y) and columns [n_y, n) to y2 (ldy2 >= n - n_y), y2[i, j - n_y].
  float* y2 = nullptr;
  int64_t ldy2 = 0;
  int64_t n_y = 0;
  // The fused form with the input's RMSNorm in the same launch (norm.weight set): x is norm.out (ld_x = norm.ld_out,
  // x_type = norm.out_type, m = norm.n_rows, k = norm.dim) and its values are computed in every CTA from the norm's
  // inputs, as rms_norm computes them (bit for bit), then quantised as x would be; the CTAs write the norm's outputs
  // (SkinnyGemmParams::norm has the contract).
  RmsNormParams norm{};
};

/// Rows up to which skinny_gemm_fp8 runs (the rows of x are the n8 side of one or two tensor-core tiles).
inline constexpr int64_t kSkinnyFp8MaxRows = 16;

namespace checks {
/// What twin and kernel both accept (throws Error with a HINT otherwise): 0 <= m <= 16 (0: nothing to do), n > 0,
/// k > 0 a multiple of 16, ld_x, ld_w >= k, ldy >= n, x_scale_group_stride >= m (unused with one group or fused),
/// w_scale_ld >= ceil(k / 128), pointers set: xq and x_scale, or (fused) x of type F32 or BF16 without them; with
/// y2, 0 < n_y < n, ldy >= n_y and ldy2 >= n - n_y (without it, ldy >= n).
void check_skinny_gemm_fp8(const Fp8SkinnyGemmParams& p);
}  // namespace checks

namespace twin {
/// Plain loops: per output, per group a float32 sum over k ascending of e4m3(x) * e4m3(w), times
/// (x_scale * w_scale), added to a float32 accumulator in group order (no FMA contraction in the host build). The
/// fused form quantises x with twin::fp8_quantize_rows first.
void skinny_gemm_fp8(const Fp8SkinnyGemmParams& p);
}  // namespace twin

}  // namespace mlabench::kernels

#if MLABENCH_HAS_CUDA
#include <cuda_runtime_api.h>

namespace mlabench::kernels::cuda {

/// Where skinny_gemm_fp8 runs: the check above passes with 1 <= m <= 16, ld_x and ld_w multiples of 16, xq and w
/// 16-byte aligned, and the scales of a CTA fit its shared memory (k up to about 104,000 at 1-8 rows, 58,000 at
/// 9-16); the fused form where the m x k codes fit beside them in 48 KB (m x k up to about 45,000: one row at
/// k <= 37,000, 4 rows at V2-Lite's 10,944, 16 rows at k <= 2,816), any ld_x >= k and alignment of x. Elsewhere
/// the caller quantises first or takes Blas::linear_fp8.
bool skinny_gemm_fp8_supported(const Fp8SkinnyGemmParams& p);
/// Launches the kernel (a programmatic dependent launch where enabled, pdl.cuh); throws where the parameters fail
/// the check or skinny_gemm_fp8_supported.
void skinny_gemm_fp8(const Fp8SkinnyGemmParams& p, cudaStream_t s);

}  // namespace mlabench::kernels::cuda
#endif
