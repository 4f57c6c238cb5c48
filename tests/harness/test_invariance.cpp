// --check-invariance (harness/invariance.h): documents re-run one at a time against what a batched run recorded.
// The CPU engine (float32, each row's sums in a fixed order) must come out batch-invariant on the bundled model:
// 0 flips, max |d log-prob| 0, no diverged generation. A backend that answers differently alone must be caught.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "harness/backend.h"
#include "harness/invariance.h"
#include "mlabench/engine.h"
#include "tests/harness/eval_test_util.h"
#include "tests/test_util.h"

namespace mlabench::harness {
namespace {

const std::string kTiny = std::string(MLABENCH_TEST_DATA) + "/models/mlabench-tiny-dsv2";

// Eight multiple-choice documents and four generation documents of varied lengths, as the evaluator would send.
struct Fixture {
  tasks::Task mc, gen;
  Fixture() {
    mc.name = "mc", mc.output_type = tasks::OutputType::MULTIPLE_CHOICE;
    gen.name = "gen", gen.output_type = tasks::OutputType::GENERATE_UNTIL;
    gen.generation.max_gen_toks = 12;
    gen.generation.until = {"\n\n"};
    mc.subtasks.push_back({.name = "mc", .category = "", .display = "", .n_docs_total = 8, .docs = {}});
    gen.subtasks.push_back({.name = "gen", .category = "", .display = "", .n_docs_total = 4, .docs = {}});
    for (int i = 0; i < 8; ++i) {
      tasks::TaskDoc d;
      d.doc_id = i;
      d.context = "Question " + std::to_string(i) + ": " + std::string(static_cast<size_t>(5 + 7 * i), 'x') + "\nAnswer:";
      d.choices = {" A", " B", " C", " D"};
      d.gold = i % 4;
      mc.subtasks[0].docs.push_back(d);
    }
    for (int i = 0; i < 4; ++i) {
      tasks::TaskDoc d;
      d.doc_id = i;
      d.context = "Story " + std::to_string(i) + std::string(static_cast<size_t>(3 + 11 * i), 'y');
      gen.subtasks[0].docs.push_back(d);
    }
  }
};

// The batched run: every document of a task in one backend call, recorded as the evaluator's samples lines.
std::vector<InvarianceItem> batched_run(Backend& b, const Fixture& f) {
  std::vector<InvarianceItem> items;
  std::vector<ChoiceRequest> crq;
  for (const auto& d : f.mc.subtasks[0].docs) crq.push_back({"mc", d.doc_id, d.context, d.choices});
  const auto cres = b.loglikelihood(crq);
  for (size_t i = 0; i < crq.size(); ++i)
    items.push_back({.task = &f.mc, .subtask = &f.mc.subtasks[0], .doc = &f.mc.subtasks[0].docs[i], .gen = {},
                     .line = {{"logprobs", cres[i].logprobs}}});
  std::vector<GenerationRequest> grq;
  for (const auto& d : f.gen.subtasks[0].docs)
    grq.push_back({.subtask = "gen", .doc_id = d.doc_id, .context = d.context, .gen = f.gen.generation, .sample = 0,
                   .system_prompt = ""});
  const auto gres = b.generate(grq);
  for (size_t i = 0; i < grq.size(); ++i)
    items.push_back({.task = &f.gen, .subtask = &f.gen.subtasks[0], .doc = &f.gen.subtasks[0].docs[i],
                     .gen = f.gen.generation, .line = {{"response", gres[i].text}}});
  return items;
}

TEST(Invariance, PicksDistinctSeededItems) {
  const auto a = pick_invariance_items(100, 10, 7), b = pick_invariance_items(100, 10, 7);
  EXPECT_EQ(a, b);
  EXPECT_EQ(std::set<size_t>(a.begin(), a.end()).size(), 10u);
  EXPECT_NE(a, pick_invariance_items(100, 10, 8));
  EXPECT_EQ(pick_invariance_items(5, 10, 1).size(), 5u);  // n past the total: all of them
  for (size_t i : a) EXPECT_LT(i, 100u);
}

TEST(Invariance, TheCpuEngineIsBatchInvariantOnTheBundledModel) {
  auto backend = make_engine_backend(std::move(Engine::open({.model_dir = kTiny}).value()), {}, {});
  const Fixture f;
  const std::vector<InvarianceItem> items = batched_run(*backend, f);
  const auto inv = check_batch_invariance(*backend, items);
  EXPECT_EQ(inv["items_checked"].get<int64_t>(), 12);
  EXPECT_EQ(inv["argmax_flips"].get<int64_t>(), 0);
  EXPECT_EQ(inv["max_abs_dlogprob"].get<double>(), 0.0);
  EXPECT_EQ(inv["generations_compared"].get<int64_t>(), 4);
  EXPECT_EQ(inv["generations_diverged"].get<int64_t>(), 0);
  EXPECT_EQ(inv["tasks"]["mc"]["items_checked"].get<int64_t>(), 8);
  EXPECT_NE(invariance_summary(inv).find("0 argmax flips"), std::string::npos) << invariance_summary(inv);
}

// A backend whose answers alone differ from its batched answers: shifted log-probabilities (flipping the argmax)
// and a changed text.
class BatchDependentBackend : public Backend {
 public:
  explicit BatchDependentBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  std::string kind() const override { return "test"; }
  nlohmann::ordered_json describe() const override { return {}; }
  std::vector<ChoiceResult> loglikelihood(std::span<const ChoiceRequest> r) override {
    auto res = inner_->loglikelihood(r);
    if (r.size() == 1) res[0].logprobs[3] += 50.0;  // choice D wins when alone
    return res;
  }
  std::vector<GenerationResult> generate(std::span<const GenerationRequest> r) override {
    auto res = inner_->generate(r);
    if (r.size() == 1) res[0].text += "!";
    return res;
  }
  std::vector<double> loglikelihood_rolling(std::span<const RollingRequest> r) override {
    return inner_->loglikelihood_rolling(r);
  }

