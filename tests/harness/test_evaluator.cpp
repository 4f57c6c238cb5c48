// The evaluator end to end on the real datasets (the ../shared/datasets mirror): oracle replays score 100% on
// MMLU, C-Eval and both GSM8K protocols and "always A" scores the share of A answers; replay errors name the
// line; a run killed with SIGKILL resumes to the results of an uninterrupted run; the engine backend on the
// bundled model writes complete results and scores like Engine::score.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "harness/replay_file.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

using test::fresh_dir;
using test::mirror_fetch;

EvalOutcome run_replay(const fs::path& replay, const std::string& task_list, const fs::path& out,
                       std::optional<int64_t> limit = std::nullopt, bool resume = false) {
  auto backend = make_replay_backend(replay.string());
  EvalOptions o;
  o.tasks = task_list;
  o.limit = limit;
  o.output_dir = out;
  o.resume = resume;
  o.fetch = mirror_fetch();
  o.progress = false;
  o.batch_docs = 97;
  return evaluate(*backend, o);
}

TEST(Evaluator, GoldReplayScoresEverythingRightOnEveryTaskAndProtocol) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("gold");
  const std::vector<std::string> names{"mmlu", "ceval", "ceval_lmeval", "gsm8k", "gsm8k_cot"};
  write_oracle_replay(test::load_tasks(names), OracleAnswer::GOLD, dir / "gold.jsonl");
  const EvalOutcome out = run_replay(dir / "gold.jsonl", "mmlu,ceval,ceval_lmeval,gsm8k,gsm8k_cot", dir / "run");
  const json& r = out.results;
  EXPECT_EQ(out.docs_scored, 14042 + 1346 + 1346 + 1319 + 1319);
  for (const char* g : {"mmlu", "ceval", "ceval_lmeval"}) {
    EXPECT_DOUBLE_EQ(r["groups"][g]["acc,none"].get<double>(), 1.0) << g;
    EXPECT_DOUBLE_EQ(r["groups"][g]["acc_macro,none"].get<double>(), 1.0) << g;
  }
  for (const char* t : {"gsm8k", "gsm8k_cot"})
    for (const char* f : {"exact_match,strict-match", "exact_match,flexible-extract"})
      EXPECT_DOUBLE_EQ(r["results"][t][f].get<double>(), 1.0) << t << " " << f;
  int64_t mmlu_docs = 0;
  for (const auto& [name, n] : r["n-samples"].items())
    if (name.starts_with("mmlu_")) mmlu_docs += n["effective"].get<int64_t>();
  EXPECT_EQ(mmlu_docs, 14042);
  EXPECT_EQ(r["group_subtasks"]["mmlu"].size(), 4u);  // STEM, Humanities, Social Sciences, Other
  std::ifstream in(out.results_path);
  EXPECT_EQ(json::parse(in), r) << "results.json on disk is the returned document";
}

TEST(Evaluator, AlwaysChoiceAScoresTheShareOfAAnswers) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("choice-a");
  const std::vector<tasks::Task> tasks = test::load_tasks({"mmlu", "ceval"});
  write_oracle_replay(tasks, OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  const EvalOutcome out = run_replay(dir / "a.jsonl", "mmlu,ceval", dir / "run");
  for (const tasks::Task& t : tasks) {
    int64_t a = 0, n = 0;
    for (const auto& s : t.subtasks)
      for (const auto& d : s.docs) {
        a += d.gold == 0 ? 1 : 0;
        ++n;
      }
    EXPECT_NEAR(out.results["groups"][t.name]["acc,none"].get<double>(), static_cast<double>(a) / n, 1e-12)
        << t.name;
  }
}

TEST(Evaluator, ReplayErrorsNameTheLineAndTheMissingDocument) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("replay-errors");
  {
    std::ofstream f(dir / "bad.jsonl");
    f << R"({"task": "gsm8k", "doc_id": 0, "responses": ["1"]})" << "\n" << "{not json\n";
  }
  test::expect_error_with([&] { make_replay_backend((dir / "bad.jsonl").string()); }, {"bad.jsonl:2"});
  {
    std::ofstream f(dir / "short.jsonl");
    f << R"({"task": "gsm8k", "doc_id": 0, "responses": ["1"]})" << "\n";
  }
  test::expect_error_with([&] { run_replay(dir / "short.jsonl", "gsm8k", dir / "run", 2); },
                          {"short.jsonl", "gsm8k doc_id 1"});
}

