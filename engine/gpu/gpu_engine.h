// GpuEngine: batched serving of one model on one GPU inside the process. Requests (generation, scoring, full
// logits) go in as a list; the scheduler runs them with continuous batching (sequences join as others finish),
// chunked prefill (long prompts split over steps, merged exactly through the cache), a paged KV cache under a
// memory budget (running out pre-empts the newest sequence, which is recomputed later: never corrupts), and
// prefix sharing (full cache blocks whose token prefix matches are reused, so the four MMLU continuations of one
// prompt compute the prompt once).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/weights/model_weights.h"
#include "mlabench/engine.h"

namespace mlabench::gpu {

struct GpuEngineOptions {
  double kv_cache_gib = 0;       ///< KV cache budget; 0 = what is free after weights and buffers, minus 1 GiB
  int64_t block_size = 16;       ///< tokens per cache block
  int64_t max_seqs = 256;        ///< sequences running at once
  int64_t max_step_tokens = 4096;  ///< new tokens per step (the prefill chunk budget)
  int64_t max_logit_rows = 512;  ///< logit rows per step (scoring and full-logit requests)
  int64_t max_context = 0;       ///< longest sequence; 0 = max_position_embeddings capped at 32768
  bool prefix_sharing = true;
  bool cuda_graphs = true;  ///< replay captured graphs for decode-only steps of up to 128 sequences
  Precision precision = Precision::NATIVE;  ///< mlabench/engine.h
};

struct SeqRequest {
  std::vector<int32_t> tokens;  ///< the prompt
  GenerateOptions gen{.max_new_tokens = 0};
  int64_t score_from = -1;  ///< >= 1: score tokens[score_from..] each given the tokens before it
  bool all_logits = false;  ///< return the logits of every prompt position
};

struct SeqResult {
  std::vector<int32_t> tokens;  ///< generated
  std::string finish_reason = "length";
  double logprob = 0.0;
  bool is_greedy = true;
  std::vector<float> logits;         ///< all_logits: [prompt, vocab]
  double first_token_seconds = 0.0;  ///< from the start of run() to the first generated token
  std::vector<double> token_seconds;  ///< from the start of run() to each generated token
  double done_seconds = 0.0;
  int64_t preemptions = 0;
  int64_t prefix_tokens_reused = 0;
};

struct GpuEngineStats {
  int64_t steps = 0, prefill_tokens = 0, decode_tokens = 0, preemptions = 0, prefix_tokens_reused = 0;
  int64_t max_running = 0;
};

class GpuEngine {
 public:
  /// \brief Uploads the weights (from `host`, or generated on the device from `seed` when host is null),
  /// allocates buffers and the KV cache.
  static std::unique_ptr<GpuEngine> create(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                           const GpuEngineOptions& o);
  ~GpuEngine();

  /// \brief Runs every request to completion; results in request order. on_token(request, token) sees each
  /// generated token and returns true to stop that request (stop strings).
  std::vector<SeqResult> run(const std::vector<SeqRequest>& requests,
                             const std::function<bool(size_t, int32_t)>& on_token = {});

  const GpuEngineStats& stats() const;
  /// Description for `info`/bench rows: GPU name, driver, memory, cache blocks and bytes.
  std::string describe_json() const;
  int64_t kv_cache_tokens() const;
  uint64_t kv_cache_bytes() const;
  uint64_t weight_bytes() const;
  int64_t max_context() const;
  /// Device-to-device copy of 1 GiB, best of 5: (read + write bytes) / time, in GB/s.
  double copy_bandwidth_gbps();

 private:
  GpuEngine();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlabench::gpu
