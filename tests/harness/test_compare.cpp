// `mlabench compare` (harness/compare.h) on real replay runs of MMLU from the dataset mirror: gold answers against
// "always A" must be a clear loss for B with a tiny McNemar p, gold against gold no difference with agreement 1;
// runs with another num_fewshot are refused naming the field; the CLI writes the JSON the report reads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "harness/compare.h"
#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "harness/task_override.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr int64_t kLimit = 3;  // documents per MMLU subject: 171 items, enough for a decisive McNemar test

CompareOptions options(int64_t resamples, uint64_t seed = 1234) {
  CompareOptions o;
  o.resamples = resamples;
  o.seed = seed;
  return o;
}

void run_replay(const fs::path& replay, const fs::path& out, std::optional<int> num_fewshot = std::nullopt) {
  auto backend = make_replay_backend(replay.string());
  EvalOptions o;
  o.tasks = "mmlu";
  o.limit = kLimit;
  o.num_fewshot = num_fewshot;
  o.output_dir = out;
  o.fetch = test::mirror_fetch();
  o.progress = false;
  evaluate(*backend, o);
}

const json& row_of(const json& comparison, const std::string& level, const std::string& name,
                   const std::string& metric) {
  for (const json& t : comparison["tasks"])
    for (const json& row : t["rows"])
      if (row["level"] == level && row["name"] == name && row["metric"] == metric) return row;
  static const json none;
  ADD_FAILURE() << "no row " << level << " " << name << " " << metric;
  return none;
}

TEST(Compare, GoldAgainstAlwaysAIsALossAndGoldAgainstGoldIsNoDifference) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = test::fresh_dir("compare");
  const std::vector<tasks::Task> tasks = test::load_tasks({"mmlu"}, kLimit);
  write_oracle_replay(tasks, OracleAnswer::GOLD, dir / "gold.jsonl");
  write_oracle_replay(tasks, OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  run_replay(dir / "gold.jsonl", dir / "gold");
  run_replay(dir / "a.jsonl", dir / "always_a");
  run_replay(dir / "gold.jsonl", dir / "gold_again");
  int64_t items = 0, gold_is_a = 0;
  for (const auto& s : tasks[0].subtasks)
    for (const auto& d : s.docs) {
      ++items;
      gold_is_a += d.gold == 0 ? 1 : 0;
    }
  ASSERT_EQ(items, 57 * kLimit);

  const json doc = compare_runs({(dir / "gold").string(), (dir / "always_a").string(),
                                 "again=" + (dir / "gold_again").string()},
                                options(2000, 5));
  EXPECT_EQ(doc["schema_version"], 1);
  EXPECT_EQ(doc["tool"], "mlabench compare");
  ASSERT_EQ(doc["comparisons"].size(), 2u);
  const json& loss = doc["comparisons"][0];
  EXPECT_EQ(loss["a"], "gold");
  EXPECT_EQ(loss["b"], "always_a");
  const json& acc = row_of(loss, "task", "mmlu", "acc");
  EXPECT_EQ(acc["n"], items);
  EXPECT_EQ(acc["mean_a"], 1.0);
  EXPECT_NEAR(acc["mean_b"].get<double>(), static_cast<double>(gold_is_a) / items, 1e-12);
  // Every discordant pair is one way (gold right, A wrong): p = 2 * 2^-(discordant), far below any alpha.
  EXPECT_EQ(acc["a_only"], items - gold_is_a);
  EXPECT_EQ(acc["b_only"], 0);
  EXPECT_NEAR(acc["mcnemar_p"].get<double>(), 2 * std::pow(0.5, static_cast<double>(items - gold_is_a)), 1e-25);
  EXPECT_LT(acc["mcnemar_p"].get<double>(), 1e-20);
  EXPECT_NEAR(acc["agreement"].get<double>(), static_cast<double>(gold_is_a) / items, 1e-12);
  EXPECT_LT(acc["ci"][1].get<double>(), 0.0) << "the interval of B - A lies below 0";
  EXPECT_EQ(acc["verdict"], "A better");
  EXPECT_EQ(row_of(loss, "group", "mmlu_stem", "acc")["verdict"], "A better");
  EXPECT_EQ(row_of(loss, "subtask", "mmlu_anatomy", "acc")["n"], kLimit);
  EXPECT_EQ(loss["tasks"][0]["only_in_a"], 0);
  EXPECT_EQ(loss["tasks"][0]["only_in_b"], 0);
  // The oracles' log-probabilities: 0 for the answer they give, -1 for the other choices. Where gold is not A, the
  // two runs differ by 1 on two of the four choices.
  const json& lp = loss["tasks"][0]["logprobs"];
  ASSERT_TRUE(lp.is_object()) << loss["tasks"][0].dump(1);
  EXPECT_EQ(lp["items"], items);
  EXPECT_EQ(lp["values"], 4 * items);
  EXPECT_NEAR(lp["argmax_agreement"].get<double>(), static_cast<double>(gold_is_a) / items, 1e-12);
  EXPECT_EQ(lp["max_abs_difference"], 1.0);
  EXPECT_NEAR(lp["mean_abs_difference"].get<double>(), 2.0 * (items - gold_is_a) / (4.0 * items), 1e-12);

  const json& same = doc["comparisons"][1];
  EXPECT_EQ(same["b"], "again");
  const json& acc2 = row_of(same, "task", "mmlu", "acc");
  EXPECT_EQ(acc2["agreement"], 1.0);
  EXPECT_EQ(acc2["difference"], 0.0);
  EXPECT_EQ(acc2["mcnemar_p"], 1.0);
  EXPECT_EQ(same["tasks"][0]["prediction_agreement"], 1.0);
  EXPECT_EQ(same["tasks"][0]["logprobs"]["argmax_agreement"], 1.0);
  EXPECT_EQ(same["tasks"][0]["logprobs"]["max_abs_difference"], 0.0);
  EXPECT_EQ(acc2["verdict"], fmt::format("no difference (identical on all {} items)", items));

  // Seeded: the same options give the same document.
  EXPECT_EQ(compare_runs({(dir / "gold").string(), (dir / "always_a").string(),
                          "again=" + (dir / "gold_again").string()}, options(2000, 5)),
            doc);
  const std::string table = format_compare_table(doc, false);
  EXPECT_NE(table.find("A = gold, B = always_a"), std::string::npos) << table;
  EXPECT_NE(table.find("logprobs: mmlu: " + std::to_string(items) + " items"), std::string::npos) << table;
  EXPECT_EQ(table.find("mmlu_anatomy"), std::string::npos) << "subtask rows only with --subtasks";
  EXPECT_NE(format_compare_table(doc, true).find("mmlu_anatomy"), std::string::npos);
}

