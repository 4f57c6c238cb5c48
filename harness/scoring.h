// The scoring loop's step: one batch of a subtask's documents sent to the backend, every metric of the task applied
// through the metric registry (metrics/registry.h), and one samples line per document returned (what
// samples_<task>.jsonl holds and what aggregation reads back).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "harness/backend.h"
#include "harness/evaluator.h"
#include "sandbox/sandbox.h"
#include "tasks/task.h"

namespace mlabench::harness {

/// \brief The samples lines' metric key: "acc" and "none" -> "acc,none".
inline std::string metric_key(const std::string& metric, const std::string& filter) { return metric + "," + filter; }

/// \brief Scores `docs` (of subtask `sub`) on `backend` and returns their samples lines; code tasks are graded in
/// `pool`, with `run_dir` as the scorer's cache folder.
std::vector<nlohmann::ordered_json> score_documents(Backend& backend, const tasks::Task& task,
                                                    const tasks::Subtask& sub,
                                                    std::span<const tasks::TaskDoc* const> docs,
                                                    const GenerationOverrides& overrides, sandbox::Pool* pool,
                                                    const std::filesystem::path& run_dir);

}  // namespace mlabench::harness