// The replay file reader alone (harness/replay_file.h, also fuzzed: tests/fuzz/fuzz_replay.cpp): blank lines are
// skipped, both kinds of line are kept, and every malformed line is an Error naming the file and line.
TEST(Evaluator, ReplayFileReaderChecksEveryLine) {
  const fs::path dir = fresh_dir("replay-reader");
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const auto entries = read_replay_file(write("ok.jsonl", "\n  \r\n"
      R"({"task": "a", "doc_id": 0, "logprobs": [-1, -2.5]})" "\r\n"
      R"({"task": "b", "doc_id": 3, "responses": ["x", "y"], "logprobs": [0]})" "\n"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries.at({"a", 0}).line, 3);
  EXPECT_EQ(entries.at({"a", 0}).logprobs, (std::vector<double>{-1, -2.5}));
  EXPECT_EQ(entries.at({"b", 3}).responses, (std::vector<std::string>{"x", "y"}));
  const std::vector<std::pair<std::string, std::vector<std::string>>> refused = {
      {R"({"task": "a", "doc_id": 0, "logprobs": [-1]})" "\n" R"({"task": "a", "doc_id": 0, "logprobs": [-2]})",
       {":2: a second line for task a doc_id 0 (the first is line 1)", "HINT"}},
      {R"({"task": 1, "doc_id": 0, "logprobs": [-1]})", {":1: a replay line needs", "HINT"}},
      {R"({"task": "a", "doc_id": 0.5, "logprobs": [-1]})", {":1: a replay line needs", "HINT"}},
      {R"({"task": "a", "doc_id": 0})", {":1: a replay line needs", "HINT"}},
      {R"({"task": "a", "doc_id": 0, "logprobs": [-1, "x"]})", {":1: \"logprobs\" must be an array of numbers"}},
      {R"({"task": "a", "doc_id": 0, "responses": []})", {":1: \"responses\" must be a non-empty array"}},
      {R"({"task": "a", "doc_id": 0, "logprobs": [1e999]})", {"bad.jsonl:1"}},
      {R"({"task": "a", "doc_id": 0, "logprobs": )" + std::string(200, '[') + std::string(200, ']') + "}",
       {"bad.jsonl:1", "deeper than 100"}},
      {R"({"task": "a", "doc_id": -1, "logprobs": [-1]})", {":1: doc_id -1 is not a document row", "HINT"}},
      {R"({"task": "a", "doc_id": 18446744073709551615, "logprobs": [-1]})",
       {":1: doc_id 18446744073709551615 is not a document row"}},  // would wrap to -1
      {"[1]\n", {":1: a replay line needs"}},
      {"{not json", {":1: not a JSON object", "HINT"}}};
  for (const auto& [text, words] : refused) {
    const std::string file = write("bad.jsonl", text);
    test::expect_error_with([&] { read_replay_file(file); }, words);
  }
  test::expect_error_with([&] { read_replay_file((dir / "none.jsonl").string()); }, {"none.jsonl"});
}

json comparable(const json& results) {
  json c = results;
  c.erase("provenance");
  return c;
}

TEST(Evaluator, ResumeAfterACutLineEqualsAnUninterruptedRun) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("resume");
  write_oracle_replay(test::load_tasks({"mmlu", "gsm8k_cot"}, 5), OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  const EvalOutcome whole = run_replay(dir / "a.jsonl", "mmlu,gsm8k_cot", dir / "whole", 5);

  // A second run killed halfway: keep the first 100 MMLU lines and half of the 101st, no GSM8K file at all.
  fs::copy(dir / "whole", dir / "killed", fs::copy_options::recursive);
  fs::remove(dir / "killed" / "results.json");
  fs::remove(dir / "killed" / "samples_gsm8k_cot.jsonl");
  {
    std::ifstream in(dir / "killed" / "samples_mmlu.jsonl");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), kept;
    size_t at = 0;
    for (int i = 0; i < 100; ++i) at = all.find('\n', at) + 1;
    kept = all.substr(0, at) + all.substr(at, 40);
    std::ofstream out(dir / "killed" / "samples_mmlu.jsonl", std::ios::trunc);
    out << kept;
  }
  const EvalOutcome resumed = run_replay(dir / "a.jsonl", "mmlu,gsm8k_cot", dir / "killed", 5, true);
  EXPECT_EQ(resumed.docs_resumed, 100);
  EXPECT_EQ(resumed.docs_scored, 57 * 5 - 100 + 5);
  EXPECT_EQ(comparable(resumed.results), comparable(whole.results));
  for (const char* f : {"samples_mmlu.jsonl", "samples_gsm8k_cot.jsonl"}) {
    std::ifstream a(dir / "whole" / f), b(dir / "killed" / f);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}), std::string(std::istreambuf_iterator<char>(b), {}))
        << f << " differs after resume";
  }
  // Same folder, other options: refused, naming what changed; without --resume: refused.
  test::expect_error_with([&] { run_replay(dir / "a.jsonl", "mmlu,gsm8k_cot", dir / "killed", 6, true); },
                          {"limit", "HINT"});
  test::expect_error_with([&] { run_replay(dir / "a.jsonl", "mmlu,gsm8k_cot", dir / "killed", 5, false); },
                          {"--resume"});
}

