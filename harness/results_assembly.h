// Results assembly: the results.json document, section by section, as the tasks of a run finish (their aggregation
// by harness/aggregation.h), then the run-wide fields (config, backend, gen_kwargs, provenance, shard, errors).
// docs/harness.md lists the sections.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "harness/aggregation.h"
#include "harness/backend.h"
#include "harness/evaluator.h"
#include "tasks/task.h"

namespace mlabench::harness {

class ResultsAssembly {
 public:
  /// \brief Adds a finished task: its estimates, breakdowns, spec, version, protocol, shots, higher_is_better,
  /// code grading, run health (guards) and token counts, from its samples lines in document order.
  void add_task(const tasks::Task& task, const LinesBySubtask& by_subtask);
  /// \brief The run-health warnings of the tasks added so far (harness/guards.h), "task T: check: message".
  const std::vector<std::string>& warnings() const { return warnings_; }
  /// \brief Records a task the backend refused (results.json "errors").
  void add_error(const std::string& task, const std::string& message);
  /// \brief The results.json document.
  nlohmann::ordered_json finish(const EvalOptions& o, const Backend& backend,
                                const nlohmann::ordered_json& provenance) const;

 private:
  using json = nlohmann::ordered_json;
  json results_ = json::object(), groups_ = json::object(), group_subtasks_ = json::object();
  json n_samples_ = json::object(), configs_ = json::object(), versions_ = json::object();
  json protocols_ = json::object(), n_shot_ = json::object(), higher_ = json::object();
  json breakdowns_ = json::object(), code_gradings_ = json::object(), errors_ = json::object();
  json health_ = json::object(), cost_ = json::object();
  std::vector<std::string> warnings_;
};

}  // namespace mlabench::harness
