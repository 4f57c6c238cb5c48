// CPU twin of skinny_gemm_fp8 (engine/kernels/cuda/skinny_gemm_fp8.cu) and the parameter check the launcher shares
// with it. The formula's own structure, every operation rounded as written: per output and per 128-value group a
// float32 sum over k ascending of the decoded e4m3 products (each exact in float32), times (x_scale * w_scale),
// added to the output's float32 accumulator in group order. The kernel sums a group's products in another order
// (tensor-core tiles) and adds the group terms per warp before summing the warps, so the two agree to float32
// rounding, not bit for bit.
#include <algorithm>
#include <array>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cuda/skinny_gemm_fp8.h"
#include "engine/kernels/twin/checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

void check_skinny_gemm_fp8(const Fp8SkinnyGemmParams& p) {
  MLABENCH_CHECK(p.m >= 0 && p.m <= kSkinnyFp8MaxRows && p.n > 0 && p.k > 0 && p.k % 16 == 0,
                 "skinny_gemm_fp8: m {}, n {}, k {}. HINT: 0 <= m <= {} (more rows take Blas::linear_fp8), n > 0, "
                 "k > 0 and a multiple of 16 (e4m3 rows are read 16 bytes at a time)",
                 p.m, p.n, p.k, kSkinnyFp8MaxRows);
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
  const bool split = p.y2 != nullptr;
  MLABENCH_CHECK(!split || (p.n_y > 0 && p.n_y < p.n && p.ldy2 >= p.n - p.n_y),
                 "skinny_gemm_fp8: y2 set with n_y {} of n {}, ldy2 {}. HINT: the split output takes columns [0, n_y) "
                 "into y and [n_y, n) into y2 (0 < n_y < n, ldy2 >= n - n_y)",
                 p.n_y, p.n, p.ldy2);
  MLABENCH_CHECK(p.ld_x >= p.k && p.ld_w >= p.k && p.ldy >= (split ? p.n_y : p.n),
                 "skinny_gemm_fp8: ld_x {}, ld_w {} with k {}, ldy {} with n {}. HINT: leading dimensions count "
                 "elements and cover a whole row (y's row is n_y columns where y2 takes the rest)",
                 p.ld_x, p.ld_w, p.k, p.ldy, split ? p.n_y : p.n);
  // Groups-major x scales (fp8_quantize_rows with scale_row_stride 1): a stride below m would put two rows' scales
  // of different groups on one float.
  const bool fused = p.x != nullptr;
  MLABENCH_CHECK((groups == 1 || fused || p.x_scale_group_stride >= p.m) && p.w_scale_ld >= groups,
                 "skinny_gemm_fp8: x_scale_group_stride {} for {} rows, w_scale_ld {} for {} groups of 128. HINT: "
                 "x_scale is groups major (fp8_quantize_rows with scale_row_stride 1, scale_group_stride >= m); "
                 "w_scale is [ceil(n / 128), w_scale_ld >= ceil(k / 128)] (fp8_weight_scale_ld)",
                 p.x_scale_group_stride, p.m, p.w_scale_ld, groups);
  MLABENCH_CHECK(!fused || (p.xq == nullptr && p.x_scale == nullptr &&
                             (p.x_type == DType::F32 || p.x_type == DType::BF16)),
                 "skinny_gemm_fp8: x is set (the fused form) with xq {}, x_scale {}, x_type {}. HINT: pass either the "
                 "unquantised rows (x, x_type F32 or BF16) or fp8_quantize_rows' codes and scales (xq, x_scale)",
                 p.xq ? "set" : "null", p.x_scale ? "set" : "null", dtype_name(p.x_type));
  if (p.norm.weight != nullptr) {
    MLABENCH_CHECK(fused, "skinny_gemm_fp8: an input norm without x. HINT: the norm's form is the fused form, x = "
                          "norm.out");
    check_input_norm(p.norm, p.x, p.ld_x, p.x_type, p.m, p.k, "skinny_gemm_fp8");
  }
  MLABENCH_CHECK(p.m == 0 || (p.y && (fused || (p.xq && p.x_scale)) && p.w && p.w_scale),
                 "skinny_gemm_fp8: a null operand. HINT: y, w, w_scale and either xq and x_scale or x are all read "
                 "or written");
}

}  // namespace checks

