// gpu::phases: where a GPU forward pass spends its time, by named phase, for steps that are not replayed from a CUDA
// graph (prefill and mixed steps). Off unless MLABENCH_GPU_PHASES=1: then each mark() records a CUDA event on the
// stream, end_step() waits for the step's last event and adds the time between consecutive marks to the phase that
// was running, and the table goes to stderr when the process exits (or whenever report() is asked for).
//
// The events cost a few microseconds a mark and end_step() synchronises the stream, so timings taken with phases on
// are for finding where time goes, not for the benchmark's numbers. A stream being captured into a graph is left
// alone (events recorded during capture would become graph nodes).
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

namespace mlabench::gpu::phases {

/// Whether phases are timed: MLABENCH_GPU_PHASES=1 (read once), unless set_enabled said otherwise.
bool enabled();
/// Turns the timing on or off from here on (tests; a tool that wants the table without the environment variable).
void set_enabled(bool on);
/// Ends the phase running on `s` (if any) and starts `name` (a string literal: it is kept, not copied).
void mark(cudaStream_t s, const char* name);
/// Ends the running phase and adds this step's phase times to the totals; `tokens` counts the step's rows.
void end_step(cudaStream_t s, long long tokens);
/// One phase's totals so far.
struct PhaseTotal {
  std::string name;
  double ms = 0.0;
  long long calls = 0;
};
/// Every phase timed so far, in the order first seen (the forward pass's order).
std::vector<PhaseTotal> totals();
/// The totals as a table: phase, milliseconds, share, calls; the steps and rows they cover.
std::string report();
/// Steps and rows the totals cover.
long long steps();
long long rows();
/// Clears the totals (a new count starts; marks of a step in flight are kept).
void reset();

/// `mark` only when enabled: one branch where phases are off.
inline void at(cudaStream_t s, const char* name) {
  if (enabled()) mark(s, name);
}

}  // namespace mlabench::gpu::phases
