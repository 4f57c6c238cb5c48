// Helpers for the CUDA-kernel tests: skip visibly without a GPU, move host vectors to the device and back.
// Each test fills host buffers, runs the CPU twin on them, runs the CUDA kernel on device copies of the same
// buffers and compares (engine/kernels/twin/twin.h).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/kernels/cuda/cuda_check.h"

namespace mlabench::test {

/// Skips the current test with the reason when no CUDA device is usable; ctest and gtest both show the message.
#define MLABENCH_REQUIRE_GPU()                                                            \
  do {                                                                                    \
    std::string mlabench_why_;                                                            \
    if (!::mlabench::gpu::cuda_device_available(&mlabench_why_))                          \
      GTEST_SKIP() << "SKIPPED (no GPU): " << mlabench_why_ << " -- GPU tests run on the " \
                   << "GPU machine through tools/gpu/check.sh";                           \
  } while (0)

/// A device copy of a host vector.
template <class T>
gpu::DeviceBuffer to_device(const std::vector<T>& h) {
  gpu::DeviceBuffer d(h.size() * sizeof(T) + 16, "test buffer");
  MLABENCH_CUDA(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

/// The first n elements of a device buffer.
template <class T>
std::vector<T> to_host(const gpu::DeviceBuffer& d, size_t n) {
  std::vector<T> h(n);
  MLABENCH_CUDA(cudaDeviceSynchronize());
  MLABENCH_CUDA(cudaMemcpy(h.data(), d.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/// Max |a - b| / max(1, max|b|) over the vectors, NaN if either holds a NaN where the other does not.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0, scale = 1;
  for (float x : b) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return std::nan("");
    if (!std::isnan(a[i])) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return worst / scale;
}

}  // namespace mlabench::test
