// LiveCodeBench's problems and prompts: the code_generation_lite shards a release names, the date window, the
// order lcb_runner evaluates them in, and the chat and base prompts of lcb_runner/prompts/code_generation.py.
// Grading is in livecodebench_grading.cpp.
#include "tasks/code/livecodebench.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "core/check.h"
#include "core/input_file.h"
#include "tasks/code/livecodebench_examples.h"
#include "tasks/code/pickle_string.h"

namespace mlabench::tasks::livecodebench {

namespace {

using ojson = nlohmann::ordered_json;

// PromptConstants of lcb_runner/prompts/code_generation.py.
constexpr const char* kSystemMessage =
    "You are an expert Python programmer. You will be given a question (problem specification) and will generate a "
    "correct Python program that matches the specification and passes all tests.";
constexpr const char* kFormatWithStarterCode =
    "You will use the following starter code to write the solution to the problem and enclose your code within "
    "delimiters.";
constexpr const char* kFormatWithoutStarterCode =
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
    "inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
    "inputs, runs the algorithm and writes output to STDOUT.";

// Private tests decompress to a few MB at most; far beyond that is a zip bomb, not a dataset.
constexpr size_t kMaxInflatedBytes = size_t{1} << 30;

std::string base64_decode(const std::string& text, const std::string& where) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  size_t symbols = 0;
  for (const char c : text) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    ++symbols;
    if (c == '=') {
      ++pad;
      continue;
    }
    const int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                  : c >= 'a' && c <= 'z' ? c - 'a' + 26
                  : c >= '0' && c <= '9' ? c - '0' + 52
                  : c == '+'             ? 62
                  : c == '/'             ? 63
                                         : -1;
    MLABENCH_CHECK(v >= 0 && pad == 0,
                   "{}: private_test_cases is neither JSON nor base64 (character '{}' at "
                   "symbol {}). HINT: the field must hold a JSON list of tests or base64(zlib(pickle(json))) as "
                   "LiveCodeBench stores it; re-fetch the dataset",
                   where, c, symbols);
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  MLABENCH_CHECK(symbols % 4 == 0 && pad <= 2,
                 "{}: private_test_cases is neither JSON nor base64 ({} symbols, {} "
                 "padding). HINT: re-fetch the dataset",
                 where, symbols, pad);
  return out;
}

std::string inflate_zlib(const std::string& in, const std::string& where) {
  z_stream zs{};
  MLABENCH_CHECK(inflateInit(&zs) == Z_OK, "{}: zlib inflateInit failed. HINT: out of memory?", where);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const size_t before = out.size();
    out.resize(before + (1 << 20));
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    zs.avail_out = 1 << 20;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(before + (1 << 20) - zs.avail_out);
    if (out.size() > kMaxInflatedBytes) rc = Z_MEM_ERROR;
  }
  inflateEnd(&zs);
  MLABENCH_CHECK(rc == Z_STREAM_END,
                 "{}: private_test_cases does not inflate as zlib data (zlib code {}, {} bytes "
                 "out, limit {}). HINT: the field is damaged; re-fetch the dataset",
                 where, rc, out.size(), kMaxInflatedBytes);
  return out;
}

std::vector<TestCase> tests_from_json(const ojson& j, const std::string& where) {
  MLABENCH_CHECK(j.is_array(),
                 "{}: the test cases are a JSON {}, not a list. HINT: each problem's tests are a list "
                 "of {{input, output, testtype}}",
                 where, j.type_name());
  std::vector<TestCase> tests;
  for (size_t i = 0; i < j.size(); ++i) {
    const ojson& t = j[i];
    const auto str = [&](const char* key) {
      MLABENCH_CHECK(t.is_object() && t.contains(key) && t[key].is_string(),
                     "{}: test {} has no string '{}'. HINT: each test is {{\"input\", \"output\", \"testtype\"}}",
                     where, i, key);
      return t[key].get<std::string>();
    };
    TestCase tc{str("input"), str("output"), str("testtype")};
    MLABENCH_CHECK(t.size() == 3,
                   "{}: test {} has fields beyond input, output, testtype: {}. HINT: LiveCodeBench's "
                   "Test takes exactly those three; re-fetch the dataset",
                   where, i, t.dump().substr(0, 200));
    MLABENCH_CHECK(tc.testtype == "stdin" || tc.testtype == "functional",
                   "{}: test {} has testtype \"{}\". HINT: \"stdin\" or \"functional\"", where, i, tc.testtype);
    tests.push_back(std::move(tc));
  }
  return tests;
}

