// gpu::phases (engine/gpu/phase_timer.h): CUDA events between named marks, summed per phase.
#include "engine/gpu/phase_timer.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "engine/kernels/cuda/cuda_check.h"

namespace mlabench::gpu::phases {
namespace {

struct Total {
  const char* name;
  double ms = 0.0;
  long long calls = 0;
};

struct State {
  std::mutex mu;
  std::vector<cudaEvent_t> pool;                         // events reused across steps
  std::vector<std::pair<const char*, cudaEvent_t>> open;  // this step's marks, in order
  std::vector<Total> totals;                              // first-seen order: the forward pass's order
  long long steps = 0, tokens = 0;

  ~State() {
    if (steps > 0) std::fputs(render().c_str(), stderr);
    // No CUDA calls here: the runtime may already be gone at exit. The events are reclaimed with the context.
  }

  cudaEvent_t take() {
    if (!pool.empty()) {
      cudaEvent_t e = pool.back();
      pool.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    MLABENCH_CUDA(cudaEventCreate(&e));
    return e;
  }

  Total& total(const char* name) {
    for (Total& t : totals)
      if (t.name == name || std::strcmp(t.name, name) == 0) return t;
    totals.push_back({name});
    return totals.back();
  }

  std::string render() const {
    double sum = 0.0;
    for (const Total& t : totals) sum += t.ms;
    std::string out = "GPU phases (MLABENCH_GPU_PHASES=1): " + std::to_string(steps) + " steps, " +
                      std::to_string(tokens) + " rows, " + std::to_string(sum) + " ms in marked phases\n";
    char line[160];
    for (const Total& t : totals) {
      std::snprintf(line, sizeof line, "  %-28s %10.2f ms %6.1f%% %8lld calls\n", t.name, t.ms,
                    sum > 0 ? 100.0 * t.ms / sum : 0.0, t.calls);
      out += line;
    }
    return out;
  }
};

State& state() {
  static State s;
  return s;
}

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  MLABENCH_CUDA(cudaStreamIsCapturing(s, &st));
  return st != cudaStreamCaptureStatusNone;
}

std::atomic<bool>& switch_state() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("MLABENCH_GPU_PHASES");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }()};
  return on;
}

}  // namespace

bool enabled() { return switch_state().load(std::memory_order_relaxed); }

void set_enabled(bool on) {
  switch_state().store(on, std::memory_order_relaxed);
  if (on) return;
  State& st = state();  // marks of a step left open are dropped
  std::lock_guard<std::mutex> lock(st.mu);
  for (auto& m : st.open) st.pool.push_back(m.second);
  st.open.clear();
}

void mark(cudaStream_t s, const char* name) {
  if (!enabled() || capturing(s)) return;
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  cudaEvent_t e = st.take();
  MLABENCH_CUDA(cudaEventRecord(e, s));
  st.open.emplace_back(name, e);
}

void end_step(cudaStream_t s, long long tokens) {
  if (!enabled() || capturing(s)) return;
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.open.empty()) return;
  cudaEvent_t last = st.take();
  MLABENCH_CUDA(cudaEventRecord(last, s));
  MLABENCH_CUDA(cudaEventSynchronize(last));
  for (size_t i = 0; i < st.open.size(); ++i) {
    cudaEvent_t next = i + 1 < st.open.size() ? st.open[i + 1].second : last;
    float ms = 0.0f;
    MLABENCH_CUDA(cudaEventElapsedTime(&ms, st.open[i].second, next));
    Total& t = st.total(st.open[i].first);
    t.ms += ms;
    ++t.calls;
    st.pool.push_back(st.open[i].second);
  }
  st.pool.push_back(last);
  st.open.clear();
  ++st.steps;
  st.tokens += tokens;
}

std::vector<PhaseTotal> totals() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  std::vector<PhaseTotal> out;
  for (const Total& t : st.totals) out.push_back({t.name, t.ms, t.calls});
  return out;
}

std::string report() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.render();
}

long long steps() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.steps;
}

long long rows() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.tokens;
}

void reset() {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  st.totals.clear();
  st.steps = 0;
  st.tokens = 0;
}

}  // namespace mlabench::gpu::phases
