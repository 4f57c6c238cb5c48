// LiveCodeBench on the fixtures tools/make_lcb_fixtures.py writes (tests/data/livecodebench): private tests in
// both encodings, hostile pickles refused, release and date-window selection, the chat and base prompts byte for
// byte, the stdin comparison and code extraction, and sandboxed grading of right, wrong, timing-out, crashing,
// non-compiling and pass-faking solutions of both test types.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "sandbox/sandbox.h"
#include "tasks/code/livecodebench.h"
#include "tasks/code/pickle_string.h"
#include "tasks/task.h"
#include "tests/test_util.h"

namespace mlabench::tasks::livecodebench {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const fs::path kData = fs::path(MLABENCH_TEST_DATA) / "livecodebench";

ojson read(const fs::path& file) {
  std::ifstream in(file);
  EXPECT_TRUE(in.good()) << "cannot read " << file;
  return ojson::parse(in);
}

using test::error_of;

std::vector<Subtask> generate_with(const ojson& config, std::optional<int64_t> limit = std::nullopt,
                                   const fs::path& dir = kData) {
  GeneratorContext c;
  c.task_name = "livecodebench";
  c.config = config;
  c.dataset_dir = dir;
  c.spec_file = "livecodebench.json";
  c.limit = limit;
  return generate(c);
}

std::map<std::string, TaskDoc> docs_by_id(const ojson& config) {
  std::map<std::string, TaskDoc> out;
  std::vector<Subtask> generated = generate_with(config);
  for (TaskDoc& d : generated.at(0).docs) out[d.doc["question_id"].get<std::string>()] = std::move(d);
  return out;
}

std::vector<std::string> ids(const Subtask& s) {
  std::vector<std::string> out;
  for (const TaskDoc& d : s.docs) out.push_back(d.doc["question_id"].get<std::string>());
  return out;
}

const ojson kPaperWindow = {{"start_date", "2023-09-01"}, {"end_date", "2024-04-01"}};

TEST(LiveCodeBench, DecodesPlainJsonAndPickledPrivateTests) {
  const std::vector<TestCase> plain =
      decode_test_cases(R"([{"input": "[5]\n0", "output": "0", "testtype": "functional"}])", "inline");
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].input, "[5]\n0");
  EXPECT_EQ(plain[0].output, "0");
  EXPECT_EQ(plain[0].testtype, "functional");

  const ojson pickles = read(kData / "pickles.json");
  ASSERT_GE(pickles["valid"].size(), 9u);
  for (const ojson& p : pickles["valid"]) {
    const ojson want = ojson::parse(p["text"].get<std::string>());
    std::vector<TestCase> got;
    ASSERT_NO_THROW(got = decode_test_cases(p["field"], "pickle fixture")) << p["name"];
    ASSERT_EQ(got.size(), want.size()) << p["name"];
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].input, want[i]["input"].get<std::string>()) << p["name"];
      EXPECT_EQ(got[i].output, want[i]["output"].get<std::string>()) << p["name"];
      EXPECT_EQ(got[i].testtype, want[i]["testtype"].get<std::string>()) << p["name"];
    }
  }
  // Python's pickle.dumps("ab", 0) and ("ab", 4) byte for byte.
  EXPECT_EQ(unpickle_str(std::string_view("Vab\np0\n.", 8), "inline"), "ab");
  EXPECT_EQ(unpickle_str(std::string("\x80\x04\x95\x06\0\0\0\0\0\0\0\x8c\x02"
                                     "ab\x94.",
                                     17),
                         "inline"),
            "ab");
}

TEST(LiveCodeBench, RefusesEveryOtherPickleNamingTheOpcode) {
  const ojson pickles = read(kData / "pickles.json");
  for (const ojson& p : pickles["refused"]) {
    const std::string message =
        error_of([&] { decode_test_cases(p["field"], "test.jsonl:7 (question_id abc999_z) private_test_cases"); });
    EXPECT_NE(message.find(p["error"].get<std::string>()), std::string::npos) << p["name"] << ": " << message;
    EXPECT_NE(message.find("abc999_z"), std::string::npos) << p["name"] << ": " << message;
    EXPECT_NE(message.find("HINT"), std::string::npos) << p["name"] << ": " << message;
  }
  const std::string global = error_of([] { unpickle_str("cos\nsystem\n(S'ls'\ntR.", "inline"); });
  EXPECT_NE(global.find("GLOBAL (0x63) at byte 0"), std::string::npos) << global;
  EXPECT_NE(global.find("never executed"), std::string::npos) << global;
}

