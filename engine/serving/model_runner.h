// ModelRunner: executes StepPlans on one device. The serving core (scheduler, block pool) decides; a runner
// computes: the GPU runner (engine/gpu/gpu_runner.h: CUDA kernels, cuBLAS, CUDA graphs) and the CPU runner
// (engine/model/cpu_runner.h: the float32 reference forward over a paged cache) take the same plans, so every
// scheduling path (chunked prefill, prefix sharing, pre-emption) runs on both.
#pragma once

#include <cstdint>
#include <string>

#include "engine/serving/step_plan.h"

namespace mlabench::serving {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  /// \brief KV-cache blocks the scheduler may hand out (ids 0..n_blocks-1); the runner may keep more for itself.
  virtual int64_t n_blocks() const = 0;
  /// \brief Caches the blocks are split over, in equal ranges of ids (DP attention: one a rank, whose sequences
  /// take all their blocks from it, PlannedSequence::partition); 1 for one cache.
  virtual int cache_partitions() const { return 1; }
  /// \brief Bytes one block holds over all layers.
  virtual uint64_t bytes_per_block() const = 0;
  /// \brief Cached tokens of the prefill sequences one step may attend through MLA's decompressed path (its
  /// scratch is sized for this many keys); 0 = no limit.
  virtual int64_t prefill_key_budget() const { return 0; }

  /// \brief Runs one step: writes each row's K/V to its slot, then fills `out` (a token per SAMPLE row, log p
  /// and greedy per SCORE row) and copies FULL rows to their dst. Returns when the results are on the host.
  virtual void execute(const StepPlan& plan, StepOutput& out) = 0;

  /// \brief "cpu" or the GPU's description (name, memory, cache, limits) as JSON for info and bench rows.
  virtual std::string describe_json() const = 0;
  virtual uint64_t weight_bytes() const = 0;
  uint64_t kv_cache_bytes() const { return static_cast<uint64_t>(n_blocks()) * bytes_per_block(); }
  /// \brief Device copy bandwidth measured at start-up (GB/s, read + write); 0 where not measured.
  virtual double copy_bandwidth_gbps() const { return 0.0; }
  /// \brief Times each step's phases (attention, MoE, dense, norms, sampling) from device events while on; every
  /// step then runs eagerly (a graph replay has no marks). False where the runner cannot (the CPU runner).
  virtual bool set_profiling(bool /*on*/) { return false; }
  /// \brief The phase times since profiling was turned on or last taken, as a JSON object ("" when not profiling),
  /// and starts a new count.
  virtual std::string take_profile_json() { return ""; }
};

}  // namespace mlabench::serving
