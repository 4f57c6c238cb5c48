// The spec format and its errors, task-name resolution, the data readers and malformed data (fixtures in
// tests/data/tasks/malformed), without the real datasets.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <string>
#include <tuple>

#include "core/check.h"
#include "tasks/data_table.h"
#include "tasks/task.h"
#include "tasks/template.h"
#include "tests/test_util.h"

namespace mlabench::tasks {
namespace {

const std::filesystem::path MALFORMED = std::filesystem::path(MLABENCH_TEST_DATA) / "tasks" / "malformed";

// A fresh folder for spec files written by one test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("mlabench-task-specs-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
    return path_ / name;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

using test::error_of;

// A three-subject group over the malformed fixtures, in MMLU's layout.
constexpr const char* TINY_GROUP = R"({
  "group": "tiny", "version": 1, "dataset": "tiny", "protocol": "test", "output_type": "multiple_choice",
  "reader": "csv_headerless", "columns": ["question", "A", "B", "C", "D", "answer"],
  "data_files": "data/{{split}}/{{subject}}_{{split}}.csv", "eval_split": "test",
  "doc_to_text": "{{question}}\nAnswer:", "doc_to_target": "{{answer}}", "doc_to_choice": ["A", "B", "C", "D"],
  "metric_list": [{"metric": "acc"}],
  "subtasks": {"name": "tiny_{{subject}}", "category": "{{category}}", "hook": "subject_mapping",
               "subjects": ["alpha", "beta", "gamma"]}
})";

constexpr const char* TINY_JSONL = R"({
  "task": "tinyjsonl", "version": 1, "dataset": "tiny", "protocol": "test", "output_type": "generate_until",
  "reader": "jsonl", "data_files": "{{split}}.jsonl", "eval_split": "broken",
  "doc_hooks": ["gsm8k_gold_answer"], "doc_to_text": "Q: {{question}}", "doc_to_target": "{{gold}}",
  "metric_list": [{"metric": "exact_match"}]
})";

TaskLoadOptions malformed_options(const TempDir& specs) {
  TaskLoadOptions options;
  options.dataset_dir = MALFORMED;
  options.specs_dir = specs.path();
  return options;
}

TEST(TaskData, CsvWithWrongColumnCountNamesFileAndLine) {
  TempDir specs;
  specs.write("tiny.json", TINY_GROUP);
  const std::string message = error_of([&] { load_task("tiny_alpha", malformed_options(specs)); });
  EXPECT_NE(message.find("alpha_test.csv:3: 5 CSV fields, expected 6"), std::string::npos) << message;
}

TEST(TaskData, CsvWithUnterminatedQuoteNamesFileAndLine) {
  TempDir specs;
  specs.write("tiny.json", TINY_GROUP);
  const std::string message = error_of([&] { load_task("tiny_beta", malformed_options(specs)); });
  EXPECT_NE(message.find("beta_test.csv:2: a quoted CSV field opened here is never closed"), std::string::npos)
      << message;
}

TEST(TaskData, AnswerOutsideTheChoicesNamesFileAndLine) {
  TempDir specs;
  specs.write("tiny.json", TINY_GROUP);
  const std::string message = error_of([&] { load_task("tiny_gamma", malformed_options(specs)); });
  EXPECT_NE(message.find("gamma_test.csv:2: the answer \"E\" is not one of the choices"), std::string::npos) << message;
}

TEST(TaskData, JsonlWithBrokenLineNamesFileAndLine) {
  TempDir specs;
  specs.write("tinyjsonl.json", TINY_JSONL);
  const std::string message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("broken.jsonl:3: not valid JSON"), std::string::npos) << message;
}

TEST(TaskData, Gsm8kAnswerWithoutMarkerNamesFileAndLine) {
  TempDir specs;
  std::string spec = TINY_JSONL;
  spec.replace(spec.find("\"broken\""), 8, "\"no_answer_marker\"");
  specs.write("tinyjsonl.json", spec);
  const std::string message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("no_answer_marker.jsonl:2: the answer has no \"#### N\""), std::string::npos) << message;
}

TEST(TaskData, UnknownSubjectIsNamedWithItsFile) {
  // The real MMLU spec over a mapping that lacks 56 of its subjects and has one it does not know.
  TempDir data;
  data.write("subject_mapping.json",
             "{\n  \"anatomy\": {\"name\": \"anatomy\", \"category\": \"Other\"},\n"
             "  \"astrology\": {\"name\": \"astrology\", \"category\": \"Other\"}\n}\n");
  TaskLoadOptions options;
  options.dataset_dir = data.path();
  std::string message = error_of([&] { load_task("mmlu_anatomy", options); });
  EXPECT_NE(message.find("subject_mapping.json:3: unknown subject 'astrology'"), std::string::npos) << message;
  data.write("subject_mapping.json", "{\"anatomy\": {\"name\": \"anatomy\", \"category\": \"Other\"}}");
  message = error_of([&] { load_task("mmlu_anatomy", options); });
  EXPECT_NE(message.find("unknown subject 'abstract_algebra'"), std::string::npos) << message;
  EXPECT_NE(message.find("mmlu.json"), std::string::npos) << message;
}

