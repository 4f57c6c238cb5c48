// The decode step's few-row GEMMs: skinny_gemm (engine/kernels/cuda/skinny_gemm.cu) beside cuBLAS (GemmEx, the
// engine's path before it) on V2-Lite's and Llama-3-8B's projections at 1, 2, 4 and 8 rows, each with the bytes it
// must read (weights + x + y), achieved GB/s and the share of the copy bandwidth measured in the same run.
//
//   bench_skinny_gemm [--reps N] [--json FILE]
//
// A weight matrix (2-420 MB) would sit in the 50 MB L2 between repetitions, so each timed pass runs the product on
// copies of the weights in turn, together larger than 4x the L2, and reports the mean per call (CUDA events around
// the pass; the median pass of --reps).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_args.h"
#include "bench/gpu_bench_util.h"

namespace mlabench {
namespace {

using bench::DeviceBuffer;
using bench::time_ms;

struct Shape {
  const char* model;
  const char* name;
  int64_t n, k;
};

const Shape kShapes[] = {
    {"V2-Lite", "q_proj", 3072, 2048},          {"V2-Lite", "kv_a_proj", 576, 2048},
    {"V2-Lite", "o_proj", 2048, 2048},          {"V2-Lite", "shared gate_up", 5632, 2048},
    {"V2-Lite", "shared down", 2048, 2816},     {"V2-Lite", "lm_head", 102400, 2048},
    {"Llama-3-8B", "qkv", 6144, 4096},          {"Llama-3-8B", "o_proj", 4096, 4096},
    {"Llama-3-8B", "gate_up", 28672, 4096},     {"Llama-3-8B", "down", 4096, 14336},
    {"Llama-3-8B", "lm_head", 128256, 4096},
};

int run(int reps, const std::string& json_path) {
  const bench::Ceilings ceil = bench::measure_ceilings();
  cudaDeviceProp prop{};
  MLABENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s: copy %.0f GB/s (read + write), cuBLAS BF16 GEMM %.0f TFLOP/s; %d reps\n", prop.name,
              ceil.copy_gbs, ceil.gemm_tflops, reps);
  std::printf("%-11s %-15s %7s %6s %2s  %-7s %9s %9s %7s %9s\n", "model", "projection", "n", "k", "m", "kernel", "us",
              "GB/s", "copy%", "vs cuBLAS");
  nlohmann::json rows = nlohmann::json::array();
  gpu::Blas blas(nullptr);
  const int64_t l2 = prop.l2CacheSize > 0 ? prop.l2CacheSize : (50 << 20);
  for (const Shape& s : kShapes) {
    const int64_t wbytes = s.n * s.k * 2;
    const int copies = static_cast<int>(std::max<int64_t>(2, (4 * l2 + wbytes - 1) / wbytes));
    std::vector<DeviceBuffer> w;
    for (int c = 0; c < copies; ++c) w.push_back(bench::random_buffer(s.n * s.k, DType::BF16, 100 + c));
    const DeviceBuffer x = bench::random_buffer(8 * s.k, DType::BF16, 7);
    DeviceBuffer y(static_cast<size_t>(8 * s.n) * 4, "y");
    for (int64_t m : {1, 2, 4, 8}) {
      const double bytes = static_cast<double>(wbytes + m * s.k * 2 + m * s.n * 4);
      double cublas_us = 0;
      for (const char* kernel : {"cublas", "skinny"}) {
        const bool skinny = !std::strcmp(kernel, "skinny");
        auto pass = [&] {
          for (int c = 0; c < copies; ++c) {
            if (skinny) {
              kernels::cuda::skinny_gemm({.y = y.as<float>(), .ldy = s.n, .x = x.get(), .ldx = s.k, .w = w[c].get(),
                                    .ldw = s.k, .m = m, .n = s.n, .k = s.k},
                                   nullptr);
            } else {
              blas.linear_to(y.get(), DType::F32, s.n, x.get(), s.k, w[c].get(), s.k, DType::BF16, m, s.n, s.k);
            }
          }
        };
        const double us = time_ms(pass, reps) * 1e3 / copies;
        if (!skinny) cublas_us = us;
        const double gbs = bytes / (us * 1e3);
        std::printf("%-11s %-15s %7lld %6lld %2lld  %-7s %9.2f %9.0f %6.1f%% %8.2fx\n", s.model, s.name,
                    static_cast<long long>(s.n), static_cast<long long>(s.k), static_cast<long long>(m), kernel, us,
                    gbs, 100.0 * gbs / ceil.copy_gbs, cublas_us / us);
        rows.push_back({{"model", s.model}, {"projection", s.name}, {"n", s.n}, {"k", s.k}, {"m", m},
                        {"kernel", kernel}, {"us", us}, {"gb_per_s", gbs}, {"copy_share", gbs / ceil.copy_gbs}});
      }
    }
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"device", prop.name},
                                               {"copy_gb_per_s", ceil.copy_gbs},
                                               {"gemm_tflop_per_s", ceil.gemm_tflops},
                                               {"reps", reps},
                                               {"rows", rows}}
                                    .dump(1)
                             << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace mlabench

namespace {
int run_cli(int argc, char** argv) {
  int reps = 15;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      if (!mlabench::bench::parse_count("--reps", argv[++i], 3, 100000, &reps)) return 2;
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  std::string why;
  if (!mlabench::gpu::cuda_device_available(&why)) {
    std::fprintf(stderr, "bench_skinny_gemm: no GPU (%s)\n", why.c_str());
    return 1;
  }
  return mlabench::run(reps, json);
}
}  // namespace

// An error (a refused MLABENCH_* setting, a CUDA failure) is a message and exit 1, not an uncaught exception's abort.
int main(int argc, char** argv) { return mlabench::bench::main_guarded("bench_skinny_gemm", run_cli, argc, argv); }
