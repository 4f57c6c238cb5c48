#include "engine/gpu/blas.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <utility>

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
  fp8_plans_.clear();  // their descriptors before the cuBLASLt handle
  if (lt_handle_) cublasLtDestroy(lt_handle_);
  if (handle_) cublasDestroy(handle_);
}

// Row-major Y[m,n] = X[m,k] W[n,k]^T is column-major Y^T[n,m] = W^T[n,k] X^T[k,m]: cuBLAS (T, N) with the
// operands swapped.
bool Blas::skinny_enabled() {
  static const bool on = env_switch("MLABENCH_SKINNY_GEMM");
  return on;
}

int64_t Blas::norm_fusion_rows() {
  static const int64_t rows = env_level("MLABENCH_FUSE_NORM", 1, static_cast<int>(kernels::kSkinnyNormMaxRows));
  return rows;
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

// ---- FP8 (issue 20) -----------------------------------------------------------------------------------------

struct Blas::Fp8Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  Fp8Plan() = default;
  Fp8Plan(const Fp8Plan&) = delete;
  Fp8Plan& operator=(const Fp8Plan&) = delete;
  ~Fp8Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

enum Fp8KeyField { kM, kN, kK, kYType, kLdx, kLdw, kLdy, kAlignX, kAlignW, kAlignY };
using Fp8KeyArray = std::array<int64_t, 10>;  // Blas::Fp8Key, private to Blas

// The largest power of two (up to 256, cuBLASLt's default assumption) that divides the address: the heuristic must
// only pick kernels whose vector accesses this operand allows.
int64_t address_alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  return a == 0 ? 256 : std::min<int64_t>(256, static_cast<int64_t>(a & (~a + 1)));
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& v, const char* what,
              const Fp8KeyArray& key) {
  check_blas(cublasLtMatmulDescSetAttribute(desc, attr, &v, sizeof(v)), what, key[kM], key[kN], key[kK]);
}

template <class T>
cublasStatus_t set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, T v) {
  return cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v));
}

// The scales change from call to call (the activations' come from a scratch sized once, each weight has its own);
// a descriptor attribute is host state, so setting it keeps linear_fp8 capturable.
void set_scale_pointers(cublasLtMatmulDesc_t desc, const float* x_scale, const float* w_scale,
                        const Fp8KeyArray& key) {
  set_desc(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, w_scale, "cublasLtMatmulDescSetAttribute(A_SCALE_POINTER)", key);
  set_desc(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, x_scale, "cublasLtMatmulDescSetAttribute(B_SCALE_POINTER)", key);
}

