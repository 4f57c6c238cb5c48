// Sharded runs: --shard K/N (or from a scheduler's environment) takes every subtask's documents K, K+N, ...;
// mlabench merge gathers the N shard folders and aggregates them into the results of the unsharded run, exactly,
// and refuses folders that are not the complete shards of one run.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "harness/shards.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::harness {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using test::fresh_dir;
using test::mirror_fetch;

EvalOptions replay_options(const std::string& task_list, const fs::path& out, int64_t limit) {
  EvalOptions o;
  o.tasks = task_list;
  o.limit = limit;
  o.output_dir = out;
  o.fetch = mirror_fetch();
  o.progress = false;
  o.batch_docs = 7;
  return o;
}

json without_provenance(const json& results) {
  json c = results;
  c.erase("provenance");
  return c;
}

TEST(Shards, ParseShardFromFlagsAndTheSchedulersEnvironment) {
  EXPECT_EQ(parse_shard("2/4", 0), (Shard{2, 4}));
  EXPECT_EQ(parse_shard("0/1", 1), (Shard{0, 1}));
  for (const char* bad : {"4/4", "1", "a/2", "-1/2", "1/0", "1/2/3", "1/100001", ""})
    test::expect_error_with([&] { parse_shard(bad, 0); }, {"shard"}, bad);
  test::expect_error_with([] { parse_shard("1/4", 3); }, {"--shards 3", "disagrees"});
  auto env = [](std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> const char* {
      const auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  EXPECT_EQ(parse_shard("env", 0, env({{"SLURM_ARRAY_TASK_ID", "3"}, {"SLURM_ARRAY_TASK_COUNT", "8"}})), (Shard{3, 8}));
  EXPECT_EQ(parse_shard("env", 0, env({{"SLURM_ARRAY_TASK_ID", "5"}, {"SLURM_ARRAY_TASK_MIN", "1"},
                                       {"SLURM_ARRAY_TASK_COUNT", "8"}})),
            (Shard{4, 8}))
      << "an array numbered from 1";
  EXPECT_EQ(parse_shard("env", 6, env({{"JOB_COMPLETION_INDEX", "5"}})), (Shard{5, 6}));
  test::expect_error_with([&] { parse_shard("env", 0, env({{"JOB_COMPLETION_INDEX", "5"}})); },
                          {"JOB_COMPLETION_INDEX", "--shards N"});
  EXPECT_EQ(parse_shard("env", 0, env({{"RANK", "1"}, {"WORLD_SIZE", "2"}})), (Shard{1, 2}));
  test::expect_error_with([&] { parse_shard("env", 0, env({})); }, {"SLURM_ARRAY_TASK_ID", "RANK", "HINT"});
  test::expect_error_with([&] { parse_shard("env", 0, env({{"RANK", "2"}, {"WORLD_SIZE", "2"}})); }, {"below"});
}

// Four shards of MMLU and GSM8K (an answer key right on some documents only), merged: the results of the
// unsharded run, every object of results.json but the provenance.
// run.json comes back with its keys sorted; an identity whose objects keep another order (the engine backend's
// config) is still the same identity, and a value that differs is still named.
TEST(Shards, MergeComparesIdentitiesRegardlessOfKeyOrder) {
  const fs::path dir = fresh_dir("shards-key-order");
  json identity = {{"tasks", "mmlu"}, {"config", {{"model", "m"}, {"device", "cuda"}, {"backend", "engine"}}}};
  json stored = identity;
  stored["shard"] = "0/1";
  fs::create_directories(dir / "s0");
  std::ofstream(dir / "s0" / "run.json") << json{{"identity", stored}}.dump();
  std::ofstream(dir / "s0" / "results.json") << "{}";
  EvalOptions o;
  o.merge_from = {dir / "s0"};
  o.output_dir = dir / "merged";
  fs::create_directories(o.output_dir);
  EXPECT_NO_THROW(gather_shards(o, identity, {}));
  json other = identity;
  other["config"]["device"] = "cpu";
  test::expect_error_with([&] { gather_shards(o, other, {}); }, {"config", "different"});
}

TEST(Shards, FourShardsMergeToTheUnshardedResults) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("shards");
  write_oracle_replay(test::load_tasks({"mmlu", "gsm8k_cot"}, 5), OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  auto backend = make_replay_backend((dir / "a.jsonl").string());
  const EvalOutcome whole = evaluate(*backend, replay_options("mmlu,gsm8k_cot", dir / "whole", 5));
  std::vector<fs::path> shards;
  int64_t docs = 0;
  for (int64_t k = 0; k < 4; ++k) {
    EvalOptions o = replay_options("mmlu,gsm8k_cot", dir / fmt::format("shard{}", k), 5);
    o.shard = {k, 4};
    const EvalOutcome part = evaluate(*backend, o);
    EXPECT_EQ(part.results["shard"], (json{{"index", k}, {"count", 4}}));
    docs += part.docs_scored;
    shards.push_back(o.output_dir);
  }
  EXPECT_EQ(docs, whole.docs_scored) << "the shards partition the documents";
  EvalOptions m = replay_options("mmlu,gsm8k_cot", dir / "merged", 5);
  m.merge_from = {shards[2], shards[0], shards[3], shards[1]};  // any order
  const EvalOutcome merged = evaluate(*backend, m);
  EXPECT_EQ(merged.docs_scored, 0) << "a merge scores nothing";
  EXPECT_EQ(merged.results["results"], whole.results["results"]);
  EXPECT_EQ(merged.results["groups"], whole.results["groups"]);
  EXPECT_EQ(without_provenance(merged.results), without_provenance(whole.results));
  EXPECT_EQ(merged.results["provenance"]["merged_from"].size(), 4u);

  // Not the complete shards of one run: refused, naming the folder and what is wrong.
  auto merge = [&](std::vector<fs::path> from, const std::string& out, int64_t limit = 5) {
    EvalOptions o = replay_options("mmlu,gsm8k_cot", dir / out, limit);
    o.merge_from = std::move(from);
    evaluate(*backend, o);
  };
  test::expect_error_with([&] { merge({shards[0], shards[1], shards[2]}, "m1"); }, {"shard", "of 4", "3 run folder(s)"});
  test::expect_error_with([&] { merge({shards[0], shards[1], shards[2], shards[1]}, "m2"); }, {"given twice"});
  test::expect_error_with([&] { merge(shards, "m3", 6); }, {"different limit", "HINT"});
  test::expect_error_with([&] { merge(shards, "merged"); }, {"already holds a run"});
  test::expect_error_with([&] { merge({dir / "whole", shards[1], shards[2], shards[3]}, "m4"); },
                          {"not the run of a shard"});
  fs::remove(shards[3] / "results.json");
  test::expect_error_with([&] { merge(shards, "m5"); }, {"did not finish", "--resume"});
}

// The command line: two shards through the binary (--shard K/N; a Slurm array's environment), then mlabench merge.
TEST(Shards, MergeCommandGivesTheUnshardedRun) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("shards-cli");
  write_oracle_replay(test::load_tasks({"mmlu"}, 4), OracleAnswer::FIRST_CHOICE, dir / "a.jsonl");
  auto exec = [](std::vector<std::string> a, const std::vector<std::pair<std::string, std::string>>& env = {}) {
    const pid_t pid = fork();
    if (pid == 0) {
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      for (std::string& s : a) argv.push_back(s.data());
      argv.push_back(nullptr);
      if (std::freopen("/dev/null", "w", stdout) == nullptr) _exit(126);  // the child's output is not the test's
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  auto run = [&](const fs::path& out) {
    return std::vector<std::string>{MLABENCH_BINARY, "run", "--backend", "replay:" + (dir / "a.jsonl").string(),
                                    "--tasks", "mmlu", "--limit", "4", "--output", out.string(), "--mirror",
                                    test::dataset_mirror(), "--data-dir", mirror_fetch().cache_dir.string(),
                                    "--offline", "--no-progress", "--no-report"};
  };
  ASSERT_EQ(exec(run(dir / "whole")), 0);
  auto s0 = run(dir / "s0");
  s0.insert(s0.end(), {"--shard", "0/2"});
  ASSERT_EQ(exec(s0), 0);
  auto s1 = run(dir / "s1");
  s1.insert(s1.end(), {"--shard", "env"});
  ASSERT_EQ(exec(s1, {{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_COUNT", "2"}}), 0);
  ASSERT_EQ(exec({MLABENCH_BINARY, "merge", (dir / "s0").string(), (dir / "s1").string(), "--output",
                  (dir / "merged").string()}),
            0);
  std::ifstream a(dir / "whole" / "results.json"), b(dir / "merged" / "results.json");
  const json whole = json::parse(a), merged = json::parse(b);
  EXPECT_EQ(merged["results"], whole["results"]);
  EXPECT_EQ(merged["groups"], whole["groups"]);
  EXPECT_EQ(merged["provenance"]["docs_scored_this_invocation"], 0);
  EXPECT_TRUE(fs::exists(dir / "merged" / "report.html"));
  EXPECT_NE(exec({MLABENCH_BINARY, "merge", (dir / "s0").string(), "--output", (dir / "m2").string()}), 0)
      << "one of two shards";
}

}  // namespace
}  // namespace mlabench::harness
