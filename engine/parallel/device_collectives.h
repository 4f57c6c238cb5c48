// The joins of a sharded GPU model (issue 22), in plain C++ so the Engine and the sharded runner build the same way
// with or without CUDA: what one rank's GpuModel calls where its partial results meet the other ranks' (after each
// attention block and FFN, and at the output head), on the rank's own stream. Two implementations
// (engine/gpu/device_collectives.cpp, CUDA builds only):
//   nccl   one communicator a rank, every rank on its own GPU (NCCL all-reduce and all-gather on the stream; CUDA
//          graphs capture them). NCCL_NVLS_ENABLE is set to 0 unless the environment sets it (the device README).
//   host   the CPU twin (host_collectives.h) behind a copy to and from the host: any placement, ranks sharing a GPU
//          included, so the sharded GPU engine's parity with the one-GPU engine is tested on one GPU. Each join
//          synchronizes the rank's stream, so its ranks run without CUDA graphs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/parallel/host_collectives.h"

namespace mlabench::parallel {

/// One rank's joins; the stream is the rank's cudaStream_t.
struct DeviceRankHooks {
  /// data[n] (device, float32, this rank's partial sum) := the sum over ranks, on every rank.
  std::function<void(float* data, int64_t n, void* stream)> all_reduce;
  /// local [rows, local_vocab] (device: this rank's vocabulary rows of the output head) into logits [rows, vocab]
  /// (device) on every rank.
  std::function<void(const float* local, int64_t rows, int64_t local_vocab, float* logits, void* stream)>
      gather_logits;
  /// DP attention only (null otherwise; the CPU's CpuRankHooks::gather_rows / reduce_rows on device memory): each
  /// rank's rows mine [rows, width] into all [all_rows, width] on every rank, in rank order (rows may be 0 on a rank
  /// with no sequence this step; every rank calls it). Sets all_rows; returns this rank's first row in all. all
  /// holds at least the step's rows over all ranks.
  std::function<int64_t(const float* mine, int64_t rows, int64_t width, float* all, int64_t& all_rows, void* stream)>
      gather_rows;
  /// DP attention only: all [all_rows, width] (this rank's partial sums over every rank's rows) summed over the
  /// ranks, then rows [first, first + rows) into mine.
  std::function<void(float* all, int64_t all_rows, int64_t width, int64_t first, int64_t rows, float* mine,
                     void* stream)>
      reduce_rows;
  /// Whether a CUDA graph may capture the calls (nccl without DP attention: yes; host: no, it synchronizes; DP
  /// attention: no, the row counts are exchanged on the host every call).
  bool graph_capturable = false;
  bool empty() const { return !all_reduce; }
  bool dp_attention() const { return static_cast<bool>(gather_rows); }
};

/// Where each rank runs and how the ranks join.
class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  /// "nccl" or "host".
  virtual std::string kind() const = 0;
  /// Rank `rank`'s hooks; valid while this object lives. Call from the rank's own thread (its device current).
  virtual DeviceRankHooks hooks(int rank) = 0;
};

/// The GPU each of `world` ranks runs on: first_device + r while there are enough GPUs, else round robin over the
/// GPUs from first_device on (ranks then share GPUs). Throws Error when the build has no CUDA or the machine no GPU.
std::vector<int> place_ranks(int world, int first_device);

/// NCCL over `devices` (one rank a GPU, distinct) when the build has NCCL and `prefer_host` is false; otherwise the
/// host-staged twin through `group`. vocab: the model's; max_rows: the most logit rows a step gathers.
/// dp_attention: the hooks carry gather_rows / reduce_rows (each rank attends over its own sequences).
std::unique_ptr<DeviceCollectives> make_device_collectives(HostGroup& group, const std::vector<int>& devices,
                                                           int64_t vocab, int64_t max_rows, bool prefer_host,
                                                           bool dp_attention = false);

}  // namespace mlabench::parallel
