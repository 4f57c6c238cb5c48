#include "engine/gpu/fp8_linear.h"


#include "engine/core/fp8.h"
#include "engine/gpu/gpu_model.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"

namespace mlabench::gpu {

namespace {

int64_t codes_ld(int64_t k) { return (k + 15) / 16 * 16; }  // e4m3 rows on the 16-byte grid the GEMMs read

}  // namespace

Fp8GemmChoice fp8_gemm_choice() {
  // cuBLASLt: on an H100 with CUDA 13.0 it found no algorithm at row counts such as 1, 225 and 1,143, and its
  // products at m = 300 missed the CPU's W8A8 by 3e-2 of max |logit| (docs/perf-notes.md, issue 20 round 1): kept
  // for the investigation, not the default.
  static const Fp8GemmChoice choice = [] {
    const int e = env_choice("MLABENCH_FP8_GEMM", {"auto", "mma", "cublaslt"});
    return e == 1 ? Fp8GemmChoice::MMA : e == 2 ? Fp8GemmChoice::CUBLASLT : Fp8GemmChoice::AUTO;
  }();
  return choice;
}

bool fp8_fused_quantise() {
  // 1 (the default): the skinny FP8 GEMM quantises its own rows; 0: a launch of its own (fp8_quantize_rows), for A/B.
  static const bool on = env_switch("MLABENCH_FP8_FUSED_QUANT");
  return on;
}

bool fp8_exact_sums(DType activations) {
  return activations == DType::F32 || fp8_gemm_choice() == Fp8GemmChoice::MMA;
}

Fp8Linear::Fp8Linear(int64_t max_rows, int64_t max_k)
    : max_rows_(max_rows),
      max_k_(max_k),
      q_(static_cast<size_t>(max_rows * codes_ld(max_k)), "FP8 activation codes"),
      s_(static_cast<size_t>(((max_k + kFp8Block - 1) / kFp8Block) * max_rows) * 4, "FP8 activation scales") {
  // The switches read now, at load: a bad value is refused before any step runs (or is captured into a graph).
  fp8_gemm_choice();
  fp8_fused_quantise();
}

Fp8Linear::Path Fp8Linear::path(DType y_type, const void* x, DType x_type, int64_t ldx, const uint8_t* w, int64_t m,
                                int64_t n, int64_t k) const {
  MLABENCH_CHECK(m <= max_rows_ && k <= max_k_,
                 "FP8 GEMM of {} rows x {} columns: the scratch holds {} x {}. HINT: size Fp8Linear for the step's "
                 "largest product",
                 m, k, max_rows_, max_k_);
  // Decode's few rows: the weight-streaming kernel (float32 out); MLABENCH_SKINNY_GEMM=0 keeps the tile GEMMs.
  // One row: it quantises x itself where x's codes fit its shared memory (SKINNY_FUSED: one launch instead of two).
  // Every CTA quantises all m x k values, so past one row that costs more than the launch it saves (V2-Lite, H100,
  // 2026-12-06: fused against two launches 444 / 436 tok/s at batch 1, 760 / 853 at 4, 1,530 / 2,233 at 16).
  if (y_type == DType::F32 && m <= kernels::kSkinnyFp8MaxRows && Blas::skinny_enabled() &&
      kernels::cuda::skinny_gemm_fp8_supported(skinny_params(nullptr, 0, w, nullptr, m, n, k)))
    return m <= kFusedMaxRows && fp8_fused_quantise() &&
                   kernels::cuda::skinny_gemm_fp8_supported(
                       fused_params(nullptr, 0, x, x_type, ldx, w, nullptr, m, n, k))
               ? Path::SKINNY_FUSED
               : Path::SKINNY;
  return fp8_gemm_choice() == Fp8GemmChoice::CUBLASLT ? Path::CUBLASLT : Path::GROUPED;
}

kernels::Fp8SkinnyGemmParams Fp8Linear::skinny_params(float* y, int64_t ldy, const uint8_t* w, const float* w_scale,
                                                      int64_t m, int64_t n, int64_t k) const {
  return {.y = y, .ldy = ldy, .xq = q_.as<uint8_t>(), .ld_x = codes_ld(k), .x_scale = s_.as<float>(),
          .x_scale_group_stride = m, .w = w, .ld_w = k, .w_scale = w_scale, .w_scale_ld = fp8_weight_scale_ld(k),
          .m = m, .n = n, .k = k};
}

// x's rows into the codes and scales, the scales laid out as the path reads them: groups major for the skinny kernel
// and cuBLASLt (VEC128), rows major for the grouped GEMM.
void Fp8Linear::quantize(Blas& blas, Path path, const void* x, DType x_type, int64_t ldx, int64_t m, int64_t k) {
  if (path == Path::SKINNY_FUSED) return;  // the GEMM quantises x itself
  const bool groups_major = path != Path::GROUPED;
  const int64_t groups = (k + kFp8Block - 1) / kFp8Block;
  kernels::cuda::fp8_quantize_rows({.x = x, .x_type = x_type, .ld_x = ldx, .q = q_.as<uint8_t>(), .ld_q = codes_ld(k),
                                    .scale = s_.as<float>(), .scale_row_stride = groups_major ? 1 : groups,
                                    .scale_group_stride = groups_major ? m : 1, .rows = m, .k = k},
                                   blas.stream());
}

// y[m, n] = the quantised rows . w^T by the path chosen (the codes already written by quantize, or, SKINNY_FUSED,
// quantised from x by the kernel).
void Fp8Linear::gemm(Blas& blas, Path path, const void* x, DType x_type, int64_t ldx, void* y, DType y_type,
                     int64_t ldy, const uint8_t* w, const float* w_scale, int64_t m, int64_t n, int64_t k) {
  if (path == Path::SKINNY_FUSED) {
    kernels::cuda::skinny_gemm_fp8(fused_params(static_cast<float*>(y), ldy, x, x_type, ldx, w, w_scale, m, n, k),
                                   blas.stream());
  } else if (path == Path::SKINNY) {
    kernels::cuda::skinny_gemm_fp8(skinny_params(static_cast<float*>(y), ldy, w, w_scale, m, n, k), blas.stream());
  } else if (path == Path::CUBLASLT) {
    blas.linear_fp8(y, y_type, ldy, q_.as<uint8_t>(), codes_ld(k), s_.as<float>(), w, k, w_scale, m, n, k);
  } else {
    // The FP8 grouped GEMM with one expert of m rows (no offsets): STORE in float32, STORE_DT in BF16; on QGMMA
    // for BF16 activations (64-row tiles up to 64 rows).
    kernels::MoeGroupedGemmParams g{.y = static_cast<float*>(y), .ld_y = ldy, .x = q_.get(), .ld_x = codes_ld(k),
                                    .w = w, .expert_stride = n * k, .dtype = DType::F8_E4M3, .offsets = nullptr,
                                    .n_experts = 1, .n = n, .k = k, .max_rows = m, .rows_bound = m,
                                    .tile_rows = m <= 64 ? 64 : 128, .x_scale = s_.as<float>(),
                                    .x_scale_ld = (k + kFp8Block - 1) / kFp8Block, .w_scale = w_scale,
                                    .w_scale_ld = fp8_weight_scale_ld(k), .fp8_exact_sums = fp8_exact_sums(x_type)};
    if (y_type == DType::BF16) {
      g.y = nullptr;
      g.epilogue = kernels::MoeGemmEpilogue::STORE_DT;
      g.act = y;
      g.ld_act = ldy;
    }
    kernels::cuda::moe_grouped_gemm(g, blas.stream());
  }
}

kernels::Fp8SkinnyGemmParams Fp8Linear::fused_params(float* y, int64_t ldy, const void* x, DType x_type, int64_t ldx,
                                                     const uint8_t* w, const float* w_scale, int64_t m, int64_t n,
                                                     int64_t k) {
  return {.y = y, .ldy = ldy, .ld_x = ldx, .x = x, .x_type = x_type, .w = w, .ld_w = k, .w_scale = w_scale,
          .w_scale_ld = fp8_weight_scale_ld(k), .m = m, .n = n, .k = k};
}

void Fp8Linear::run(Blas& blas, void* y, DType y_type, int64_t ldy, const void* x, DType x_type, int64_t ldx,
                    const uint8_t* w, const float* w_scale, int64_t m, int64_t n, int64_t k) {
  if (m == 0) return;
  const Path p = path(y_type, x, x_type, ldx, w, m, n, k);
  quantize(blas, p, x, x_type, ldx, m, k);
  gemm(blas, p, x, x_type, ldx, y, y_type, ldy, w, w_scale, m, n, k);
}

// Two parts with their own grids (split_rows): x quantised once, then rows [0, split) and [split, rows) of w, the
// second part's grid after the first's rows (both parts' rows start on the 16-byte grid: k is a multiple of 16).
void Fp8Linear::run(Blas& blas, float* y, int64_t ldy, const void* x, DType x_type, int64_t ldx, const DeviceMat& w,
                    int64_t m) {
  MLABENCH_ICHECK(w.fp8(), "Fp8Linear::run: a matrix that is not FP8");
  if (m == 0) return;
  const auto* codes = static_cast<const uint8_t*>(w.p);
  const int64_t k = w.cols, r1 = w.split_rows > 0 ? w.split_rows : w.rows;
  const Path p = path(DType::F32, x, x_type, ldx, codes, m, r1, k);
  quantize(blas, p, x, x_type, ldx, m, k);
  gemm(blas, p, x, x_type, ldx, y, DType::F32, ldy, codes, w.scale, m, r1, k);
  if (r1 == w.rows) return;
  const int64_t g1 = (r1 + kFp8Block - 1) / kFp8Block;
  gemm(blas, p, x, x_type, ldx, y + r1, DType::F32, ldy, codes + r1 * k, w.scale + g1 * fp8_weight_scale_ld(k), m,
       w.rows - r1, k);
}

bool Fp8Linear::run_split(Blas& blas, float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y, const void* x,
                          DType x_type, int64_t ldx, const DeviceMat& w, int64_t m) {
  MLABENCH_ICHECK(w.fp8(), "Fp8Linear::run_split: a matrix that is not FP8");
  if (m == 0 || w.split_rows > 0 || n_y <= 0 || n_y >= w.rows) return false;
  const auto* codes = static_cast<const uint8_t*>(w.p);
  const int64_t k = w.cols;
  const Path p = path(DType::F32, x, x_type, ldx, codes, m, w.rows, k);
  if (p != Path::SKINNY && p != Path::SKINNY_FUSED) return false;
  quantize(blas, p, x, x_type, ldx, m, k);
  kernels::Fp8SkinnyGemmParams g = p == Path::SKINNY_FUSED
                                       ? fused_params(y, ldy, x, x_type, ldx, codes, w.scale, m, w.rows, k)
                                       : skinny_params(y, ldy, codes, w.scale, m, w.rows, k);
  g.y2 = y2;
  g.ldy2 = ldy2;
  g.n_y = n_y;
  kernels::cuda::skinny_gemm_fp8(g, blas.stream());
  return true;
}

bool Fp8Linear::run_normed(Blas& blas, float* y, int64_t ldy, float* y2, int64_t ldy2, int64_t n_y,
                           const kernels::RmsNormParams& norm, const DeviceMat& w, int64_t m) {
  MLABENCH_ICHECK(w.fp8(), "Fp8Linear::run_normed: a matrix that is not FP8");
  if (m == 0 || m > kFusedMaxRows || !fp8_fused_quantise() || w.split_rows > 0 ||
      (y2 != nullptr && (n_y <= 0 || n_y >= w.rows)))
    return false;
  const int64_t k = w.cols;
  kernels::Fp8SkinnyGemmParams g = fused_params(y, ldy, norm.out, norm.out_type, norm.ld_out,
                                                static_cast<const uint8_t*>(w.p), w.scale, m, w.rows, k);
  g.norm = norm;
  if (y2 != nullptr) {
    g.y2 = y2;
    g.ldy2 = ldy2;
    g.n_y = n_y;
  }
  if (!kernels::cuda::skinny_gemm_fp8_supported(g)) return false;
  kernels::cuda::skinny_gemm_fp8(g, blas.stream());
  return true;
}

}  // namespace mlabench::gpu
