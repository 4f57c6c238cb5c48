#include "tasks/spec.h"

#include <algorithm>
#include <map>
#include <set>
#include <system_error>

#include <fmt/format.h>

#include "core/check.h"
#include "core/json_limits.h"
#include "metrics/registry.h"
#include "tasks/code/scorer.h"
#include "tasks/hooks.h"

namespace mlabench::tasks {

namespace {

using ojson = nlohmann::ordered_json;

// The keys each level of a spec may hold; anything else is a typo the spec's author must hear about.
const std::set<std::string> TOP_KEYS = {"task",
                                        "group",
                                        "suite",
                                        "comment",
                                        "version",
                                        "include",
                                        "dataset",
                                        "protocol",
                                        "output_type",
                                        "reader",
                                        "columns",
                                        "data_files",
                                        "eval_split",
                                        "fewshot_split",
                                        "description",
                                        "doc_to_text",
                                        "doc_to_target",
                                        "doc_to_choice",
                                        "target_delimiter",
                                        "fewshot_delimiter",
                                        "num_fewshot",
                                        "fewshot",
                                        "doc_hooks",
                                        "generation_kwargs",
                                        "filter_list",
                                        "metric_list",
                                        "subtasks",
                                        "group_macro",
                                        "generator",
                                        "scorer",
                                        "breakdowns",
                                        "tasks"};
const std::set<std::string> FEWSHOT_KEYS = {"sampler", "seed", "samples", "doc_to_text", "doc_to_target"};
const std::set<std::string> GENERATION_KEYS = {"until", "max_gen_toks", "temperature", "top_p",
                                               "do_sample", "seed",  "repeats"};
const std::set<std::string> FILTER_KEYS = {"name", "filter"};
const std::set<std::string> FILTER_STEP_KEYS = {"function", "regex_pattern", "group_select", "fallback"};
const std::set<std::string> METRIC_KEYS = {"metric", "ignore_case", "ignore_punctuation", "regexes_to_ignore", "k"};
const std::set<std::string> SUBTASK_KEYS = {"name", "display", "category", "subjects", "hook"};
const std::set<std::string> FILTER_FUNCTIONS = {"regex", "take_first", "strip", "remove_whitespace", "lowercase"};

void check_keys(const ojson& object, const std::set<std::string>& known, const std::filesystem::path& file,
                const std::string& where) {
  MLABENCH_CHECK(object.is_object(), "{}: {} must be a JSON object, not {}. HINT: see docs/tasks.md", file.string(),
                 where, object.type_name());
  for (const auto& item : object.items()) {
    MLABENCH_CHECK(known.contains(item.key()),
                   "{}: unknown field '{}' in {} (did you mean '{}'?). HINT: the fields "
                   "are listed in docs/tasks.md",
                   file.string(), item.key(), where, closest_names(item.key(), {known.begin(), known.end()}, 1));
  }
}

void check_array_of_objects(const ojson& j, const char* key, const std::set<std::string>& known,
                            const std::filesystem::path& file, const std::string& where) {
  if (!j.contains(key)) return;
  MLABENCH_CHECK(j[key].is_array(), "{}: {}.{} must be a list. HINT: see docs/tasks.md", file.string(), where, key);
  for (size_t i = 0; i < j[key].size(); ++i) check_keys(j[key][i], known, file, fmt::format("{}[{}]", key, i));
}

// Checks the keys of one file as written, so an unknown key is reported in the file that has it.
void check_file_keys(const ojson& j, const std::filesystem::path& file) {
  check_keys(j, TOP_KEYS, file, "the spec");
  if (j.contains("fewshot")) check_keys(j["fewshot"], FEWSHOT_KEYS, file, "fewshot");
  if (j.contains("generation_kwargs")) check_keys(j["generation_kwargs"], GENERATION_KEYS, file, "generation_kwargs");
  if (j.contains("subtasks")) check_keys(j["subtasks"], SUBTASK_KEYS, file, "subtasks");
  check_array_of_objects(j, "metric_list", METRIC_KEYS, file, "the spec");
  check_array_of_objects(j, "filter_list", FILTER_KEYS, file, "the spec");
  if (j.contains("filter_list")) {
    for (size_t i = 0; i < j["filter_list"].size(); ++i) {
      check_array_of_objects(j["filter_list"][i], "filter", FILTER_STEP_KEYS, file, fmt::format("filter_list[{}]", i));
    }
  }
}

}  // namespace

void check_set_overrides(const ojson& overrides, const std::string& task) {
  const std::string where = fmt::format("--set {}", task);
  MLABENCH_CHECK(overrides.is_object(), "{}: the overrides must be a JSON object, not {}. HINT: --set {}.KEY=VALUE",
                 where, overrides.type_name(), task);
  for (const char* fixed : {"include", "dataset", "task", "group", "suite", "tasks"}) {
    MLABENCH_CHECK(!overrides.contains(fixed),
                   "{}.{}: '{}' is settled when the spec is read and its data fetched, so an override would be "
                   "recorded without taking effect. HINT: add a spec with the {} you want under a new task name in "
                   "tasks/specs/ (docs/tasks.md)",
                   where, fixed, fixed, fixed);
  }
  check_file_keys(overrides, where);
}

namespace {

ojson read_json_file(const std::filesystem::path& file) {
  const std::string text = read_text_file(file, "task spec");
  try {
    return parse_ordered_json_bounded(text, file.string());
  } catch (const ojson::parse_error& e) {
    MLABENCH_FAIL("{}: not valid JSON ({}). HINT: fix the spec; docs/tasks.md shows examples", file.string(), e.what());
  }
}

// The spec's values override the included defaults; objects merge key by key, everything else is replaced.
void merge_into(ojson& base, const ojson& overrides) {
  for (const auto& item : overrides.items()) {
    if (item.value().is_object() && base.contains(item.key()) && base[item.key()].is_object()) {
      merge_into(base[item.key()], item.value());
    } else {
      base[item.key()] = item.value();
    }
  }
}

ojson resolve_includes(const std::filesystem::path& file, std::vector<std::filesystem::path>& chain) {
  ojson j = read_json_file(file);
  check_file_keys(j, file);
  if (!j.contains("include")) return j;
  MLABENCH_CHECK(j["include"].is_string(),
                 "{}: \"include\" must be a file name (a string). HINT: e.g. "
                 "\"include\": \"_mmlu_defaults.json\"",
                 file.string());
  const auto included = (file.parent_path() / j["include"].get<std::string>()).lexically_normal();
  std::error_code ec;  // a name the file system refuses (too long, a bad component) is an error too, not a throw
  const bool found = std::filesystem::is_regular_file(included, ec);
  MLABENCH_CHECK(found,
                 "{}: the included file {} does not exist{}. HINT: "
                 "\"include\" is a path relative to the spec's folder",
                 file.string(), included.string(), ec ? " (" + ec.message() + ")" : "");
  MLABENCH_CHECK(std::find(chain.begin(), chain.end(), included) == chain.end(),
                 "{}: including {} makes a cycle. "
                 "HINT: an include must not include the spec back",
                 file.string(), included.string());
  chain.push_back(included);
  ojson resolved = resolve_includes(included, chain);
  chain.pop_back();
  j.erase("include");
  merge_into(resolved, j);
  return resolved;
}

// Typed access to the resolved spec with errors naming the file and key.
class SpecFields {
 public:
  SpecFields(const ojson& j, std::filesystem::path file, std::string prefix = "")
      : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  const ojson& at(const std::string& key) const { return j_[key]; }
  std::string name(const std::string& key) const { return prefix_ + key; }
  const std::filesystem::path& file() const { return file_; }