// One writer per run folder: while a run holds the folder's lock, a second run (a --resume started too early) is
// refused naming the holder's PID and writes nothing; once the lock is gone the run proceeds. A results file whose
// write fails stays as it was.
TEST(Evaluator, OneWriterPerRunFolderAndWritesThatFailLeaveTheOldFile) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("lock");
  write_oracle_replay(test::load_tasks({"gsm8k_cot"}, 2), OracleAnswer::GOLD, dir / "a.jsonl");
  fs::create_directories(dir / "run");
  {
    const RunFolderLock held(dir / "run");
    const std::string pid = test::read_file((dir / "run" / ".lock").string());
    EXPECT_EQ(pid, std::to_string(::getpid()));
    test::expect_error_with([&] { run_replay(dir / "a.jsonl", "gsm8k_cot", dir / "run", 2); },
                            {"another mlabench run (PID " + pid + ")", "HINT"});
    EXPECT_FALSE(fs::exists(dir / "run" / "run.json")) << "the refused run wrote nothing";
  }
  const EvalOutcome done = run_replay(dir / "a.jsonl", "gsm8k_cot", dir / "run", 2);
  EXPECT_EQ(done.docs_scored, 2);
  const std::string before = test::read_file((dir / "run" / "results.json").string());
  fs::create_directories(dir / "run" / "results.json.tmp");  // the temporary file cannot be created
  test::expect_error_with([&] { write_file_atomically(dir / "run" / "results.json", "{}"); },
                          {"results.json.tmp", "HINT"});
  EXPECT_EQ(test::read_file((dir / "run" / "results.json").string()), before);
  // An --output that is a file, or under one, is refused naming it.
  test::expect_error_with([&] { run_replay(dir / "a.jsonl", "gsm8k_cot", dir / "a.jsonl", 2); },
                          {"a.jsonl exists and is not a folder", "HINT"});
  test::expect_error_with([&] { run_replay(dir / "a.jsonl", "gsm8k_cot", dir / "a.jsonl" / "run", 2); },
                          {"cannot create the run folder", "HINT"});
}

