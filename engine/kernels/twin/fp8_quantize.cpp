// CPU twins of the FP8 quantisers (engine/kernels/cuda/fp8_quantize.cu), built on engine/core/fp8.h so that what
// the GPU writes is what the CPU engine computes (fake_quantize_fp8_row, quantize_fp8_blocks), and the parameter
// checks the launchers share with them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "core/check.h"
#include "engine/core/dtype.h"
#include "engine/core/fp8.h"
#include "engine/kernels/twin/twin.h"

namespace mlabench::kernels {

namespace checks {

void check_fp8_quantize_rows(const Fp8QuantizeRowsParams& p) {
  MLABENCH_CHECK(p.x_type == DType::F32 || p.x_type == DType::BF16,
                 "fp8_quantize_rows: x_type is {}, not F32 or BF16. HINT: quantise the activations the GEMM would "
                 "read in BF16 or F32", dtype_name(p.x_type));
  MLABENCH_CHECK(p.rows >= 0 && p.k > 0, "fp8_quantize_rows: rows = {}, k = {}. HINT: rows >= 0 and k > 0", p.rows,
                 p.k);
  MLABENCH_CHECK(p.ld_x >= p.k && p.ld_q >= p.k,
                 "fp8_quantize_rows: ld_x = {}, ld_q = {} with k = {}. HINT: leading dimensions count elements and "
                 "cover a whole row", p.ld_x, p.ld_q, p.k);
  // Either layout of kernel_params.h, with no two (row, group) pairs on one scale; a single row or group leaves
  // its stride unused.
  const int64_t groups = (p.k + kFp8Block - 1) / kFp8Block;
  const bool rows_major = p.scale_group_stride == 1 && (p.rows <= 1 || p.scale_row_stride >= groups);
  const bool groups_major = p.scale_row_stride == 1 && (groups <= 1 || p.scale_group_stride >= p.rows);
  MLABENCH_CHECK(rows_major || groups_major,
                 "fp8_quantize_rows: scale_row_stride = {}, scale_group_stride = {} for {} rows of {} groups. HINT: "
                 "rows major is (>= groups, 1) (the grouped expert GEMM), groups major (1, >= rows) (cuBLASLt's "
                 "VEC128_32F)", p.scale_row_stride, p.scale_group_stride, p.rows, groups);
  MLABENCH_CHECK(p.rows == 0 || (p.x && p.q && p.scale),
                 "fp8_quantize_rows: x, q and scale must be set. HINT: fill every pointer of Fp8QuantizeRowsParams");
}

void check_fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p) {
  MLABENCH_CHECK(p.w_type == DType::F32 || p.w_type == DType::BF16,
                 "fp8_quantize_blocks: w_type is {}, not F32 or BF16. HINT: generate or load the weight in BF16 or "
                 "F32 first", dtype_name(p.w_type));
  MLABENCH_CHECK(p.n >= 0 && p.k > 0, "fp8_quantize_blocks: n = {}, k = {}. HINT: n >= 0 and k > 0", p.n, p.k);
  MLABENCH_CHECK(p.ld_w >= p.k && p.ld_q >= p.k,
                 "fp8_quantize_blocks: ld_w = {}, ld_q = {} with k = {}. HINT: leading dimensions count elements and "
                 "cover a whole row", p.ld_w, p.ld_q, p.k);
  MLABENCH_CHECK(p.scale_ld >= (p.k + kFp8Block - 1) / kFp8Block,
                 "fp8_quantize_blocks: scale_ld = {} is below the {} blocks of a row of k = {}. HINT: use "
                 "fp8_weight_scale_ld(k) (engine/core/fp8.h)", p.scale_ld, (p.k + kFp8Block - 1) / kFp8Block, p.k);
  MLABENCH_CHECK(p.n == 0 || (p.w && p.q && p.scale_inv),
                 "fp8_quantize_blocks: w, q and scale_inv must be set. HINT: fill every pointer of "
                 "Fp8QuantizeBlocksParams");
}

}  // namespace checks

namespace twin {

namespace {

float value_at(const void* base, DType t, int64_t i) {
  return t == DType::BF16 ? bf16_to_f32(static_cast<const uint16_t*>(base)[i]) : static_cast<const float*>(base)[i];
}

}  // namespace

void fp8_quantize_rows(const Fp8QuantizeRowsParams& p) {
  checks::check_fp8_quantize_rows(p);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c0 = 0, g = 0; c0 < p.k; c0 += kFp8Block, ++g) {
      const int64_t c1 = std::min(p.k, c0 + kFp8Block);
      float amax = 0.0f;
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(value_at(p.x, p.x_type, r * p.ld_x + c)));
      const float s = fp8_block_scale(amax);
      p.scale[r * p.scale_row_stride + g * p.scale_group_stride] = s;
      for (int64_t c = c0; c < c1; ++c) p.q[r * p.ld_q + c] = quantize_e4m3(value_at(p.x, p.x_type, r * p.ld_x + c), s);
    }
}

// quantize_fp8_blocks itself on a packed float copy (so an infinite or NaN weight throws, as a checkpoint's does),
// its codes and scales then copied to their leading dimensions; the scale grid's padding is not written.
void fp8_quantize_blocks(const Fp8QuantizeBlocksParams& p) {
  checks::check_fp8_quantize_blocks(p);
  if (p.n == 0) return;
  const int64_t nb = (p.n + kFp8Block - 1) / kFp8Block, kb = (p.k + kFp8Block - 1) / kFp8Block;
  std::vector<float> w(static_cast<size_t>(p.n * p.k));
  for (int64_t r = 0; r < p.n; ++r)
    for (int64_t c = 0; c < p.k; ++c) w[static_cast<size_t>(r * p.k + c)] = value_at(p.w, p.w_type, r * p.ld_w + c);
  std::vector<uint8_t> codes(w.size());
  std::vector<float> scales(static_cast<size_t>(nb * kb));
  quantize_fp8_blocks(w, p.n, p.k, codes, scales, "fp8_quantize_blocks (twin)");
  for (int64_t r = 0; r < p.n; ++r)
    std::memcpy(p.q + r * p.ld_q, codes.data() + r * p.k, static_cast<size_t>(p.k));
  for (int64_t b = 0; b < nb; ++b)
    std::memcpy(p.scale_inv + b * p.scale_ld, scales.data() + b * kb, static_cast<size_t>(kb) * sizeof(float));
}

}  // namespace twin
}  // namespace mlabench::kernels
