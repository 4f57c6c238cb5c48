// Run-health guards (harness/guards.h): for each guard, samples that must trip it and samples that must not (at
// and around its threshold); then whole replay runs on the real data (an always-"A" MMLU run trips the one-letter
// guard, a run that cycles through the choices trips the chance guard, empty GSM8K answers trip the empty guard, a
// gold run trips none), results.json's run_health / warnings / cost, and `mlabench run --strict` turning a
// warning into exit code 1 while a plain run exits 0 and prints it. Also the printed summary (one row per metric
// that matters) and fetch's one line per dataset.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness/data/fetch.h"
#include "harness/evaluator.h"
#include "harness/guards.h"
#include "harness/oracle.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

using test::fresh_dir;
using test::mirror_fetch;

tasks::Task choice_task() {
  tasks::Task t;
  t.name = "mc";
  t.output_type = tasks::OutputType::MULTIPLE_CHOICE;
  t.metrics = {{.name = "acc"}, {.name = "acc_norm"}};
  return t;
}

tasks::Task generation_task() {
  tasks::Task t;
  t.name = "gen";
  t.output_type = tasks::OutputType::GENERATE_UNTIL;
  t.metrics = {{.name = "exact_match"}};
  return t;
}

// n four-choice samples lines: prediction pred(i), right when right(i).
template <class Pred, class Right>
std::vector<json> choice_lines(int n, Pred pred, Right right) {
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    const double a = right(i) ? 1.0 : 0.0;
    std::vector<double> lp(4, -2.0);
    lp[static_cast<size_t>(pred(i))] = -1.0;
    out.push_back({{"subtask", "mc"}, {"doc_id", i}, {"choices", {" A", " B", " C", " D"}}, {"logprobs", lp},
                   {"pred", pred(i)}, {"metrics", {{"acc,none", a}, {"acc_norm,none", a}}}});
  }
  return out;
}

std::vector<json> generation_lines(int n, int empty, int length, int truncated) {
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    json l = {{"subtask", "gen"}, {"doc_id", i}, {"response", i < empty ? " \n" : "The answer is 4."},
              {"finish_reasons", {i < length ? "length" : "stop_string"}}, {"metrics", {{"exact_match,none", 1.0}}}};
    if (i < truncated) l["truncated_tokens"] = 7;
    out.push_back(std::move(l));
  }
  return out;
}

struct Health {
  json health;
  std::vector<std::string> warnings;
  std::string status(const std::string& check) const {
    return health["checks"].contains(check) ? health["checks"][check].value("status", "") : "absent";
  }
};

Health health_of(const tasks::Task& task, const std::vector<json>& lines) {
  LinesBySubtask by;
  for (const json& l : lines) by[l["subtask"].get<std::string>()].push_back(&l);
  Health h;
  h.health = task_health(task, by, h.warnings);
  return h;
}

TEST(Guards, OneLetterTripsAtNinetyFivePercentOfOneChoice) {
  const tasks::Task t = choice_task();
  // 95 of 100 documents predict A: trips (the limit is inclusive), naming the letter.
  const Health at = health_of(t, choice_lines(100, [](int i) { return i < 95 ? 0 : 1; }, [](int i) { return i % 2; }));
  EXPECT_EQ(at.status("one_letter"), "warning");
  ASSERT_FALSE(at.warnings.empty());
  EXPECT_NE(at.warnings[0].find("task mc: one_letter: choice A"), std::string::npos) << at.warnings[0];
  // 94 of 100: not.
  const Health below = health_of(t, choice_lines(100, [](int i) { return i < 94 ? 0 : 1; }, [](int) { return true; }));
  EXPECT_EQ(below.status("one_letter"), "ok");
  EXPECT_DOUBLE_EQ(below.health["checks"]["one_letter"]["value"].get<double>(), 0.94);
}

