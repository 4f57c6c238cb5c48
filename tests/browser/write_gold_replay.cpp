// Writes the replay file of gold answers (harness/oracle.h) for the tasks and options `mlabench run` will be given,
// so the browser test renders a report of real runs whose scores are known (every gold answer scores 100%).
//   write_gold_replay --tasks mmlu,niah --limit 2 --set niah.generator.context_lengths=[300,700]
//                     --tokenizer MODEL_DIR --mirror DIR --data-dir DIR --out gold.jsonl
#include <cstdio>
#include <string>
#include <vector>

#include "core/check.h"
#include "harness/backend.h"
#include "harness/evaluator.h"
#include "harness/oracle.h"

int main(int argc, char** argv) {
  using namespace mlabench;
  std::string tokenizer_dir, out;
  harness::EvalOptions o;  // the subset of `mlabench run`'s options that decides which documents there are
  o.fetch.allow_network = false;
  try {
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--tasks") o.tasks = value;
      else if (flag == "--limit") o.limit = std::stoll(value);
      else if (flag == "--set") harness::add_task_override(o.task_overrides, value);
      else if (flag == "--tokenizer") tokenizer_dir = value;
      else if (flag == "--mirror") o.fetch.mirror = value;
      else if (flag == "--data-dir") o.fetch.cache_dir = value;
      else if (flag == "--out") out = value;
      else MLABENCH_FAIL("unknown flag {}. HINT: --tasks --limit --set --tokenizer --mirror --data-dir --out", flag);
    }
    MLABENCH_CHECK(!o.tasks.empty() && !out.empty(), "--tasks and --out are required");
    // The replay backend the run uses, so generators (NIAH) measure prompts as the run measures them.
    std::unique_ptr<Tokenizer> tok;
    if (!tokenizer_dir.empty()) tok = Tokenizer::load(tokenizer_dir).value();
    std::fclose(std::fopen(out.c_str(), "w"));  // the backend reads its file; the oracle overwrites it below
    auto backend = harness::make_replay_backend(out, std::move(tok));
    harness::write_oracle_replay(harness::load_run_tasks(*backend, o), harness::OracleAnswer::GOLD, out);
  } catch (const Error& e) {
    std::fprintf(stderr, "write_gold_replay: %s\n", e.what());
    return 1;
  }
  return 0;
}
