// cuBLAS GEMMs of the GPU engine, phrased row-major as the model code thinks of them (PyTorch Linear weights
// [out, in]). Operands in the weights' dtype (BF16, F16 or F32), output and accumulation in float32
// (CUBLAS_COMPUTE_32F; F32 weights run true FP32, never TF32). Every call is asynchronous on the handle's stream
// and capturable in a CUDA graph (the workspace is fixed at construction).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/kernels/cuda/cuda_check.h"

namespace mlabench::kernels {
struct SkinnyGemmParams;
}

namespace mlabench::gpu {

class Blas {
 public:
  explicit Blas(cudaStream_t stream);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  /// Whether few-row products (m <= kSkinnyEngineRows; BF16, or float32 without an epilogue) go to
  /// kernels::cuda::skinny_gemm instead of cuBLAS, from linear(), linear_f32(), linear_strided() and matmul_strided()
  /// (its [k, n] form): yes unless MLABENCH_SKINNY_GEMM=0 (the A/B switch of the decode benchmarks and test reruns).
  static bool skinny_enabled();
  /// Rows up to which a product that reads a freshly normalised input takes the RMSNorm into its own launch
  /// (SkinnyGemmParams::norm, Fp8SkinnyGemmParams::norm: the layer's input norm in its first projections, the MoE
  /// layer's post-attention norm in its router GEMM, a dense MLP's in its gate/up): MLABENCH_FUSE_NORM, 0 (never: the
  /// A/B switch), 1 (the default) or 2 (kSkinnyNormMaxRows). At two rows the norm form measured slower than the
  /// separate rms_norm launch (H100, V2-Lite b2: BF16 475.3 against 490.3 tok/s, FP8 556.4 against 565.9; b1 +3%:
  /// docs/perf-notes.md, issue 16 round 12), so by default decode steps of 2+ rows keep the launch.
  static int64_t norm_fusion_rows();
  /// y[m, n] = beta * y + x[m, k] . w[n, k]^T.
  void linear(float* y, int64_t ldy, const void* x, int64_t ldx, const void* w, int64_t ldw, DType dt, int64_t m,
              int64_t n, int64_t k, float beta = 0.0f);
  /// y[m, n] = x[m, k] . w[n, k]^T with y in y_type (BF16 rounds the float32 accumulator once, as torch does).
  void linear_to(void* y, DType y_type, int64_t ldy, const void* x, int64_t ldx, const void* w, int64_t ldw, DType dt,
                 int64_t m, int64_t n, int64_t k);
  /// Same with a float32 operand pair (the router's GEMM, always float32).
  void linear_f32(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t m,
                  int64_t n, int64_t k);
  /// For i < batch: y_i[m, n] = x_i[m, k] . w_i[n, k]^T, with x_i = x + i*sx, w_i = w + i*sw, y_i = y + i*sy
  /// (strides in elements).
  /// y_type: the output's type (BF16 rounds the float32 accumulator once, as linear_to).
  void linear_strided(void* y, int64_t ldy, int64_t sy, const void* x, int64_t ldx, int64_t sx, const void* w,
                      int64_t ldw, int64_t sw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch,
                      DType y_type = DType::F32);
  /// For i < batch: y_i[m, n] = x_i[m, k] . w_i[k, n] (w NOT transposed: absorbed MLA's W_UK applied to q).
  void matmul_strided(float* y, int64_t ldy, int64_t sy, const void* x, int64_t ldx, int64_t sx, const void* w,
                      int64_t ldw, int64_t sw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch);
  /// For i < batch (device pointer arrays): y_i[m, n] = x_i[m, k] . w_i[n, k]^T.
  void linear_batched(void* const* y, int64_t ldy, const void* const* x, int64_t ldx, const void* const* w,
                      int64_t ldw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch);

  /// Grouped GEMM (cublasGemmGroupedBatchedEx), one problem per group: y_i[m_i, n] = x_i[m_i, k] . w_i[n, k]^T
  /// for i < m.size(), pointer arrays on the device, row counts on the host. False when this cuBLAS does not
  /// support the operand types (the caller then issues the problems one by one).
  bool linear_grouped(void* const* y, int64_t ldy, const void* const* x, int64_t ldx, const void* const* w,
                      int64_t ldw, DType dt, const std::vector<int>& m, int64_t n, int64_t k);

  /// FP8 GEMM on the tensor cores (issue 20): cuBLASLt's block-scaled e4m3 GEMM (DeepSeek-V3's scaling; QGMMA on
  /// Hopper), y[m, n] (y_type F32 or BF16, ldy) with
  ///   y[r, j] = sum_g x_scale[g * m + r] * w_scale[(j / 128) * fp8_weight_scale_ld(k) + g]
  ///             * sum_{c in g} xq[r, c] w[j, c]
  /// over the 128-value groups g of k: xq e4m3 [m, k] at ldx with its scales groups major (Fp8QuantizeRowsParams
  /// with scale_row_stride 1 and scale_group_stride m, cuBLASLt's VEC128_32F), w e4m3 [n, k] at ldw with 128 x 128
  /// block scales [ceil(n / 128), fp8_weight_scale_ld(k)] (BLK128x128_32F). Capturable like the others (fixed
  /// workspace; the algorithm is chosen once per shape and cached). Throws, naming the shape, where cuBLASLt has no
  /// algorithm for it (k, ldx, ldw must be multiples of 16).
  void linear_fp8(void* y, DType y_type, int64_t ldy, const uint8_t* xq, int64_t ldx, const float* x_scale,
                  const uint8_t* w, int64_t ldw, const float* w_scale, int64_t m, int64_t n, int64_t k);

  cudaStream_t stream() const { return stream_; }

  /// skinny_gemm on the stream when the rows, the switch and the kernel allow it; false: the caller runs cuBLAS
  /// (public for the forms linear() has no words for, such as a split output).
  bool try_skinny(const kernels::SkinnyGemmParams& p);

 private:
  /// linear_fp8's cuBLASLt descriptors and algorithm for one shape (blas.cpp), keyed by m, n, k, y_type, the
  /// leading dimensions and the operands' alignments (what the heuristic's choice depends on).
  struct Fp8Plan;
  using Fp8Key = std::array<int64_t, 10>;
  Fp8Plan& fp8_plan(const Fp8Key& key, const float* x_scale, const float* w_scale);

  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer workspace_;
  cublasLtHandle_t lt_handle_ = nullptr;  // created on the first linear_fp8 (BF16-only engines never need it)
  std::map<Fp8Key, std::unique_ptr<Fp8Plan>> fp8_plans_;
};

/// cuBLAS data type of a GEMM operand dtype (BF16, F16, F32); throws for others.
cudaDataType_t cuda_data_type(DType t);

}  // namespace mlabench::gpu
