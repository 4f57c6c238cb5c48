// TensorView: a typed, shaped window on bytes someone else owns (an mmap'd safetensors file, or a buffer in
// ModelWeights). Row-major, contiguous. Views of rows let one stored tensor serve as several (a fused expert
// tensor as per-expert matrices, kv_b_proj as W_UK / W_UV per head) without copies. A view of random weights may
// hold no bytes yet, only where its elements come from (RandomSource).
#pragma once

#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/dtype.h"

namespace mlabench {

/// Where the elements of a --random-weights tensor come from when they have not been generated (data null): the
/// generator key of the whole tensor, and which of its elements this view holds. Element i of the view is
/// whole-tensor element `first + i` (cols == 0), else `first + (i / cols) * ld + i % cols` (a 2-D block of `cols`
/// columns of a whole tensor with rows `ld` apart): kernels::RandomFillParams generates exactly these, so a GPU
/// rank writes its slice of a tensor without the whole ever existing (issue 22).
struct RandomSource {
  uint64_t key = 0;
  int64_t first = 0, cols = 0, ld = 0;
};

struct TensorView {
  static constexpr int64_t kScaleBlock = 128;  // engine/core/fp8.h kFp8Block

  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major
  const void* data = nullptr;
  std::optional<RandomSource> random = std::nullopt;  // set (data null) for a random tensor not generated yet
  /// F8_E4M3 matrices: one float32 scale_inv per 128 x 128 block (engine/core/fp8.h), a grid of rows of `scale_ld`
  /// blocks (a 3-D [E, N, K] tensor: one grid of ceil(N/128) rows a sub-tensor, one after the other); row r of this
  /// view is row scale_row0 + r of its grid (a view of rows that start inside a block).
  const float* scale_inv = nullptr;
  int64_t scale_ld = 0, scale_row0 = 0;

  int64_t numel() const { return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  /// Elements per row (product of every dimension after the first).
  int64_t row_size() const { return shape.empty() ? 1 : numel() / shape[0]; }

  /// \brief Rows [first, first + count) of a 2-D tensor, or sub-tensor `first..` of the first dimension.
  TensorView slice_rows(int64_t first, int64_t count) const {
    TensorView v = *this;
    v.shape[0] = count;
    if (random) {
      v.random->first += first * (random->cols > 0 ? random->ld : row_size());  // a column block is 2-D
      return v;
    }
    v.data = static_cast<const char*>(data) + static_cast<size_t>(first * row_size()) * dtype_size(dtype);
    if (scale_inv != nullptr) {
      if (shape.size() == 2)
        v.scale_row0 += first;
      else  // whole sub-tensors: whole grids
        v.scale_inv += first * ((shape[1] + kScaleBlock - 1) / kScaleBlock) * scale_ld;
    }
    return v;
  }
  /// \brief The i-th sub-tensor along the first dimension, that dimension dropped ([E, N, K] -> [N, K]).
  TensorView index(int64_t i) const {
    TensorView v = slice_rows(i, 1);
    v.shape.erase(v.shape.begin());
    return v;
  }
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace mlabench
