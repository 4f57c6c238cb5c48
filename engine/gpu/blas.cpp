#include "engine/gpu/blas.h"

#include <fmt/format.h>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench::gpu {

namespace {

void check_blas(cublasStatus_t st, const char* what, int64_t m, int64_t n, int64_t k) {
  if (st != CUBLAS_STATUS_SUCCESS)
    MLABENCH_FAIL("cuBLAS {} failed with status {} ({}) for m={} n={} k={}. HINT: an unsupported dtype or an "
                  "operand that is not aligned; run tools/gpu/check.sh and report the log.",
                  what, static_cast<int>(st), cublasGetStatusString(st), m, n, k);
}

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommendation for Hopper

}  // namespace

cudaDataType_t cuda_data_type(DType t) {
  switch (t) {
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    case DType::F32:
      return CUDA_R_32F;
    default:
      MLABENCH_FAIL("GEMM operands must be BF16, F16 or F32, got {}. HINT: convert the checkpoint.",
                    dtype_name(t));
  }
}

Blas::Blas(cudaStream_t stream) : stream_(stream), workspace_(kWorkspaceBytes, "cuBLAS workspace") {
  check_blas(cublasCreate(&handle_), "cublasCreate", 0, 0, 0);
  check_blas(cublasSetStream(handle_, stream_), "cublasSetStream", 0, 0, 0);
  check_blas(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()), "cublasSetWorkspace", 0, 0, 0);
  check_blas(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", 0, 0, 0);
}

Blas::~Blas() {
  if (handle_) cublasDestroy(handle_);
}

// Row-major Y[m,n] = X[m,k] W[n,k]^T is column-major Y^T[n,m] = W^T[n,k] X^T[k,m]: cuBLAS (T, N) with the
// operands swapped.
bool Blas::skinny_enabled() {
  static const bool on = env_switch("MLABENCH_SKINNY_GEMM");
  return on;
}

void Blas::linear(float* y, int64_t ldy, const void* x, int64_t ldx, const void* w, int64_t ldw, DType dt, int64_t m,
                  int64_t n, int64_t k, float beta) {
  if (m == 0) return;
  // One or two rows (decode at batch 1-2): the weight-streaming kernel, where it runs (BF16, aligned).
  if ((beta == 0.0f || beta == 1.0f) && try_skinny({.y = y, .ldy = ldy, .x = x, .ldx = ldx, .w = w, .ldw = ldw,
                                                     .dtype = dt, .m = m, .n = n, .k = k, .beta = beta}))
    return;
  const float alpha = 1.0f;
  const cudaDataType_t t = cuda_data_type(dt);
  check_blas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                          static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), x, t, static_cast<int>(ldx), &beta,
                          y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "GemmEx", m, n, k);
}

void Blas::linear_to(void* y, DType y_type, int64_t ldy, const void* x, int64_t ldx, const void* w, int64_t ldw,
                     DType dt, int64_t m, int64_t n, int64_t k) {
  if (m == 0) return;
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_data_type(dt);
  check_blas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                          static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), x, t, static_cast<int>(ldx), &beta,
                          y, cuda_data_type(y_type), static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "GemmEx", m, n, k);
}

void Blas::linear_f32(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t m,
                      int64_t n, int64_t k) {
  linear(y, ldy, x, ldx, w, ldw, DType::F32, m, n, k);
}

bool Blas::try_skinny(const kernels::SkinnyGemmParams& p) {
  if (p.m > kernels::kSkinnyEngineRows || !skinny_enabled() || !kernels::cuda::skinny_gemm_supported(p)) return false;
  kernels::cuda::skinny_gemm(p, stream_);
  return true;
}