TEST(TaskData, MissingDataFileIsNamed) {
  TempDir specs;
  std::string spec = TINY_JSONL;
  spec.replace(spec.find("\"broken\""), 8, "\"absent\"");
  specs.write("tinyjsonl.json", spec);
  const std::string message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("absent.jsonl"), std::string::npos) << message;
  EXPECT_NE(message.find("mlabench fetch"), std::string::npos) << message;
}

// Few-shot split = evaluation split: the document itself is never its own shot. Expected shots from Python:
//   r = random.Random(1234); rows = ['q0', ..., 'q5']
//   for d in rows: print([x for x in r.sample(rows, 3) if x != d][:2])
TEST(TaskSpecs, SamplersSkipTheDocumentWhenShotsComeFromItsOwnSplit) {
  TempDir dir;
  std::string rows;
  for (int i = 0; i < 6; ++i) rows += "{\"q\": \"q" + std::to_string(i) + "\", \"a\": \"A\"}\n";
  dir.write("all.jsonl", rows);
  const std::string spec = R"({
    "task": "same", "version": 1, "dataset": "tiny", "protocol": "test", "output_type": "generate_until",
    "reader": "jsonl", "data_files": "{{split}}.jsonl", "eval_split": "all", "fewshot_split": "all",
    "num_fewshot": 2, "fewshot": {"sampler": "SAMPLER"}, "doc_to_text": "{{q}}", "doc_to_target": "{{a}}",
    "target_delimiter": "", "fewshot_delimiter": ",", "metric_list": [{"metric": "exact_match"}]
  })";
  TaskLoadOptions options;
  options.dataset_dir = dir.path();
  options.specs_dir = dir.path();
  auto contexts = [&](const std::string& sampler) {
    std::string text = spec;
    text.replace(text.find("SAMPLER"), 7, sampler);
    dir.write("same.json", text);
    std::vector<std::string> out;
    const Task task = load_task("same", options);
    for (const auto& doc : task.subtasks[0].docs) out.push_back(doc.context);
    return out;
  };
  EXPECT_EQ(contexts("random"), (std::vector<std::string>{"q3A,q4A,q0", "q0A,q4A,q1", "q5A,q0A,q2", "q2A,q1A,q3",
                                                          "q0A,q5A,q4", "q4A,q3A,q5"}));
  EXPECT_EQ(contexts("first_n"), (std::vector<std::string>{"q1A,q2A,q0", "q0A,q2A,q1", "q0A,q1A,q2", "q0A,q1A,q3",
                                                           "q0A,q1A,q4", "q0A,q1A,q5"}));
}