// Row-major y[m, n] = x[m, k] . w[n, k]^T is column-major y^T[n, m] = w^T x^T, as in linear(): cuBLASLt's A is w
// ([k, n] column-major, transposed: its 128 x 128 blocks are w's), its B is xq ([k, m], not transposed: its 1 x 128
// groups run along k), D is y^T. C is D (beta 0: never read).
void describe_fp8_gemm(cublasLtMatmulDesc_t* desc, cublasLtMatrixLayout_t* a, cublasLtMatrixLayout_t* b,
                       cublasLtMatrixLayout_t* d, const Fp8KeyArray& key) {
  const int64_t m = key[kM], n = key[kN], k = key[kK];
  check_blas(cublasLtMatmulDescCreate(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", m, n, k);
  set_desc(*desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, "cublasLtMatmulDescSetAttribute(TRANSA)", key);
  set_desc(*desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, "cublasLtMatmulDescSetAttribute(TRANSB)", key);
  const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  set_desc(*desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, a_mode, "cublasLtMatmulDescSetAttribute(A_SCALE_MODE)", key);
  set_desc(*desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, b_mode, "cublasLtMatmulDescSetAttribute(B_SCALE_MODE)", key);
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  check_blas(cublasLtMatrixLayoutCreate(a, CUDA_R_8F_E4M3, u(k), u(n), key[kLdw]), "cublasLtMatrixLayoutCreate(A)", m,
             n, k);
  check_blas(cublasLtMatrixLayoutCreate(b, CUDA_R_8F_E4M3, u(k), u(m), key[kLdx]), "cublasLtMatrixLayoutCreate(B)", m,
             n, k);
  check_blas(cublasLtMatrixLayoutCreate(d, cuda_data_type(static_cast<DType>(key[kYType])), u(n), u(m), key[kLdy]),
             "cublasLtMatrixLayoutCreate(D)", m, n, k);
}

}  // namespace

Blas::Fp8Plan& Blas::fp8_plan(const Fp8Key& key, const float* x_scale, const float* w_scale) {
  if (auto it = fp8_plans_.find(key); it != fp8_plans_.end()) return *it->second;
  const int64_t m = key[kM], n = key[kN], k = key[kK];
  if (lt_handle_ == nullptr) check_blas(cublasLtCreate(&lt_handle_), "cublasLtCreate", m, n, k);
  auto plan = std::make_unique<Fp8Plan>();
  describe_fp8_gemm(&plan->desc, &plan->a, &plan->b, &plan->d, key);
  set_scale_pointers(plan->desc, x_scale, w_scale, key);

  // The heuristic's best algorithm for the shape, the fixed workspace and the operands' alignments.
  cublasLtMatmulPreference_t pref = nullptr;
  check_blas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", m, n, k);
  cublasStatus_t st = set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{workspace_.bytes()});
  const std::pair<cublasLtMatmulPreferenceAttributes_t, int64_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key[kAlignW]},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key[kAlignX]},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key[kAlignY]},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key[kAlignY]}};
  for (const auto& [attr, bytes] : aligns)
    if (st == CUBLAS_STATUS_SUCCESS) st = set_pref(pref, attr, static_cast<uint32_t>(bytes));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(lt_handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1, &result,
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0))
    MLABENCH_FAIL("cuBLASLt has no block-scaled FP8 GEMM for m={} n={} k={}: e4m3 x e4m3 (128 x 128 weight blocks, "
                  "1 x 128 activation groups) into {} (ldx {}, ldw {}, ldy {}; alignments x {} w {} y {} bytes). "
                  "HINT: this needs cuBLAS 12.9+ on a compute capability 9.0 GPU, k and the leading dimensions "
                  "multiples of 16 and 16-byte aligned operands; a float32 output may lack block-scaled kernels "
                  "where a BF16 one has them (tests/kernels/test_cuda_fp8.cpp tries both)",
                  m, n, k, dtype_name(static_cast<DType>(key[kYType])), key[kLdx], key[kLdw], key[kLdy],
                  key[kAlignX], key[kAlignW], key[kAlignY]);
  check_blas(st, "cublasLtMatmulAlgoGetHeuristic", m, n, k);
  plan->algo = result.algo;
  return *fp8_plans_.emplace(key, std::move(plan)).first->second;
}

void Blas::linear_fp8(void* y, DType y_type, int64_t ldy, const uint8_t* xq, int64_t ldx, const float* x_scale,
                      const uint8_t* w, int64_t ldw, const float* w_scale, int64_t m, int64_t n, int64_t k) {
  if (m == 0) return;
  MLABENCH_CHECK(y_type == DType::F32 || y_type == DType::BF16,
                 "linear_fp8: y_type is {}, not F32 or BF16. HINT: the FP8 GEMM writes float32 or BF16 outputs",
                 dtype_name(y_type));
  MLABENCH_CHECK(m > 0 && n > 0 && k > 0 && ldx >= k && ldw >= k && ldy >= n,
                 "linear_fp8: m={} n={} k={} with ldx {}, ldw {}, ldy {}. HINT: positive sizes, leading dimensions "
                 "covering a row (ldx, ldw >= k, ldy >= n)",
                 m, n, k, ldx, ldw, ldy);
  MLABENCH_CHECK(k % 16 == 0 && ldx % 16 == 0 && ldw % 16 == 0,
                 "linear_fp8: k={}, ldx={}, ldw={} are not all multiples of 16. HINT: cuBLASLt's FP8 GEMMs read e4m3 "
                 "rows in 16-byte units; pad x's and w's rows with zero codes (zeros add nothing to the product)",
                 k, ldx, ldw);
  MLABENCH_CHECK(xq && x_scale && w && w_scale && y,
                 "linear_fp8: y, xq, x_scale, w and w_scale must be set. HINT: the scales are device pointers too");
  const Fp8Key key{m, n, k, static_cast<int64_t>(y_type), ldx, ldw, ldy, address_alignment(xq), address_alignment(w),
                   address_alignment(y)};
  Fp8Plan& plan = fp8_plan(key, x_scale, w_scale);
  set_scale_pointers(plan.desc, x_scale, w_scale, key);
  const float alpha = 1.0f, beta = 0.0f;
  check_blas(cublasLtMatmul(lt_handle_, plan.desc, &alpha, w, plan.a, xq, plan.b, &beta, y, plan.d, y, plan.d,
                            &plan.algo, workspace_.get(), workspace_.bytes(), stream_),
             "cublasLtMatmul(FP8 block-scaled)", m, n, k);
}

}  // namespace mlabench::gpu
