#include "engine/serving/limits.h"

#include <algorithm>
#include <bit>

#include "engine/core/check.h"

namespace mlabench::serving {

ServingLimits serving_limits(const EngineOptions& o, const ModelConfig& c) {
  MLABENCH_CHECK(o.max_batch >= 1 && o.max_step_tokens >= 1 && o.block_size >= 1 && o.max_context >= 0,
                 "engine limits: max_batch {}, max_step_tokens {}, block_size {}, max_context {}. HINT: "
                 "--max-batch, --max-step-tokens and --block-size must be positive, --max-context >= 0",
                 o.max_batch, o.max_step_tokens, o.block_size, o.max_context);
  ServingLimits l;
  l.max_seqs = o.max_batch;
  l.max_step_tokens = std::max(o.max_step_tokens, o.max_batch);
  l.max_logit_rows = std::max<int64_t>(512, static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(o.max_batch))));
  l.block_size = o.block_size;
  l.prefix_sharing = o.prefix_sharing;
  l.vocab_size = c.vocab_size;
  l.max_context = o.max_context > 0 ? o.max_context
                  : o.device == Device::CUDA ? std::min<int64_t>(c.max_position_embeddings, 32768)
                                             : c.max_position_embeddings;
  MLABENCH_CHECK(l.max_context <= c.max_position_embeddings,
                 "--max-context {} exceeds the model's max_position_embeddings {}. HINT: lower --max-context",
                 l.max_context, c.max_position_embeddings);
  return l;
}

}  // namespace mlabench::serving
