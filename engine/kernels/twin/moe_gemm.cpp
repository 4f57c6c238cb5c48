// CPU twin of the grouped expert GEMMs (engine/kernels/cuda/moe_gemm.cu, moe_gemm_hopper.cu and moe_gemm_fp8.cu),
// and the parameter check the launchers share with it. A plain loop: each output is one float32 sum over k ascending
// of float(x) * float(w), every product and sum rounded as written (the host build has no FMA contraction). F8_E4M3
// (W8A8, block-scaled): per 128-value group a float32 sum of the e4m3 products (each exact in float32), times the
// row's and the weight block's scales, summed over the groups in order (kernel_params.h, MoeGroupedGemmParams).
#include <algorithm>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/moe_checks.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

namespace {

// The FP8 operands' grid and scales: e4m3 rows on the 16-byte grid (the kernel copies 16 bytes at a time and a
// k tile is one 128-value scale group), one x scale per row and group, one weight scale per 128 x 128 block.
void check_fp8_operands(const MoeGroupedGemmParams& p, int64_t w_rows) {
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block, blocks = (w_rows + kFp8Block - 1) / kFp8Block;
  MLABENCH_CHECK(p.k % 16 == 0 && p.ld_x % 16 == 0 && p.expert_stride % 16 == 0,
                 "moe_grouped_gemm: F8_E4M3 with k {}, ld_x {}, expert_stride {}. HINT: FP8 rows must be multiples "
                 "of 16 bytes (k, ld_x and the expert stride multiples of 16)", p.k, p.ld_x, p.expert_stride);
  MLABENCH_CHECK(p.x_scale_ld >= groups && p.w_scale_ld >= groups &&
                     (p.n_experts == 1 || p.w_scale_expert_stride >= blocks * p.w_scale_ld),
                 "moe_grouped_gemm: F8_E4M3 scales x_scale_ld {}, w_scale_ld {}, w_scale_expert_stride {} for {} "
                 "groups of 128 and {} blocks of 128 weight rows. HINT: x_scale is [rows, x_scale_ld >= ceil(k / "
                 "128)], each expert's w_scale [ceil(w_rows / 128), w_scale_ld >= ceil(k / 128)] "
                 "(fp8_weight_scale_ld), experts w_scale_expert_stride >= blocks * w_scale_ld apart",
                 p.x_scale_ld, p.w_scale_ld, p.w_scale_expert_stride, groups, blocks);
  MLABENCH_CHECK(p.max_rows == 0 || (p.x_scale != nullptr && p.w_scale != nullptr),
                 "moe_grouped_gemm: F8_E4M3 without x_scale or w_scale. HINT: pass fp8_quantize_rows's scales for x "
                 "and the weights' block scales (scale_inv)");
}

}  // namespace

void check_moe_grouped_gemm(const MoeGroupedGemmParams& p) {
  MLABENCH_CHECK(p.dtype == DType::BF16 || p.dtype == DType::F16 || p.dtype == DType::F32 ||
                     p.dtype == DType::F8_E4M3,
                 "moe_grouped_gemm: dtype {}. HINT: the GEMM operands are BF16, F16, F32 or F8_E4M3 (with block "
                 "scales)", dtype_name(p.dtype));
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
  if (p.dtype == DType::F8_E4M3) check_fp8_operands(p, w_rows);
}

}  // namespace checks

