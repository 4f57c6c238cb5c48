// cuBLAS GEMMs of the GPU engine, phrased row-major as the model code thinks of them (PyTorch Linear weights
// [out, in]). Operands in the weights' dtype (BF16, F16 or F32), output and accumulation in float32
// (CUBLAS_COMPUTE_32F; F32 weights run true FP32, never TF32). Every call is asynchronous on the handle's stream
// and capturable in a CUDA graph (the workspace is fixed at construction).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
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

  cudaStream_t stream() const { return stream_; }

  /// skinny_gemm on the stream when the rows, the switch and the kernel allow it; false: the caller runs cuBLAS
  /// (public for the forms linear() has no words for, such as a split output).
  bool try_skinny(const kernels::SkinnyGemmParams& p);

 private:
  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer workspace_;
};

/// cuBLAS data type of a GEMM operand dtype (BF16, F16, F32); throws for others.
cudaDataType_t cuda_data_type(DType t);

}  // namespace mlabench::gpu
