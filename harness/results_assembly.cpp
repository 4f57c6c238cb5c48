#include "harness/results_assembly.h"

#include "harness/gen_kwargs.h"
#include "harness/guards.h"
#include "metrics/registry.h"

namespace mlabench::harness {

using json = nlohmann::ordered_json;

void ResultsAssembly::add_task(const tasks::Task& task, const LinesBySubtask& by_subtask) {
  aggregate(task, by_subtask, results_, groups_, group_subtasks_, n_samples_);
  if (!task.breakdowns.empty()) breakdowns_[task.name] = breakdown(task, by_subtask);
  configs_[task.name] = task.config;
  versions_[task.name] = task.version;
  protocols_[task.name] = task.protocol;
  n_shot_[task.name] = task.num_fewshot;
  const json grading = code_grading(by_subtask);
  json hib = json::object();
  for (const tasks::MetricSpec& m : task.metrics)
    for (const std::string& name : metrics::metric(m.name, task.name).reported(m, !grading.is_null()))
      hib[name] = metrics::reported_higher_is_better(name);
  if (!grading.is_null()) code_gradings_[task.name] = grading;
  higher_[task.name] = hib;
  health_[task.name] = task_health(task, by_subtask, warnings_);
  cost_[task.name] = task_tokens(by_subtask);
}

void ResultsAssembly::add_error(const std::string& task, const std::string& message) { errors_[task] = message; }

json ResultsAssembly::finish(const EvalOptions& o, const Backend& backend, const json& provenance) const {
  json r = {{"results", results_},         {"groups", groups_},     {"group_subtasks", group_subtasks_},
            {"configs", configs_},         {"versions", versions_}, {"protocols", protocols_},
            {"n-shot", n_shot_},           {"higher_is_better", higher_},
            {"n-samples", n_samples_},     {"breakdowns", breakdowns_},
            {"config", o.config},          {"backend", backend.describe()},
            {"gen_kwargs", gen_overrides_json(o.gen)},            {"provenance", provenance}};
  r["run_health"] = health_;
  r["warnings"] = warnings_;
  r["cost"] = cost_;
  if (!code_gradings_.empty()) r["code_grading"] = code_gradings_;
  if (!errors_.empty()) r["errors"] = errors_;  // tasks the backend refused (BackendRefusal)
  if (o.shard.count > 1)  // metrics over this shard's documents only; mlabench merge gives the whole run's
    r["shard"] = {{"index", o.shard.index}, {"count", o.shard.count}};
  return r;
}

}  // namespace mlabench::harness
