// The metric registry: every metric a task spec may name, in one table. A metric is added here and nowhere else:
// the spec parser (tasks/spec.cpp) accepts the names it lists and checks each against the task's output type, the
// evaluator's scoring loop (harness/scoring.cpp) calls its per-item function, results.json's "higher_is_better"
// and the report's confidence intervals read its flags, and the run-health guards (harness/guards.h) apply the
// ones it names. metrics/README.md says how to add one.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metrics/spec_types.h"

namespace mlabench::metrics {

/// What a metric's per-item function reads, which is also the output type of the tasks it applies to.
enum class ItemInput {
  CHOICE_LOGPROBS,        ///< multiple choice: one loglikelihood per choice and the gold index
  GENERATED_ANSWER,       ///< generate_until without a scorer: the filtered answer and the target
  CODE_VERDICTS,          ///< generate_until with a code scorer: the verdicts of a document's samples
  ROLLING_LOGLIKELIHOOD,  ///< loglikelihood_rolling: the text's loglikelihood
};

/// How the per-document values become a subtask's and a group's value. Every metric today is a mean over
/// documents with the closed-form stderr (mean_with_stderr), groups the size-weighted micro mean with lm-eval's
/// pooled stderr (aggregate_micro), plus the unweighted macro mean (aggregate_macro) where the task asks for it.
enum class Aggregation { MEAN };

/// The run-health checks that look at a metric's tasks (harness/guards.h; docs/harness.md "Run health").
enum class Guard {
  ONE_LETTER,        ///< multiple choice: the same choice predicted for >= 95% of documents
  CHANCE,            ///< multiple choice: accuracy within noise of 1 / number of choices
  TRUNCATION,        ///< contexts cut to fit the window for more than 1% of documents
  GENERATION,        ///< empty generations, or generations that hit max tokens, for more than 5% of samples
  LOGPROBS,          ///< log-probabilities missing or NaN
};
std::string_view guard_name(Guard g);

/// Everything a per-item function may read about one document; the fields of its ItemInput are set.
struct Item {
  std::span<const double> logprobs{};          ///< CHOICE_LOGPROBS
  std::span<const std::string> choices{};      ///< CHOICE_LOGPROBS
  int64_t gold = -1;                           ///< CHOICE_LOGPROBS
  std::string_view answer{}, target{};         ///< GENERATED_ANSWER: after the filter pipeline
  int64_t samples = 0, passed = 0;             ///< CODE_VERDICTS: samples of the document, how many passed
  std::optional<int64_t> check_passed{};       ///< CODE_VERDICTS: a scorer that grades twice (HumanEval)
  int64_t suspected_tampering = 0;             ///< CODE_VERDICTS: samples whose verdicts disagree
  double loglikelihood = 0.0;                  ///< ROLLING_LOGLIKELIHOOD
};

/// (reported name, value) pairs: "acc" -> 1.0; pass_at_k reports "pass@1", "pass@10", ... The evaluator adds the
/// filter (",none").
using ItemScores = std::vector<std::pair<std::string, double>>;
using ItemFn = std::function<void(const Item&, const tasks::MetricSpec&, ItemScores&)>;

struct MetricDef {
  std::string name;          ///< the spec's "metric" ("acc", "pass_at_k")
  ItemInput input = ItemInput::CHOICE_LOGPROBS;
  ItemFn score{};            ///< per document: appends the metric's values
  Aggregation aggregation = Aggregation::MEAN;
  std::string stderr_kind{}; ///< how its stderr is computed, for the docs and results readers
  bool higher_is_better = true;
  bool proportion = true;    ///< values live in [0, 1] (the report clamps confidence intervals there)
  bool in_specs = true;      ///< a spec may name it (loglikelihood is implied by loglikelihood_rolling)
  std::vector<Guard> guards{};  ///< the run-health checks that apply to its tasks
  /// The names it reports for `spec` (what "higher_is_better" lists): {name} unless it reports several.
  std::function<std::vector<std::string>(const tasks::MetricSpec&, bool graded_twice)> reported{};
};

/// \brief Every metric, in the order docs/harness.md lists them.
const std::vector<MetricDef>& registry();
/// \brief The metric a spec names, or nullptr.
const MetricDef* find_metric(std::string_view name);
/// \brief The metric a spec names; throws Error listing the known ones (`where` names the spec or task).
const MetricDef& metric(std::string_view name, std::string_view where);
/// \brief The names a spec may use, comma-separated, for error messages.
std::string spec_metric_names();
/// \brief The metric behind a reported name: "acc" -> acc, "acc_macro" -> acc, "pass@10" -> pass_at_k,
/// "check_pass@1" and "suspected_tampering" -> pass_at_k; nullptr for a name no metric reports.
const MetricDef* metric_of_reported(std::string_view reported);
/// \brief Whether a reported name's higher value is better (suspected_tampering is not).
bool reported_higher_is_better(std::string_view reported);
/// \brief Whether a reported name is a proportion in [0, 1].
bool reported_is_proportion(std::string_view reported);

/// \brief The ItemInput of a task's metrics: its output type, with a code scorer for generate_until.
ItemInput item_input_of(tasks::OutputType type, bool has_scorer);

}  // namespace mlabench::metrics
