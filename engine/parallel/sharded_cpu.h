// The sharded CPU forward (issue 22): each rank of a ShardPlan runs the CPU model (engine/model/cpu_model.h) on its
// slices of the weights, joined by the CPU twin of the collectives (host_collectives.h) where the NCCL engine will
// join them: an all-reduce after each attention block (heads split, o_proj row-parallel) and each FFN (columns
// split, or under EP each rank's experts for every token: the all-gather + reduce-scatter form of the dispatch),
// and an all-gather of the output head's vocabulary slices. CI compares it with the unsharded CPU model
// (tests/engine/test_parallel.cpp): what the GPU engine's sharding must then reproduce.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/config.h"
#include "engine/parallel/shard_plan.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench::parallel {

/// One rank's model: its config (n_heads, n_kv_heads, intermediate widths of its slices) and weights (views into
/// the whole model's where rows are split, owned copies where columns are; the whole model must outlive it).
struct RankModel {
  ModelConfig config;
  ModelWeights weights;
};

RankModel shard_model(const ModelConfig& c, const ModelWeights& w, const ShardPlan& plan);

/// Logits [prompt.size() + continuation.size(), vocab]: every row of a prefill of `prompt`, then one decode step per
/// token of `continuation`, run over p.world() ranks (threads). DP attention is refused: it splits sequences, and
/// this runs one.
std::vector<float> sharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, const ParallelConfig& p,
                                      std::span<const int32_t> prompt, std::span<const int32_t> continuation,
                                      MlaAttention mode);

/// The same logits from the unsharded CPU model (the comparison's other side).
std::vector<float> unsharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, std::span<const int32_t> prompt,
                                        std::span<const int32_t> continuation, MlaAttention mode);

}  // namespace mlabench::parallel
