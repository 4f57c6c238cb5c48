// Task spec files (tasks/specs/*.json): reading with `include` resolved, checking every key, and the parsed
// form load_task renders documents from. docs/tasks.md is the format's reference.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tasks/task.h"
#include "tasks/template.h"

namespace mlabench::tasks {

enum class SpecKind { TASK, GROUP, SUITE };

/// One spec file of specs_dir (files whose name starts with '_' are include-only defaults, not entries).
struct SpecEntry {
  std::filesystem::path file;
  SpecKind kind = SpecKind::TASK;
  std::string name;
  nlohmann::ordered_json resolved;       ///< includes applied
  std::vector<std::string> subjects;     ///< GROUP: subtasks.subjects
  std::vector<std::string> leaf_names;   ///< GROUP: one per subject; TASK: its own name
  std::vector<std::string> suite_tasks;  ///< SUITE: the names it runs
};

/// \brief Every entry of specs_dir, sorted by name; throws Error naming the spec file for a malformed spec or
/// two specs with one name.
std::vector<SpecEntry> load_spec_entries(const std::filesystem::path& specs_dir);

struct FewshotSpec {
  std::string sampler = "random";    ///< "first_n" | "random" (lm-eval's default sampler)
  uint64_t seed = 1234;              ///< random: Python random.Random(seed), one per subtask
  std::optional<DataTable> samples;  ///< fixed exemplars written in the spec (used instead of fewshot_split)
  Template doc_to_text;              ///< empty: the task's
  Template doc_to_target;            ///< empty: the task's
};

struct SubtasksSpec {
  Template name;      ///< "mmlu_{{subject}}"
  Template display;   ///< "{{subject_words}}"
  Template category;  ///< "{{category}}"
  std::vector<std::string> subjects;
  std::string hook;  ///< subtask hook giving each subject its fields; empty: only {{subject}}
};

/// A TASK or GROUP spec, parsed and checked.
struct TaskSpec {
  std::filesystem::path file;
  std::string name;
  bool is_group = false;
  int version = 0;
  std::string dataset;
  std::string protocol;
  OutputType output_type = OutputType::MULTIPLE_CHOICE;
  std::string reader;
  std::vector<std::string> columns;
  Template data_files;  ///< path under the dataset folder, from {{split}} and the subject's fields
  std::string eval_split;
  std::string fewshot_split;
  Template description;
  Template doc_to_text;
  Template doc_to_target;
  std::vector<Template> doc_to_choice;
  std::string target_delimiter = " ";
  std::string fewshot_delimiter = "\n\n";
  int num_fewshot = 0;
  FewshotSpec fewshot;
  std::vector<std::string> doc_hooks;
  GenerationKwargs generation;
  std::vector<FilterPipeline> filters;
  std::vector<MetricSpec> metrics;
  std::optional<SubtasksSpec> subtasks;  ///< GROUP
  bool group_macro = false;
  nlohmann::ordered_json generator;      ///< the "generator" object (documents built by a hook); null = none
  std::string scorer;                    ///< "scorer".hook
  nlohmann::ordered_json scorer_options = nlohmann::ordered_json::object();
  std::vector<std::string> breakdowns;
  nlohmann::ordered_json config;
};

/// \brief The `count` names of `known` closest to `name` by edit distance, comma-separated (for "did you mean").
std::string closest_names(const std::string& name, const std::vector<std::string>& known, size_t count = 3);

/// \brief Parses a TASK or GROUP entry; throws Error naming the spec file and key.
TaskSpec parse_task_spec(const SpecEntry& entry);

/// \brief Checks `--set TASK.KEY=VALUE` overrides (a JSON object) before they patch the task's spec: every key must
/// be a spec field at its level (generator and scorer settings are checked by their hooks), and fields that are
/// settled when the spec is read or the data fetched (`include`, `dataset`, `task`, `group`, `suite`, `tasks`) are
/// refused rather than recorded without effect. Throws Error naming the key and the accepted ones.
void check_set_overrides(const nlohmann::ordered_json& overrides, const std::string& task);

}  // namespace mlabench::tasks
