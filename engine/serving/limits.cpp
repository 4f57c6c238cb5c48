#include "engine/serving/limits.h"

#include <algorithm>
#include <bit>

#include "core/check.h"

namespace mlabench::serving {

ServingLimits serving_limits(const EngineOptions& o, const ModelConfig& c) {
  MLABENCH_CHECK(o.max_batch >= 1 && o.max_step_tokens >= 0 && o.block_size >= 0 && o.max_context >= 0,
                 "engine limits: max_batch {}, max_step_tokens {}, block_size {}, max_context {}. HINT: "
                 "--max-batch must be positive, --max-step-tokens, --block-size and --max-context >= 0 (0: auto)",
                 o.max_batch, o.max_step_tokens, o.block_size, o.max_context);
  // Upper bounds far past any real use, so that buffer sizes (rows x widths) cannot overflow: a value CLI11 clamped
  // from an overlong number (INT64_MAX) is refused here instead of sizing a step.
  constexpr int64_t kMaxRows = int64_t{1} << 22, kMaxBlock = int64_t{1} << 16;
  MLABENCH_CHECK(o.max_batch <= kMaxRows && o.max_step_tokens <= kMaxRows && o.block_size <= kMaxBlock &&
                     o.max_context <= kMaxRows,
                 "engine limits: max_batch {}, max_step_tokens {}, max_context {} (at most {}) or block_size {} (at "
                 "most {}) out of range. HINT: --max-step-tokens 16384 and --max-context 131072 cover 128K prompts",
                 o.max_batch, o.max_step_tokens, o.max_context, kMaxRows, o.block_size, kMaxBlock);
  ServingLimits l;
  l.max_seqs = o.max_batch;
  // Auto: 16384 on CUDA, where a 4096-token step leaves the GEMMs short of the tensor-core rate and makes MLA
  // decompress a long prompt's latent prefix once a step (32 times for 128K); 4096 on the CPU.
  const int64_t step = o.max_step_tokens > 0 ? o.max_step_tokens : o.device == Device::CUDA ? 16384 : 4096;
  l.max_step_tokens = std::max(step, o.max_batch);
  l.max_logit_rows = std::max<int64_t>(512, static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(o.max_batch))));
  // Auto: 64-token blocks on CUDA, where the Hopper kernels copy 64 keys of a block in one TMA box: MLA decode
  // (81% of the copy bandwidth at 64 x 8K against 60% with 16-token blocks, docs/perf-notes.md issue 15 round 18)
  // and the MHA/GQA flash prefill (each 64-key half of its 128-key tiles); 16 on the CPU (finer prefix sharing,
  // less tail per sequence).
  l.block_size = o.block_size > 0 ? o.block_size : o.device == Device::CUDA ? 64 : 16;
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

int64_t decode_graph_bucket(int64_t n) {
  const auto pow2 = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(n, 1))));
  if (pow2 <= 8) return pow2;
  const int64_t step = pow2 / 16;  // the octave (pow2 / 2, pow2] in eight steps
  return (n + step - 1) / step * step;
}

GatheredPrefill gathered_prefill_layout(std::span<const int32_t> kv_len, int64_t block_size, int32_t max_blocks) {
  MLABENCH_CHECK(block_size > 0 && max_blocks > 0, "gathered_prefill_layout: block_size {}, max_blocks {}",
                 block_size, max_blocks);
  GatheredPrefill g;
  g.cu_slots.reserve(kv_len.size() + 1);
  g.cu_slots.push_back(0);
  g.tables.reserve(kv_len.size() * static_cast<size_t>(max_blocks));
  for (const int32_t n : kv_len) {
    const int64_t blocks = (n + block_size - 1) / block_size, first = g.cu_slots.back() / block_size;
    MLABENCH_CHECK(n >= 0 && blocks <= max_blocks, "gathered_prefill_layout: {} keys in {} blocks of {}", n,
                   max_blocks, block_size);
    for (int64_t j = 0; j < max_blocks; ++j) g.tables.push_back(static_cast<int32_t>(first + (j < blocks ? j : 0)));
    const int64_t end = g.cu_slots.back() + blocks * block_size;
    MLABENCH_CHECK(end < (int64_t{1} << 31), "gathered_prefill_layout: {} slots", end);
    g.cu_slots.push_back(static_cast<int32_t>(end));
  }
  return g;
}

int64_t prefill_key_budget(const ServingLimits& limits) {
  return std::max(2 * limits.max_step_tokens, limits.max_context);
}

int64_t gathered_prefill_slots(const ServingLimits& limits) {
  return prefill_key_budget(limits) + std::min(limits.max_seqs, limits.max_step_tokens) * (limits.block_size - 1);
}

}  // namespace mlabench::serving