namespace twin {

namespace {

// Expert e's rows [first, first + count), checked against max_rows (the kernels' grid covers no more).
struct ExpertSpan {
  int64_t first = 0, count = 0;
};

ExpertSpan expert_span(const MoeGroupedGemmParams& p, int32_t e) {
  const int64_t r0 = p.offsets ? p.offsets[e] : 0, rows = p.offsets ? p.offsets[e + 1] - r0 : p.max_rows;
  MLABENCH_CHECK(r0 >= 0 && rows >= 0 && rows <= p.max_rows,
                 "moe_grouped_gemm: expert {} has rows [{}, {}) but "
                 "max_rows is {}. HINT: offsets must be non-decreasing from >= 0 and max_rows must bound every "
                 "expert's count (n_tokens does)",
                 e, r0, r0 + rows, p.max_rows);
  return {r0, rows};
}

void check_row_bound(const MoeGroupedGemmParams& p, int64_t r, int32_t e) {
  MLABENCH_CHECK(p.rows_bound == 0 || r < p.rows_bound,
                 "moe_grouped_gemm: row {} of expert {} lies past rows_bound {}. HINT: rows_bound bounds "
                 "offsets[n_experts] (n_tokens * top_k)", r, e, p.rows_bound);
}

// Every expert's span and row, checked before any parallel loop (an exception must not leave an OpenMP region),
// expert by expert and row by row: the first bad span or row is the one the error names.
std::vector<ExpertSpan> checked_spans(const MoeGroupedGemmParams& p) {
  std::vector<ExpertSpan> spans(static_cast<size_t>(p.n_experts));
  for (int32_t e = 0; e < p.n_experts; ++e) {
    spans[static_cast<size_t>(e)] = expert_span(p, e);
    for (int64_t r = spans[e].first; r < spans[e].first + spans[e].count; ++r) check_row_bound(p, r, e);
  }
  return spans;
}

// The epilogues that write act (in `out_type`) from a row's float32 sums: SWIGLU through silu_mul's own twin, so
// the activation is rounded exactly as the unfused path rounds it; STORE_DT rounded to nearest even as cast's twin.
// Their checks depend on n and out_type only, which check_moe_grouped_gemm accepted: they cannot throw here.
void store_act(const MoeGroupedGemmParams& p, DType out_type, int64_t r, const float* sums) {
  void* out = static_cast<char*>(p.act) + static_cast<size_t>(r * p.ld_act) * dtype_size(out_type);
  if (p.epilogue == MoeGemmEpilogue::SWIGLU)
    silu_mul({.out = out, .out_type = out_type, .ld_out = p.n, .gate_up = sums, .ld_in = 2 * p.n, .inter = p.n,
              .n_rows = 1});
  else
    cast({.out = out, .out_type = out_type, .ld_out = p.n, .in = sums, .in_type = DType::F32, .ld_in = p.n,
          .n_rows = 1, .n_cols = p.n});
}

// Weight rows one task of expert_rows covers: their float32 copy (32 x k floats, 256 KB at k = 2048) stays in the
// core's cache while every row of the expert reads it, and an expert's 2 x 1408 weight rows still make 88 tasks.
constexpr int64_t kRowsPerTask = 32;

// One expert's rows [first, first + count): x row r decoded to float32 by decode_x(r, out) (x [count, k]), then per
// task a block of weight rows decoded by decode_w(j, out) and each output's float32 sum by dot(i, j, w_j) (row
// first + i), into y (STORE) or the row's sums (sums [count, w_rows]) that the act epilogue rounds. Every output
// is one call of dot by one thread: the sums of a serial loop, bit for bit.
template <class DecodeW, class DecodeX, class Dot>
void expert_rows(const MoeGroupedGemmParams& p, DType act_type, const ExpertSpan& s, int64_t w_rows, float* x,
                 float* sums, const DecodeW& decode_w, const DecodeX& decode_x, const Dot& dot) {
  const bool to_act = p.epilogue != MoeGemmEpilogue::STORE;
  const int64_t tasks = (w_rows + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel if (s.count * w_rows * p.k >= (int64_t{1} << 20))
  {
    std::vector<float> w(static_cast<size_t>(kRowsPerTask * p.k));  // this thread's block of weight rows
#pragma omp for schedule(static)
    for (int64_t i = 0; i < s.count; ++i) decode_x(s.first + i, x + i * p.k);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t j0 = t * kRowsPerTask, j1 = std::min(w_rows, j0 + kRowsPerTask);
      for (int64_t j = j0; j < j1; ++j) decode_w(j, w.data() + (j - j0) * p.k);
      for (int64_t i = 0; i < s.count; ++i) {
        float* out = to_act ? sums + i * w_rows : p.y + (s.first + i) * p.ld_y;
        for (int64_t j = j0; j < j1; ++j) out[j] = dot(i, j, w.data() + (j - j0) * p.k);
      }
    }
    if (to_act) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < s.count; ++i) store_act(p, act_type, s.first + i, sums + i * w_rows);
    }
  }
}

void decode_e4m3(const void* codes, size_t n, float* out) {
  const auto* b = static_cast<const uint8_t*>(codes);
  for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(b[i]);
}