TEST(TaskSpecs, UnknownFieldNamesTheSpecFileAndTheClosestField) {
  TempDir specs;
  std::string spec = TINY_JSONL;
  spec.replace(spec.find("\"doc_to_text\""), 13, "\"doc_to_txt\"");
  specs.write("tinyjsonl.json", spec);
  const std::string message = error_of([&] { list_tasks(specs.path()); });
  EXPECT_NE(message.find("tinyjsonl.json"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown field 'doc_to_txt'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'doc_to_text'"), std::string::npos) << message;
}

TEST(TaskSpecs, BadIncludeNamesTheSpecFile) {
  TempDir specs;
  specs.write("a.json", R"({"task": "a", "include": "_missing.json"})");
  std::string message = error_of([&] { list_tasks(specs.path()); });
  EXPECT_NE(message.find("a.json: the included file"), std::string::npos) << message;
  EXPECT_NE(message.find("_missing.json"), std::string::npos) << message;

  TempDir cycle;
  cycle.write("b.json", R"({"task": "b", "include": "_x.json"})");
  cycle.write("_x.json", R"({"include": "_y.json"})");
  cycle.write("_y.json", R"({"include": "_x.json"})");
  message = error_of([&] { list_tasks(cycle.path()); });
  EXPECT_NE(message.find("makes a cycle"), std::string::npos) << message;

  TempDir long_name;  // a name past the file system's limit (fuzz_task_spec found it throwing) is the same error
  long_name.write("d.json", R"({"task": "d", "include": ")" + std::string(300, 'x') + R"(.json"})");
  message = error_of([&] { list_tasks(long_name.path()); });
  EXPECT_NE(message.find("d.json: the included file"), std::string::npos) << message;
  EXPECT_NE(message.find("File name too long"), std::string::npos) << message;

  TempDir typo;  // an unknown key in an included file is reported in that file
  typo.write("c.json", R"({"task": "c", "include": "_defaults.json"})");
  typo.write("_defaults.json", R"({"num_fewshots": 5})");
  message = error_of([&] { list_tasks(typo.path()); });
  EXPECT_NE(message.find("_defaults.json: unknown field 'num_fewshots'"), std::string::npos) << message;
}

TEST(TaskSpecs, IncludeMergesObjectsAndTheSpecOverrides) {
  TempDir specs;
  std::string base = TINY_GROUP;
  base.replace(base.find("\"group\": \"tiny\", "), 17, "");
  specs.write("_tiny_defaults.json", base);
  specs.write("tiny2.json", R"({"group": "tiny2", "include": "_tiny_defaults.json", "version": 3,
                                "subtasks": {"name": "t2_{{subject}}"}})");
  const auto names = list_tasks(specs.path());
  EXPECT_EQ(names, (std::vector<std::string>{"t2_alpha", "t2_beta", "t2_gamma", "tiny2"}));
  EXPECT_EQ(task_dataset("t2_beta", specs.path()), "tiny");
}

TEST(TaskSpecs, MissingTemplateFieldNamesTheSpecAndTheRow) {
  TempDir specs;
  std::string spec = TINY_JSONL;
  spec.replace(spec.find("{{question}}"), 12, "{{questoin}}");
  spec.replace(spec.find("\"broken\""), 8, "\"no_answer_marker\"");
  spec.replace(spec.find("\"doc_hooks\": [\"gsm8k_gold_answer\"], "), 36, "");
  spec.replace(spec.find("{{gold}}"), 8, "{{answer}}");
  specs.write("tinyjsonl.json", spec);
  const std::string message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("tinyjsonl.json: doc_to_text"), std::string::npos) << message;
  EXPECT_NE(message.find("'{{questoin}}'"), std::string::npos) << message;
  EXPECT_NE(message.find("no_answer_marker.jsonl:1"), std::string::npos) << message;
}

