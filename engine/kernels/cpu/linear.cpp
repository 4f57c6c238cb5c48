// Matrix products against stored weights. Each weight row is converted to float32 once per call and reused for
// all input rows, so the cost of BF16/F16 conversion does not grow with the batch.
#include <algorithm>
#include <vector>

#include "core/check.h"
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
}  // namespace

void linear(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w) {
  MLABENCH_ICHECK(w.shape.size() == 2, "linear: weight must be 2-D, got {}", shape_str(w.shape));
  const int64_t N = w.shape[0], K = w.shape[1];
  const size_t esz = dtype_size(w.dtype);
  const int64_t n_blocks = (N + kRowBlock - 1) / kRowBlock;
#pragma omp parallel if (n_rows * N * K >= kParallelMinWork)
  {
    std::vector<float> wrows(static_cast<size_t>(kRowBlock * K));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t n0 = b * kRowBlock, nb = std::min(kRowBlock, N - n0);
      convert_to_f32(w.dtype, static_cast<const char*>(w.data) + static_cast<size_t>(n0 * K) * esz, wrows.data(),
                     static_cast<size_t>(nb * K));
      for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t j = 0; j < nb; ++j) y[r * ldy + n0 + j] = dot(x + r * ldx, wrows.data() + j * K, K);
    }
  }
}

void linear_transposed(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t n_rows, const TensorView& w) {
  MLABENCH_ICHECK(w.shape.size() == 2, "linear_transposed: weight must be 2-D, got {}", shape_str(w.shape));
  const int64_t N = w.shape[0], K = w.shape[1];
  const size_t esz = dtype_size(w.dtype);
  std::vector<float> wrow(static_cast<size_t>(K));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t k = 0; k < K; ++k) y[r * ldy + k] = 0.0f;
  // Sequential over n so each output sums in the same order whatever the thread count.
  for (int64_t n = 0; n < N; ++n) {
    convert_to_f32(w.dtype, static_cast<const char*>(w.data) + static_cast<size_t>(n * K) * esz, wrow.data(),
                   static_cast<size_t>(K));
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