TEST(Guards, ChanceTripsWithinTwoBinomialStderrs) {
  const tasks::Task t = choice_task();
  // 400 four-choice documents: chance 0.25, stderr at chance sqrt(0.1875 / 400) = 0.02165; 2 stderrs = 0.0433.
  auto cycle = [](int i) { return i % 4; };
  const Health at_chance = health_of(t, choice_lines(400, cycle, [](int i) { return i % 4 == 0; }));  // acc 0.25
  EXPECT_EQ(at_chance.status("chance_acc"), "warning");
  EXPECT_EQ(at_chance.status("chance_acc_norm"), "warning");
  EXPECT_EQ(at_chance.status("one_letter"), "ok");
  EXPECT_NEAR(at_chance.health["checks"]["chance_acc"]["chance_stderr"].get<double>(), std::sqrt(0.1875 / 400), 1e-12);
  // acc 0.29 (0.04 above chance, 1.85 stderrs): still noise. acc 0.30 (2.31 stderrs): not.
  EXPECT_EQ(health_of(t, choice_lines(400, cycle, [](int i) { return i < 116; })).status("chance_acc"), "warning");
  EXPECT_EQ(health_of(t, choice_lines(400, cycle, [](int i) { return i < 120; })).status("chance_acc"), "ok");
  // Far below chance is not "within noise" either (always-A MMLU scores 0.229 over 14,042 documents).
  EXPECT_EQ(health_of(t, choice_lines(400, cycle, [](int i) { return i < 40; })).status("chance_acc"), "ok");
  // Too few documents to tell: neither choice guard judges.
  const Health few = health_of(t, choice_lines(10, [](int) { return 0; }, [](int) { return false; }));
  EXPECT_EQ(few.status("one_letter"), "too_few");
  EXPECT_EQ(few.status("chance_acc"), "absent");
  EXPECT_TRUE(few.warnings.empty());
}

TEST(Guards, TruncationTripsAboveOnePercent) {
  const tasks::Task t = generation_task();
  EXPECT_EQ(health_of(t, generation_lines(200, 0, 0, 2)).status("truncation"), "ok");  // exactly 1%
  const Health h = health_of(t, generation_lines(200, 0, 0, 3));
  EXPECT_EQ(h.status("truncation"), "warning");
  ASSERT_EQ(h.warnings.size(), 1u);
  EXPECT_NE(h.warnings[0].find("3 of 200 documents"), std::string::npos) << h.warnings[0];
  std::vector<json> mc = choice_lines(100, [](int i) { return i % 4; }, [](int i) { return i % 4 == 1 || i % 3 == 0; });
  for (int i = 0; i < 2; ++i) mc[static_cast<size_t>(i)]["truncated_tokens"] = 100;
  EXPECT_EQ(health_of(choice_task(), mc).status("truncation"), "warning");  // multiple choice too
}

TEST(Guards, EmptyAndMaxTokensGenerationsTripAboveFivePercentWithAStopReasonHistogram) {
  const tasks::Task t = generation_task();
  const Health ok = health_of(t, generation_lines(100, 5, 5, 0));  // exactly 5% of each
  EXPECT_EQ(ok.status("empty_generations"), "ok");
  EXPECT_EQ(ok.status("max_tokens"), "ok");
  EXPECT_EQ(ok.health["stop_reasons"], json({{"length", 5}, {"stop_string", 95}}));
  const Health empty = health_of(t, generation_lines(100, 6, 0, 0));
  EXPECT_EQ(empty.status("empty_generations"), "warning");
  EXPECT_EQ(empty.status("max_tokens"), "ok");
  const Health length = health_of(t, generation_lines(100, 0, 6, 0));
  EXPECT_EQ(length.status("max_tokens"), "warning");
  EXPECT_EQ(length.status("empty_generations"), "ok");
  // Samples of a code task (responses) count one by one; a backend that gives no reason (a replay) is "unknown".
  std::vector<json> code = {{{"subtask", "gen"}, {"doc_id", 0}, {"responses", {"x", "", "y"}}, {"metrics", json::object()}}};
  const Health c = health_of(t, code);
  EXPECT_EQ(c.health["stop_reasons"], json({{"unknown", 3}}));
  EXPECT_EQ(c.status("empty_generations"), "warning");  // 1 of 3
}

