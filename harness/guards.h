// Run-health guards: checks on a task's samples lines that catch runs whose scores mean nothing (a model or an
// endpoint that always answers "A", scores at chance, lost its context to truncation, generated nothing or ran
// into max tokens, or gave no log-probabilities). Each finding is a warning in the printed summary, results.json
// ("run_health") and the report, and an error under `mlabench run --strict`. Which guards apply to a task comes
// from its metrics' registry entries (metrics/registry.h); docs/harness.md "Run health" gives the thresholds and
// the definition of "within noise of chance".
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "harness/aggregation.h"
#include "tasks/task.h"

namespace mlabench::harness {

/// The thresholds: one_letter trips at a share of at least its limit, chance below its distance, the others at a
/// share strictly above their limit.
struct GuardLimits {
  double one_letter_share = 0.95;   ///< one choice predicted for at least this share of documents
  double chance_sigmas = 2.0;       ///< |accuracy - chance| < this many binomial stderrs at chance
  int64_t min_choice_docs = 20;     ///< fewer multiple-choice documents: the two choice guards say too_few
  double truncated_share = 0.01;    ///< contexts cut to fit the window
  double empty_share = 0.05;        ///< generations that are empty or whitespace
  double max_tokens_share = 0.05;   ///< generations that stopped at max tokens (finish reason "length")
};

/// \brief The health of one task from its samples lines: {"checks": {check: {"status": "ok" | "warning" |
/// "too_few", "value": ..., "limit": ..., "message": ...}}, "stop_reasons": {reason: count} (generation tasks;
/// "unknown" where the backend does not say, as a replay)}. Appends one line per warning to `warnings`
/// ("task T: check: message").
nlohmann::ordered_json task_health(const tasks::Task& task, const LinesBySubtask& by_subtask,
                                   std::vector<std::string>& warnings, const GuardLimits& limits = {});

/// \brief The cost of one task: {"docs", "prompt_tokens", "generated_tokens"} over all its samples lines (tokens
/// the backend reported; 0 where it reports none, as a replay without a tokenizer).
nlohmann::ordered_json task_tokens(const LinesBySubtask& by_subtask);

/// \brief The printed summary's warnings block ("" when results.json has none).
std::string format_health_warnings(const nlohmann::ordered_json& results);
/// \brief The printed summary's cost table from results.json "cost" (docs and tokens of the whole run) and
/// provenance "cost_this_invocation" (wall time and tokens/s of this invocation's scoring); "" without.
std::string format_cost_table(const nlohmann::ordered_json& results);

}  // namespace mlabench::harness