TEST(LiveCodeBench, ADatasetWithAMaliciousPickleIsRefusedByProblem) {
  const std::string message = error_of([] { generate_with({{"release", "release_v1"}}, {}, kData / "malicious"); });
  EXPECT_NE(message.find("abc999_z"), std::string::npos) << message;
  EXPECT_NE(message.find("test.jsonl:1"), std::string::npos) << message;
  EXPECT_NE(message.find("GLOBAL"), std::string::npos) << message;
}

TEST(LiveCodeBench, ExtractCodeTakesTheLastFencedBlock) {
  EXPECT_EQ(extract_code("text\n```python\nprint(1)\n```\nmore"), "print(1)");
  EXPECT_EQ(extract_code("```\na\n```\n\n```python\nb\nc\n```"), "b\nc");
  EXPECT_EQ(extract_code("```python\nx = 1\n"), "") << "one fence is not a block";
  EXPECT_EQ(extract_code("no code at all"), "");
  EXPECT_EQ(extract_code("```python\n```"), "") << "an empty block";
  // Any line containing ``` counts, as in LiveCodeBench; the code between the last two such lines is taken.
  EXPECT_EQ(extract_code("```py\nA\n``` trailing\nB\n```"), "B");
  EXPECT_EQ(extract_code("```\r\nline\r\n```"), "line\r");
}

TEST(LiveCodeBench, StdinOutputsCompareLineByLineAndAsDecimals) {
  EXPECT_TRUE(stdin_output_matches("320\n", "320"));
  EXPECT_TRUE(stdin_output_matches("  1 2  \n3\t\n\n", "1 2\n3"));
  EXPECT_TRUE(stdin_output_matches("ab  \r\ncd\r\n", "ab\ncd\n")) << "each line stripped";
  EXPECT_FALSE(stdin_output_matches("1\n2\n", "1\n2\n3")) << "line count";
  EXPECT_FALSE(stdin_output_matches("1\n\n2", "1\n2")) << "an inner blank line is a line";
  EXPECT_TRUE(stdin_output_matches("", "\n"));
  // Token-wise decimals (decimal.Decimal), exact: no tolerance.
  EXPECT_TRUE(stdin_output_matches("3.0 1.50", "3 1.5"));
  EXPECT_TRUE(stdin_output_matches("1e2 -0 0.000", "100 0 0"));
  EXPECT_TRUE(stdin_output_matches("1_000 +5 .5 5. 1E+3", "1000 5 0.5 5 1000"));
  EXPECT_TRUE(stdin_output_matches("Infinity -inf", "inf -Infinity"));
  EXPECT_FALSE(stdin_output_matches("NaN", "nan")) << "NaN equals nothing (the strings differ)";
  EXPECT_TRUE(stdin_output_matches("NaN", "NaN")) << "equal strings match before any decimal";
  EXPECT_FALSE(stdin_output_matches("50000000000000000", "50000000000000001")) << "no float rounding";
  EXPECT_FALSE(stdin_output_matches("0.1", "0.10000000000000001"));
  EXPECT_FALSE(stdin_output_matches("1.5 2", "1.5 2 0")) << "token count";
  EXPECT_FALSE(stdin_output_matches("Yes", "YES")) << "words compare exactly";
  EXPECT_FALSE(stdin_output_matches("1 a", "1.0 a")) << "a line with a word is compared as a string only";
  EXPECT_FALSE(stdin_output_matches("0x10", "16"));
  EXPECT_FALSE(stdin_output_matches("1e", "1"));
  EXPECT_TRUE(stdin_output_matches("7\xc2\xa0\xe3\x80\x80", "7")) << "Unicode whitespace is stripped as in Python";
  EXPECT_TRUE(
      stdin_output_matches("1\xe2\x80\x83"
                           "2",
                           "1 2"))
      << "and splits tokens";
}

