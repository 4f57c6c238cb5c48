#include "engine/gpu/fp8_linear.h"

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

void Fp8Linear::run(Blas& blas, void* y, DType y_type, int64_t ldy, const void* x, DType x_type, int64_t ldx,
                    const uint8_t* w, const float* w_scale, int64_t m, int64_t n, int64_t k) {
  if (m == 0) return;
  MLABENCH_CHECK(m <= max_rows_ && k <= max_k_,
                 "FP8 GEMM of {} rows x {} columns: the scratch holds {} x {}. HINT: size Fp8Linear for the step's "
                 "largest product",
                 m, k, max_rows_, max_k_);
  const int64_t ld = codes_ld(k);
  auto* q = q_.as<uint8_t>();
  auto* s = s_.as<float>();
  // Scales groups major ([ceil(k/128), m], cuBLASLt's VEC128_32F layout for its B operand).
  kernels::cuda::fp8_quantize_rows({.x = x, .x_type = x_type, .ld_x = ldx, .q = q, .ld_q = ld, .scale = s,
                                    .scale_row_stride = 1, .scale_group_stride = m, .rows = m, .k = k},
                                   blas.stream());
  // Decode's few rows: the weight-streaming kernel (cuBLASLt's FP8 GEMMs are tiles of 64+ rows), float32 out;
  // MLABENCH_SKINNY_GEMM=0 keeps cuBLASLt (the A/B switch the BF16 engine's skinny_gemm has).
  const kernels::Fp8SkinnyGemmParams sk{.y = static_cast<float*>(y), .ldy = ldy, .xq = q, .ld_x = ld, .x_scale = s,
                                        .x_scale_group_stride = m, .w = w, .ld_w = k, .w_scale = w_scale,
                                        .w_scale_ld = fp8_weight_scale_ld(k), .m = m, .n = n, .k = k};
  if (y_type == DType::F32 && m <= kernels::kSkinnyFp8MaxRows && Blas::skinny_enabled() &&
      kernels::cuda::skinny_gemm_fp8_supported(sk)) {
    kernels::cuda::skinny_gemm_fp8(sk, blas.stream());
    return;
  }
  blas.linear_fp8(y, y_type, ldy, q, ld, s, w, k, w_scale, m, n, k);
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
