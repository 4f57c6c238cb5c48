// Helpers for the CUDA-kernel tests: skip visibly without a GPU, move host vectors to the device and back.
// Each test fills host buffers, runs the CPU twin on them, runs the CUDA kernel on device copies of the same
// buffers and compares (engine/kernels/twin/twin.h).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
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

/// What enqueue(stream) puts on `stream`, captured into a CUDA graph (a launcher that synchronised, allocated or read
/// back would end the capture with an error), launched once and waited for: the graphed form the engine replays.
template <class F>
void run_captured(cudaStream_t stream, F&& enqueue) {
  cudaGraph_t graph;
  MLABENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  enqueue(stream);
  MLABENCH_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  MLABENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  MLABENCH_CUDA(cudaGraphLaunch(exec, stream));
  MLABENCH_CUDA(cudaStreamSynchronize(stream));
  MLABENCH_CUDA(cudaGraphExecDestroy(exec));
  MLABENCH_CUDA(cudaGraphDestroy(graph));
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

/// BF16 values a kernel wrote against its twin's where the two sum in different orders: each written (not NaN) and
/// within one BF16 ulp of the twin's value plus 1e-5 of the largest (a value near a rounding boundary may round the
/// other way; where silu(gate) * up nearly cancels, float32 rounding of the sums). Returns how many differ at all.
inline int64_t expect_bf16_within_an_ulp(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want,
                                         const char* what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  float scale = 0.0f;
  for (uint16_t v : want) scale = std::max(scale, std::fabs(bf16_to_f32(v)));
  int64_t differ = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const float a = bf16_to_f32(got[i]), b = bf16_to_f32(want[i]);
    EXPECT_FALSE(std::isnan(a)) << what << " " << i << " not written";
    EXPECT_LE(std::fabs(a - b), std::ldexp(std::fabs(b), -7) + 1e-5f * scale) << what << " " << i;
    if (std::isnan(a) || std::fabs(a - b) > std::ldexp(std::fabs(b), -7) + 1e-5f * scale) return differ + 1;
    differ += got[i] != want[i];
  }
  return differ;
}

}  // namespace mlabench::test