// The real thing: `mlabench run` killed with SIGKILL while it writes, then --resume.
TEST(Evaluator, KilledRunResumesToTheUninterruptedResults) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("kill");
  write_oracle_replay(test::load_tasks({"mmlu"}, 20), OracleAnswer::GOLD, dir / "gold.jsonl");
  const std::string bin = MLABENCH_BINARY;
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{bin,         "run",           "--backend", "replay:" + (dir / "gold.jsonl").string(),
                                    "--tasks",   "mmlu",          "--limit",   "20",
                                    "--output",  out.string(),    "--mirror",  test::dataset_mirror(),
                                    "--data-dir", mirror_fetch().cache_dir.string(), "--offline", "--batch-docs", "1",
                                    "--no-progress"};
  };
  auto spawn = [](const std::vector<std::string>& a) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (const std::string& s : a) argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      const int null = ::open("/dev/null", O_WRONLY);
      dup2(null, 1);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  };
  auto lines_in = [](const fs::path& p) {
    std::ifstream in(p);
    return static_cast<int64_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
  };
  const pid_t victim = spawn(args(dir / "killed"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (lines_in(dir / "killed" / "samples_mmlu.jsonl") < 150 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(victim, SIGKILL);
  int status = 0;
  waitpid(victim, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  const int64_t recorded = lines_in(dir / "killed" / "samples_mmlu.jsonl");
  ASSERT_LT(recorded, 57 * 20);
  EXPECT_FALSE(fs::exists(dir / "killed" / "results.json"));

  std::vector<std::string> resume = args(dir / "killed");
  resume.push_back("--resume");
  for (const auto& a : {resume, args(dir / "whole")}) {
    const pid_t p = spawn(a);
    waitpid(p, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "exit " << WEXITSTATUS(status);
  }
  std::ifstream a(dir / "killed" / "results.json"), b(dir / "whole" / "results.json");
  const json ra = json::parse(a), rb = json::parse(b);
  EXPECT_EQ(ra["provenance"]["docs_resumed"].get<int64_t>() + ra["provenance"]["docs_scored_this_invocation"].get<int64_t>(),
            57 * 20);
  EXPECT_GE(ra["provenance"]["docs_resumed"].get<int64_t>(), recorded - 1);  // the cut line, if any, is redone
  EXPECT_EQ(ra["results"], rb["results"]);
  EXPECT_EQ(ra["groups"], rb["groups"]);
  EXPECT_DOUBLE_EQ(ra["groups"]["mmlu"]["acc,none"].get<double>(), 1.0);
}

TEST(Evaluator, GenKwargsParse) {
  const GenerationOverrides g = parse_gen_kwargs("temperature=0.7,top_p=0.9,max_gen_toks=12,seed=3,until=Q:|\\n\\n");
  EXPECT_DOUBLE_EQ(*g.temperature, 0.7);
  EXPECT_DOUBLE_EQ(*g.top_p, 0.9);
  EXPECT_EQ(*g.max_gen_toks, 12);
  EXPECT_EQ(*g.seed, 3u);
  EXPECT_EQ(*g.until, (std::vector<std::string>{"Q:", "\n\n"}));
  test::expect_error_with([] { parse_gen_kwargs("temp=1"); }, {"temp", "HINT"});
  test::expect_error_with([] { parse_gen_kwargs("top_p=x"); }, {"top_p", "not a number"});
  test::expect_error_with([] { parse_gen_kwargs("top_p=2"); }, {"top_p"});
  EXPECT_EQ(*parse_gen_kwargs("repeats=20").repeats, 20);
  test::expect_error_with([] { parse_gen_kwargs("repeats=0"); }, {"repeats"});
  // Values that parse but sample nonsense or exhaust memory: refused with the accepted range.
  for (const char* bad : {"temperature=inf", "temperature=nan", "temperature=1e9", "seed=-1", "repeats=1000000000000",
                          "max_gen_toks=99999999999", "top_p=nan"})
    test::expect_error_with([&] { parse_gen_kwargs(bad); }, {"accepted range"});
  EXPECT_EQ(*parse_gen_kwargs("seed=9223372036854775807").seed, 9223372036854775807u);
  EXPECT_DOUBLE_EQ(*parse_gen_kwargs("temperature=0").temperature, 0.0);
}

// --set TASK.KEY.KEY=VALUE: nested merge patches, JSON values or plain strings, later items win.
TEST(Evaluator, TaskOverridesParse) {
  std::map<std::string, json> o;
  add_task_override(o, "niah.generator.context_lengths=[1000,2000]");
  add_task_override(o, "niah.generator.prompt_style=chat");
  add_task_override(o, "humaneval.scorer.timeout_s=5");
  add_task_override(o, "niah.generator.prompt_style=base");
  EXPECT_EQ(o["niah"], json::parse(R"({"generator": {"context_lengths": [1000, 2000], "prompt_style": "base"}})"));
  EXPECT_EQ(o["humaneval"], json::parse(R"({"scorer": {"timeout_s": 5}})"));
  test::expect_error_with([&] { add_task_override(o, "niah=1"); }, {"TASK.KEY=VALUE", "HINT"});
  test::expect_error_with([&] { add_task_override(o, "niah..x=1"); }, {"empty key"});
  test::expect_error_with([&] { add_task_override(o, "niah.x.=1"); }, {"niah.x.=1", "empty key after the last dot"});
  // Bounded: a value nested 50,000 deep and a key path 1,000 deep are refused before anything walks them.
  test::expect_error_with([&] { add_task_override(o, "niah.x=" + std::string(50000, '[') + std::string(50000, ']')); },
                          {"--set niah.x: JSON nested deeper than 100 levels", "HINT"});
  std::string deep_keys = "niah";
  for (int i = 0; i < 1000; ++i) deep_keys += ".k";
  test::expect_error_with([&] { add_task_override(o, deep_keys + "=1"); }, {"1000 keys deep", "HINT"});
  add_task_override(o, "niah.x=" + std::string(90, '[') + std::string(90, ']'));  // deep, but within the bound
  EXPECT_TRUE(o["niah"]["x"].is_array());
}

// A --set for a task the run does not evaluate is a mistake, and an override reaches the task's spec checks.
TEST(Evaluator, TaskOverridesAreCheckedAndApplied) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("set");
  write_oracle_replay(test::load_tasks({"gsm8k"}, 3), OracleAnswer::GOLD, dir / "gold.jsonl");
  auto backend = make_replay_backend((dir / "gold.jsonl").string());
  EvalOptions o;
  o.tasks = "gsm8k";
  o.limit = 3;
  o.fetch = mirror_fetch();
  o.progress = false;
  o.output_dir = dir / "a";
  add_task_override(o.task_overrides, "mmlu.num_fewshot=1");
  test::expect_error_with([&] { evaluate(*backend, o); }, {"mmlu", "--set", "HINT"});
  o.task_overrides.clear();
  o.output_dir = dir / "b";
  add_task_override(o.task_overrides, "gsm8k.generation_kwargs.repeats=2");
  test::expect_error_with([&] { evaluate(*backend, o); }, {"repeats 2", "scorer"});
  // Unknown keys (a typo at any checked level) and fields settled before the overrides apply are refused by name,
  // before any document is scored, and leave no results behind.
  const std::vector<std::pair<std::string, std::vector<std::string>>> refused = {
      {"gsm8k.num_fewshots=1", {"--set gsm8k", "num_fewshots", "num_fewshot"}},
      {"gsm8k.generation_kwargs.max_new_tokens=5", {"--set gsm8k", "max_new_tokens", "generation_kwargs"}},
      {"gsm8k.dataset=\"mmlu\"", {"--set gsm8k.dataset", "settled", "HINT"}},
      {"gsm8k.include=\"_ceval_defaults.json\"", {"--set gsm8k.include", "settled", "HINT"}}};
  for (size_t i = 0; i < refused.size(); ++i) {
    const auto& [item, words] = refused[i];
    o.task_overrides.clear();
    o.output_dir = dir / fmt::format("refused{}", i);
    add_task_override(o.task_overrides, item);
    test::expect_error_with([&] { evaluate(*backend, o); }, words, item);
    EXPECT_FALSE(fs::exists(o.output_dir / "results.json")) << item;
  }
  o.task_overrides.clear();
  o.output_dir = dir / "c";
  add_task_override(o.task_overrides, "gsm8k.breakdowns=[\"answer\"]");
  const json r = evaluate(*backend, o).results;
  ASSERT_TRUE(r["breakdowns"]["gsm8k"].contains("answer"));
  int64_t n = 0;
  for (const auto& [value, est] : r["breakdowns"]["gsm8k"]["answer"].items()) {
    EXPECT_DOUBLE_EQ(est["exact_match,strict-match"].get<double>(), 1.0) << value;
    n += est["n"].get<int64_t>();
  }
  EXPECT_EQ(n, 3);
}

// A backend that must not be asked anything: the run has to stop before its first request.
class NoRequestsBackend final : public Backend {
 public:
  std::string kind() const override { return "no-requests"; }
  nlohmann::ordered_json describe() const override { return {{"backend", "no-requests"}}; }
  std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest>) override {
    MLABENCH_FAIL("loglikelihood was called");
  }
  std::vector<GenerationResult> generate(std::span<const GenerationRequest>) override {
    MLABENCH_FAIL("generate was called");
  }
  std::vector<double> loglikelihood_rolling(std::span<const RollingRequest>) override {
    MLABENCH_FAIL("loglikelihood_rolling was called");
  }
};

// A code scorer's options are checked when the task loads, before any generation (it used to be after all of them).
TEST(Evaluator, ScorerOptionsAreCheckedBeforeAnyGeneration) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("scorer-options");
  NoRequestsBackend backend;
  EvalOptions o;
  o.tasks = "humaneval";
  o.limit = 2;
  o.fetch = mirror_fetch();
  o.progress = false;
  const std::vector<std::pair<std::string, std::vector<std::string>>> bad = {
      {"humaneval.scorer.timeout_s=1e20", {"timeout_s", "(0, 3600]", "HINT"}},
      {"humaneval.scorer.timeuot_s=3", {"timeuot_s", "humaneval scorer takes timeout_s"}}};
  for (size_t i = 0; i < bad.size(); ++i) {
    o.task_overrides.clear();
    o.output_dir = dir / fmt::format("run{}", i);
    add_task_override(o.task_overrides, bad[i].first);
    test::expect_error_with([&] { evaluate(backend, o); }, bad[i].second, bad[i].first);
  }
}

// The engine backend on the bundled model: scores equal Engine::score on the same text, generation stops at the
// task's stop strings, and results.json carries the provenance.
TEST(Evaluator, EngineBackendOnTheBundledModel) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("engine");
  EngineOptions eo{.model_dir = test::default_model_dir()};
  auto engine = std::move(Engine::open(eo).value());
  const std::vector<tasks::Task> tasks = test::load_tasks({"mmlu"}, 1, 1);  // one shot keeps the CPU work small
  const tasks::TaskDoc& d = tasks[0].subtasks[0].docs[0];
  std::vector<double> want;
  for (const std::string& c : d.choices) want.push_back(engine->score(d.context, c).value().logprob);

  auto backend = make_engine_backend(std::move(engine), {}, {{"model", "tiny"}});
  const ChoiceRequest rq{tasks[0].subtasks[0].name, d.doc_id, d.context, d.choices};
  const std::vector<ChoiceResult> got = backend->loglikelihood(std::span(&rq, 1));
  ASSERT_EQ(got[0].logprobs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[0].logprobs[i], want[i], 1e-4 * std::max(1.0, std::fabs(want[i]))) << "choice " << i;
  EXPECT_GT(got[0].context_tokens, 20);

  EvalOptions o;
  o.tasks = "mmlu_abstract_algebra,gsm8k_cot";
  o.limit = 2;
  o.num_fewshot = 1;
  o.output_dir = dir / "run";
  o.fetch = mirror_fetch();
  o.progress = false;
  o.gen.max_gen_toks = 24;
  o.provenance = {{"commit", "test"}};
  const EvalOutcome out = evaluate(*backend, o);
  const json& r = out.results;
  EXPECT_EQ(out.docs_scored, 4);
  for (const auto& [k, v] : r["results"]["mmlu_abstract_algebra"].items())
    if (k != "alias") {
      EXPECT_TRUE(v.is_number() || v.is_null()) << k;
    }
  EXPECT_TRUE(r["results"]["gsm8k_cot"].contains("exact_match,strict-match"));
  EXPECT_EQ(r["gen_kwargs"]["max_gen_toks"], 24);
  std::ifstream in(dir / "run" / "samples_gsm8k_cot.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const json s = json::parse(line);
    ++n;
    EXPECT_LE(s["generated_tokens"].get<int64_t>(), 24);
    for (const char* stop : {"Q:", "</s>", "<|im_end|>"})
      EXPECT_EQ(s["response"].get<std::string>().find(stop), std::string::npos) << "not cut at " << stop;
  }
  EXPECT_EQ(n, 2);
}