TEST(Guards, MissingOrNanLogprobsTrip) {
  const tasks::Task t = choice_task();
  auto cycle = [](int i) { return i % 4; };
  auto some = [](int i) { return i % 2 == 0; };
  EXPECT_EQ(health_of(t, choice_lines(100, cycle, some)).status("logprobs"), "ok");
  std::vector<json> nan = choice_lines(100, cycle, some);
  nan[3]["logprobs"][1] = nullptr;  // what a NaN logprob is written as
  EXPECT_EQ(health_of(t, nan).status("logprobs"), "warning");
  std::vector<json> missing = choice_lines(100, cycle, some);
  missing[7].erase("logprobs");
  EXPECT_EQ(health_of(t, missing).status("logprobs"), "warning");
  std::vector<json> short_list = choice_lines(100, cycle, some);
  short_list[9]["logprobs"] = {-1.0, -2.0};  // two scores for four choices
  EXPECT_EQ(health_of(t, short_list).status("logprobs"), "warning");
  // A rolling loglikelihood task: its loglikelihood.
  tasks::Task rolling;
  rolling.name = "ppl";
  rolling.output_type = tasks::OutputType::LOGLIKELIHOOD_ROLLING;
  std::vector<json> lines = {{{"subtask", "ppl"}, {"doc_id", 0}, {"loglikelihood", -12.5}, {"metrics", json::object()}}};
  EXPECT_EQ(health_of(rolling, lines).status("logprobs"), "ok");
  lines[0]["loglikelihood"] = nullptr;
  EXPECT_EQ(health_of(rolling, lines).status("logprobs"), "warning");
  // The guards a task gets come from its metrics (metrics/registry.cpp): a generation task has no choice guards.
  EXPECT_EQ(health_of(generation_task(), generation_lines(100, 0, 0, 0)).status("logprobs"), "absent");
}

EvalOutcome run_replay(const fs::path& replay, const std::string& task_list, const fs::path& out, int64_t limit) {
  auto backend = make_replay_backend(replay.string());
  EvalOptions o;
  o.tasks = task_list;
  o.limit = limit;
  o.output_dir = out;
  o.fetch = mirror_fetch();
  o.progress = false;
  return evaluate(*backend, o);
}

bool has_warning(const EvalOutcome& out, const std::string& text) {
  for (const std::string& w : out.warnings)
    if (w.find(text) != std::string::npos) return true;
  return false;
}

