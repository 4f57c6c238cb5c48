// ServingLimits: the sizes the serving core and the runners are built for, derived from EngineOptions (the one
// options struct, mlabench/engine.h) by one function, so no default or rule is written twice.
#pragma once

#include <cstdint>

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

}  // namespace mlabench::serving
