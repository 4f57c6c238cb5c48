// Aggregation of one task's samples lines (in document order, whichever invocation scored them): per subtask the
// mean and stderr of every metric key, per category and per task the micro (and macro) means (metrics/metrics.h);
// the per-value breakdowns; the code-grading counts.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace mlabench::harness {

/// A task's samples lines by subtask, in document order.
using LinesBySubtask = std::map<std::string, std::vector<const nlohmann::ordered_json*>>;

/// \brief Adds the task's subtask estimates to `results`, its category and task estimates to `groups` (with their
/// members in `group_subtasks`), and each subtask's document counts to `n_samples`.
void aggregate(const tasks::Task& task, const LinesBySubtask& by_subtask, nlohmann::ordered_json& results,
               nlohmann::ordered_json& groups, nlohmann::ordered_json& group_subtasks,
               nlohmann::ordered_json& n_samples);

/// \brief Per-value means of every metric over the documents whose `doc` field has that value (LiveCodeBench by
/// difficulty and platform, NIAH by context length and depth): {field: {value: {metric: mean, metric_stderr}}}.
nlohmann::ordered_json breakdown(const tasks::Task& task, const LinesBySubtask& by_subtask);

/// \brief Counts over the verdicts of a scorer that grades twice (HumanEval): how often each verdict passed and
/// where they disagree, with the first samples flagged suspected_tampering named; null for any other task.
nlohmann::ordered_json code_grading(const LinesBySubtask& by_subtask);

}  // namespace mlabench::harness