TEST(Guards, ReplayRunsTripTheGuardsTheyShouldAndAGoldRunNone) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("guards");
  const std::vector<tasks::Task> tasks = test::load_tasks({"mmlu", "gsm8k"}, 10);

  write_oracle_replay(tasks, OracleAnswer::GOLD, dir / "gold.jsonl");
  const EvalOutcome gold = run_replay(dir / "gold.jsonl", "mmlu,gsm8k", dir / "gold", 10);
  EXPECT_TRUE(gold.warnings.empty()) << gold.warnings.front();
  EXPECT_EQ(gold.results["warnings"], json::array());
  EXPECT_EQ(gold.results["run_health"]["mmlu"]["checks"]["one_letter"]["status"], "ok");
  EXPECT_EQ(gold.results["run_health"]["gsm8k"]["stop_reasons"], json({{"unknown", 10}}));  // a replay says none
  EXPECT_EQ(gold.results["cost"]["mmlu"]["docs"], 570);
  EXPECT_EQ(gold.results["provenance"]["cost_this_invocation"]["mmlu"]["docs_scored"], 570);
  EXPECT_NE(format_cost_table(gold.results).find("| mmlu "), std::string::npos);
  EXPECT_EQ(format_health_warnings(gold.results), "");

  // Always "A" (what a constant or missing score gives): the one-letter guard, in results.json too.
  write_oracle_replay(tasks, OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  const EvalOutcome a = run_replay(dir / "a.jsonl", "mmlu,gsm8k", dir / "a", 10);
  EXPECT_TRUE(has_warning(a, "task mmlu: one_letter: choice A (index 0) is the prediction for 100.0% of 570"));
  EXPECT_FALSE(has_warning(a, "task gsm8k: empty_generations"));  // "I do not know." is not empty
  EXPECT_EQ(a.results["warnings"].size(), a.warnings.size());
  EXPECT_NE(format_health_warnings(a.results).find("warning: task mmlu: one_letter"), std::string::npos);

  // Right on every fourth document, a wrong choice (cycling) on the others: as good as guessing, with no letter
  // dominating.
  {
    std::ofstream f(dir / "cycle.jsonl");
    size_t j = 0;
    for (const tasks::Subtask& s : tasks[0].subtasks)
      for (const tasks::TaskDoc& d : s.docs) {
        std::vector<double> lp(d.choices.size(), -2.0);
        const auto gold = static_cast<size_t>(d.gold);
        lp[j % 4 == 0 ? gold : (gold + 1 + j % 3) % lp.size()] = -1.0;
        ++j;
        f << json({{"task", s.name}, {"doc_id", d.doc_id}, {"logprobs", lp}}).dump() << "\n";
      }
  }
  const EvalOutcome cycle = run_replay(dir / "cycle.jsonl", "mmlu", dir / "cycle", 10);
  const double acc = cycle.results["groups"]["mmlu"]["acc,none"].get<double>();
  ASSERT_LT(std::abs(acc - 0.25), 2 * std::sqrt(0.1875 / 570)) << "the replay is meant to score at chance";
  EXPECT_TRUE(has_warning(cycle, "task mmlu: chance_acc:"));
  EXPECT_FALSE(has_warning(cycle, "one_letter"));

  // Empty answers: the empty-generation guard.
  {
    std::ofstream f(dir / "empty.jsonl");
    for (const tasks::TaskDoc& d : tasks[1].subtasks[0].docs)
      f << json({{"task", "gsm8k"}, {"doc_id", d.doc_id}, {"responses", {""}}}).dump() << "\n";
  }
  const EvalOutcome empty = run_replay(dir / "empty.jsonl", "gsm8k", dir / "empty", 10);
  EXPECT_TRUE(has_warning(empty, "task gsm8k: empty_generations: 10 of 10 generations"));
}