// A contest_date as a sortable "YYYY-MM-DDTHH:MM:SS.ffffff" (datetime.fromisoformat of a naive date or datetime);
// `date_only` accepts exactly "YYYY-MM-DD" (datetime.strptime(s, "%Y-%m-%d") of the window's bounds).
std::string iso_datetime(const std::string& s, bool date_only, const std::string& where) {
  const auto digits = [&](size_t at, size_t n) {
    if (at + n > s.size()) return -1;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const int year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  static constexpr std::array<int, 12> kDays = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  bool ok = s.size() >= 10 && s[4] == '-' && s[7] == '-' && year >= 1 && month >= 1 && month <= 12 && day >= 1 &&
            day <= kDays[month - 1] - (month == 2 && !leap ? 1 : 0);
  int hour = 0, minute = 0, second = 0;
  std::string fraction = "000000";
  if (ok && s.size() > 10) {
    ok = !date_only && (s[10] == 'T' || s[10] == ' ') && s.size() >= 16 && s[13] == ':';
    hour = digits(11, 2);
    minute = digits(14, 2);
    size_t end = 16;
    if (ok && s.size() > 16) {
      ok = s[16] == ':' && s.size() >= 19;
      second = digits(17, 2);
      end = 19;
      if (ok && s.size() > 19) {
        const size_t n = s.size() - 20;
        ok = s[19] == '.' && (n == 3 || n == 6) && digits(20, n) >= 0;
        if (ok) fraction = s.substr(20) + std::string(6 - n, '0');
        end = s.size();
      }
    }
    ok = ok && end == s.size() && hour >= 0 && hour < 24 && minute >= 0 && minute < 60 && second >= 0 && second < 60;
  }
  MLABENCH_CHECK(ok, "{}: \"{}\" is not {}. HINT: {}", where, s,
                 date_only ? "a date YYYY-MM-DD" : "an ISO date or date-time without a time zone",
                 date_only ? "e.g. \"2023-09-01\"; \"\" leaves that side of the window open"
                           : "e.g. \"2023-08-21T00:00:00\"; re-fetch the dataset");
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{}", year, month, day, hour, minute, second, fraction);
}

// code_generation_lite.py's version tags: cumulative releases, single versions and ranges of versions.
std::vector<std::string> release_shards(const std::string& release, const std::filesystem::path& spec_file) {
  constexpr int kLatest = 6;
  int first = 0, last = 0;
  const auto version = [](const std::string& s) {
    return s.size() == 2 && s[0] == 'v' && s[1] >= '1' && s[1] <= '0' + kLatest ? s[1] - '0' : 0;
  };
  if (release == "release_latest") {
    first = 1, last = kLatest;
  } else if (release.starts_with("release_") && version(release.substr(8)) > 0) {
    first = 1, last = version(release.substr(8));
  } else if (version(release) > 0) {
    first = last = version(release);
  } else if (release.size() == 5 && release[2] == '_' && version(release.substr(0, 2)) > 0 &&
             version(release.substr(3)) > version(release.substr(0, 2))) {
    first = version(release.substr(0, 2)), last = version(release.substr(3));
  }
  MLABENCH_CHECK(first > 0,
                 "{}: generator.release \"{}\" is not a LiveCodeBench version tag. HINT: release_v1 .. "
                 "release_v{}, release_latest, v1 .. v{} (one release's new problems) or vA_vB (A < B)",
                 spec_file.string(), release, kLatest, kLatest);
  std::vector<std::string> shards;
  for (int v = first; v <= last; ++v) shards.push_back(v == 1 ? "test.jsonl" : fmt::format("test{}.jsonl", v));
  return shards;
}

struct Problem {
  ojson row;
  std::string where;  // file:line (question_id)
  std::string sort_date;
  std::vector<TestCase> tests;  // public then private, as get_evaluation_sample lists them
  std::optional<std::string> fn_name;
};

std::string string_field(const ojson& row, const char* key, const std::string& where) {
  MLABENCH_CHECK(row.contains(key) && row[key].is_string(),
                 "{}: no string field '{}'. HINT: a code_generation_lite "
                 "row has question_title, question_content, platform, question_id, contest_id, contest_date, "
                 "starter_code, difficulty, public_test_cases, private_test_cases, metadata",
                 where, key);
  return row[key].get<std::string>();
}

Problem read_problem(const std::string& line, const std::string& file_line) {
  Problem p;
  p.row = ojson::parse(line, nullptr, false);
  MLABENCH_CHECK(!p.row.is_discarded() && p.row.is_object(),
                 "{}: not a JSON object. HINT: the shard must be JSON lines; re-fetch the dataset", file_line);
  p.where = fmt::format("{} (question_id {})", file_line, string_field(p.row, "question_id", file_line));
  for (const char* key : {"question_title", "question_content", "contest_id", "starter_code"}) {
    string_field(p.row, key, p.where);
  }
  const std::string platform = string_field(p.row, "platform", p.where);
  MLABENCH_CHECK(platform == "leetcode" || platform == "codeforces" || platform == "atcoder",
                 "{}: platform \"{}\". HINT: LiveCodeBench knows leetcode, codeforces, atcoder", p.where, platform);
  const std::string difficulty = string_field(p.row, "difficulty", p.where);
  MLABENCH_CHECK(difficulty == "easy" || difficulty == "medium" || difficulty == "hard",
                 "{}: difficulty \"{}\". HINT: LiveCodeBench knows easy, medium, hard", p.where, difficulty);
  p.sort_date = iso_datetime(string_field(p.row, "contest_date", p.where), false, p.where + " contest_date");

  const ojson metadata = ojson::parse(string_field(p.row, "metadata", p.where), nullptr, false);
  MLABENCH_CHECK(metadata.is_object(),
                 "{}: metadata is not a JSON object. HINT: e.g. \"{{\\\"func_name\\\": \\\"maxSum\\\"}}\" or \"{{}}\"",
                 p.where);
  if (metadata.contains("func_name") && !metadata["func_name"].is_null()) {
    MLABENCH_CHECK(metadata["func_name"].is_string() && !metadata["func_name"].get<std::string>().empty(),
                   "{}: metadata.func_name must be a non-empty string. HINT: re-fetch the dataset", p.where);
    p.fn_name = metadata["func_name"].get<std::string>();
  }
  return p;
}

// The tests are most of a row's bytes: decoded only for the problems kept, and dropped from the row after.
void read_tests(Problem& p) {
  const ojson public_tests = ojson::parse(string_field(p.row, "public_test_cases", p.where), nullptr, false);
  MLABENCH_CHECK(!public_tests.is_discarded(), "{}: public_test_cases is not JSON. HINT: re-fetch the dataset",
                 p.where);
  p.tests = tests_from_json(public_tests, p.where + " public_test_cases");
  for (TestCase& t :
       decode_test_cases(string_field(p.row, "private_test_cases", p.where), p.where + " private_test_cases")) {
    p.tests.push_back(std::move(t));
  }
  MLABENCH_CHECK(!p.tests.empty(), "{}: the problem has no tests. HINT: re-fetch the dataset", p.where);
  if (p.fn_name) {
    // Functional tests are JSON values the scorer parses: a broken one is the data's fault, reported now.
    for (size_t i = 0; i < p.tests.size(); ++i) {
      const std::string& in = p.tests[i].input;
      for (size_t start = 0, end = 0; end != std::string::npos; start = end + 1) {
        end = in.find('\n', start);
        const std::string line = in.substr(start, end == std::string::npos ? end : end - start);
        MLABENCH_CHECK(ojson::accept(line),
                       "{}: test {} has the input line \"{}\", not JSON. HINT: functional "
                       "tests hold one JSON argument per line",
                       p.where, i, line.substr(0, 100));
      }
      MLABENCH_CHECK(ojson::accept(p.tests[i].output),
                     "{}: test {}'s output {} is not JSON. HINT: functional tests "
                     "hold the expected return value as JSON",
                     p.where, i, p.tests[i].output.substr(0, 100));
    }
  }
  p.row.erase("public_test_cases");
  p.row.erase("private_test_cases");
}

std::string chat_prompt(const std::string& question, const std::string& starter_code) {
  std::string prompt = "### Question:\n" + question + "\n\n";
  if (!starter_code.empty()) {
    prompt += fmt::format("### Format: {}\n```python\n{}\n```\n\n", kFormatWithStarterCode, starter_code);
  } else {
    prompt += fmt::format("### Format: {}\n```python\n# YOUR CODE HERE\n```\n\n", kFormatWithoutStarterCode);
  }
  return prompt + "### Answer: (use the provided format with backticks)\n\n";
}

std::string base_prompt(const std::string& question, const std::string& starter_code) {
  const bool functional = !starter_code.empty();
  const auto example = [&](const std::string& q, const std::string& code, const std::string& answer) {
    std::string out = "### Question\n" + q + "\n\n";
    if (functional) out += "### Starter Code\n" + code + "\n\n";
    out += "### Answer\n\n" + answer;
    if (!answer.empty()) out += "\n\n";
    return out;
  };
  const std::string shot = functional
                               ? example(examples::kFunctionalExampleQuestion, examples::kFunctionalExampleStarterCode,
                                         examples::kFunctionalExampleAnswer)
                               : example(examples::kStdinExampleQuestion, "", examples::kStdinExampleAnswer);
  return shot + example(question, starter_code, "");
}

std::string config_string(const ojson& config, const char* key, const std::string& fallback,
                          const std::filesystem::path& spec_file) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  MLABENCH_CHECK(config[key].is_string(),
                 "{}: generator.{} must be a string, not {}. HINT: see docs/tasks.md \"livecodebench\"",
                 spec_file.string(), key, config[key].dump());
  return config[key].get<std::string>();
}

}  // namespace

