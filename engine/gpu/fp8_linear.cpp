#include "engine/gpu/fp8_linear.h"

#include <cstdlib>
#include <string>

#include "engine/core/fp8.h"
#include "engine/gpu/gpu_model.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"

namespace mlabench::gpu {

namespace {
int64_t codes_ld(int64_t k) { return (k + 15) / 16 * 16; }  // cuBLASLt's e4m3 rows: 16-byte aligned
}  // namespace

Fp8Linear::Fp8Linear(int64_t max_rows, int64_t max_k)
    : max_rows_(max_rows),
      max_k_(max_k),
      q_(static_cast<size_t>(max_rows * codes_ld(max_k)), "FP8 activation codes"),
      s_(static_cast<size_t>(((max_k + kFp8Block - 1) / kFp8Block) * max_rows) * 4, "FP8 activation scales") {}

// Which FP8 GEMM takes more than kSkinnyFp8MaxRows rows: the grouped expert GEMM's FP8 kernel as one expert (the
// default), or cuBLASLt's block-scaled GEMM (MLABENCH_FP8_GEMM=cublaslt). On an H100 with CUDA 13.0 cuBLASLt found no
// algorithm at row counts off a multiple of 4 (m = 1, 1,143) and its products at m = 300 missed the CPU's W8A8 by
// 3e-2 of max |logit| (docs/perf-notes.md, issue 20 round 1): kept for the investigation, not used by default.
static bool cublaslt_fp8() {
  static const bool on = [] {
    const char* env = std::getenv("MLABENCH_FP8_GEMM");
    return env != nullptr && std::string(env) == "cublaslt";
  }();
  return on;
}

void Fp8Linear::run(Blas& blas, void* y, DType y_type, int64_t ldy, const void* x, DType x_type, int64_t ldx,
                    const uint8_t* w, const float* w_scale, int64_t m, int64_t n, int64_t k) {
  if (m == 0) return;
  MLABENCH_CHECK(m <= max_rows_ && k <= max_k_,
                 "FP8 GEMM of {} rows x {} columns: the scratch holds {} x {}. HINT: size Fp8Linear for the step's "
                 "largest product",
                 m, k, max_rows_, max_k_);
  const int64_t ld = codes_ld(k), groups = (k + kFp8Block - 1) / kFp8Block;
  auto* q = q_.as<uint8_t>();
  auto* s = s_.as<float>();
  const bool skinny = y_type == DType::F32 && m <= kernels::kSkinnyFp8MaxRows && Blas::skinny_enabled();
  const bool groups_major = skinny || cublaslt_fp8();  // the skinny kernel's and cuBLASLt's VEC128 layout
  kernels::cuda::fp8_quantize_rows({.x = x, .x_type = x_type, .ld_x = ldx, .q = q, .ld_q = ld, .scale = s,
                                    .scale_row_stride = groups_major ? 1 : groups,
                                    .scale_group_stride = groups_major ? m : 1, .rows = m, .k = k},
                                   blas.stream());
  // Decode's few rows: the weight-streaming kernel, float32 out; MLABENCH_SKINNY_GEMM=0 keeps the tile GEMMs.
  const kernels::Fp8SkinnyGemmParams sk{.y = static_cast<float*>(y), .ldy = ldy, .xq = q, .ld_x = ld, .x_scale = s,
                                        .x_scale_group_stride = m, .w = w, .ld_w = k, .w_scale = w_scale,
                                        .w_scale_ld = fp8_weight_scale_ld(k), .m = m, .n = n, .k = k};
  if (skinny && kernels::cuda::skinny_gemm_fp8_supported(sk)) {
    kernels::cuda::skinny_gemm_fp8(sk, blas.stream());
    return;
  }
  MLABENCH_CHECK(groups_major == cublaslt_fp8(),
                 "FP8 GEMM of {} x {} x {}: skinny_gemm_fp8 does not take it. HINT: k and the rows 16-byte aligned",
                 m, n, k);
  if (cublaslt_fp8()) {
    blas.linear_fp8(y, y_type, ldy, q, ld, s, w, k, w_scale, m, n, k);
    return;
  }
  // The FP8 grouped GEMM with one expert of m rows (no offsets): STORE in float32, STORE_DT in BF16.
  kernels::MoeGroupedGemmParams g{.y = static_cast<float*>(y), .ld_y = ldy, .x = q, .ld_x = ld, .w = w,
                                  .expert_stride = n * k, .dtype = DType::F8_E4M3, .offsets = nullptr,
                                  .n_experts = 1, .n = n, .k = k, .max_rows = m, .x_scale = s, .x_scale_ld = groups,
                                  .w_scale = w_scale, .w_scale_ld = fp8_weight_scale_ld(k)};
  if (y_type == DType::BF16) {
    g.y = nullptr;
    g.epilogue = kernels::MoeGemmEpilogue::STORE_DT;
    g.act = y;
    g.ld_act = ldy;
  }
  kernels::cuda::moe_grouped_gemm(g, blas.stream());
}

void Fp8Linear::run(Blas& blas, float* y, int64_t ldy, const void* x, DType x_type, int64_t ldx, const DeviceMat& w,
                    int64_t m) {
  MLABENCH_ICHECK(w.fp8(), "Fp8Linear::run: a matrix that is not FP8");
  const auto* codes = static_cast<const uint8_t*>(w.p);
  if (w.split_rows == 0) {
    run(blas, y, DType::F32, ldy, x, x_type, ldx, codes, w.scale, m, w.rows, w.cols);
    return;
  }
  // Two parts, each with its own grid: rows [0, split) then [split, rows), the second grid after the first's rows.
  const int64_t r1 = w.split_rows, g1 = (r1 + kFp8Block - 1) / kFp8Block, ld = fp8_weight_scale_ld(w.cols);
  run(blas, y, DType::F32, ldy, x, x_type, ldx, codes, w.scale, m, r1, w.cols);
  run(blas, y + r1, DType::F32, ldy, x, x_type, ldx, codes + r1 * w.cols, w.scale + g1 * ld, m, w.rows - r1, w.cols);
}

}  // namespace mlabench::gpu