TEST(LiveCodeBench, ReleasesAndDateWindowSelectProblems) {
  const auto count = [](const ojson& config) { return generate_with(config)[0].docs.size(); };
  EXPECT_EQ(count({{"release", "release_v1"}}), 7u);
  EXPECT_EQ(count({{"release", "release_v2"}}), 12u);
  EXPECT_EQ(count({{"release", "v2"}}), 5u) << "a fine tag: test2.jsonl only";
  EXPECT_EQ(count({{"release", "v1_v2"}}), 12u);
  ojson v1 = kPaperWindow, v2 = kPaperWindow;
  v1["release"] = "release_v1";
  v2["release"] = "release_v2";
  const Subtask paper = generate_with(v1)[0];
  // Sorted by question_id (lcb_runner's scenario_router), not in file order.
  EXPECT_EQ(ids(paper), (std::vector<std::string>{"1900A", "2857", "3000", "abc320_a", "abc330_b"}));
  EXPECT_EQ(paper.n_docs_total, 5);
  // 2024-04-01T00:00:00 is inside the window, 2024-04-01T17:35:00 (1950B) after its end, as datetime compares.
  EXPECT_EQ(ids(generate_with(v2)[0]),
            (std::vector<std::string>{"1900A", "2857", "3000", "3100", "abc320_a", "abc330_b", "abc346_a"}));
  ojson from = {{"release", "release_v2"}, {"start_date", "2024-04-01"}};
  EXPECT_EQ(ids(generate_with(from)[0]), (std::vector<std::string>{"1950B", "3100", "3110", "3120"}));

  const Subtask limited = generate_with(v1, 2)[0];
  EXPECT_EQ(ids(limited), (std::vector<std::string>{"1900A", "2857"})) << "--limit after filtering and sorting";
  EXPECT_EQ(limited.n_docs_total, 5);
  for (size_t i = 0; i < limited.docs.size(); ++i) EXPECT_EQ(limited.docs[i].doc_id, static_cast<int64_t>(i));

  EXPECT_NE(error_of([] { generate_with({{"release", "release_v3"}}); }).find("test3.jsonl"), std::string::npos);
  EXPECT_NE(error_of([] { generate_with({{"release", "release_v9"}}); }).find("release_latest"), std::string::npos);
  EXPECT_NE(error_of([] { generate_with({{"release", "v2_v1"}}); }).find("version tag"), std::string::npos);
  EXPECT_NE(error_of([] { generate_with({{"start_date", "2023-9-1"}}); }).find("YYYY-MM-DD"), std::string::npos);
  EXPECT_NE(error_of([] { generate_with({{"end_date", "2023-02-30"}}); }).find("YYYY-MM-DD"), std::string::npos);
  EXPECT_NE(error_of([] {
              generate_with({{"end_date", "2020-01-01"}});
            }).find("no LiveCodeBench problem"),
            std::string::npos);
  EXPECT_NE(error_of([] { generate_with({{"prompt_style", "fancy"}}); }).find("prompt_style"), std::string::npos);
  EXPECT_NE(error_of([] {
              generate_with({{"relase", "release_v1"}});
            }).find("unknown generator option 'relase'"),
            std::string::npos);
}

TEST(LiveCodeBench, DocumentsCarryTheFieldsAndAllTests) {
  const std::map<std::string, TaskDoc> by_id = docs_by_id({{"release", "release_v2"}});
  const TaskDoc& f = by_id.at("3000");
  EXPECT_EQ(f.doc["platform"], "leetcode");
  EXPECT_EQ(f.doc["difficulty"], "medium");
  EXPECT_EQ(f.doc["contest_date"], "2023-12-10T00:00:00");
  EXPECT_EQ(f.doc["fn_name"], "sortedSquares");
  EXPECT_EQ(f.payload["tests"].size(), 4u) << "1 public + 3 private (pickle protocol 0)";
  EXPECT_EQ(f.payload["tests"][1]["input"], "[-7, -3, 2, 3, 11]");
  EXPECT_EQ(f.payload["tests"][1]["output"], "[4, 9, 9, 49, 121]");
  const TaskDoc& s = by_id.at("abc320_a");
  EXPECT_TRUE(s.doc["fn_name"].is_null());
  EXPECT_EQ(s.payload["tests"].size(), 3u) << "1 public + 2 private (pickle protocol 4)";
  EXPECT_EQ(s.payload["tests"][2]["output"], "23401\n");
  EXPECT_TRUE(s.target.empty());
}