std::vector<TestCase> decode_test_cases(const std::string& field, const std::string& where) {
  ojson j = ojson::parse(field, nullptr, false);
  if (j.is_discarded()) {
    const std::string text = unpickle_str(inflate_zlib(base64_decode(field, where), where), where);
    j = ojson::parse(text, nullptr, false);
    MLABENCH_CHECK(!j.is_discarded(), "{}: the pickled string is not JSON (starts \"{}\"). HINT: re-fetch the dataset",
                   where, text.substr(0, 60));
  }
  return tests_from_json(j, where);
}

std::vector<Subtask> generate(const GeneratorContext& context) {
  const ojson& config = context.config;
  static const std::set<std::string> kKeys = {"hook", "release", "start_date", "end_date", "prompt_style"};
  for (const auto& item : config.items()) {
    MLABENCH_CHECK(kKeys.contains(item.key()),
                   "{}: unknown generator option '{}'. HINT: livecodebench takes release, "
                   "start_date, end_date, prompt_style (docs/tasks.md \"livecodebench\")",
                   context.spec_file.string(), item.key());
  }
  const std::string release = config_string(config, "release", "release_v1", context.spec_file);
  const std::string start = config_string(config, "start_date", "", context.spec_file);
  const std::string end = config_string(config, "end_date", "", context.spec_file);
  const std::string style = config_string(config, "prompt_style", "chat", context.spec_file);
  MLABENCH_CHECK(style == "chat" || style == "base",
                 "{}: generator.prompt_style \"{}\". HINT: \"chat\" (system "
                 "prompt + question, code in a fenced block) or \"base\" (one-shot completion)",
                 context.spec_file.string(), style);
  const std::string where_window = context.spec_file.string() + " generator";
  const std::string start_at = start.empty() ? "" : iso_datetime(start, true, where_window + ".start_date");
  const std::string end_at = end.empty() ? "" : iso_datetime(end, true, where_window + ".end_date");

  std::vector<Problem> problems;
  for (const std::string& shard : release_shards(release, context.spec_file)) {
    const std::filesystem::path file = context.dataset_dir / shard;
    refuse_non_regular_file(file, "livecodebench shard");
    std::ifstream in(file);
    MLABENCH_CHECK(in.good(),
                   "{}: release {} needs {}, which is not in {}. HINT: `mlabench fetch livecodebench` "
                   "fetches every shard; or choose a release whose shards you have",
                   context.spec_file.string(), release, shard, context.dataset_dir.string());
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      Problem p = read_problem(line, fmt::format("{}:{}", file.string(), n));
      // load_code_generation_dataset: start <= contest_date <= end, the bounds at midnight.
      if (!start_at.empty() && p.sort_date < start_at) continue;
      if (!end_at.empty() && p.sort_date > end_at) continue;
      read_tests(p);
      problems.push_back(std::move(p));
    }
  }
  MLABENCH_CHECK(!problems.empty(),
                 "{}: no LiveCodeBench problem of {} has a contest_date in [{}, {}]. HINT: widen "
                 "the window (generator.start_date / end_date) or choose a later release",
                 context.spec_file.string(), release, start.empty() ? "open" : start, end.empty() ? "open" : end);
  // lcb_runner/runner/scenario_router.py: sorted(benchmark, key=lambda x: x.question_id).
  std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
    return a.row["question_id"].get<std::string>() < b.row["question_id"].get<std::string>();
  });

  Subtask subtask;
  subtask.name = context.task_name;
  subtask.display = fmt::format("LiveCodeBench {}, contest dates {} to {}, {} prompt", release,
                                start.empty() ? "any" : start, end.empty() ? "any" : end, style);
  subtask.n_docs_total = static_cast<int64_t>(problems.size());
  const size_t n = context.limit ? std::min(problems.size(), static_cast<size_t>(std::max<int64_t>(*context.limit, 0)))
                                 : problems.size();
  for (size_t i = 0; i < n; ++i) {
    Problem& p = problems[i];
    const std::string question = p.row["question_content"].get<std::string>();
    const std::string starter = p.row["starter_code"].get<std::string>();
    TaskDoc doc;
    doc.doc_id = static_cast<int64_t>(i);
    doc.context = style == "chat" ? chat_prompt(question, starter) : base_prompt(question, starter);
    doc.system_prompt = style == "chat" ? kSystemMessage : "";
    doc.doc = {{"question_id", p.row["question_id"]},
               {"question_title", p.row["question_title"]},
               {"platform", p.row["platform"]},
               {"difficulty", p.row["difficulty"]},
               {"contest_id", p.row["contest_id"]},
               {"contest_date", p.row["contest_date"]},
               {"starter_code", starter},
               {"fn_name", p.fn_name ? ojson(*p.fn_name) : ojson()}};
    ojson tests = ojson::array();
    for (TestCase& t : p.tests) {
      tests.push_back({{"input", std::move(t.input)}, {"output", std::move(t.output)}, {"testtype", t.testtype}});
    }
    doc.payload = {{"tests", std::move(tests)},
                   {"fn_name", doc.doc["fn_name"]},
                   {"starter_code", starter},
                   {"prompt_style", style}};
    subtask.docs.push_back(std::move(doc));
  }
  return {std::move(subtask)};
}

}  // namespace mlabench::tasks::livecodebench
