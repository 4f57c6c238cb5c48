// Shared by the GPU kernel benchmarks (bench_prefill_attention, bench_moe_gemm): CUDA-event timing, random device
// operands, and the two ceilings each run measures beside its rows (copy bandwidth, cuBLAS BF16 GEMM rate).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "engine/gpu/blas.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/kernels.h"

namespace mlabench {
namespace bench {

namespace k = kernels;
using gpu::DeviceBuffer;

// Median milliseconds of fn over reps after two warm-up calls.
inline double time_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t a, b;
  MLABENCH_CUDA(cudaEventCreate(&a));
  MLABENCH_CUDA(cudaEventCreate(&b));
  fn();
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    MLABENCH_CUDA(cudaEventRecord(a));
    fn();
    MLABENCH_CUDA(cudaEventRecord(b));
    MLABENCH_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    MLABENCH_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  MLABENCH_CUDA(cudaEventDestroy(a));
  MLABENCH_CUDA(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline DeviceBuffer random_buffer(int64_t n, DType type, uint64_t key) {
  DeviceBuffer d(static_cast<size_t>(n) * dtype_size(type), "bench operand");
  k::cuda::random_fill({.out = d.get(), .out_type = type, .n = n, .key = key}, nullptr);
  return d;
}

struct Ceilings {
  double copy_gbs = 0, gemm_tflops = 0;
};

inline Ceilings measure_ceilings() {
  Ceilings c;
  const size_t bytes = size_t{2} << 30;
  DeviceBuffer src(bytes, "copy src"), dst(bytes, "copy dst");
  MLABENCH_CUDA(cudaMemset(src.get(), 1, bytes));
  const double ms = time_ms([&] { MLABENCH_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice)); }, 10);
  c.copy_gbs = 2.0 * static_cast<double>(bytes) / (ms * 1e6);  // read + write
  const int64_t n = 8192;
  DeviceBuffer x = random_buffer(n * n, DType::BF16, 1), w = random_buffer(n * n, DType::BF16, 2);
  DeviceBuffer y(static_cast<size_t>(n * n) * 2, "gemm out");
  gpu::Blas blas(nullptr);
  const double gms =
      time_ms([&] { blas.linear_to(y.get(), DType::BF16, n, x.get(), n, w.get(), n, DType::BF16, n, n, n); }, 10);
  c.gemm_tflops = 2.0 * n * n * n / (gms * 1e9);
  return c;
}

}  // namespace bench
}  // namespace mlabench
