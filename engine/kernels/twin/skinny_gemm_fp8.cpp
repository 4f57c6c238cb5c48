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

namespace mlabench::kernels {

namespace checks {

void check_skinny_gemm_fp8(const Fp8SkinnyGemmParams& p) {
  MLABENCH_CHECK(p.m >= 0 && p.m <= kSkinnyFp8MaxRows && p.n > 0 && p.k > 0 && p.k % 16 == 0,
                 "skinny_gemm_fp8: m {}, n {}, k {}. HINT: 0 <= m <= {} (more rows take Blas::linear_fp8), n > 0, "
                 "k > 0 and a multiple of 16 (e4m3 rows are read 16 bytes at a time)",
                 p.m, p.n, p.k, kSkinnyFp8MaxRows);
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
  MLABENCH_CHECK(p.ld_x >= p.k && p.ld_w >= p.k && p.ldy >= p.n,
                 "skinny_gemm_fp8: ld_x {}, ld_w {} with k {}, ldy {} with n {}. HINT: leading dimensions count "
                 "elements and cover a whole row",
                 p.ld_x, p.ld_w, p.k, p.ldy, p.n);
  // Groups-major x scales (fp8_quantize_rows with scale_row_stride 1): a stride below m would put two rows' scales
  // of different groups on one float.
  MLABENCH_CHECK((groups == 1 || p.x_scale_group_stride >= p.m) && p.w_scale_ld >= groups,
                 "skinny_gemm_fp8: x_scale_group_stride {} for {} rows, w_scale_ld {} for {} groups of 128. HINT: "
                 "x_scale is groups major (fp8_quantize_rows with scale_row_stride 1, scale_group_stride >= m); "
                 "w_scale is [ceil(n / 128), w_scale_ld >= ceil(k / 128)] (fp8_weight_scale_ld)",
                 p.x_scale_group_stride, p.m, p.w_scale_ld, groups);
  MLABENCH_CHECK(p.m == 0 || (p.y && p.xq && p.x_scale && p.w && p.w_scale),
                 "skinny_gemm_fp8: a null operand. HINT: y, xq, x_scale, w and w_scale are all read or written");
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

}  // namespace

// Rows of x are decoded once, each weight row once; the innermost loop runs over the m rows, whose sums are
// independent, so each (row, output) sum still adds its products in k order.
void skinny_gemm_fp8(const Fp8SkinnyGemmParams& p) {
  checks::check_skinny_gemm_fp8(p);
  if (p.m == 0) return;
  const auto& dec = e4m3_table();
  const int64_t m = p.m, k = p.k;
  std::vector<float> x(static_cast<size_t>(k * m)), w(static_cast<size_t>(k));
  for (int64_t r = 0; r < m; ++r)  // stored [k][m]: the m values of a column side by side
    for (int64_t c = 0; c < k; ++c) x[static_cast<size_t>(c * m + r)] = dec[p.xq[r * p.ld_x + c]];
  std::vector<float> acc(static_cast<size_t>(m)), s(static_cast<size_t>(m));
  for (int64_t j = 0; j < p.n; ++j) {
    for (int64_t c = 0; c < k; ++c) w[static_cast<size_t>(c)] = dec[p.w[j * p.ld_w + c]];
    const float* ws = p.w_scale + (j / kFp8Block) * p.w_scale_ld;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t c0 = 0, g = 0; c0 < k; c0 += kFp8Block, ++g) {
      std::fill(s.begin(), s.end(), 0.0f);
      for (int64_t c = c0; c < std::min(k, c0 + kFp8Block); ++c) {
        const float wc = w[static_cast<size_t>(c)];
        const float* xc = x.data() + c * m;
        for (int64_t r = 0; r < m; ++r) s[static_cast<size_t>(r)] += xc[r] * wc;
      }
      for (int64_t r = 0; r < m; ++r)
        acc[static_cast<size_t>(r)] += s[static_cast<size_t>(r)] * (p.x_scale[g * p.x_scale_group_stride + r] * ws[g]);
    }
    for (int64_t r = 0; r < m; ++r) p.y[r * p.ldy + j] = acc[static_cast<size_t>(r)];
  }
}

}  // namespace twin
}  // namespace mlabench::kernels
