// Matrix products against stored weights. Each weight row is converted to float32 once per call and reused for
// all input rows, so the cost of BF16/F16 conversion does not grow with the batch.
#include <algorithm>
#include <vector>

#include "core/check.h"
#include "engine/core/fp8.h"
#include "engine/kernels/cpu/ops.h"

namespace mlabench::cpu {

namespace {
constexpr int64_t kRowBlock = 16;  // weight rows converted together
// Below this many multiply-adds a parallel region costs more than it saves (thread wake-up is microseconds).
constexpr int64_t kParallelMinWork = int64_t{1} << 18;

inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Rows [n0, n0 + count) of w as float32: a plain conversion, or for FP8 each code times its block's scale_inv.
void weight_rows_to_f32(const TensorView& w, int64_t n0, int64_t count, float* out) {
  const int64_t K = w.shape[1];
  const size_t esz = dtype_size(w.dtype);
  const char* src = static_cast<const char*>(w.data) + static_cast<size_t>(n0 * K) * esz;
  if (w.dtype != DType::F8_E4M3) {
    convert_to_f32(w.dtype, src, out, static_cast<size_t>(count * K));
    return;
  }
  MLABENCH_ICHECK(w.scale_inv != nullptr, "an F8_E4M3 weight [{}] without its block scales", shape_str(w.shape));
  const auto* codes = reinterpret_cast<const uint8_t*>(src);
  for (int64_t r = 0; r < count; ++r) {
    const float* scales = w.scale_inv + ((w.scale_row0 + n0 + r) / kFp8Block) * w.scale_ld;
    for (int64_t k = 0; k < K; ++k) out[r * K + k] = e4m3_to_f32(codes[r * K + k]) * scales[k / kFp8Block];
  }
}
}  // namespace

void linear(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w) {
  MLABENCH_ICHECK(w.shape.size() == 2, "linear: weight must be 2-D, got {}", shape_str(w.shape));
  const int64_t N = w.shape[0], K = w.shape[1];
  const int64_t n_blocks = (N + kRowBlock - 1) / kRowBlock;
  // FP8 weights: the activations go through e4m3 too, in groups of 128 along K with a scale each (DeepSeek-V3's
  // act_quant before its FP8 GEMM), so this is what an FP8 tensor-core GEMM computes, up to summation order.
  std::vector<float> xq;
  if (w.dtype == DType::F8_E4M3) {
    xq.resize(static_cast<size_t>(n_rows * K));
    for (int64_t r = 0; r < n_rows; ++r) {
      std::copy_n(x + r * ldx, K, xq.data() + r * K);
      fake_quantize_fp8_row(xq.data() + r * K, K);
    }
    x = xq.data();
    ldx = K;
  }
#pragma omp parallel if (n_rows * N * K >= kParallelMinWork)
  {
    std::vector<float> wrows(static_cast<size_t>(kRowBlock * K));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t n0 = b * kRowBlock, nb = std::min(kRowBlock, N - n0);
      weight_rows_to_f32(w, n0, nb, wrows.data());
      for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t j = 0; j < nb; ++j) y[r * ldy + n0 + j] = dot(x + r * ldx, wrows.data() + j * K, K);
    }
  }
}

void linear_transposed(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w) {
  MLABENCH_ICHECK(w.shape.size() == 2, "linear_transposed: weight must be 2-D, got {}", shape_str(w.shape));
  const int64_t N = w.shape[0], K = w.shape[1];
  std::vector<float> wrow(static_cast<size_t>(K));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t k = 0; k < K; ++k) y[r * ldy + k] = 0.0f;
  // Sequential over n so each output sums in the same order whatever the thread count. FP8 weights are dequantised
  // and the activations kept (absorbed MLA's W_UK^T, as DeepSeek-V3's reference applies its dequantised wkv_b).
  for (int64_t n = 0; n < N; ++n) {
    weight_rows_to_f32(w, n, 1, wrow.data());
    for (int64_t r = 0; r < n_rows; ++r) {
      const float xn = x[r * ldx + n];
      float* yr = y + r * ldy;
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) yr[k] += xn * wrow[k];
    }
  }
}

void embedding(float* y, const TensorView& table, const int32_t* ids, int64_t n_rows) {
  const int64_t H = table.shape[1];
  const size_t esz = dtype_size(table.dtype);
  for (int64_t r = 0; r < n_rows; ++r)
    convert_to_f32(table.dtype, static_cast<const char*>(table.data) + static_cast<size_t>(ids[r] * H) * esz, y + r * H,
                   static_cast<size_t>(H));
}

}  // namespace mlabench::cpu