TEST(Compare, RefusesRunsWithAnotherNumFewshotAndPairsTheCommonItemsOfAShorterRun) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = test::fresh_dir("compare-refuse");
  write_oracle_replay(test::load_tasks({"mmlu"}, kLimit), OracleAnswer::GOLD, dir / "gold.jsonl");
  run_replay(dir / "gold.jsonl", dir / "five");
  run_replay(dir / "gold.jsonl", dir / "zero", 0);
  test::expect_error_with([&] { compare_runs({(dir / "five").string(), (dir / "zero").string()}, {}); },
                          {"task mmlu", "num_fewshot differs", "five: 5", "zero: 0", "HINT"});
  // --set changed the task's template: named by its config key.
  {
    auto backend = make_replay_backend((dir / "gold.jsonl").string());
    EvalOptions o;
    o.tasks = "mmlu";
    o.limit = kLimit;
    o.output_dir = dir / "described";
    o.fetch = test::mirror_fetch();
    o.progress = false;
    add_task_override(o.task_overrides, "mmlu.description=Answer these.");
    evaluate(*backend, o);
  }
  test::expect_error_with([&] { compare_runs({(dir / "five").string(), (dir / "described").string()}, {}); },
                          {"task mmlu", "the task config's \"description\"", "described: \"Answer these.\"", "HINT"});
  // A run with --limit 2 against one with 3: the 2 * 57 common documents are paired, the rest counted.
  auto backend = make_replay_backend((dir / "gold.jsonl").string());
  EvalOptions o;
  o.tasks = "mmlu";
  o.limit = 2;
  o.output_dir = dir / "short";
  o.fetch = test::mirror_fetch();
  o.progress = false;
  evaluate(*backend, o);
  const json doc = compare_runs({(dir / "five").string(), (dir / "short").string()}, options(100));
  const json& t = doc["comparisons"][0]["tasks"][0];
  EXPECT_EQ(t["paired"], 2 * 57);
  EXPECT_EQ(t["only_in_a"], 57);
  EXPECT_EQ(t["only_in_b"], 0);
  EXPECT_NE(format_compare_table(doc, false).find("57 documents only in A"), std::string::npos);
  test::expect_error_with([&] { compare_runs({(dir / "five").string(), (dir / "none").string()}, {}); },
                          {"has no results.json", "HINT"});
}

TEST(Compare, CommandLineWritesTheJsonAndExitsOneOnARefusal) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = test::fresh_dir("compare-cli");
  write_oracle_replay(test::load_tasks({"mmlu"}, 1), OracleAnswer::GOLD, dir / "gold.jsonl");
  auto backend = make_replay_backend((dir / "gold.jsonl").string());
  for (const auto& [name, shots] : {std::pair{"a", 5}, std::pair{"b", 5}, std::pair{"c", 1}}) {
    EvalOptions o;
    o.tasks = "mmlu";
    o.limit = 1;
    o.num_fewshot = shots;
    o.output_dir = dir / name;
    o.fetch = test::mirror_fetch();
    o.progress = false;
    evaluate(*backend, o);
  }
  const std::string bin = MLABENCH_BINARY;
  const std::string ok = fmt::format("'{}' compare '{}' '{}' --resamples 200 --out '{}' > '{}' 2>&1", bin,
                                     (dir / "a").string(), (dir / "b").string(), (dir / "cmp.json").string(),
                                     (dir / "out.txt").string());
  ASSERT_EQ(std::system(ok.c_str()), 0) << test::read_file(dir / "out.txt");
  const json doc = json::parse(test::read_file(dir / "cmp.json"));
  EXPECT_EQ(doc["tool"], "mlabench compare");
  EXPECT_EQ(doc["options"]["resamples"], 200);
  EXPECT_NE(test::read_file(dir / "out.txt").find("no difference (identical on all 57 items)"), std::string::npos);
  const std::string refused = fmt::format("'{}' compare '{}' '{}' > '{}' 2>&1", bin, (dir / "a").string(),
                                          (dir / "c").string(), (dir / "err.txt").string());
  const int status = std::system(refused.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  const std::string err = test::read_file(dir / "err.txt");
  EXPECT_NE(err.find("num_fewshot differs"), std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
}

}  // namespace
}  // namespace mlabench::harness