// --apply-chat-template renders the context as a user turn of the model's template (the bundled model has
// DeepSeek-V2's: "User: ...\n\nAssistant:"), with a system turn for --system-prompt; without the template the
// system prompt is a prefix and a blank line.
TEST(Evaluator, ChatTemplateAndSystemPromptRendering) {
  EngineOptions eo{.model_dir = test::default_model_dir()};
  auto engine = std::move(Engine::open(eo).value());
  EngineBackendOptions chat;
  chat.apply_chat_template = true;
  chat.system_prompt = "Be brief.";
  const std::string rendered = render_context(engine.get(), chat, "Q: 1+1?\nA:");
  EXPECT_NE(rendered.find("Be brief.\n\nUser: Q: 1+1?\nA:\n\nAssistant:"), std::string::npos) << rendered;
  EngineBackendOptions plain;
  plain.system_prompt = "Be brief.";
  EXPECT_EQ(render_context(engine.get(), plain, "Q"), "Be brief.\n\nQ");
  EXPECT_EQ(render_context(engine.get(), {}, "Q"), "Q");
}

// Contexts longer than the window lose tokens from the left (lm-evaluation-harness's truncation): the same count
// for every choice of a document, and room for max_gen_toks in generation.
TEST(Evaluator, EngineBackendTruncatesLongContextsFromTheLeft) {
  EngineOptions eo{.model_dir = test::default_model_dir()};
  auto engine = std::move(Engine::open(eo).value());
  std::string context;
  for (int i = 0; i < 40; ++i) context += "The quick brown fox jumps over the lazy dog. ";
  const int64_t full = static_cast<int64_t>(engine->encode(context, true).value().size());
  ASSERT_GT(full, 64);
  auto backend = make_engine_backend(std::move(engine), {.max_length = 64}, {});
  const ChoiceRequest rq{"t", 0, context + "Answer:", {" A", " B"}};
  const ChoiceResult c = backend->loglikelihood(std::span(&rq, 1)).at(0);
  EXPECT_GT(c.truncated_tokens, 0);
  EXPECT_LE(c.context_tokens + 1, 64);  // " A" is one token here
  EXPECT_TRUE(std::isfinite(c.logprobs[0]) && std::isfinite(c.logprobs[1]));
  tasks::GenerationKwargs g;
  g.max_gen_toks = 8;
  const GenerationRequest gr{.subtask = "t", .doc_id = 0, .context = context, .gen = g, .sample = 0,
                             .system_prompt = ""};
  const GenerationResult r = backend->generate(std::span(&gr, 1)).at(0);
  EXPECT_EQ(r.context_tokens, 64 - 8);
  EXPECT_EQ(r.truncated_tokens, full - (64 - 8));
  EXPECT_LE(r.generated_tokens, 8);
}