void Blas::linear_strided(void* y, int64_t ldy, int64_t sy, const void* x, int64_t ldx, int64_t sx, const void* w,
                          int64_t ldw, int64_t sw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch,
                          DType y_type) {
  if (m == 0 || batch == 0) return;
  // One or two rows (MLA's W_UV at decode batch 1-2): skinny_gemm, float32 out or the product in dt.
  kernels::SkinnyGemmParams sp{.ldy = ldy, .stride_y = sy, .x = x, .ldx = ldx, .stride_x = sx, .w = w, .ldw = ldw,
                               .stride_w = sw, .dtype = dt, .m = m, .n = n, .k = k, .batch = batch};
  if (y_type == DType::F32) {
    sp.y = static_cast<float*>(y);
  } else if (y_type == dt) {
    sp.act = y;
    sp.ld_act = ldy;
    sp.stride_act = sy;
  }
  if ((sp.y != nullptr || sp.act != nullptr) && try_skinny(sp)) return;
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_data_type(dt);
  check_blas(cublasGemmStridedBatchedEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                        static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), sw, x, t,
                                        static_cast<int>(ldx), sx, &beta, y, cuda_data_type(y_type),
                                        static_cast<int>(ldy), sy, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
             "GemmStridedBatchedEx", m, n, k);
}

// Row-major Y[m,n] = X[m,k] W[k,n] is column-major Y^T[n,m] = W^T[n,k] X^T[k,m] with W^T stored as-is: (N, N).
void Blas::matmul_strided(float* y, int64_t ldy, int64_t sy, const void* x, int64_t ldx, int64_t sx, const void* w,
                          int64_t ldw, int64_t sw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch) {
  if (m == 0 || batch == 0) return;
  // One or two rows (MLA's W_UK at decode batch 1-2): skinny_gemm's [k, n] weight form.
  if (try_skinny({.y = y, .ldy = ldy, .stride_y = sy, .x = x, .ldx = ldx, .stride_x = sx, .w = w, .ldw = ldw,
                  .stride_w = sw, .dtype = dt, .m = m, .n = n, .k = k, .batch = batch, .w_kn = true}))
    return;
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_data_type(dt);
  check_blas(cublasGemmStridedBatchedEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                        static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), sw, x, t,
                                        static_cast<int>(ldx), sx, &beta, y, CUDA_R_32F, static_cast<int>(ldy), sy,
                                        static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "GemmStridedBatchedEx(NN)", m, n, k);
}

void Blas::linear_batched(void* const* y, int64_t ldy, const void* const* x, int64_t ldx, const void* const* w,
                          int64_t ldw, DType dt, int64_t m, int64_t n, int64_t k, int64_t batch) {
  if (m == 0 || batch == 0) return;
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_data_type(dt);
  check_blas(cublasGemmBatchedEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                 static_cast<int>(k), &alpha, w, t, static_cast<int>(ldw), x, t, static_cast<int>(ldx),
                                 &beta, y, CUDA_R_32F, static_cast<int>(ldy), static_cast<int>(batch),
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "GemmBatchedEx", m, n, k);
}

bool Blas::linear_grouped(void* const* y, int64_t ldy, const void* const* x, int64_t ldx, const void* const* w,
                          int64_t ldw, DType dt, const std::vector<int>& m, int64_t n, int64_t k) {
  const auto groups = static_cast<int>(m.size());
  if (groups == 0) return true;
  const cudaDataType_t t = cuda_data_type(dt);
  const std::vector<cublasOperation_t> ta(m.size(), CUBLAS_OP_T), tb(m.size(), CUBLAS_OP_N);
  const std::vector<int> nn(m.size(), static_cast<int>(n)), kk(m.size(), static_cast<int>(k));
  const std::vector<int> lda(m.size(), static_cast<int>(ldw)), ldb(m.size(), static_cast<int>(ldx));
  const std::vector<int> ldc(m.size(), static_cast<int>(ldy)), size(m.size(), 1);
  const std::vector<float> alpha(m.size(), 1.0f), beta(m.size(), 0.0f);
  // Column-major view as in linear(): cuBLAS's m is our n (output features), its n our rows.
  const cublasStatus_t st = cublasGemmGroupedBatchedEx(
      handle_, ta.data(), tb.data(), nn.data(), m.data(), kk.data(), alpha.data(), w, t, lda.data(), x, t, ldb.data(),
      beta.data(), y, CUDA_R_32F, ldc.data(), groups, size.data(), CUBLAS_COMPUTE_32F);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  check_blas(st, "GemmGroupedBatchedEx", groups, n, k);
  return true;
}

}  // namespace mlabench::gpu