namespace twin {

namespace {

// Every e4m3 code's value (NaN for 0x7f and 0xff), so the loops below decode with a load.
const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = e4m3_to_f32(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

// Output column j for the m rows of x (decoded, [k][m]): weight row j decoded into w, then per group the m sums
// side by side, each added to its row's accumulator in group order; the innermost loop runs over the m rows, whose
// sums are independent, so each (row, output) sum still adds its products in k order. The sums live on the stack
// (m <= 16), where the compiler sees that no store to w, x or y reaches them.
void column(const Fp8SkinnyGemmParams& p, const std::array<float, 256>& dec, const float* x, int64_t j, float* w) {
  const int64_t m = p.m, k = p.k;
  for (int64_t c = 0; c < k; ++c) w[c] = dec[p.w[j * p.ld_w + c]];
  const float* ws = p.w_scale + (j / kFp8Block) * p.w_scale_ld;
  float acc[kSkinnyFp8MaxRows] = {};
  for (int64_t c0 = 0, g = 0; c0 < k; c0 += kFp8Block, ++g) {
    float s[kSkinnyFp8MaxRows] = {};
    for (int64_t c = c0; c < std::min(k, c0 + kFp8Block); ++c) {
      const float wc = w[c];
      const float* xc = x + c * m;
      for (int64_t r = 0; r < m; ++r) s[r] += xc[r] * wc;
    }
    for (int64_t r = 0; r < m; ++r) acc[r] += s[r] * (p.x_scale[g * p.x_scale_group_stride + r] * ws[g]);
  }
  const bool second = p.y2 != nullptr && j >= p.n_y;
  float* y = second ? p.y2 + (j - p.n_y) : p.y + j;
  const int64_t ldy = second ? p.ldy2 : p.ldy;
  for (int64_t r = 0; r < m; ++r) y[r * ldy] = acc[r];
}

}  // namespace

// Rows of x are decoded once, each weight row once. Output columns are independent: the threads share them, each
// with its own decoded weight row.
void skinny_gemm_fp8(const Fp8SkinnyGemmParams& p) {
  checks::check_skinny_gemm_fp8(p);
  if (p.m == 0) return;
  if (p.norm.weight != nullptr) rms_norm(p.norm);  // x is the norm's out: the kernel's one launch is these two
  if (p.x != nullptr) {  // the fused form: fp8_quantize_rows' codes and groups-major scales, then the same product
    const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
    std::vector<uint8_t> q(static_cast<size_t>(p.m * p.k));
    std::vector<float> s(static_cast<size_t>(groups * p.m));
    fp8_quantize_rows({.x = p.x, .x_type = p.x_type, .ld_x = p.ld_x, .q = q.data(), .ld_q = p.k, .scale = s.data(),
                       .scale_row_stride = 1, .scale_group_stride = p.m, .rows = p.m, .k = p.k});
    Fp8SkinnyGemmParams c = p;
    c.norm = {};
    c.x = nullptr;
    c.xq = q.data();
    c.ld_x = p.k;
    c.x_scale = s.data();
    c.x_scale_group_stride = p.m;
    skinny_gemm_fp8(c);
    return;
  }
  const auto& dec = e4m3_table();
  const int64_t m = p.m, k = p.k;
  std::vector<float> x(static_cast<size_t>(k * m));
  for (int64_t r = 0; r < m; ++r)  // stored [k][m]: the m values of a column side by side
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(c * m + r)] = dec[p.xq[r * p.ld_x + c]];
#pragma omp parallel if (p.n * k * m >= (int64_t{1} << 20))
  {
    std::vector<float> w(static_cast<size_t>(k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < p.n; ++j) column(p, dec, x.data(), j, w.data());
  }
}

}  // namespace twin
}  // namespace mlabench::kernels
