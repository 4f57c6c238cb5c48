// CPU twin of the grouped expert GEMMs (engine/kernels/cuda/moe_gemm.cu and moe_gemm_hopper.cu), and the parameter
// check the launchers share with it. A plain loop: each output is one float32 sum over k ascending of float(x) *
// float(w), every product and sum rounded as written (the host build has no FMA contraction).
#include <vector>

#include "core/check.h"
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
  const bool swiglu = p.epilogue == MoeGemmEpilogue::SWIGLU;
  const bool to_act = swiglu || p.epilogue == MoeGemmEpilogue::STORE_DT;
  const int64_t w_rows = swiglu ? 2 * p.n : p.n, ld_out = to_act ? p.ld_act : p.ld_y;
  MLABENCH_CHECK(p.ld_x >= p.k && ld_out >= p.n && p.expert_stride >= w_rows * p.k,
                 "moe_grouped_gemm: ld_x {} (k {}), {} {} (n {}), expert_stride {} ({} weight rows x k {}). HINT: "
                 "leading dimensions and the expert stride count elements: ld_x >= k, the output's >= n, "
                 "expert_stride >= n * k (2n * k with the SWIGLU epilogue: gate rows, then up rows)",
                 p.ld_x, p.k, to_act ? "ld_act" : "ld_y", ld_out, p.n, p.expert_stride, w_rows, p.k);
  MLABENCH_CHECK(p.max_rows == 0 || ((to_act ? p.act != nullptr : p.y != nullptr) && p.x && p.w),
                 "moe_grouped_gemm: {}, x or w is null. HINT: pass the output the epilogue writes",
                 to_act ? "act" : "y");
  MLABENCH_CHECK(p.offsets != nullptr || p.n_experts == 1,
                 "moe_grouped_gemm: offsets is null with {} experts. HINT: offsets are moe_permute's [n_experts + 1] "
                 "row offsets; only a single expert (a dense FFN, rows [0, max_rows)) may leave them out",
                 p.n_experts);
  MLABENCH_CHECK(!to_act || p.dtype != DType::F32,
                 "moe_grouped_gemm: the {} epilogue with F32 operands. HINT: it writes BF16 or F16 "
                 "values; float32 layers store y (and run silu_mul)",
                 swiglu ? "SWIGLU" : "STORE_DT");
  MLABENCH_CHECK(p.rows_bound >= 0, "moe_grouped_gemm: rows_bound {} < 0. HINT: 0 (unknown) or n_tokens * top_k",
                 p.rows_bound);
  MLABENCH_CHECK(p.tile_rows == 0 || p.tile_rows == 64 || p.tile_rows == 128,
                 "moe_grouped_gemm: tile_rows {}. HINT: 0 (the default, 128), 64 or 128", p.tile_rows);
}

}  // namespace checks

namespace twin {

void moe_grouped_gemm(const MoeGroupedGemmParams& p) {
  checks::check_moe_grouped_gemm(p);
  if (p.max_rows == 0) return;
  const size_t es = dtype_size(p.dtype);
  const bool swiglu = p.epilogue == MoeGemmEpilogue::SWIGLU, to_dt = p.epilogue == MoeGemmEpilogue::STORE_DT;
  const int64_t w_rows = swiglu ? 2 * p.n : p.n;
  std::vector<float> w(static_cast<size_t>(w_rows * p.k)), x(static_cast<size_t>(p.k)), gate_up;
  if (swiglu || to_dt) gate_up.resize(static_cast<size_t>(w_rows));  // the row's float32 sums before the epilogue
  for (int32_t e = 0; e < p.n_experts; ++e) {
    const int64_t r0 = p.offsets ? p.offsets[e] : 0, rows = p.offsets ? p.offsets[e + 1] - r0 : p.max_rows;
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
      MLABENCH_CHECK(p.rows_bound == 0 || r < p.rows_bound,
                     "moe_grouped_gemm: row {} of expert {} lies past rows_bound {}. HINT: rows_bound bounds "
                     "offsets[n_experts] (n_tokens * top_k)", r, e, p.rows_bound);
      convert_to_f32(p.dtype, static_cast<const char*>(p.x) + static_cast<size_t>(r * p.ld_x) * es, x.data(), x.size());
      float* yr = swiglu || to_dt ? gate_up.data() : p.y + r * p.ld_y;
      for (int64_t j = 0; j < w_rows; ++j) {
        const float* wj = w.data() + j * p.k;
        float acc = 0.0f;
        for (int64_t i = 0; i < p.k; ++i) acc += x[static_cast<size_t>(i)] * wj[i];
        yr[j] = acc;
      }
      // SWIGLU: silu_mul's own twin on this row, so the activation is rounded exactly as the unfused path rounds it.
      if (swiglu)
        silu_mul({.out = static_cast<char*>(p.act) + static_cast<size_t>(r * p.ld_act) * es, .out_type = p.dtype,
                  .ld_out = p.n, .gate_up = gate_up.data(), .ld_in = 2 * p.n, .inter = p.n, .n_rows = 1});
      // STORE_DT: the float32 row rounded to dtype (round to nearest even), as cast's twin rounds it.
      if (to_dt)
        cast({.out = static_cast<char*>(p.act) + static_cast<size_t>(r * p.ld_act) * es, .out_type = p.dtype,
              .ld_out = p.n, .in = gate_up.data(), .in_type = DType::F32, .ld_in = p.n, .n_rows = 1, .n_cols = p.n});
    }
  }
}

}  // namespace twin

}  // namespace mlabench::kernels
