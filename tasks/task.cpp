// load_task and the task registry functions of task.h: specs (tasks/spec.h) + data (hooks) -> rendered documents.
// Prompt assembly follows lm-evaluation-harness's fewshot_context: description, then per shot
// text + target_delimiter + target + fewshot_delimiter, then the document's text.
#include "tasks/task.h"

#include <fnmatch.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "core/check.h"
#include "tasks/hooks.h"
#include "tasks/python_random.h"
#include "tasks/spec.h"

namespace mlabench::tasks {

namespace {

std::filesystem::path specs_dir_or_default(const std::filesystem::path& specs_dir) {
  return specs_dir.empty() ? std::filesystem::path(MLABENCH_TASKS_DIR) : specs_dir;
}

// Where a name is defined: a task, a group, a leaf of a group (with its subject), or a suite.
struct Lookup {
  const SpecEntry* entry = nullptr;
  std::optional<std::string> subject;  ///< set for a leaf of a group
};

Lookup find_name(const std::vector<SpecEntry>& entries, const std::string& name) {
  for (const auto& entry : entries) {
    if (entry.name == name) return {&entry, std::nullopt};
    if (entry.kind == SpecKind::GROUP) {
      for (size_t i = 0; i < entry.leaf_names.size(); ++i) {
        if (entry.leaf_names[i] == name) return {&entry, entry.subjects[i]};
      }
    }
  }
  return {};
}

std::vector<std::string> task_names(const std::vector<SpecEntry>& entries) {
  std::vector<std::string> names;
  for (const auto& entry : entries) {
    if (entry.kind == SpecKind::SUITE) continue;
    names.push_back(entry.name);
    if (entry.kind == SpecKind::GROUP) names.insert(names.end(), entry.leaf_names.begin(), entry.leaf_names.end());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> all_names(const std::vector<SpecEntry>& entries) {
  std::vector<std::string> names = task_names(entries);
  for (const auto& entry : entries) {
    if (entry.kind == SpecKind::SUITE) names.push_back(entry.name);
  }
  return names;
}

const SpecEntry& require_task_entry(const std::vector<SpecEntry>& entries, const std::string& name,
                                    const std::filesystem::path& specs_dir, Lookup* lookup) {
  *lookup = find_name(entries, name);
  MLABENCH_CHECK(lookup->entry != nullptr,
                 "unknown task '{}' (closest: {}). HINT: `mlabench tasks` lists the "
                 "tasks of {}",
                 name, closest_names(name, all_names(entries)), specs_dir.string());
  MLABENCH_CHECK(lookup->entry->kind != SpecKind::SUITE,
                 "'{}' is a suite ({}), not a task. HINT: expand it with "
                 "resolve_task_names (the CLI's --tasks does)",
                 name, lookup->entry->file.string());
  return *lookup->entry;
}

// ----------------------------------------------------------------------------------------------------------
// Rendering one subtask

class SubtaskBuilder {
 public:
  SubtaskBuilder(const TaskSpec& spec, const TaskLoadOptions& options, int num_fewshot)
      : spec_(spec), options_(options), num_fewshot_(num_fewshot) {}

  Subtask build(const std::string& subject, const Fields& hook_fields) {
    fields_.clear();
    if (!subject.empty()) fields_.emplace_back("subject", subject);
    fields_.insert(fields_.end(), hook_fields.begin(), hook_fields.end());

    Subtask subtask;
    if (spec_.subtasks) {
      subtask.name = render_subtask_field(spec_.subtasks->name, "subtasks.name");
      subtask.display = render_subtask_field(spec_.subtasks->display, "subtasks.display");
      subtask.category = render_subtask_field(spec_.subtasks->category, "subtasks.category");
    } else {
      subtask.name = spec_.name;
      subtask.display = spec_.name;
    }
    const DataTable eval_table = read_split(spec_.eval_split);
    subtask.n_docs_total = static_cast<int64_t>(eval_table.rows.size());
    int64_t n_docs = subtask.n_docs_total;
    if (options_.limit) n_docs = std::min(n_docs, *options_.limit);

    const bool same_split = !spec_.fewshot.samples && spec_.fewshot_split == spec_.eval_split;
    std::optional<DataTable> fewshot_storage;
    const DataTable* fewshot_table = nullptr;
    if (num_fewshot_ > 0) {
      if (spec_.fewshot.samples) {
        fewshot_table = &*spec_.fewshot.samples;
      } else if (same_split) {
        fewshot_table = &eval_table;
      } else {
        fewshot_storage = read_split(spec_.fewshot_split);
        fewshot_table = &*fewshot_storage;
      }
      const int64_t available = static_cast<int64_t>(fewshot_table->rows.size()) - (same_split ? 1 : 0);
      MLABENCH_CHECK(num_fewshot_ <= available,
                     "{}: {} few-shot examples asked for, {} has {} usable. HINT: lower "
                     "--num-fewshot",
                     spec_.file.string(), num_fewshot_, fewshot_table->file.string(), available);
      shot_cache_.assign(fewshot_table->rows.size(), std::nullopt);
    }

    const std::string description = render_subtask_field(spec_.description, "description");
    // first_n from another split gives every document the same shots: render them once.
    std::string shared_prefix = description;
    const bool shared_shots = num_fewshot_ > 0 && spec_.fewshot.sampler == "first_n" && !same_split;
    if (shared_shots) {
      for (int i = 0; i < num_fewshot_; ++i) shared_prefix += shot(*fewshot_table, static_cast<size_t>(i));
    }
    std::optional<PythonRandom> rng;
    if (spec_.fewshot.sampler == "random") rng.emplace(spec_.fewshot.seed);

    subtask.docs.reserve(static_cast<size_t>(n_docs));
    Fields computed;
    for (int64_t d = 0; d < n_docs; ++d) {
      const DataRow& row = eval_table.rows[static_cast<size_t>(d)];
      computed = compute_doc_fields(eval_table, row);
      const FieldScope scope{.table = &eval_table, .row = &row, .computed = &computed, .subtask = &fields_};
      TaskDoc doc;
      doc.doc_id = d;
      if (shared_shots || num_fewshot_ == 0) {
        doc.context = shared_prefix;
      } else {
        doc.context = description;
        for (size_t index : pick_shots(*fewshot_table, same_split ? &row : nullptr, rng)) {
          doc.context += shot(*fewshot_table, index);
        }
      }
      render(spec_.doc_to_text, "doc_to_text", doc.context, scope);
      fill_answer(doc, scope);
      for (size_t c = 0; c < eval_table.columns.size(); ++c) {
        if (c < row.values.size() && row.values[c]) doc.doc[eval_table.columns[c]] = *row.values[c];
      }
      for (const auto& [key, value] : computed) doc.doc[key] = value;
      subtask.docs.push_back(std::move(doc));
    }
    return subtask;
  }

 private:
  DataTable read_split(const std::string& split) {
    Fields fields = fields_;
    fields.emplace_back("split", split);
    std::string relative;
    const std::string* missing = spec_.data_files.render_into(relative, FieldScope{.subtask = &fields});
    MLABENCH_CHECK(missing == nullptr,
                   "{}: data_files {:?} uses '{{{{{}}}}}', which is not a subtask field ({}). "
                   "HINT: data_files can use {{{{split}}}} and the subject's fields",
                   spec_.file.string(), spec_.data_files.source(), missing ? *missing : "",
                   field_names(FieldScope{.subtask = &fields}));
    const auto file = options_.dataset_dir / relative;
    MLABENCH_CHECK(std::filesystem::is_regular_file(file),
                   "{}: data file {} is missing (split '{}' of dataset '{}'). "
                   "HINT: fetch the dataset (mlabench fetch {}) and pass its folder",
                   spec_.file.string(), file.string(), split, spec_.dataset, spec_.dataset);
    return reader_hook(spec_.reader, spec_.file)(file, spec_.columns);
  }

  static std::string field_names(const FieldScope& scope) { return fmt::format("{}", fmt::join(scope.names(), ", ")); }

  [[noreturn]] void missing_field(const Template& t, const char* key, const std::string& field,
                                  const FieldScope& scope) const {
    const std::string where = scope.row != nullptr ? scope.table->where(*scope.row) : "the subtask";
    MLABENCH_FAIL(
        "{}: {} {:?} uses '{{{{{}}}}}', which {} does not have (it has: {}). HINT: fix the template or "
        "add a hook that provides the field",
        spec_.file.string(), key, t.source(), field, where, field_names(scope));
  }

  void render(const Template& t, const char* key, std::string& out, const FieldScope& scope) const {
    if (const std::string* missing = t.render_into(out, scope)) missing_field(t, key, *missing, scope);
  }

  std::string render_subtask_field(const Template& t, const char* key) const {
    std::string out;
    render(t, key, out, FieldScope{.subtask = &fields_});
    return out;
  }

  Fields compute_doc_fields(const DataTable& table, const DataRow& row) const {
    Fields out;
    for (const auto& name : spec_.doc_hooks) {
      Fields more = doc_hook(name, spec_.file)(table, row);
      out.insert(out.end(), more.begin(), more.end());
    }
    return out;
  }

  const std::string& shot(const DataTable& table, size_t index) {
    auto& cached = shot_cache_[index];
    if (cached) return *cached;
    const DataRow& row = table.rows[index];
    // Hooks compute fields from data rows; the spec's own samples carry their fields written out.
    const Fields computed = spec_.fewshot.samples ? Fields{} : compute_doc_fields(table, row);
    const FieldScope scope{.table = &table, .row = &row, .computed = &computed, .subtask = &fields_};
    const Template& text = spec_.fewshot.doc_to_text.empty() ? spec_.doc_to_text : spec_.fewshot.doc_to_text;
    const Template& target = spec_.fewshot.doc_to_target.empty() ? spec_.doc_to_target : spec_.fewshot.doc_to_target;
    std::string out;
    render(text, "fewshot doc_to_text", out, scope);
    out += spec_.target_delimiter;
    render(target, "fewshot doc_to_target", out, scope);
    out += spec_.fewshot_delimiter;
    cached = std::move(out);
    return *cached;
  }

  // lm-eval's samplers. With the fewshot split being the evaluation split, rows equal to the document are
  // removed from the candidates (the random sampler draws one more and drops it).
  std::vector<size_t> pick_shots(const DataTable& table, const DataRow* eval_row, std::optional<PythonRandom>& rng) {
    auto is_eval_doc = [&](size_t i) { return eval_row != nullptr && table.rows[i].values == eval_row->values; };
    std::vector<size_t> picked;
    if (rng) {
      const int64_t draw = num_fewshot_ + (eval_row != nullptr ? 1 : 0);
      for (int64_t i : rng->sample_indices(static_cast<int64_t>(table.rows.size()), draw)) {
        if (!is_eval_doc(static_cast<size_t>(i))) picked.push_back(static_cast<size_t>(i));
      }
    } else {
      for (size_t i = 0; i < table.rows.size(); ++i) {
        if (!is_eval_doc(i)) picked.push_back(i);
      }
    }
    if (picked.size() > static_cast<size_t>(num_fewshot_)) picked.resize(static_cast<size_t>(num_fewshot_));
    return picked;
  }

  void fill_answer(TaskDoc& doc, const FieldScope& scope) const {
    if (spec_.output_type == OutputType::LOGLIKELIHOOD_ROLLING) return;
    render(spec_.doc_to_target, "doc_to_target", doc.target, scope);
    if (spec_.output_type != OutputType::MULTIPLE_CHOICE) return;
    std::vector<std::string> choices;
    for (const auto& choice : spec_.doc_to_choice) {
      std::string text;
      render(choice, "doc_to_choice", text, scope);
      if (text == doc.target) doc.gold = static_cast<int64_t>(choices.size());
      choices.push_back(std::move(text));
    }
    MLABENCH_CHECK(doc.gold >= 0,
                   "{}: the answer {:?} is not one of the choices ({}). HINT: the row is malformed; fix "
                   "it or fetch the dataset again",
                   scope.table->where(*scope.row), doc.target, fmt::join(choices, ", "));
    for (const auto& choice : choices) doc.choices.push_back(spec_.target_delimiter + choice);
    doc.target.clear();  // multiple choice: the gold is an index
  }

  const TaskSpec& spec_;
  const TaskLoadOptions& options_;
  int num_fewshot_;
  Fields fields_;  // the subtask's fields: subject and what the subtask hook gives
  std::vector<std::optional<std::string>> shot_cache_;
};

}  // namespace

std::vector<std::string> list_tasks(const std::filesystem::path& specs_dir) {
  return task_names(load_spec_entries(specs_dir_or_default(specs_dir)));
}

std::vector<std::string> list_suites(const std::filesystem::path& specs_dir) {
  std::vector<std::string> suites;
  for (const auto& e : load_spec_entries(specs_dir_or_default(specs_dir)))
    if (e.kind == SpecKind::SUITE) suites.push_back(e.name);
  std::sort(suites.begin(), suites.end());
  return suites;
}

std::vector<std::string> resolve_task_names(const std::string& spec, const std::filesystem::path& specs_dir) {
  const auto dir = specs_dir_or_default(specs_dir);
  const auto entries = load_spec_entries(dir);
  const auto names = task_names(entries);
  std::vector<std::string> out;
  auto add = [&](const std::string& name) {
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  };
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    std::string part = spec.substr(start, comma - start);
    start = comma + 1;
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    if (part.empty()) continue;
    const Lookup lookup = find_name(entries, part);
    if (lookup.entry != nullptr && lookup.entry->kind == SpecKind::SUITE && lookup.entry->name == part) {
      for (const auto& name : lookup.entry->suite_tasks) {
        const Lookup inner = find_name(entries, name);
        MLABENCH_CHECK(inner.entry != nullptr && inner.entry->kind != SpecKind::SUITE,
                       "{}: suite '{}' lists '{}', "
                       "which is not a task (closest: {}). HINT: fix the suite's \"tasks\"",
                       lookup.entry->file.string(), part, name, closest_names(name, names));
        add(name);
      }
    } else if (part.find_first_of("*?[") != std::string::npos) {
      size_t matched = 0;
      for (const auto& name : names) {
        if (fnmatch(part.c_str(), name.c_str(), 0) == 0) {
          add(name);
          ++matched;
        }
      }
      MLABENCH_CHECK(matched > 0,
                     "the pattern '{}' matches no task (closest: {}). HINT: `mlabench tasks` lists "
                     "the tasks",
                     part, closest_names(part, names));
    } else {
      MLABENCH_CHECK(lookup.entry != nullptr,
                     "unknown task '{}' (closest: {}). HINT: `mlabench tasks` lists the "
                     "tasks; suites: {}",
                     part, closest_names(part, all_names(entries)), fmt::join(list_suites(dir), ", "));
      add(part);
    }
  }
  MLABENCH_CHECK(!out.empty(), "no task named in '{}'. HINT: e.g. --tasks mmlu,gsm8k_cot", spec);
  // A group already runs its leaves: naming both would evaluate (and record) them twice.
  std::set<std::string> covered;
  for (const auto& name : out) {
    const Lookup lookup = find_name(entries, name);
    if (lookup.entry->kind == SpecKind::GROUP && !lookup.subject) {
      covered.insert(lookup.entry->leaf_names.begin(), lookup.entry->leaf_names.end());
    }
  }
  std::erase_if(out, [&](const std::string& name) { return covered.contains(name); });
  return out;
}

std::string task_dataset(const std::string& name, const std::filesystem::path& specs_dir) {
  const auto dir = specs_dir_or_default(specs_dir);
  const auto entries = load_spec_entries(dir);
  Lookup lookup;
  const SpecEntry& entry = require_task_entry(entries, name, dir, &lookup);
  const auto& dataset = entry.resolved["dataset"];
  MLABENCH_CHECK(dataset.is_string(),
                 "{}: missing field 'dataset'. HINT: name the datasets_manifest entry the task "
                 "reads",
                 entry.file.string());
  return dataset.get<std::string>();
}

Task load_task(const std::string& name, const TaskLoadOptions& options) {
  const auto dir = specs_dir_or_default(options.specs_dir);
  const auto entries = load_spec_entries(dir);
  Lookup lookup;
  SpecEntry entry = require_task_entry(entries, name, dir, &lookup);
  if (!options.overrides.empty()) {
    check_set_overrides(options.overrides, name);
    entry.resolved.merge_patch(options.overrides);
  }
  const TaskSpec spec = parse_task_spec(entry);
  MLABENCH_CHECK(!options.limit || *options.limit >= 0, "--limit {} is negative. HINT: give a count of documents",
                 options.limit.value_or(0));
  const int num_fewshot = options.num_fewshot.value_or(spec.num_fewshot);
  MLABENCH_CHECK(num_fewshot >= 0, "--num-fewshot {} is negative. HINT: 0 or more", num_fewshot);
  MLABENCH_CHECK(num_fewshot == 0 || spec.fewshot.samples || !spec.fewshot_split.empty(),
                 "task {} has no few-shot examples ({} names neither a fewshot_split nor fewshot.samples), so "
                 "--num-fewshot {} cannot apply to it. HINT: run it without --num-fewshot (the paper's HumanEval, "
                 "LiveCodeBench and NIAH are 0-shot), or name the tasks that take shots",
                 name, spec.file.string(), num_fewshot);

  Task task;
  task.name = name;
  task.version = spec.version;
  task.dataset = spec.dataset;
  task.protocol = spec.protocol;
  task.output_type = spec.output_type;
  task.num_fewshot = num_fewshot;
  task.generation = spec.generation;
  task.filters = spec.filters;
  task.metrics = spec.metrics;
  task.group_macro = spec.group_macro && !lookup.subject;
  task.scorer = spec.scorer;
  task.scorer_options = spec.scorer_options;
  task.breakdowns = spec.breakdowns;
  task.config = spec.config;

  if (!spec.generator.is_null()) {
    GeneratorContext context{.task_name = name,
                             .config = spec.generator,
                             .dataset_dir = options.dataset_dir,
                             .spec_file = spec.file,
                             .tokenizer = options.tokenizer,
                             .encode_prompt = options.encode_prompt,
                             .max_context = options.max_context,
                             .max_gen_toks = options.max_gen_toks.value_or(spec.generation.max_gen_toks),
                             .limit = options.limit};
    task.num_fewshot = 0;
    task.subtasks = generator_hook(spec.generator["hook"].get<std::string>(), spec.file)(context);
    MLABENCH_CHECK(!task.subtasks.empty(), "{}: the generator built no subtask. HINT: check the generator's settings",
                   spec.file.string());
    return task;
  }

  SubtaskBuilder builder(spec, options, num_fewshot);
  if (!spec.subtasks) {
    task.subtasks.push_back(builder.build("", {}));
    return task;
  }
  const auto& subjects = spec.subtasks->subjects;
  std::vector<Fields> hook_fields(subjects.size());
  if (!spec.subtasks->hook.empty()) {
    hook_fields = subtask_hook(spec.subtasks->hook, spec.file)(options.dataset_dir, subjects, spec.file);
  }
  for (size_t i = 0; i < subjects.size(); ++i) {
    if (lookup.subject && subjects[i] != *lookup.subject) continue;
    task.subtasks.push_back(builder.build(subjects[i], hook_fields[i]));
  }
  return task;
}

}  // namespace mlabench::tasks
