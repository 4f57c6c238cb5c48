// CPU twin of the grouped expert GEMM (engine/kernels/cuda/moe_gemm.cu), and the parameter check the launcher
// shares with it. A plain loop: each output is one float32 sum over k ascending of float(x) * float(w), every
// product and sum rounded as written (the host build has no FMA contraction).
#include <vector>

#include "engine/core/check.h"
#include "engine/kernels/twin/moe_checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

void check_moe_grouped_gemm(const MoeGroupedGemmParams& p) {
  MLABENCH_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16 || p.dtype == DType::F32,
                 "moe_grouped_gemm: dtype {}. HINT: the GEMM operands are BF16, F16 or F32", dtype_name(p.dtype));
  MLABENCH_CHECK(p.n_experts > 0 && p.n > 0 && p.k > 0 && p.max_rows >= 0,
                 "moe_grouped_gemm: n_experts {}, n {}, k {}, max_rows {}. HINT: n_experts, n and k must be "
                 "positive and max_rows >= 0",
                 p.n_experts, p.n, p.k, p.max_rows);
  MLABENCH_CHECK(p.ld_x >= p.k && p.ld_y >= p.n && p.expert_stride >= p.n * p.k,
                 "moe_grouped_gemm: ld_x {} (k {}), ld_y {} (n {}), expert_stride {} (n * k {}). HINT: leading "
                 "dimensions and the expert stride count elements: ld_x >= k, ld_y >= n, expert_stride >= n * k",
                 p.ld_x, p.k, p.ld_y, p.n, p.expert_stride, p.n * p.k);
  MLABENCH_CHECK(p.max_rows == 0 || (p.y && p.x && p.w && p.offsets),
                 "moe_grouped_gemm: y, x, w or offsets is "
                 "null. HINT: offsets are moe_permute's [n_experts + 1] row offsets");
}

}  // namespace checks

namespace twin {

void moe_grouped_gemm(const MoeGroupedGemmParams& p) {
  checks::check_moe_grouped_gemm(p);
  if (p.max_rows == 0) return;
  const size_t es = dtype_size(p.dtype);
  std::vector<float> w(static_cast<size_t>(p.n * p.k)), x(static_cast<size_t>(p.k));
  for (int32_t e = 0; e < p.n_experts; ++e) {
    const int64_t r0 = p.offsets[e], rows = p.offsets[e + 1] - r0;
    MLABENCH_CHECK(r0 >= 0 && rows >= 0 && rows <= p.max_rows,
                   "moe_grouped_gemm: expert {} has rows [{}, {}) but "
                   "max_rows is {}. HINT: offsets must be non-decreasing from >= 0 and max_rows must bound every "
                   "expert's count (n_tokens does)",
                   e, r0, r0 + rows, p.max_rows);
    if (rows == 0) continue;
    // The expert's [n, k] weights as float32 once; then one dot product per output, k ascending.
    convert_to_f32(p.dtype, static_cast<const char*>(p.w) + static_cast<size_t>(e * p.expert_stride) * es, w.data(),
                   w.size());
    for (int64_t r = r0; r < r0 + rows; ++r) {
      convert_to_f32(p.dtype, static_cast<const char*>(p.x) + static_cast<size_t>(r * p.ld_x) * es, x.data(), x.size());
      for (int64_t j = 0; j < p.n; ++j) {
        const float* wj = w.data() + j * p.k;
        float acc = 0.0f;
        for (int64_t i = 0; i < p.k; ++i) acc += x[static_cast<size_t>(i)] * wj[i];
        p.y[r * p.ld_y + j] = acc;
      }
    }
  }
}

}  // namespace twin

}  // namespace mlabench::kernels
