// Writes the replay file of gold answers (harness/oracle.h) for the tasks and options `mlabench run` will be given,
// so the browser test renders a report of real runs whose scores are known (every gold answer scores 100%).
//   write_gold_replay --tasks mmlu,niah --limit 2 --set niah.generator.context_lengths=[300,700]
//                     --tokenizer MODEL_DIR --mirror DIR --data-dir DIR --out gold.jsonl
#include <cstdio>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "harness/backend.h"
#include "harness/data/fetch.h"
#include "harness/evaluator.h"
#include "harness/oracle.h"

int main(int argc, char** argv) {
  using namespace mlabench;
  std::string task_list, tokenizer_dir, mirror, data_dir, out;
  std::optional<int64_t> limit;
  std::map<std::string, nlohmann::ordered_json> overrides;
  try {
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--tasks") task_list = value;
      else if (flag == "--limit") limit = std::stoll(value);
      else if (flag == "--set") harness::add_task_override(overrides, value);
      else if (flag == "--tokenizer") tokenizer_dir = value;
      else if (flag == "--mirror") mirror = value;
      else if (flag == "--data-dir") data_dir = value;
      else if (flag == "--out") out = value;
      else MLABENCH_FAIL("unknown flag {}. HINT: --tasks --limit --set --tokenizer --mirror --data-dir --out", flag);
    }
    MLABENCH_CHECK(!task_list.empty() && !out.empty(), "--tasks and --out are required");
    // The replay backend the run uses, so prompts (NIAH) are measured as the run measures them.
    std::unique_ptr<Tokenizer> tok;
    if (!tokenizer_dir.empty()) tok = Tokenizer::load(tokenizer_dir).value();
    const Tokenizer* tok_ptr = tok.get();
    std::fclose(std::fopen(out.c_str(), "w"));  // the backend reads its file; the oracle overwrites it below
    auto backend = harness::make_replay_backend(out, std::move(tok));
    data::FetchOptions fetch;
    fetch.mirror = mirror;
    if (!data_dir.empty()) fetch.cache_dir = data_dir;
    fetch.allow_network = false;
    std::vector<tasks::Task> loaded;
    for (const std::string& name : tasks::resolve_task_names(task_list)) {
      tasks::TaskLoadOptions o;
      o.dataset_dir = data::ensure_dataset(tasks::task_dataset(name), fetch);
      o.limit = limit;
      if (overrides.contains(name)) o.overrides = overrides[name];
      o.tokenizer = tok_ptr;
      o.encode_prompt = [&](const std::string& context, const std::string& system) {
        return backend->encode_prompt(context, system);
      };
      o.max_context = backend->max_context();
      loaded.push_back(tasks::load_task(name, o));
    }
    harness::write_oracle_replay(loaded, harness::OracleAnswer::GOLD, out);
  } catch (const Error& e) {
    std::fprintf(stderr, "write_gold_replay: %s\n", e.what());
    return 1;
  }
  return 0;
}