 private:
  std::unique_ptr<Backend> inner_;
};

TEST(Invariance, ABatchDependentBackendIsCaught) {
  BatchDependentBackend backend(make_engine_backend(std::move(Engine::open({.model_dir = kTiny}).value()), {}, {}));
  const Fixture f;
  const std::vector<InvarianceItem> items = batched_run(backend, f);
  const auto inv = check_batch_invariance(backend, items);
  EXPECT_NEAR(inv["max_abs_dlogprob"].get<double>(), 50.0, 1e-9);
  int64_t d_wins = 0;  // documents whose batched prediction was already D do not flip
  for (const auto& it : items)
    if (it.task == &f.mc) d_wins += it.line["logprobs"][3].get<double>() >= it.line["logprobs"][0].get<double>() &&
                                    it.line["logprobs"][3].get<double>() >= it.line["logprobs"][1].get<double>() &&
                                    it.line["logprobs"][3].get<double>() >= it.line["logprobs"][2].get<double>();
  EXPECT_EQ(inv["argmax_flips"].get<int64_t>(), 8 - d_wins);
  EXPECT_EQ(inv["generations_diverged"].get<int64_t>(), 4);
  for (const auto& e : inv["items"])
    if (e["kind"] == "generation") {
      EXPECT_TRUE(e["diverged"].get<bool>());
      EXPECT_GE(e["diverged_at_char"].get<int64_t>(), 0);
    }
}

// mlabench run --check-invariance on real MMLU and GSM8K documents (the bundled model, CPU): results.json records the
// check, the summary prints it, the report shows it; the CPU engine gives 0 flips and no divergence. The time is the
// tiny model's GSM8K answers, which never stop early and so run to max_gen_toks twice (batched, then alone), and the
// few-shot prompts (MMLU 5 shots, GSM8K 8). The short mode (label slow) checks the same documents with one shot and
// 32 new tokens instead of the task's 256.
TEST(Invariance, RunRecordsTheCheckInResultsSummaryAndReport) {
  MLABENCH_REQUIRE_MIRROR();
  const auto out = test::fresh_dir("invariance-run");
  const std::string smaller = test::short_mode() ? " --gen-kwargs max_gen_toks=32 --set mmlu_anatomy.num_fewshot=1 "
                                                   "--set gsm8k_cot.num_fewshot=1"
                                                 : "";
  const std::string cmd = std::string(MLABENCH_BINARY) + " run --model " + kTiny +
                          " --tasks mmlu_anatomy,gsm8k_cot --limit 3 --check-invariance 4 --invariance-seed 3" +
                          smaller + " --mirror " + test::dataset_mirror() + " --data-dir " + (out / "data").string() +
                          " --offline --no-progress --output " + (out / "run").string() + " > " +
                          (out / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file((out / "log").string());
  std::ifstream f(out / "run" / "results.json");
  const auto results = nlohmann::ordered_json::parse(f);
  ASSERT_TRUE(results.contains("invariance"));
  const auto& inv = results["invariance"];
  EXPECT_EQ(inv["items_checked"].get<int64_t>(), 4);
  EXPECT_EQ(inv["argmax_flips"].get<int64_t>(), 0);
  EXPECT_EQ(inv["generations_diverged"].get<int64_t>(), 0);
  EXPECT_EQ(inv["items"].size(), 4u);
  EXPECT_NE(test::read_file((out / "log").string()).find("batch invariance: 4 documents"), std::string::npos);
  EXPECT_NE(test::read_file((out / "run" / "report.html").string()).find("Batch invariance"), std::string::npos);
  std::filesystem::remove_all(out);
}

// A split run (--tp 2 --ep 2 on the CPU: engine/parallel/sharded_runner.h) scores and generates what the unsplit
// run does on real MMLU and GSM8K documents, and results.json records the split (only a split run has the keys).
TEST(Invariance, ASplitRunScoresAndGeneratesWhatTheWholeModelDoes) {
  MLABENCH_REQUIRE_MIRROR();
  const auto out = test::fresh_dir("invariance-split");
  auto run = [&](const std::string& name, const std::string& extra) {
    const std::string cmd = std::string(MLABENCH_BINARY) + " run --model " + kTiny +
                            " --tasks mmlu_anatomy,gsm8k_cot --limit 2 --gen-kwargs max_gen_toks=16 --set "
                            "mmlu_anatomy.num_fewshot=1 --set gsm8k_cot.num_fewshot=1 --mirror " +
                            test::dataset_mirror() + " --data-dir " + (out / "data").string() +
                            " --offline --no-progress --no-report --output " + (out / name).string() + extra + " > " +
                            (out / (name + ".log")).string() + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << test::read_file((out / (name + ".log")).string());
    std::ifstream f(out / name / "results.json");
    return nlohmann::ordered_json::parse(f);
  };
  const auto whole = run("whole", ""), split = run("split", " --tp 2 --ep 2");
  EXPECT_EQ(split["results"], whole["results"]);
  EXPECT_EQ(split["config"]["tp"], 2);
  EXPECT_EQ(split["config"]["ep"], 2);
  EXPECT_FALSE(whole["config"].contains("tp"));
  // Every sample line the same (responses, predictions, scores), the log-probabilities within float32's reordering
  // of the sums over ranks (1e-5 relative).
  for (const char* task : {"mmlu_anatomy", "gsm8k_cot"}) {
    std::ifstream fa(out / "whole" / (std::string("samples_") + task + ".jsonl"));
    std::ifstream fb(out / "split" / (std::string("samples_") + task + ".jsonl"));
    std::string la, lb;
    int lines = 0;
    while (std::getline(fa, la)) {
      ASSERT_TRUE(static_cast<bool>(std::getline(fb, lb))) << task << ": the split run has fewer samples";
      auto a = nlohmann::json::parse(la), b = nlohmann::json::parse(lb);
      if (a.contains("logprobs")) {
        ASSERT_EQ(a["logprobs"].size(), b["logprobs"].size()) << task;
        for (size_t i = 0; i < a["logprobs"].size(); ++i) {
          const double x = a["logprobs"][i], y = b["logprobs"][i];
          EXPECT_NEAR(x, y, 1e-5 * std::max(1.0, std::fabs(x))) << task << " line " << lines;
        }
        a.erase("logprobs");
        b.erase("logprobs");
      }
      EXPECT_EQ(a, b) << task << " line " << lines;
      ++lines;
    }
    EXPECT_EQ(lines, 2) << task;
    EXPECT_FALSE(static_cast<bool>(std::getline(fb, lb))) << task << ": the split run has more samples";
  }
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace mlabench::harness
