// Sandbox start-up latency (Google Benchmark): one sandbox::run() from clone to the death of the whole tree,
// for /bin/true and for `python3 -c pass`, each beside the same command spawned bare (no sandbox), so the
// sandbox's own cost is the difference. Counters p50_ms and p90_ms are per-run percentiles (target: python p50
// under 50 ms). The context lines name the interpreter and kernel.
// Run: build/bench/bench_sandbox [--benchmark_filter=...] [--benchmark_min_time=5]
#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "sandbox/sandbox.h"

extern char** environ;

namespace mlabench::sandbox {
namespace {

std::vector<std::string> command(int64_t which) {
  if (which == 0) return {"/bin/true"};
  return {find_python(), "-c", "pass"};
}

void report_percentiles(benchmark::State& state, std::vector<double>& ms) {
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  state.counters["p50_ms"] = at(0.5);
  state.counters["p90_ms"] = at(0.9);
  state.SetLabel(command(state.range(0)).size() == 1 ? "/bin/true" : "python3 -c pass");
}

void BM_SandboxStartup(benchmark::State& state) {
  Request rq;
  rq.argv = command(state.range(0));
  std::vector<double> ms;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const Result r = run(rq);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!r.ok()) {
      state.SkipWithError((std::string("sandbox run failed: ") + status_name(r.status) + " " + r.error).c_str());
      return;
    }
  }
  report_percentiles(state, ms);
}
BENCHMARK(BM_SandboxStartup)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

// The same command without a sandbox: posix_spawn and waitpid.
void BM_BareStartup(benchmark::State& state) {
  const std::vector<std::string> args = command(state.range(0));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<double> ms;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    pid_t pid = -1;
    int status = 0;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0 || waitpid(pid, &status, 0) != pid ||
        status != 0) {
      state.SkipWithError("spawn failed");
      return;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  report_percentiles(state, ms);
}
BENCHMARK(BM_BareStartup)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

}  // namespace
}  // namespace mlabench::sandbox

static int run_bench(int argc, char** argv) {
  using namespace mlabench::sandbox;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  const Capabilities& caps = probe();
  if (!caps.user_namespaces) {
    std::fprintf(stderr, "bench_sandbox: the sandbox cannot run here:\n%s", caps.detail.c_str());
    return 1;
  }
  utsname u{};
  uname(&u);
  benchmark::AddCustomContext("kernel", std::string(u.release));
  benchmark::AddCustomContext("python", find_python());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

int main(int argc, char** argv) { return mlabench::bench::main_guarded("bench_sandbox", run_bench, argc, argv); }
