// NumPy .npy files (format 1.0/2.0/3.0, little-endian, C order): the exchange format for logits with the
// Python reference tools. Only float32 and float64 arrays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlabench {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<double> data;  // converted from the stored dtype
  std::string dtype;         // "<f4" or "<f8" as stored
};

/// \brief Writes a float32 array. Throws Error if the file cannot be written.
void npy_write_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
/// \brief Reads a float32 or float64 array. Throws Error naming the problem for anything else.
NpyArray npy_read(const std::string& path);

}  // namespace mlabench
