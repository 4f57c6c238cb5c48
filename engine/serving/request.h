// What a run of the serving core takes and gives back: requests (generate, score a span, or return every
// position's logits), their results, and the run's counters. Plain data, shared by the scheduler, the runners
// and the Engine API.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mlabench/engine.h"

namespace mlabench::serving {

/// One request: a prompt, then any of: generation (gen.max_new_tokens > 0), scoring of a span of the prompt
/// (score_from), the logits of every prompt position (all_logits).
struct Request {
  std::vector<int32_t> tokens;  ///< the prompt
  GenerateOptions gen{.max_new_tokens = 0};
  int64_t score_from = -1;  ///< >= 1: score tokens[score_from..] each given the tokens before it
  bool all_logits = false;  ///< return the logits of every prompt position
};

struct Result {
  std::vector<int32_t> tokens;  ///< generated
  std::string finish_reason = "length";  ///< "length" | "stop_token" | "stop_string"
  double logprob = 0.0;                  ///< score_from: sum of log p over the scored span
  bool is_greedy = true;                 ///< score_from: every scored token was its row's argmax
  std::vector<float> logits;             ///< all_logits: [prompt, vocab]
  double first_token_seconds = 0.0;      ///< from the start of the run to the first generated token
  std::vector<double> token_seconds;     ///< from the start of the run to each generated token
  double done_seconds = 0.0;
  int64_t preemptions = 0;           ///< times the request lost its cache and was recomputed
  int64_t prefix_tokens_reused = 0;  ///< prompt tokens taken from the prefix cache instead of computed
};

/// Counters over every run of one serving engine.
struct Stats {
  int64_t steps = 0, prefill_tokens = 0, decode_tokens = 0, preemptions = 0, prefix_tokens_reused = 0;
  int64_t max_running = 0;
};

/// Sees each generated token (request index, token) and returns true to stop that request (stop strings).
using TokenCallback = std::function<bool(size_t request, int32_t token)>;

}  // namespace mlabench::serving
