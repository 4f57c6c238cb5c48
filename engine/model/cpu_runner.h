// The CPU runner: the float32 reference forward (CpuModel) executing the serving core's StepPlans over a paged
// KV cache in host memory, so `--device cpu` goes through the same scheduler, prefix sharing, chunked prefill
// and pre-emption as the GPU. Each planned sequence's cached positions are gathered from its blocks into a
// contiguous CpuKvCache, the new rows run through CpuModel::forward, and their K/V are written back to their
// slots. Logit rows are sampled and scored with the CPU twins of the GPU kernels (kernels::twin::sample and
// log_softmax_gather), so one seed draws the same tokens on both devices. Block memory is allocated on first
// use and filled with NaN, so a read of a slot nothing wrote poisons the logits instead of passing silently.
#pragma once

#include <memory>

#include "engine/model/config.h"
#include "engine/model/cpu_model.h"
#include "engine/serving/limits.h"
#include "engine/serving/model_runner.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench {

/// \brief The CPU runner for `c` and its weights. The cache budget is EngineOptions::kv_cache_gib, or a quarter
/// of the machine's memory when 0 (allocated lazily, block by block). `hooks`: one rank of a sharded model (`c` and
/// `w` its slices; engine/parallel/sharded_runner.h), empty for the whole model.
std::unique_ptr<serving::ModelRunner> make_cpu_runner(ModelConfig c, ModelWeights w, const EngineOptions& o,
                                                      const serving::ServingLimits& limits, CpuRankHooks hooks = {});

}  // namespace mlabench
