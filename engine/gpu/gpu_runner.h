// The GPU runner's factory, in plain C++ so the Engine builds the same way with or without CUDA: gpu_runner.cpp
// implements it in a CUDA build; gpu_runner_unavailable.cpp, in a CPU-only build, refuses --device cuda with a HINT.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/model/config.h"
#include "engine/parallel/device_collectives.h"
#include "engine/serving/limits.h"
#include "engine/serving/model_runner.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench {

/// \brief The GPU runner: uploads the weights (from `host`, views into the mmap'd checkpoint, or generated on the
/// device from `seed` when host is null), allocates the step buffers, measures the copy bandwidth and gives the
/// KV cache what the budget allows (EngineOptions::kv_cache_gib; 0 = the free memory less 1 GiB). Throws Error
/// when the build has no CUDA or the machine no GPU. `hooks`: one rank of a sharded model (`c` and `host` its
/// slices; engine/parallel/sharded_runner.h), empty for the whole model; hooks that cannot be captured turn the
/// CUDA graphs off.
std::unique_ptr<serving::ModelRunner> make_gpu_runner(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                                      const EngineOptions& o, const serving::ServingLimits& limits,
                                                      parallel::DeviceRankHooks hooks = {});

}  // namespace mlabench