// The F8_E4M3 path (kernel_params.h): for each weight row j, each group's float32 sum of e4m3 products (k
// ascending; every product is exact in float32), times x_scale[r, g] * w_scale[j / 128, g], added in group order;
// act (SWIGLU, STORE_DT) is always BF16.
void grouped_gemm_fp8(const MoeGroupedGemmParams& p, const std::vector<ExpertSpan>& spans) {
  const bool to_act = p.epilogue != MoeGemmEpilogue::STORE;
  const int64_t w_rows = p.epilogue == MoeGemmEpilogue::SWIGLU ? 2 * p.n : p.n;
  std::vector<float> x(static_cast<size_t>(p.max_rows * p.k)), sums;
  if (to_act) sums.resize(static_cast<size_t>(p.max_rows * w_rows));
  for (int32_t e = 0; e < p.n_experts; ++e) {
    const ExpertSpan& s = spans[static_cast<size_t>(e)];
    if (s.count == 0) continue;
    const auto* we = static_cast<const uint8_t*>(p.w) + e * p.expert_stride;
    const float* ws = p.w_scale + e * p.w_scale_expert_stride;
    auto decode_w = [&](int64_t j, float* out) { decode_e4m3(we + j * p.k, static_cast<size_t>(p.k), out); };
    auto decode_x = [&](int64_t r, float* out) {
      decode_e4m3(static_cast<const uint8_t*>(p.x) + r * p.ld_x, static_cast<size_t>(p.k), out);
    };
    auto dot = [&](int64_t i, int64_t j, const float* wj) {
      const float *xr = x.data() + i * p.k, *xs = p.x_scale + (s.first + i) * p.x_scale_ld;
      const float* wsj = ws + (j / kFp8Block) * p.w_scale_ld;
      float acc = 0.0f;
      for (int64_t c0 = 0, g = 0; c0 < p.k; c0 += kFp8Block, ++g) {
        const int64_t c1 = std::min(p.k, c0 + kFp8Block);
        float sum = 0.0f;
        for (int64_t c = c0; c < c1; ++c) sum += xr[c] * wj[c];
        acc += sum * (xs[g] * wsj[g]);
      }
      return acc;
    };
    expert_rows(p, DType::BF16, s, w_rows, x.data(), sums.data(), decode_w, decode_x, dot);
  }
}

}  // namespace

void moe_grouped_gemm(const MoeGroupedGemmParams& p) {
  checks::check_moe_grouped_gemm(p);
  if (p.max_rows == 0) return;
  const std::vector<ExpertSpan> spans = checked_spans(p);
  if (p.dtype == DType::F8_E4M3) return grouped_gemm_fp8(p, spans);
  const size_t es = dtype_size(p.dtype);
  const bool to_act = p.epilogue != MoeGemmEpilogue::STORE;
  const int64_t w_rows = p.epilogue == MoeGemmEpilogue::SWIGLU ? 2 * p.n : p.n;
  // An expert's x rows and weights as float32 once; then one dot product per output, k ascending.
  std::vector<float> x(static_cast<size_t>(p.max_rows * p.k)), gate_up;
  if (to_act) gate_up.resize(static_cast<size_t>(p.max_rows * w_rows));  // the rows' float32 sums before the epilogue
  for (int32_t e = 0; e < p.n_experts; ++e) {
    const ExpertSpan& s = spans[static_cast<size_t>(e)];
    if (s.count == 0) continue;
    const char* we = static_cast<const char*>(p.w) + static_cast<size_t>(e * p.expert_stride) * es;
    auto decode_w = [&](int64_t j, float* out) {
      convert_to_f32(p.dtype, we + static_cast<size_t>(j * p.k) * es, out, static_cast<size_t>(p.k));
    };
    auto decode_x = [&](int64_t r, float* out) {
      convert_to_f32(p.dtype, static_cast<const char*>(p.x) + static_cast<size_t>(r * p.ld_x) * es, out,
                     static_cast<size_t>(p.k));
    };
    auto dot = [&](int64_t i, int64_t, const float* wj) {
      const float* xr = x.data() + i * p.k;
      float acc = 0.0f;
      for (int64_t c = 0; c < p.k; ++c) acc += xr[c] * wj[c];
      return acc;
    };
    expert_rows(p, p.dtype, s, w_rows, x.data(), gate_up.data(), decode_w, decode_x, dot);
  }
}

}  // namespace twin

}  // namespace mlabench::kernels