// Needle in a haystack through the evaluator: replaying the needle's answer scores 1.0 (10 on the 1-10 scale) in
// every cell and an empty answer 0.0 (1); on the bundled model a small grid runs end to end with every prompt
// exactly its cell's length in the model's tokens, and the breakdowns give the heatmap. The short mode (label slow)
// runs the same 3 x 3 grid at about half the lengths: the engine's prefill is quadratic in them (under ASan the full
// size takes 20 s, the short one 9).
TEST(Evaluator, NiahReplayAndASmallGridOnTheBundledModel) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("niah");
  std::map<std::string, json> grid;
  add_task_override(grid, test::short_mode() ? "niah.generator.context_lengths=[200,400,800]"
                                             : "niah.generator.context_lengths=[300,700,1500]");
  add_task_override(grid, "niah.generator.depth_percents=[0,50,100]");
  auto tokenizer = [] { return Tokenizer::load(test::default_model_dir()).value(); };

  tasks::TaskLoadOptions lo;
  lo.dataset_dir = data::ensure_dataset("niah_haystack", mirror_fetch());
  lo.overrides = grid["niah"];
  const auto tok = tokenizer();
  lo.tokenizer = tok.get();
  lo.max_context = 2560;
  const tasks::Task niah = tasks::load_task("niah", lo);
  ASSERT_EQ(niah.subtasks.at(0).docs.size(), 9u);
  for (const auto& [answer, want] : {std::pair{OracleAnswer::GOLD, 1.0}, std::pair{OracleAnswer::FIRST_CHOICE, 0.0}}) {
    const fs::path replay = dir / fmt::format("replay-{}.jsonl", want);
    write_oracle_replay({niah}, answer, replay);
    auto backend = make_replay_backend(replay.string(), tokenizer());
    EvalOptions o;
    o.tasks = "niah";
    o.output_dir = dir / fmt::format("replay-run-{}", want);
    o.fetch = mirror_fetch();
    o.progress = false;
    o.task_overrides = grid;
    const json r = evaluate(*backend, o).results;
    EXPECT_DOUBLE_EQ(r["results"]["niah"]["needle_recall,none"].get<double>(), want);
    ASSERT_EQ(r["breakdowns"]["niah"]["cell"].size(), 9u);
    for (const auto& [cell, est] : r["breakdowns"]["niah"]["cell"].items()) {
      EXPECT_DOUBLE_EQ(est["needle_recall,none"].get<double>(), want) << cell;
      EXPECT_DOUBLE_EQ(est["needle_score,none"].get<double>(), want == 1.0 ? 10.0 : 1.0) << cell;
    }
  }

  EngineOptions eo{.model_dir = test::default_model_dir()};
  auto backend = make_engine_backend(std::move(Engine::open(eo).value()), {}, {{"model", "tiny"}});
  EvalOptions o;
  o.tasks = "niah";
  o.output_dir = dir / "engine-run";
  o.fetch = mirror_fetch();
  o.progress = false;
  o.task_overrides = grid;
  o.gen.max_gen_toks = 6;
  const json r = evaluate(*backend, o).results;
  const double recall = r["results"]["niah"]["needle_recall,none"].get<double>();
  EXPECT_GE(recall, 0.0);
  EXPECT_LE(recall, 1.0);
  EXPECT_EQ(r["breakdowns"]["niah"]["context_length"].size(), 3u);
  EXPECT_EQ(r["breakdowns"]["niah"]["depth_percent"].size(), 3u);
  std::ifstream in(dir / "engine-run" / "samples_niah.jsonl");
  int n = 0;
  int64_t prompt_tokens = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const json l = json::parse(line);
    EXPECT_EQ(l["context_tokens"].get<int64_t>(), l["doc"]["context_length"].get<int64_t>()) << "doc " << l["doc_id"];
    EXPECT_FALSE(l.contains("truncated_tokens"));
    EXPECT_LE(l["generated_tokens"].get<int64_t>(), 6);
    prompt_tokens += l["context_tokens"].get<int64_t>();
  }
  EXPECT_EQ(n, 9);
  // The engine's own account of the run: every prompt position either computed or taken from the prefix cache
  // (the depths of one length share the haystack before their needle), recorded beside the run's time.
  const json& st = r["provenance"]["engine_this_invocation"];
  ASSERT_TRUE(st.is_object()) << r["provenance"].dump();
  EXPECT_EQ(st["prefill_tokens_computed"].get<int64_t>() + st["prefix_tokens_reused"].get<int64_t>(), prompt_tokens);
  EXPECT_GT(st["prefix_tokens_reused"].get<int64_t>(), 0);
  EXPECT_EQ(st["preemptions"], 0);
}

}  // namespace
}  // namespace mlabench::harness
