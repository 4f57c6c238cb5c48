// FP8 GEMMs of the GPU engine's projections (issue 20; --weights-dtype fp8): the activation rows quantised to e4m3
// in 1 x 128 groups (kernels::cuda::fp8_quantize_rows, the scales laid out as the chosen GEMM reads them) into
// scratch sized once, then skinny_gemm_fp8 (up to 16 rows; at one row in one launch, quantising x itself, where
// x's codes fit its shared memory) or the FP8 grouped GEMM as one expert (cuBLASLt's block-scaled GEMM under
// MLABENCH_FP8_GEMM=cublaslt). The arithmetic is the CPU engine's W8A8 (cpu::linear with
// F8 weights): each group of 128 activations scaled by its amax / 448 and rounded to e4m3. The grouped GEMM sums a
// group's products in float32 (mma.sync) for float32 activations and on QGMMA for BF16 ones (fp8_exact_sums).
#pragma once

#include <cstdint>

#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"

namespace mlabench::gpu {

struct DeviceMat;

/// MLABENCH_FP8_GEMM: auto (unset: QGMMA for BF16 activations, the mma.sync kernel's float32 group sums for
/// float32 ones), mma (the mma.sync kernel always, for A/B runs) or cublaslt (dense projections through cuBLASLt's
/// block-scaled GEMM; off the default path, docs/engine.md). Other values are refused.
enum class Fp8GemmChoice { AUTO, MMA, CUBLASLT };
Fp8GemmChoice fp8_gemm_choice();
/// MLABENCH_FP8_FUSED_QUANT: 1 (unset) lets skinny_gemm_fp8 quantise its own rows where they fit its shared memory
/// (the fused form: one launch a decode projection instead of two), 0 keeps fp8_quantize_rows' launch; others refused.
bool fp8_fused_quantise();
/// MoeGroupedGemmParams::fp8_exact_sums for activations of this dtype under fp8_gemm_choice().
bool fp8_exact_sums(DType activations);

class Fp8Linear {
 public:
  /// Scratch for products of up to max_rows rows and max_k columns of x.
  Fp8Linear(int64_t max_rows, int64_t max_k);
  /// y[m, n] (y_type F32 or BF16, ldy) = x[m, k] (x_type F32 or BF16, ldx) . w[n, k]^T, w e4m3 with its 128 x 128
  /// scale grid (rows of fp8_weight_scale_ld(k)). Enqueued on blas's stream; capturable.
  void run(Blas& blas, void* y, DType y_type, int64_t ldy, const void* x, DType x_type, int64_t ldx, const uint8_t* w,
           const float* w_scale, int64_t m, int64_t n, int64_t k);
  /// The same for a DeviceMat (FP8), y[m, w.rows] in float32: a stack whose parts keep their own grids (split_rows)
  /// runs as two GEMMs into the two column ranges of y.
  void run(Blas& blas, float* y, int64_t ldy, const void* x, DType x_type, int64_t ldx, const DeviceMat& w, int64_t m);
  /// The same into two outputs, columns [0, n_y) of the product into y and [n_y, w.rows) into y2, in one launch of
  /// skinny_gemm_fp8 (its split output) where that kernel takes the rows and w is one grid (no split_rows); false,
  /// nothing enqueued, where it does not.
  bool run_split(Blas& blas, float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const void* x,
                 DType x_type, int64_t ldx, const DeviceMat& w, int64_t m);
  /// The same product (y2: split at n_y, or null) of the rows `norm` makes (x = norm.out) in one launch of
  /// skinny_gemm_fp8's fused form that computes the norm itself (Fp8SkinnyGemmParams::norm) and writes its outputs;
  /// at the fused form's rows only (kFusedMaxRows). False, nothing enqueued, where that launch does not take it.
  bool run_normed(Blas& blas, float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y,
                  const kernels::RmsNormParams& norm, const DeviceMat& w, int64_t m);
  uint64_t bytes() const { return q_.bytes() + s_.bytes(); }

 private:
  // SKINNY_FUSED: skinny_gemm_fp8's fused form, which quantises x itself (quantize does nothing).
  enum class Path { SKINNY, SKINNY_FUSED, GROUPED, CUBLASLT };
  static constexpr int64_t kFusedMaxRows = 1;  // rows up to which SKINNY_FUSED pays (path() says why)
  Path path(DType y_type, const void* x, DType x_type, int64_t ldx, const uint8_t* w, int64_t m, int64_t n,
            int64_t k) const;
  kernels::Fp8SkinnyGemmParams skinny_params(float* y, int64_t ldy, const uint8_t* w, const float* w_scale, int64_t m,
                                             int64_t n, int64_t k) const;
  // The skinny kernel's fused form (x quantised by the kernel).
  static kernels::Fp8SkinnyGemmParams fused_params(float* y, int64_t ldy, const void* x, DType x_type, int64_t ldx,
                                                   const uint8_t* w, const float* w_scale, int64_t m, int64_t n,
                                                   int64_t k);
  void quantize(Blas& blas, Path path, const void* x, DType x_type, int64_t ldx, int64_t m, int64_t k);
  void gemm(Blas& blas, Path path, const void* x, DType x_type, int64_t ldx, void* y, DType y_type, int64_t ldy,
            const uint8_t* w, const float* w_scale, int64_t m, int64_t n, int64_t k);

  int64_t max_rows_, max_k_;
  DeviceBuffer q_, s_;  // codes [max_rows, ld]; scales [ceil(max_k / 128), max_rows]
};

}  // namespace mlabench::gpu