  std::string string(const std::string& key) const {
    MLABENCH_CHECK(has(key), "{}: missing field '{}'. HINT: every task needs it; see docs/tasks.md", file_.string(),
                   name(key));
    return string_or(key, "");
  }
  std::string string_or(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    MLABENCH_CHECK(j_[key].is_string(), "{}: field '{}' must be a string, not {}. HINT: see docs/tasks.md",
                   file_.string(), name(key), j_[key].type_name());
    return j_[key].get<std::string>();
  }
  int64_t integer_or(const std::string& key, int64_t fallback) const {
    if (!has(key)) return fallback;
    MLABENCH_CHECK(j_[key].is_number_integer(), "{}: field '{}' must be an integer, not {}. HINT: see docs/tasks.md",
                   file_.string(), name(key), j_[key].type_name());
    return j_[key].get<int64_t>();
  }
  double number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    MLABENCH_CHECK(j_[key].is_number(), "{}: field '{}' must be a number, not {}. HINT: see docs/tasks.md",
                   file_.string(), name(key), j_[key].type_name());
    return j_[key].get<double>();
  }
  bool boolean_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    MLABENCH_CHECK(j_[key].is_boolean(), "{}: field '{}' must be true or false, not {}. HINT: see docs/tasks.md",
                   file_.string(), name(key), j_[key].type_name());
    return j_[key].get<bool>();
  }
  std::vector<std::string> strings_or_empty(const std::string& key) const {
    std::vector<std::string> out;
    if (!has(key)) return out;
    MLABENCH_CHECK(j_[key].is_array(), "{}: field '{}' must be a list of strings. HINT: see docs/tasks.md",
                   file_.string(), name(key));
    for (const auto& v : j_[key]) {
      MLABENCH_CHECK(v.is_string(), "{}: field '{}' must hold strings only, found {}. HINT: see docs/tasks.md",
                     file_.string(), name(key), v.type_name());
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  Template template_or_empty(const std::string& key) const {
    if (!has(key)) return {};
    return Template(string(key), fmt::format("{} field '{}'", file_.string(), name(key)));
  }

 private:
  const ojson& j_;
  std::filesystem::path file_;
  std::string prefix_;
};

std::vector<std::string> group_leaf_names(const SpecFields& spec, const std::vector<std::string>& subjects) {
  const SpecFields sub(spec.at("subtasks"), spec.file(), "subtasks.");
  const Template name_template(sub.string("name"), fmt::format("{} field 'subtasks.name'", spec.file().string()));
  std::vector<std::string> names;
  for (const auto& subject : subjects) {
    const Fields fields = {{"subject", subject}};
    std::string name;
    const std::string* missing = name_template.render_into(name, FieldScope{.subtask = &fields});
    MLABENCH_CHECK(missing == nullptr,
                   "{}: subtasks.name {:?} uses '{{{{{}}}}}', but a subtask's name can only use "
                   "{{{{subject}}}}. HINT: e.g. \"mmlu_{{{{subject}}}}\"",
                   spec.file().string(), name_template.source(), missing ? *missing : "");
    names.push_back(std::move(name));
  }
  return names;
}

SpecEntry make_entry(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> chain = {file};
  SpecEntry entry;
  entry.file = file;
  entry.resolved = resolve_includes(file, chain);
  const SpecFields spec(entry.resolved, file);
  const int kinds = spec.has("task") + spec.has("group") + spec.has("suite");
  MLABENCH_CHECK(kinds == 1,
                 "{}: a spec names exactly one of \"task\", \"group\" or \"suite\" ({} found). HINT: "
                 "files holding shared defaults only start with '_'",
                 file.string(), kinds);
  if (spec.has("suite")) {
    entry.kind = SpecKind::SUITE;
    entry.name = spec.string("suite");
    entry.suite_tasks = spec.strings_or_empty("tasks");
    MLABENCH_CHECK(!entry.suite_tasks.empty(),
                   "{}: a suite lists its tasks in \"tasks\". HINT: e.g. \"tasks\": "
                   "[\"mmlu\", \"gsm8k_cot\"]",
                   file.string());
  } else if (spec.has("group")) {
    entry.kind = SpecKind::GROUP;
    entry.name = spec.string("group");
    MLABENCH_CHECK(spec.has("subtasks"),
                   "{}: a group needs \"subtasks\" ({{\"name\", \"subjects\", ...}}). HINT: see "
                   "docs/tasks.md",
                   file.string());
    entry.subjects = SpecFields(spec.at("subtasks"), file, "subtasks.").strings_or_empty("subjects");
    MLABENCH_CHECK(!entry.subjects.empty(), "{}: subtasks.subjects is empty. HINT: list the dataset's subjects",
                   file.string());
    entry.leaf_names = group_leaf_names(spec, entry.subjects);
  } else {
    entry.kind = SpecKind::TASK;
    entry.name = spec.string("task");
    MLABENCH_CHECK(!spec.has("subtasks"),
                   "{}: \"subtasks\" belongs to a group. HINT: write \"group\" instead of "
                   "\"task\"",
                   file.string());
    entry.leaf_names = {entry.name};
  }
  MLABENCH_CHECK(!entry.name.empty(), "{}: the task, group or suite name is empty. HINT: name it", file.string());
  return entry;
}

OutputType parse_output_type(const SpecFields& spec) {
  const std::string type = spec.string("output_type");
  if (type == "multiple_choice") return OutputType::MULTIPLE_CHOICE;
  if (type == "generate_until") return OutputType::GENERATE_UNTIL;
  if (type == "loglikelihood_rolling") return OutputType::LOGLIKELIHOOD_ROLLING;
  MLABENCH_FAIL(
      "{}: output_type '{}' is not one of multiple_choice, generate_until, loglikelihood_rolling. HINT: "
      "see docs/tasks.md",
      spec.file().string(), type);
}

FewshotSpec parse_fewshot(const SpecFields& spec) {
  FewshotSpec out;
  if (!spec.has("fewshot")) return out;
  const SpecFields fs(spec.at("fewshot"), spec.file(), "fewshot.");
  out.sampler = fs.string_or("sampler", out.sampler);
  MLABENCH_CHECK(out.sampler == "first_n" || out.sampler == "random",
                 "{}: fewshot.sampler '{}' is not first_n or "
                 "random. HINT: first_n takes the split's first rows, random is lm-eval's default sampler",
                 spec.file().string(), out.sampler);
  const int64_t seed = fs.integer_or("seed", static_cast<int64_t>(out.seed));
  MLABENCH_CHECK(seed >= 0, "{}: fewshot.seed {} is negative. HINT: use a non-negative integer", spec.file().string(),
                 seed);
  out.seed = static_cast<uint64_t>(seed);
  out.doc_to_text = fs.template_or_empty("doc_to_text");
  out.doc_to_target = fs.template_or_empty("doc_to_target");
  if (fs.has("samples")) {
    const ojson& samples = fs.at("samples");
    MLABENCH_CHECK(samples.is_array() && !samples.empty(),
                   "{}: fewshot.samples must be a non-empty list of objects. "
                   "HINT: see docs/tasks.md",
                   spec.file().string());
    DataTable table;
    table.file = spec.file().string() + " fewshot.samples";  // rows are numbered from 1 in messages
    for (size_t i = 0; i < samples.size(); ++i) {
      MLABENCH_CHECK(samples[i].is_object(),
                     "{}: fewshot.samples[{}] must be an object of string fields. HINT: see "
                     "docs/tasks.md",
                     spec.file().string(), i);
      DataRow row;
      row.line = static_cast<int64_t>(i) + 1;
      for (const auto& [key, value] : samples[i].items()) {
        MLABENCH_CHECK(value.is_string(), "{}: fewshot.samples[{}].{} must be a string. HINT: quote it",
                       spec.file().string(), i, key);
        int index = table.column(key);
        if (index < 0) {
          table.columns.push_back(key);
          index = static_cast<int>(table.columns.size()) - 1;
        }
        row.values.resize(table.columns.size());
        row.values[static_cast<size_t>(index)] = value.get<std::string>();
      }
      table.rows.push_back(std::move(row));
    }
    out.samples = std::move(table);
  }
  return out;
}

std::vector<FilterPipeline> parse_filters(const SpecFields& spec) {
  std::vector<FilterPipeline> out;
  if (!spec.has("filter_list")) {
    FilterStep take_first;
    take_first.kind = "take_first";
    return {FilterPipeline{.name = "none", .steps = {take_first}}};
  }
  for (size_t i = 0; i < spec.at("filter_list").size(); ++i) {
    const SpecFields f(spec.at("filter_list")[i], spec.file(), fmt::format("filter_list[{}].", i));
    FilterPipeline pipeline;
    pipeline.name = f.string("name");
    MLABENCH_CHECK(f.has("filter") && f.at("filter").is_array(),
                   "{}: {} needs a \"filter\" list of steps. HINT: see "
                   "docs/tasks.md",
                   spec.file().string(), f.name("filter"));
    for (size_t k = 0; k < f.at("filter").size(); ++k) {
      const SpecFields s(f.at("filter")[k], spec.file(), fmt::format("{}filter[{}].", f.name(""), k));
      FilterStep step;
      step.kind = s.string("function");
      MLABENCH_CHECK(FILTER_FUNCTIONS.contains(step.kind),
                     "{}: {} '{}' is not a filter function ({}). HINT: see "
                     "docs/tasks.md",
                     spec.file().string(), s.name("function"), step.kind, fmt::join(FILTER_FUNCTIONS, ", "));
      if (step.kind == "regex") step.pattern = s.string("regex_pattern");
      const int64_t group_select = s.integer_or("group_select", 0);
      MLABENCH_CHECK(group_select >= -1000 && group_select <= 1000,
                     "{}: {} is {}. HINT: which regex match to keep: 0 the first, -1 the last (-1000 .. 1000)",
                     spec.file().string(), s.name("group_select"), group_select);
      step.group_select = static_cast<int>(group_select);
      step.fallback = s.string_or("fallback", step.fallback);
      pipeline.steps.push_back(std::move(step));
    }
    out.push_back(std::move(pipeline));
  }
  MLABENCH_CHECK(!out.empty(), "{}: filter_list is empty. HINT: leave it out for the identity filter",
                 spec.file().string());
  return out;
}

std::vector<MetricSpec> parse_metrics(const SpecFields& spec) {
  std::vector<MetricSpec> out;
  MLABENCH_CHECK(spec.has("metric_list") && !spec.at("metric_list").empty(),
                 "{}: missing field 'metric_list'. HINT: "
                 "e.g. [{{\"metric\": \"acc\"}}]",
                 spec.file().string());
  for (size_t i = 0; i < spec.at("metric_list").size(); ++i) {
    const SpecFields m(spec.at("metric_list")[i], spec.file(), fmt::format("metric_list[{}].", i));
    MetricSpec metric;
    metric.name = m.string("metric");
    const metrics::MetricDef* def = metrics::find_metric(metric.name);  // the names: metrics/registry.cpp
    MLABENCH_CHECK(def != nullptr && def->in_specs, "{}: {} '{}' is not one of {}. HINT: see docs/tasks.md",
                   spec.file().string(), m.name("metric"), metric.name, metrics::spec_metric_names());
    metric.ignore_case = m.boolean_or("ignore_case", false);
    metric.ignore_punctuation = m.boolean_or("ignore_punctuation", false);
    metric.regexes_to_ignore = m.strings_or_empty("regexes_to_ignore");
    if (def->input == metrics::ItemInput::CODE_VERDICTS) {  // pass_at_k
      MLABENCH_CHECK(m.has("k") && m.at("k").is_array() && !m.at("k").empty(),
                     "{}: {} needs \"k\": a list of positive integers. HINT: e.g. \"k\": [1, 10, 100]",
                     spec.file().string(), m.name("metric"));
      for (const auto& k : m.at("k")) {
        MLABENCH_CHECK(k.is_number_integer() && k.get<int64_t>() > 0, "{}: {} holds {}, not a positive integer. "
                       "HINT: e.g. \"k\": [1, 10, 100]", spec.file().string(), m.name("k"), k.dump());
        metric.k.push_back(k.get<int64_t>());
      }
    } else {
      MLABENCH_CHECK(!m.has("k"), "{}: {} belongs to pass_at_k only. HINT: remove it", spec.file().string(),
                     m.name("k"));
    }
    out.push_back(std::move(metric));
  }
  return out;
}

GenerationKwargs parse_generation(const SpecFields& spec) {
  GenerationKwargs out;
  if (!spec.has("generation_kwargs")) return out;
  const SpecFields g(spec.at("generation_kwargs"), spec.file(), "generation_kwargs.");
  out.until = g.strings_or_empty("until");
  out.max_gen_toks = g.integer_or("max_gen_toks", out.max_gen_toks);
  MLABENCH_CHECK(out.max_gen_toks > 0, "{}: generation_kwargs.max_gen_toks {} must be positive. HINT: e.g. 256",
                 spec.file().string(), out.max_gen_toks);
  out.temperature = g.number_or("temperature", out.temperature);
  // lm-eval's do_sample: false means greedy whatever the temperature says.
  if (!g.boolean_or("do_sample", out.temperature > 0)) out.temperature = 0.0;
  out.top_p = g.number_or("top_p", out.top_p);
  const int64_t seed = g.integer_or("seed", static_cast<int64_t>(out.seed));
  MLABENCH_CHECK(seed >= 0, "{}: generation_kwargs.seed {} is negative. HINT: use a non-negative integer",
                 spec.file().string(), seed);
  out.seed = static_cast<uint64_t>(seed);
  out.repeats = g.integer_or("repeats", out.repeats);
  MLABENCH_CHECK(out.repeats > 0, "{}: generation_kwargs.repeats {} must be positive. HINT: 1 for one answer per "
                 "document; n > 1 samples for pass@k", spec.file().string(), out.repeats);
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string closest_names(const std::string& name, const std::vector<std::string>& known, size_t count) {
  std::vector<std::pair<size_t, std::string>> ranked;
  for (const auto& k : known) ranked.emplace_back(edit_distance(name, k), k);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> best;
  for (size_t i = 0; i < ranked.size() && i < count; ++i) best.push_back(ranked[i].second);
  return fmt::format("{}", fmt::join(best, ", "));
}

std::vector<SpecEntry> load_spec_entries(const std::filesystem::path& specs_dir) {
  std::error_code error;
  MLABENCH_CHECK(std::filesystem::is_directory(specs_dir, error),
                 "the task specs folder {} does not exist. HINT: "
                 "the specs ship in the source tree's tasks/specs (MLABENCH_TASKS_DIR at build time); pass that folder",
                 specs_dir.string());
  std::vector<std::filesystem::path> files;
  for (const auto& item : std::filesystem::directory_iterator(specs_dir)) {
    const auto& path = item.path();
    if (item.is_regular_file() && path.extension() == ".json" && !path.filename().string().starts_with("_")) {
      files.push_back(path);
    }
  }
  std::vector<SpecEntry> entries;
  std::map<std::string, std::filesystem::path> owner;
  for (const auto& file : files) {
    SpecEntry entry = make_entry(file);
    std::vector<std::string> names = entry.leaf_names;
    names.push_back(entry.name);
    for (const auto& name : names) {
      const auto [it, inserted] = owner.emplace(name, file);
      MLABENCH_CHECK(inserted || it->second == file, "task name '{}' is defined by both {} and {}. HINT: rename one",
                     name, it->second.string(), file.string());
    }
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

namespace {

// Generation settings, filters, metrics, the code scorer and breakdowns: shared by row-based and generated tasks.
void parse_generation_and_scoring(const SpecFields& spec, TaskSpec& out) {
  const std::string file = spec.file().string();
  out.generation = parse_generation(spec);
  if (out.output_type == OutputType::GENERATE_UNTIL) out.filters = parse_filters(spec);
  out.metrics = parse_metrics(spec);
  out.breakdowns = spec.strings_or_empty("breakdowns");
  if (spec.has("scorer")) {
    const SpecFields scorer(spec.at("scorer"), spec.file(), "scorer.");
    out.scorer = scorer.string("hook");
    code_scorer_hook(out.scorer, spec.file());
    out.scorer_options = spec.at("scorer");
    MLABENCH_CHECK(out.output_type == OutputType::GENERATE_UNTIL && out.filters.size() == 1,
                   "{}: a code scorer grades generated answers through one filter pipeline. HINT: use output_type "
                   "generate_until and at most one filter_list entry", file);
  }
  bool pass_at_k = false;
  for (const MetricSpec& m : out.metrics) {
    const metrics::ItemInput input = metrics::find_metric(m.name)->input;  // checked by parse_metrics
    pass_at_k = pass_at_k || input == metrics::ItemInput::CODE_VERDICTS;
    const bool generated = input == metrics::ItemInput::GENERATED_ANSWER;
    MLABENCH_CHECK(!generated || (out.output_type == OutputType::GENERATE_UNTIL && out.scorer.empty()),
                   "{}: metric '{}' scores a generated answer against the target. HINT: use it with output_type "
                   "generate_until and no scorer", file, m.name);
    MLABENCH_CHECK(input != metrics::ItemInput::CODE_VERDICTS || !out.scorer.empty(), "{}: pass_at_k needs a "
                   "code scorer. HINT: add \"scorer\": {{\"hook\": \"humaneval\"}}", file);
  }
  MLABENCH_CHECK(out.scorer.empty() || pass_at_k, "{}: a task with a scorer reports pass_at_k. HINT: add "
                 "{{\"metric\": \"pass_at_k\", \"k\": [1]}} to metric_list", file);
  MLABENCH_CHECK(out.generation.repeats == 1 || !out.scorer.empty(), "{}: generation_kwargs.repeats {} needs a code "
                 "scorer (pass@k); other generated answers are scored once. HINT: remove repeats", file,
                 out.generation.repeats);
}

}  // namespace

TaskSpec parse_task_spec(const SpecEntry& entry) {
  MLABENCH_ICHECK(entry.kind != SpecKind::SUITE, "parse_task_spec on suite {}", entry.name);
  const SpecFields spec(entry.resolved, entry.file);
  TaskSpec out;
  out.file = entry.file;
  out.name = entry.name;
  out.is_group = entry.kind == SpecKind::GROUP;
  out.config = entry.resolved;
  const int64_t version = spec.integer_or("version", 0);
  MLABENCH_CHECK(version > 0 && version <= 1000000,
                 "{}: missing or out-of-range field 'version' ({}). HINT: every task carries a version (1 .. 1000000), "
                 "bumped whenever its prompts, data handling or scoring change",
                 entry.file.string(), version);
  out.version = static_cast<int>(version);
  out.dataset = spec.string("dataset");
  out.protocol = spec.string("protocol");
  out.output_type = parse_output_type(spec);
  parse_generation_and_scoring(spec, out);
  if (spec.has("generator")) {
    // The documents come from a hook: none of the row-and-template fields apply.
    for (const char* key : {"reader", "columns", "data_files", "eval_split", "fewshot_split", "description",
                            "doc_to_text", "doc_to_target", "doc_to_choice", "fewshot", "num_fewshot", "doc_hooks"}) {
      MLABENCH_CHECK(!spec.has(key), "{}: '{}' does not apply to a task whose documents come from a generator. "
                     "HINT: put the generator's settings inside \"generator\"", entry.file.string(), key);
    }
    MLABENCH_CHECK(!out.is_group, "{}: a group cannot have a generator. HINT: make it a task", entry.file.string());
    out.generator = spec.at("generator");
    const SpecFields gen(out.generator, entry.file, "generator.");
    generator_hook(gen.string("hook"), entry.file);
    return out;
  }
  out.reader = spec.string("reader");
  out.columns = spec.strings_or_empty("columns");
  out.data_files = spec.template_or_empty("data_files");
  MLABENCH_CHECK(!out.data_files.empty(),
                 "{}: missing field 'data_files'. HINT: e.g. \"data/{{{{split}}}}/"
                 "{{{{subject}}}}_{{{{split}}}}.csv\"",
                 entry.file.string());
  out.eval_split = spec.string("eval_split");
  out.fewshot_split = spec.string_or("fewshot_split", "");
  out.description = spec.template_or_empty("description");
  out.doc_to_text = spec.template_or_empty("doc_to_text");
  MLABENCH_CHECK(!out.doc_to_text.empty(), "{}: missing field 'doc_to_text'. HINT: the template of the question",
                 entry.file.string());
  out.doc_to_target = spec.template_or_empty("doc_to_target");
  if (out.output_type != OutputType::LOGLIKELIHOOD_ROLLING) {
    MLABENCH_CHECK(!out.doc_to_target.empty(), "{}: missing field 'doc_to_target'. HINT: the template of the answer",
                   entry.file.string());
  }
  for (const auto& choice : spec.strings_or_empty("doc_to_choice")) {
    out.doc_to_choice.emplace_back(choice, fmt::format("{} field 'doc_to_choice'", entry.file.string()));
  }
  MLABENCH_CHECK((out.output_type == OutputType::MULTIPLE_CHOICE) == !out.doc_to_choice.empty(),
                 "{}: doc_to_choice is {} but output_type is {}. HINT: multiple_choice tasks list their choices, "
                 "other tasks have none",
                 entry.file.string(), out.doc_to_choice.empty() ? "absent" : "present", spec.string("output_type"));
  out.target_delimiter = spec.string_or("target_delimiter", out.target_delimiter);
  out.fewshot_delimiter = spec.string_or("fewshot_delimiter", out.fewshot_delimiter);
  const int64_t num_fewshot = spec.integer_or("num_fewshot", 0);
  MLABENCH_CHECK(num_fewshot >= 0 && num_fewshot <= 10000, "{}: num_fewshot {} is out of range. HINT: 0 .. 10000",
                 entry.file.string(), num_fewshot);
  out.num_fewshot = static_cast<int>(num_fewshot);
  out.fewshot = parse_fewshot(spec);
  MLABENCH_CHECK(out.fewshot.samples || !out.fewshot_split.empty() || out.num_fewshot == 0,
                 "{}: num_fewshot is {} but there is neither a fewshot_split nor fewshot.samples. HINT: name the split "
                 "the examples come from",
                 entry.file.string(), out.num_fewshot);
  out.doc_hooks = spec.strings_or_empty("doc_hooks");
  for (const auto& hook : out.doc_hooks) doc_hook(hook, entry.file);
  reader_hook(out.reader, entry.file);
  out.group_macro = spec.boolean_or("group_macro", false);
  if (out.is_group) {
    const SpecFields sub(spec.at("subtasks"), entry.file, "subtasks.");
    SubtasksSpec subtasks;
    subtasks.name = sub.template_or_empty("name");
    subtasks.display = sub.has("display") ? sub.template_or_empty("display") : Template("{{subject}}", "");
    subtasks.category = sub.template_or_empty("category");
    subtasks.subjects = entry.subjects;
    subtasks.hook = sub.string_or("hook", "");
    if (!subtasks.hook.empty()) subtask_hook(subtasks.hook, entry.file);
    out.subtasks = std::move(subtasks);
  }
  return out;
}

}  // namespace mlabench::tasks
