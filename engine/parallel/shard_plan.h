// How one process splits a model over N GPUs (issue 22, docs/engine.md "Several GPUs"): which attention heads,
// FFN columns, routed experts and vocabulary rows each rank holds, and which collective joins the pieces after each
// block. Host logic only: the NCCL engine and the CPU twin of the collectives (host_collectives.h) follow the same
// plan, and CI checks that the sharded math equals the unsharded one (tests/engine/test_parallel.cpp).
//
// The combinations, over one group of `world` ranks:
//   --tp N            attention split by heads (GQA: by KV-head groups; MLA: each rank keeps the whole latent cache,
//                     since every head reads all of it: N copies of it), o_proj row-parallel + all-reduce; dense FFN,
//                     shared experts and every routed expert split by intermediate columns + all-reduce; lm_head
//                     split by vocabulary rows + all-gather.
//   --tp N --ep N     as --tp N, but routed experts whole, in contiguous blocks per rank; a token's rows go to the
//                     ranks holding its experts (all-to-all) and come back weighted (all-to-all). DeepSeek-V2's
//                     device-limited routing then bounds the ranks a token reaches where expert groups align with
//                     ranks (n_group a multiple of N).
//   --ep N --dp-attention   attention data-parallel: every rank runs all heads on its own sequences with its own
//                     latent cache (no copy of another rank's), dense parts TP-split; the MLA choice at scale, as
//                     SGLang's DP attention, because TP over MLA's 128 heads replicates the 576-value latent N times.
//   --tp N --dp-attention   the same attention, everything else TP (routed experts by columns).
// Not allowed: --ep N without --tp N or --dp-attention (every rank would compute all of attention for every
// sequence), and tp or ep other than 1 or the world size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace mlabench::parallel {

/// --tp / --ep / --dp-attention.
struct ParallelConfig {
  int tp = 1;
  int ep = 1;
  bool dp_attention = false;
  /// Ranks in the group: max(tp, ep).
  int world() const { return tp > ep ? tp : ep; }
};

/// [begin, end) of one dimension.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

/// Part `rank` of n split into `parts` contiguous pieces, the first n % parts one longer.
Range split_range(int64_t n, int parts, int rank);

/// What rank `rank` of the group holds. Ranges index the unsharded tensors: heads, intermediate columns, experts,
/// vocabulary rows.
struct ShardPlan {
  ParallelConfig config;
  int rank = 0, world = 1;
  // Attention: query heads and (GQA) KV heads this rank computes. Under dp_attention every head, on this rank's
  // own sequences only (sequences_sharded).
  Range heads, kv_heads;
  bool sequences_sharded = false;
  bool latent_replicated = false;  // MLA under TP: every rank keeps every sequence's whole latent cache
  // FFN columns: the dense MLP's intermediate columns, the shared experts' (n_shared * moe_intermediate) columns,
  // and, when routed experts are TP-split (ep == 1), each routed expert's moe_intermediate columns.
  Range dense_columns, shared_columns, expert_columns;
  // Routed experts this rank holds (whole, at expert_columns' width).
  Range experts;
  bool experts_whole = false;        // EP: routed experts whole, tokens dispatched by all-to-all
  bool routing_groups_align = true;  // EP with group-limited routing: n_group % world == 0 (groups never straddle)
  Range vocab;                       // lm_head rows; the embedding stays whole on every rank
};

/// The plan of `rank` for config c. Throws Error naming the dimension that does not divide, or the combination
/// that is not allowed, with a HINT.
ShardPlan plan_shards(const ModelConfig& c, const ParallelConfig& p, int rank);

/// Parameters (elements) rank `plan` holds, and those of the unsharded model (both: weights only, norms included).
int64_t rank_parameters(const ModelConfig& c, const ShardPlan& plan);
int64_t model_parameters(const ModelConfig& c);

/// KV-cache values a token costs on one rank: every layer's latent (MLA) or its K and V heads (GQA), for the
/// sequences it holds.
int64_t rank_kv_values_per_token(const ModelConfig& c, const ShardPlan& plan);

/// FP8 weights on GPU ranks: with --weights-dtype fp8 each rank quantises its own slices on its GPU (128 x 128 blocks
/// from the slice's first row and column), which is the unsharded model's quantisation sliced only where every slice
/// starts on the 128 grid and ends on it or at the matrix's end; an FP8 checkpoint's slices keep the whole matrix's
/// blocks (WeightUploader::put_fp8) under the same condition. Throws Error naming the first rank and matrix whose slice cuts a
/// block (rows of q / kv_b / k / v and the FFNs' gate and up, columns of o_proj and the FFNs' down), with a HINT;
/// and, as plan_shards does, where the split does not divide.
void check_fp8_grid(const ModelConfig& c, const ParallelConfig& p);

/// One line a rank: "rank 0/4: heads 0-32, experts 0-40, ..." (bench JSON and `info`).
std::string describe(const ShardPlan& plan);

/// `mlabench info --tp N --ep N --dp-attention`: the whole group's plan as a JSON object (the combination, then a
/// rank a row: what it holds, its parameters, its weight bytes in BF16 and FP8, its KV-cache bytes per token in
/// BF16; and whether --weights-dtype fp8 runs it on GPU ranks, "ok" or "no: " and why, check_fp8_grid's refusal
/// included), so a user sees what each GPU must hold before a run. Throws Error as plan_shards does.
std::string plan_json(const ModelConfig& c, const ParallelConfig& p);

}  // namespace mlabench::parallel
