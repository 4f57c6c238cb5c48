// The sharded runner (issue 22): one serving::ModelRunner over the ranks of a --tp / --ep group, so the serving core
// (scheduler, block pool, prefix sharing, chunked prefill, pre-emption) plans each step once, on the host, and every
// rank executes that same plan on its slices of the model (shard_model of its ShardPlan), each on its own persistent
// thread (RankThreads). On the CPU a rank is the float32 CPU runner joined by the CPU twin of the collectives
// (host_collectives.h), so `mlabench run|bench|generate --device cpu --tp N` runs the sharded math end to end and CI
// checks it against the unsharded engine. On GPUs a rank is the GPU runner on its GPU, joined by NCCL (a GPU a rank)
// or by the host-staged twin (ranks sharing a GPU: the one-GPU parity test), engine/parallel/device_collectives.h.
//
// Each rank keeps its own paged KV cache: under --tp with MLA every rank holds every sequence's whole latent (each of
// its heads reads all of it), with GQA its KV heads only. --kv-cache-gib is per rank, as it is per GPU. Rank 0's
// results are returned; every other rank's sampled tokens and scores must equal them bit for bit (the all-reduce and
// all-gather give every rank the same logits), and a step where they do not is an internal error, not a silent pick.
#pragma once

#include <memory>

#include "engine/model/config.h"
#include "engine/serving/limits.h"
#include "engine/serving/model_runner.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench::parallel {

/// What a split run must satisfy, checked before any weight is read (Error with a HINT): a plan for every rank
/// (plan_shards); on cuda no --ep or --dp-attention, FP8 weights' slices on the 128 grid (check_fp8_grid), a GPU to
/// place the ranks on, and --kv-cache-gib where ranks share a GPU.
void check_sharded_options(const ModelConfig& c, const EngineOptions& o);

/// The CPU runner of `c` and its weights `w` (a checkpoint, or random_weight_sources: each rank generates only its
/// slices) split over max(o.tp, o.ep) ranks as plan_shards plans them
/// (Error naming what does not divide). Under DP attention (o.dp_attention) each rank keeps its own cache, one
/// partition of the block ids (cache_partitions()), and each sequence runs on the rank whose partition holds its
/// blocks, the step plan cut into a plan a rank. OpenMP threads (o.n_threads, or every core) are divided among the
/// ranks.
std::unique_ptr<serving::ModelRunner> make_sharded_cpu_runner(const ModelConfig& c, ModelWeights w,
                                                              const EngineOptions& o,
                                                              const serving::ServingLimits& limits);

/// The GPU runner of `c` split over o.tp ranks, rank r on GPU o.device_index + r (round robin where there are fewer:
/// ranks then share GPUs, need an explicit --kv-cache-gib, and join through the host). `w`: a checkpoint (each rank
/// copies its slices from the mmap) or random_weight_sources (each rank generates its slices on its GPU: a random
/// DeepSeek-V2 never exists whole in host memory). Refused (check_sharded_options):
/// --ep (a GPU rank runs every routed expert of its column slice; whole experts need the token dispatch) and
/// --dp-attention.
/// MLABENCH_COLLECTIVES=host joins ranks on distinct GPUs through the host too (to compare with NCCL); =nccl or
/// unset: NCCL; any other value is refused.
std::unique_ptr<serving::ModelRunner> make_sharded_gpu_runner(const ModelConfig& c, ModelWeights w,
                                                              const EngineOptions& o,
                                                              const serving::ServingLimits& limits);

}  // namespace mlabench::parallel
