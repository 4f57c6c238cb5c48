// ServingLimits: the sizes the serving core and the runners are built for, derived from EngineOptions (the one
// options struct, mlabench/engine.h) by one function, so no default or rule is written twice.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/config.h"
#include "mlabench/engine.h"

namespace mlabench::serving {

struct ServingLimits {
  int64_t max_seqs = 0;         ///< sequences running at once (EngineOptions::max_batch)
  int64_t max_step_tokens = 0;  ///< new rows per step: max(max_step_tokens, max_batch), so a full decode fits
  int64_t max_logit_rows = 0;   ///< logit rows per step: 512, or the power of two >= max_batch if larger
  int64_t max_context = 0;      ///< longest sequence served
  int64_t block_size = 0;       ///< tokens per KV block
  bool prefix_sharing = true;
  int64_t vocab_size = 0;
};

/// \brief The limits `o` implies for `c`. max_context 0 means max_position_embeddings, capped at 32768 on CUDA
/// (where the RoPE table and the cache are sized for it). Throws Error on impossible values.
ServingLimits serving_limits(const EngineOptions& o, const ModelConfig& c);

/// \brief The batch a CUDA-graphed decode step of `n` sequences runs as (the runner pads the rest with rows that
/// write to a trash block): powers of two up to 8, then eight buckets an octave (n rounded up to a multiple of
/// bit_ceil(n) / 16), so that past 8 the padding stays under n / 8. Power-of-two buckets padded 694 sequences to
/// 1,024: every padding row runs the whole layer, the routed experts included (docs/perf-notes.md, issue 16 round
/// 11). Monotone in n and at most bit_ceil(n), so bit_ceil(max_seqs) rows bound every bucket.
int64_t decode_graph_bucket(int64_t n);

/// \brief Where a step's prefill sequences' caches go when a runner gathers them into a scratch pool of its own
/// (the GPU engine's GQA prefill over FP8 slots widens them into BF16 blocks for the BF16 flash kernel): sequence i
/// (of kv_len.size(), its kv_len[i] keys) takes whole blocks from slot cu_slots[i], block-aligned, so that its
/// block table is tables[i * max_blocks + j] = cu_slots[i] / block_size + j for its ceil(kv_len[i] / block_size)
/// blocks (the rest of the row repeats its first block: never read). cu_slots has kv_len.size() + 1 entries, the
/// last the scratch's slots in use.
struct GatheredPrefill {
  std::vector<int32_t> cu_slots, tables;
};
GatheredPrefill gathered_prefill_layout(std::span<const int32_t> kv_len, int64_t block_size, int32_t max_blocks);
/// \brief Keys of a step's prefill sequences a GPU runner that gathers their caches into scratch sizes it for
/// (ModelRunner::prefill_key_budget): twice the step's tokens, or the longest context if that is more, so one
/// sequence always fits.
int64_t prefill_key_budget(const ServingLimits& limits);
/// \brief The scratch slots gathered_prefill_layout can take in one step within prefill_key_budget(limits): each
/// sequence rounds up to whole blocks, and a step holds at most min(max_seqs, max_step_tokens) prefill sequences.
int64_t gathered_prefill_slots(const ServingLimits& limits);

}  // namespace mlabench::serving
