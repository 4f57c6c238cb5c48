// CPU reference engine benchmarks (Google Benchmark). Each reports achieved bytes/s and FLOP/s from explicit
// formulas next to time, so a regression shows as distance from the memory roofline:
//   linear:  bytes = weight bytes (N*K*dtype) + x and y; FLOPs = 2*rows*N*K
//   decode:  bytes = active weight bytes per token (what one step must read); FLOPs ~ 2 * active params
// Run: build/bench/bench_cpu_engine [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <random>

#include "bench/bench_args.h"
#include "engine/kernels/cpu/ops.h"
#include "mlabench/engine.h"

namespace mlabench {
namespace {

void BM_Linear(benchmark::State& state) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), N = state.range(2), K = state.range(3);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> wf(static_cast<size_t>(N * K)), x(static_cast<size_t>(rows * K)), y(static_cast<size_t>(rows * N));
  std::vector<uint16_t> wh(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) {
    wf[i] = nd(rng);
    wh[i] = dtype == DType::BF16 ? f32_to_bf16(wf[i]) : f32_to_f16(wf[i]);
  }
  for (auto& v : x) v = nd(rng);
  const TensorView w{dtype, {N, K}, dtype == DType::F32 ? static_cast<const void*>(wf.data()) : wh.data()};
  for (auto _ : state) {
    cpu::linear(y.data(), N, x.data(), K, rows, w);
    benchmark::DoNotOptimize(y.data());
  }
  const double bytes = static_cast<double>(w.nbytes() + (x.size() + y.size()) * 4);
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * rows * N * K / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{} rows={} N={} K={}", dtype_name(dtype), rows, N, K));
}
BENCHMARK(BM_Linear)
    ->ArgsProduct({{static_cast<int64_t>(DType::BF16), static_cast<int64_t>(DType::F32)}, {1, 16}, {2048}, {2048}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Greedy decode on the bundled tiny DeepSeek-V2-shaped model: tokens/s and weight bandwidth per step.
void BM_DecodeDefaultModel(benchmark::State& state) {
  auto e = Engine::open({.model_dir = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2"}).value();
  const std::vector<int32_t> prompt = {0, 5, 9, 100, 7, 8, 9, 10};
  const int64_t n = state.range(0);
  for (auto _ : state) {
    auto r = e->generate(prompt, {.max_new_tokens = n}).value();
    benchmark::DoNotOptimize(r.tokens.data());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight GB/s"] = benchmark::Counter(static_cast<double>(n * e->active_weight_bytes()) / 1e9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("mlabench-tiny-dsv2, prompt 8, {} new tokens, active weights {} B/token", n,
                             e->active_weight_bytes()));
}
BENCHMARK(BM_DecodeDefaultModel)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace mlabench

// BENCHMARK_MAIN's body, guarded: a missing fixture or a refused setting prints its message and exits 1.
int main(int argc, char** argv) {
  return mlabench::bench::main_guarded(
      "bench_cpu_engine",
      [](int n, char** args) {
        benchmark::Initialize(&n, args);
        if (benchmark::ReportUnrecognizedArguments(n, args)) return 2;
        benchmark::RunSpecifiedBenchmarks();
        benchmark::Shutdown();
        return 0;
      },
      argc, argv);
}
