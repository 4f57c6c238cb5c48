#include "tasks/hooks.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tasks/code/livecodebench.h"
#include "tasks/niah/niah.h"

namespace mlabench::tasks {

namespace {

std::string registered_names(const auto& registry) {
  std::vector<std::string> names;
  for (const auto& kv : registry) names.push_back(kv.first);
  return fmt::format("{}", fmt::join(names, ", "));
}

template <typename Hook>
const Hook& find_hook(const std::map<std::string, Hook>& registry, const char* kind, const std::string& name,
                      const std::filesystem::path& spec_file) {
  const auto it = registry.find(name);
  MLABENCH_CHECK(it != registry.end(),
                 "{}: unknown {} hook '{}' (registered: {}). HINT: use one of those names, or "
                 "register the function in tasks/hooks.cpp",
                 spec_file.string(), kind, name, registered_names(registry));
  return it->second;
}

// ----------------------------------------------------------------------------------------------------------
// Readers

DataTable require_columns(DataTable table, const std::vector<std::string>& columns) {
  for (const auto& column : columns) {
    MLABENCH_CHECK(table.column(column) >= 0,
                   "{}: no column '{}' (the file has: {}). HINT: the file is not of "
                   "this dataset, or the spec's \"columns\" is wrong",
                   table.file.string(), column, fmt::join(table.columns, ", "));
  }
  return table;
}

const std::map<std::string, ReaderHook>& readers() {
  static const std::map<std::string, ReaderHook> registry = {
      // Headerless CSV (MMLU's hendrycks files): the spec's "columns" name the fields.
      {"csv_headerless",
       [](const std::filesystem::path& file, const std::vector<std::string>& columns) {
         MLABENCH_CHECK(!columns.empty(),
                        "reader csv_headerless for {} needs the spec's \"columns\". HINT: list the "
                        "field names in file order",
                        file.string());
         return read_csv(file, columns);
       }},
      // CSV whose first row names the fields (C-Eval); "columns" lists the fields that must be there.
      {"csv_header",
       [](const std::filesystem::path& file, const std::vector<std::string>& columns) {
         return require_columns(read_csv(file, {}), columns);
       }},
      {"jsonl", [](const std::filesystem::path& file,
                   const std::vector<std::string>& columns) { return require_columns(read_jsonl(file), columns); }},
  };
  return registry;
}

// ----------------------------------------------------------------------------------------------------------
// Subtask hooks

size_t line_of(const std::string& text, size_t offset) {
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
}

// subject_mapping.json ({subject: {name, category}}) beside the data: the subject's display name and category.
// Provides subject_words (the key with '_' as ' ', MMLU's header), subject_name and category.
std::vector<Fields> subject_mapping(const std::filesystem::path& dataset_dir, const std::vector<std::string>& subjects,
                                    const std::filesystem::path& spec_file) {
  const auto file = dataset_dir / "subject_mapping.json";
  const std::string text = read_text_file(file, "subject mapping");
  nlohmann::ordered_json mapping;
  try {
    mapping = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::ordered_json::exception& e) {  // parse_error, or out_of_range for 1e999
    MLABENCH_FAIL("{}: not valid JSON ({}). HINT: fetch the dataset again", file.string(), e.what());
  }
  MLABENCH_CHECK(mapping.is_object(),
                 "{}: expected a JSON object {{subject: {{name, category}}}}. HINT: fetch the "
                 "dataset again",
                 file.string());
  for (const auto& [key, value] : mapping.items()) {
    const bool listed = std::find(subjects.begin(), subjects.end(), key) != subjects.end();
    MLABENCH_CHECK(listed,
                   "{}:{}: unknown subject '{}': the dataset has it but {} does not list it. HINT: the data "
                   "is of another version than the spec; add the subject to the spec's \"subjects\" or fetch the "
                   "matching dataset",
                   file.string(), line_of(text, text.find('"' + key + '"')), key, spec_file.string());
    MLABENCH_CHECK(value.is_object() && value.contains("name") && value["name"].is_string() &&
                       value.contains("category") && value["category"].is_string(),
                   "{}:{}: subject '{}' needs string fields \"name\" and \"category\". HINT: fetch the dataset again",
                   file.string(), line_of(text, text.find('"' + key + '"')), key);
  }
  std::vector<Fields> out;
  out.reserve(subjects.size());
  for (const auto& subject : subjects) {
    MLABENCH_CHECK(mapping.contains(subject),
                   "{}: unknown subject '{}' (listed in {}) is not in the mapping. HINT: "
                   "the data is of another version than the spec; fetch the matching dataset or remove the subject "
                   "from the spec",
                   file.string(), subject, spec_file.string());
    std::string words = subject;
    std::replace(words.begin(), words.end(), '_', ' ');
    const auto& entry = mapping[subject];
    out.push_back({{"subject_words", std::move(words)},
                   {"subject_name", entry["name"].get<std::string>()},
                   {"category", entry["category"].get<std::string>()}});
  }
  return out;
}

const std::map<std::string, SubtaskHook>& subtask_hooks() {
  static const std::map<std::string, SubtaskHook> registry = {{"subject_mapping", subject_mapping}};
  return registry;
}

// ----------------------------------------------------------------------------------------------------------
// Doc hooks

// GSM8K's gold: the text after the last "####" of `answer`, stripped (lm-eval's answer.split('####')[-1].strip();
// openai/grade-school-math writes it as "#### N").
Fields gsm8k_gold_answer(const DataTable& table, const DataRow& row) {
  const int column = table.column("answer");
  const bool has_answer = column >= 0 && static_cast<size_t>(column) < row.values.size() && row.values[column];
  MLABENCH_CHECK(has_answer,
                 "{}: no \"answer\" field. HINT: GSM8K rows are {{\"question\", \"answer\"}}; fetch the "
                 "dataset again",
                 table.where(row));
  const std::string& answer = *row.values[static_cast<size_t>(column)];
  const size_t marker = answer.rfind("####");
  MLABENCH_CHECK(marker != std::string::npos,
                 "{}: the answer has no \"#### N\" final line. HINT: GSM8K answers end "
                 "with \"#### <number>\"; fetch the dataset again",
                 table.where(row));
  const std::string gold(python_strip(std::string_view(answer).substr(marker + 4)));
  MLABENCH_CHECK(!gold.empty(),
                 "{}: nothing after \"####\" in the answer. HINT: GSM8K answers end with \"#### "
                 "<number>\"; fetch the dataset again",
                 table.where(row));
  return {{"gold", gold}};
}

const std::map<std::string, DocHook>& doc_hooks() {
  static const std::map<std::string, DocHook> registry = {{"gsm8k_gold_answer", gsm8k_gold_answer}};
  return registry;
}

// ----------------------------------------------------------------------------------------------------------
// Generators

const std::map<std::string, GeneratorHook>& generators() {
  static const std::map<std::string, GeneratorHook> registry = {
      {"livecodebench", livecodebench::generate},
      {"niah", niah::generate},
  };
  return registry;
}

}  // namespace

const ReaderHook& reader_hook(const std::string& name, const std::filesystem::path& spec_file) {
  return find_hook(readers(), "reader", name, spec_file);
}

const SubtaskHook& subtask_hook(const std::string& name, const std::filesystem::path& spec_file) {
  return find_hook(subtask_hooks(), "subtask", name, spec_file);
}

const DocHook& doc_hook(const std::string& name, const std::filesystem::path& spec_file) {
  return find_hook(doc_hooks(), "doc", name, spec_file);
}

const GeneratorHook& generator_hook(const std::string& name, const std::filesystem::path& spec_file) {
  return find_hook(generators(), "generator", name, spec_file);
}

}  // namespace mlabench::tasks