TEST(TaskSpecs, UnknownHookAndMissingVersionAreSpecErrors) {
  TempDir specs;
  std::string spec = TINY_JSONL;
  spec.replace(spec.find("gsm8k_gold_answer"), 17, "gsm8k_gold");
  specs.write("tinyjsonl.json", spec);
  std::string message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("tinyjsonl.json: unknown doc hook 'gsm8k_gold'"), std::string::npos) << message;

  spec = TINY_JSONL;
  spec.replace(spec.find("\"version\": 1, "), 14, "");
  specs.write("tinyjsonl.json", spec);
  message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
  EXPECT_NE(message.find("tinyjsonl.json: missing or out-of-range field 'version'"), std::string::npos) << message;

  // Integers the spec keeps as int are range-checked, not truncated (4294967297 would have become version 1).
  for (const auto& [from, to, what] :
       {std::tuple{"\"version\": 1, ", "\"version\": 4294967297, ", "out-of-range field 'version' (4294967297)"},
        std::tuple{"\"version\": 1, ", "\"version\": 1, \"num_fewshot\": 2147483648, ", "num_fewshot 2147483648 is out of range"}}) {
    spec = TINY_JSONL;
    spec.replace(spec.find(from), std::string(from).size(), to);
    specs.write("tinyjsonl.json", spec);
    message = error_of([&] { load_task("tinyjsonl", malformed_options(specs)); });
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

TEST(TaskNames, ListHasGroupsLeavesAndTasksButNotSuites) {
  const auto names = list_tasks();
  EXPECT_EQ(names.size(), 1u + 57u + 1u + 52u + 1u + 52u + 2u + 3u);  // + humaneval, livecodebench, niah
  for (const char* name : {"mmlu", "mmlu_anatomy", "ceval", "ceval_accountant", "ceval_lmeval",
                           "ceval_lmeval_accountant", "gsm8k", "gsm8k_cot"}) {
    EXPECT_TRUE(std::binary_search(names.begin(), names.end(), name)) << name;
  }
  EXPECT_FALSE(std::binary_search(names.begin(), names.end(), "deepseek-v2-paper"));
  EXPECT_EQ(task_dataset("mmlu_anatomy"), "mmlu");
  EXPECT_EQ(task_dataset("gsm8k_cot"), "gsm8k");
}

TEST(TaskNames, GlobsCommasAndSuitesExpand) {
  const auto mmlu = resolve_task_names("mmlu_*");
  EXPECT_EQ(mmlu.size(), 57u);
  EXPECT_EQ(mmlu.front(), "mmlu_abstract_algebra");
  EXPECT_EQ(resolve_task_names("gsm8k*"), (std::vector<std::string>{"gsm8k", "gsm8k_cot"}));
  EXPECT_EQ(resolve_task_names(" gsm8k_cot , mmlu_anatomy,gsm8k_cot"),
            (std::vector<std::string>{"gsm8k_cot", "mmlu_anatomy"}));
  EXPECT_EQ(resolve_task_names("deepseek-v2-paper,gsm8k"),
            (std::vector<std::string>{"mmlu", "ceval", "gsm8k_cot", "humaneval", "livecodebench", "niah", "gsm8k"}));
  // A group already runs its leaves.
  EXPECT_EQ(resolve_task_names("mmlu_anatomy,mmlu"), (std::vector<std::string>{"mmlu"}));
}

TEST(TaskNames, UnknownNamesAreErrorsWithCloseMatches) {
  std::string message = error_of([] { resolve_task_names("mmlu,gsm8k_cott"); });
  EXPECT_NE(message.find("unknown task 'gsm8k_cott'"), std::string::npos) << message;
  EXPECT_NE(message.find("gsm8k_cot"), std::string::npos) << message;
  message = error_of([] { resolve_task_names("mmlu_anatomyy"); });
  EXPECT_NE(message.find("closest: mmlu_anatomy"), std::string::npos) << message;
  message = error_of([] { resolve_task_names("mmluu_*"); });
  EXPECT_NE(message.find("the pattern 'mmluu_*' matches no task"), std::string::npos) << message;
  message = error_of([] { load_task("deepseek-v2-paper", {}); });
  EXPECT_NE(message.find("is a suite"), std::string::npos) << message;
}

TEST(TaskReaders, CsvFollowsPythonsCsvModule) {
  TempDir dir;
  // BOM, CRLF records, a quoted field with a doubled quote, a comma and a CRLF inside, a blank line, no final
  // line end; Python: list(csv.reader(open(f, newline='', encoding='utf-8-sig'))) minus blank rows.
  const auto file = dir.write("x.csv", "\xEF\xBB\xBFq,a\r\n\"say \"\"hi\"\", then\r\nbye\",1\r\n\r\nplain,\"\"");
  const DataTable table = read_csv(file, {});
  EXPECT_EQ(table.columns, (std::vector<std::string>{"q", "a"}));
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(*table.rows[0].values[0], "say \"hi\", then\r\nbye");
  EXPECT_EQ(*table.rows[0].values[1], "1");
  EXPECT_EQ(table.rows[0].line, 2);
  EXPECT_EQ(*table.rows[1].values[0], "plain");
  EXPECT_EQ(*table.rows[1].values[1], "");
  EXPECT_EQ(table.rows[1].line, 5);
}

TEST(TaskReaders, JsonlKeepsKeyOrderAndNumbersAsText) {
  TempDir dir;
  const auto file = dir.write("x.jsonl", "{\"b\": \"x\", \"a\": 3}\n\n{\"a\": 4.5, \"c\": null}\n");
  const DataTable table = read_jsonl(file);
  EXPECT_EQ(table.columns, (std::vector<std::string>{"b", "a", "c"}));
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(*table.rows[0].values[1], "3");
  EXPECT_EQ(table.rows[1].line, 3);
  EXPECT_FALSE(table.rows[1].values[0].has_value());
  EXPECT_EQ(*table.rows[1].values[1], "4.5");
}

TEST(TaskTemplates, StripIsPythonsStrAndErrorsNameTheSpec) {
  EXPECT_EQ(python_strip("\u3000 \t x y\n\u00a0"), "x y");
  EXPECT_EQ(python_strip("问题\u3000"), "问题");
  EXPECT_EQ(python_strip(" \n "), "");
  const Fields fields = {{"q", "  Why?\n"}};
  std::string out;
  EXPECT_EQ(Template("<{{q|strip}}|{{ q }}>", "t").render_into(out, FieldScope{.subtask = &fields}), nullptr);
  EXPECT_EQ(out, "<Why?|  Why?\n>");
  EXPECT_NE(error_of([] { Template("{{q", "spec.json field 'x'"); }).find("spec.json field 'x'"), std::string::npos);
  EXPECT_NE(error_of([] { Template("{{q|upper}}", "s"); }).find("the only filter is 'strip'"), std::string::npos);
}

}  // namespace
}  // namespace mlabench::tasks
