// The sharded CPU forward (issue 22): each rank of a ShardPlan runs the CPU model (engine/model/cpu_model.h) on its
// slices of the weights, joined by the CPU twin of the collectives (host_collectives.h) where the NCCL engine will
// join them: an all-reduce after each attention block (heads split, o_proj row-parallel) and each FFN (columns
// split, or under EP each rank's experts for every token: the all-gather + reduce-scatter form of the dispatch),
// and an all-gather of the output head's vocabulary slices. Under DP attention each rank attends over its own
// sequence with every head, and the FFN and the output head gather every rank's rows before and sum the partial
// outputs after. CI compares it with the unsharded CPU model (tests/engine/test_parallel.cpp): what the GPU engine's
// sharding must then reproduce.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/cpu_model.h"
#include "engine/parallel/host_collectives.h"
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

/// What rank `rank` of `group` does where a --tp/--ep forward joins (the group outlives the hooks): the all-reduce
/// of each block's partial output and the all-gather of the output head's vocabulary slices.
CpuRankHooks tensor_parallel_hooks(HostGroup& group, int rank, int64_t vocab);
/// The same under DP attention (each rank attends over its own sequences with every head): before each FFN and the
/// output head every rank's rows are gathered (counts first), after them the partial outputs summed and each rank's
/// own rows kept. Every rank must run the same number of forward calls (a rank with fewer sequences runs empty ones).
CpuRankHooks dp_attention_hooks(HostGroup& group, int rank, int64_t vocab);

/// Logits [prompt.size() + continuation.size(), vocab]: every row of a prefill of `prompt`, then one decode step per
/// token of `continuation`, run over p.world() ranks (threads). DP attention is refused: it splits sequences, and
/// this runs one (sharded_cpu_logits_dp runs one a rank).
std::vector<float> sharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, const ParallelConfig& p,
                                      std::span<const int32_t> prompt, std::span<const int32_t> continuation,
                                      MlaAttention mode);

/// DP attention (p.dp_attention): rank r runs sequence r (prompts[r], then one decode step a token of
/// continuations[r], every continuation of one length) with every attention head and its own cache; the FFN and
/// the output head run each rank's slices over all ranks' rows (gathered before, reduced after). Logits per
/// sequence, [prompt + continuation rows, vocab] each.
std::vector<std::vector<float>> sharded_cpu_logits_dp(const ModelConfig& c, const ModelWeights& w,
                                                      const ParallelConfig& p,
                                                      std::span<const std::vector<int32_t>> prompts,
                                                      std::span<const std::vector<int32_t>> continuations,
                                                      MlaAttention mode);

/// The same logits from the unsharded CPU model (the comparison's other side).
std::vector<float> unsharded_cpu_logits(const ModelConfig& c, const ModelWeights& w, std::span<const int32_t> prompt,
                                        std::span<const int32_t> continuation, MlaAttention mode);

}  // namespace mlabench::parallel