TEST(Guards, StrictMakesAWarningAnErrorAfterWritingTheResults) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("guards-strict");
  write_oracle_replay(test::load_tasks({"mmlu"}, 1), OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  auto cli = [&](const std::string& out, const std::string& extra) {
    const std::string cmd = std::string(MLABENCH_BINARY) + " run --backend replay:" + (dir / "a.jsonl").string() +
                            " --tasks mmlu --limit 1 --output " + (dir / out).string() + " --mirror " +
                            test::dataset_mirror() + " --data-dir " + mirror_fetch().cache_dir.string() +
                            " --offline --no-progress --no-report " + extra + " >" + (dir / (out + ".out")).string() +
                            " 2>" + (dir / (out + ".err")).string();
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  // 57 documents, all "A": the one-letter guard (57 >= the 20 documents the choice guards need).
  EXPECT_EQ(cli("plain", ""), 0);
  EXPECT_NE(test::read_file(dir / "plain.out").find("warning: task mmlu: one_letter"), std::string::npos)
      << test::read_file(dir / "plain.out");
  EXPECT_NE(test::read_file(dir / "plain.out").find("| mmlu "), std::string::npos);  // the cost table
  EXPECT_EQ(cli("strict", "--strict"), 1);
  const std::string err = test::read_file(dir / "strict.err");
  EXPECT_NE(err.find("run-health warning(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("task mmlu: one_letter"), std::string::npos) << err;
  EXPECT_NE(err.find("HINT:"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(dir / "strict" / "results.json"));  // written before the error
}

// The printed summary: one row per metric that matters. MMLU's acc and acc_norm (equal on one-letter choices) share
// a row, the macro mean is a column, the categories are left to results.json and the report.
TEST(Summary, OneRowPerMetricThatMatters) {
  auto est = [](double micro, double macro) {
    return json{{"alias", "x"},           {"acc,none", micro},       {"acc_stderr,none", 0.01},
                {"acc_macro,none", macro}, {"acc_macro_stderr,none", 0.02}, {"acc_norm,none", micro},
                {"acc_norm_stderr,none", 0.01}, {"acc_norm_macro,none", macro}, {"acc_norm_macro_stderr,none", 0.02}};
  };
  const json r = {{"versions", {{"mmlu", 1}, {"gsm8k", 3}}},
                  {"groups", {{"mmlu", est(0.5, 0.4)}, {"mmlu_stem", est(0.3, 0.3)}}},
                  {"group_subtasks", {{"mmlu", {"mmlu_stem"}}}},
                  {"results", {{"gsm8k", {{"alias", "gsm8k"}, {"exact_match,strict-match", 0.25},
                                          {"exact_match_stderr,strict-match", 0.1}, {"exact_match,flexible-extract", 0.25},
                                          {"exact_match_stderr,flexible-extract", 0.1}}}}},
                  {"protocols", {{"mmlu", "lm-evaluation-harness"}, {"gsm8k", "lm-evaluation-harness"}}},
                  {"n-shot", {{"mmlu", 5}, {"gsm8k", 5}}},
                  {"cost", {{"mmlu", {{"docs", 14042}}}}},
                  {"run_health", {{"mmlu", {{"checks", {{"one_letter", {{"status", "warning"}}}}}}}}}};
  const std::string table = format_results_table(r);
  std::vector<std::string> rows;
  for (size_t at = 0, nl; (nl = table.find('\n', at)) != std::string::npos; at = nl + 1) rows.push_back(table.substr(at, nl - at));
  ASSERT_EQ(rows.size(), 2u + 1u + 2u) << table;  // header, rule; mmlu; gsm8k's two filters (they differ)
  EXPECT_NE(rows[2].find("| acc = acc_norm "), std::string::npos) << rows[2];
  EXPECT_NE(rows[2].find("0.5000 |   0.0100 |   0.4000 |  14042 | 1 warn"), std::string::npos) << rows[2];
  EXPECT_EQ(table.find("mmlu_stem"), std::string::npos);
  EXPECT_NE(rows[3].find("strict-match"), std::string::npos);
  EXPECT_NE(rows[4].find("flexible-extract"), std::string::npos);
}

// Fetching prints one line per dataset, whatever its number of files: where they came from and the digest.
TEST(Summary, FetchPrintsOneLinePerDataset) {
  MLABENCH_REQUIRE_MIRROR();
  data::FetchOptions o;
  o.cache_dir = fresh_dir("fetch-one-line");
  o.mirror = test::dataset_mirror();
  o.allow_network = false;
  std::vector<std::string> lines;
  o.log = [&](const std::string& line) { lines.push_back(line); };
  data::ensure_dataset("gsm8k", o);
  ASSERT_EQ(lines.size(), 1u) << fmt::format("{}", fmt::join(lines, "\n"));
  EXPECT_NE(lines[0].find("gsm8k: 2 files from the mirror folder"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("; verified (content sha256 "), std::string::npos) << lines[0];
  lines.clear();
  data::ensure_dataset("gsm8k", o);  // cached and verified: nothing to say
  EXPECT_TRUE(lines.empty());
}

}  // namespace
}  // namespace mlabench::harness