TEST(LiveCodeBench, PromptsMatchLiveCodeBenchByteForByte) {
  const ojson expected = read(kData / "expected_prompts.json");
  for (const std::string style : {"chat", "base"}) {
    const std::map<std::string, TaskDoc> by_id = docs_by_id({{"release", "release_v1"}, {"prompt_style", style}});
    for (const auto& [qid, prompts] : expected["prompts"].items()) {
      EXPECT_EQ(by_id.at(qid).context, prompts[style].get<std::string>()) << qid << " " << style;
      EXPECT_EQ(by_id.at(qid).system_prompt, style == "chat" ? expected["system"].get<std::string>() : "");
    }
  }
}

#define REQUIRE_SANDBOX()                \
  if (!sandbox::probe().user_namespaces) \
  GTEST_SKIP() << "SKIPPED: this kernel does not allow the sandbox: " << sandbox::probe().detail

TEST(LiveCodeBench, GradesRightWrongTimeoutCrashAndCompileErrorsAndCannotBeFaked) {
  REQUIRE_SANDBOX();
  const ojson solutions = read(kData / "solutions.json");
  std::map<std::string, std::map<std::string, TaskDoc>> docs;  // style -> question_id -> doc
  for (const std::string style : {"chat", "base"}) {
    docs[style] = docs_by_id({{"release", "release_v2"}, {"prompt_style", style}});
  }
  std::vector<CodeSample> samples;
  for (const ojson& s : solutions) {
    samples.push_back({.doc = &docs.at(s["style"]).at(s["question_id"]), .sample = 0, .completion = s["completion"]});
  }
  sandbox::Pool pool(2);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<CodeVerdict> verdicts =
      score(samples, {.options = {{"hook", "livecodebench"}, {"timeout_s", 1}}, .pool = &pool, .spec_file = "t"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(verdicts.size(), solutions.size());
  for (size_t i = 0; i < verdicts.size(); ++i) {
    const ojson& s = solutions[i];
    const CodeVerdict& v = verdicts[i];
    const std::string what =
        fmt::format("{} / {}: {}", s["question_id"].get<std::string>(), s["name"].get<std::string>(), v.details.dump());
    EXPECT_EQ(v.result, s["expect"].get<std::string>()) << what;
    EXPECT_EQ(v.passed, s["expect"] == "passed") << what;
    EXPECT_TRUE(v.details.contains("code")) << what;
    if (s.contains("failed_test")) {
      EXPECT_EQ(v.details.value("failed_test", -1), s["failed_test"].get<int>()) << what;
      EXPECT_TRUE(v.details.contains("input") && v.details.contains("expected")) << what;
    }
    if (v.result == "wrong answer") {
      EXPECT_TRUE(v.details.contains("output")) << what;
    }
  }
  std::cout << verdicts.size() << " solutions graded in " << seconds << " s\n";
}

TEST(LiveCodeBench, ScorerOptionsAreChecked) {
  const std::string message = error_of([] {
    score({}, {.options = {{"hook", "livecodebench"}, {"timeout", 3}}, .pool = nullptr, .spec_file = "t"});
  });
  EXPECT_NE(message.find("unknown scorer option 'timeout'"), std::string::npos) << message;
  EXPECT_NE(error_of([] {
              score({}, {.options = {{"timeout_s", -1}}, .pool = nullptr, .spec_file = "t"});
            }).find("timeout_s"),
            std::string::npos);
}

TEST(LiveCodeBench, TheSpecLoadsThePapersSetting) {
  TaskLoadOptions o;
  o.dataset_dir = kData;
  const Task t = load_task("livecodebench", o);
  ASSERT_EQ(t.subtasks.size(), 1u);
  EXPECT_EQ(ids(t.subtasks[0]), (std::vector<std::string>{"1900A", "2857", "3000", "abc320_a", "abc330_b"}));
  EXPECT_EQ(t.generation.until, (std::vector<std::string>{"###"}));
  EXPECT_EQ(t.generation.max_gen_toks, 2000);
  EXPECT_DOUBLE_EQ(t.generation.temperature, 0.2);
  EXPECT_DOUBLE_EQ(t.generation.top_p, 0.95);
}

}  // namespace
}  // namespace mlabench::tasks::livecodebench
