// A task, loaded from its declarative spec (tasks/specs/*.json) and its dataset: everything the evaluator needs
// to build requests and score them, and nothing about models. Specs are data; the code a spec cannot express
// enters through named hooks (tasks/hooks.cpp). docs/tasks.md describes the spec format.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "metrics/spec_types.h"
#include "mlabench/tokenizer.h"

namespace mlabench::tasks {

// OutputType, FilterPipeline and MetricSpec are in metrics/spec_types.h: the metrics library reads them.

struct GenerationKwargs {
  std::vector<std::string> until;  ///< stop strings (the response is cut before the first one)
  int64_t max_gen_toks = 256;
  double temperature = 0.0;  ///< 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 1234;
  int64_t repeats = 1;  ///< samples per document (pass@k needs n >= k)
};

/// One evaluation document, fully rendered.
struct TaskDoc {
  int64_t doc_id = 0;                ///< 0-based row of the document in its subtask's evaluation split, in file order
  std::string context;               ///< exactly what the model is asked to continue: description + shots + query
  std::vector<std::string> choices;  ///< MULTIPLE_CHOICE: the continuations scored, in choice order (" A".." D")
  int64_t gold = -1;                 ///< MULTIPLE_CHOICE: index of the right choice
  std::string target;                ///< GENERATE_UNTIL: the gold answer compared after filtering (e.g. "18")
  nlohmann::ordered_json doc;        ///< the source row's fields, for samples_<task>.jsonl
  /// Data only a scorer reads (test cases, the HumanEval test program): not written to samples files.
  nlohmann::ordered_json payload = nlohmann::ordered_json::object();
  std::string system_prompt;         ///< a system turn the backend adds with a chat template ("" = the run's)
};

/// A leaf task (e.g. mmlu_anatomy): its documents and where it is aggregated.
struct Subtask {
  std::string name;          ///< "mmlu_anatomy", "gsm8k_cot"
  std::string category;      ///< aggregation bucket ("STEM", "Humanities", ...); empty if none
  std::string display;       ///< human name ("anatomy", "解剖学")
  int64_t n_docs_total = 0;  ///< documents in the split before --limit
  std::vector<TaskDoc> docs;
};

/// A task as named on the command line: a single leaf (gsm8k) or a group of leaves (mmlu).
struct Task {
  std::string name;      ///< "mmlu", "ceval", "gsm8k", "gsm8k_cot"
  int version = 1;       ///< bumped whenever prompts, data handling or scoring change
  std::string dataset;   ///< the datasets_manifest/ name the data comes from ("mmlu")
  std::string protocol;  ///< who the format follows: "lm-evaluation-harness", "deepseek-v2-paper", "official"
  OutputType output_type = OutputType::MULTIPLE_CHOICE;
  int num_fewshot = 0;
  std::vector<Subtask> subtasks;        ///< one for a leaf task
  GenerationKwargs generation;          ///< GENERATE_UNTIL
  std::vector<FilterPipeline> filters;  ///< GENERATE_UNTIL; at least one ("none" = identity)
  std::vector<MetricSpec> metrics;      ///< e.g. acc, acc_norm (MC); exact_match (generation)
  bool group_macro = false;             ///< also report the unweighted mean over subtasks
  std::string scorer;                   ///< a code scorer hook (tasks/code/scorer.h); "" = none
  nlohmann::ordered_json scorer_options = nlohmann::ordered_json::object();  ///< the spec's "scorer" object
  std::vector<std::string> breakdowns;  ///< doc fields whose values the metrics are also averaged by
  nlohmann::ordered_json config;        ///< the resolved spec (includes applied), for results.json
};

struct TaskLoadOptions {
  std::filesystem::path dataset_dir;  ///< where the task's dataset lives, extracted (harness/data/fetch.h)
  std::optional<int> num_fewshot;     ///< --num-fewshot overrides the spec's default
  std::optional<int64_t> limit;       ///< --limit: at most this many documents per subtask (the first ones)
  std::filesystem::path specs_dir;    ///< default: the source tree's tasks/specs (MLABENCH_TASKS_DIR)
  /// --set: merged into the task's resolved spec before it is parsed (JSON merge patch, RFC 7386)
  nlohmann::ordered_json overrides = nlohmann::ordered_json::object();
  /// For generators (tasks/hooks.h GeneratorContext): the model's tokenizer, exact prompt encoding and window.
  const Tokenizer* tokenizer = nullptr;
  std::function<std::vector<int32_t>(const std::string& context, const std::string& system_prompt)> encode_prompt;
  int64_t max_context = 0;
  std::optional<int64_t> max_gen_toks;  ///< --gen-kwargs max_gen_toks, for generators that leave room for answers
};

/// \brief Names of every task and group in specs_dir (leaves of groups included), sorted.
std::vector<std::string> list_tasks(const std::filesystem::path& specs_dir = {});
/// \brief Names of the suites (named lists of tasks, e.g. "deepseek-v2-paper"), sorted.
std::vector<std::string> list_suites(const std::filesystem::path& specs_dir = {});
/// \brief Expands comma-separated names and globs ("mmlu_*", "gsm8k*") and suites ("deepseek-v2-paper") into
/// task names; throws Error naming an unknown one and the closest known names.
std::vector<std::string> resolve_task_names(const std::string& spec, const std::filesystem::path& specs_dir = {});
/// \brief The dataset a task reads (so the caller can fetch it before load_task).
std::string task_dataset(const std::string& name, const std::filesystem::path& specs_dir = {});
/// \brief Loads a task: resolves its spec, reads its data, renders every document's context; throws Error
/// naming the file and line of malformed data.
Task load_task(const std::string& name, const TaskLoadOptions& options);

}  // namespace mlabench::tasks
