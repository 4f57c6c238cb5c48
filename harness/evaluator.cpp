#include "harness/evaluator.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "core/check.h"
#include "harness/aggregation.h"
#include "harness/gen_kwargs.h"
#include "harness/invariance.h"
#include "harness/progress.h"
#include "harness/results_assembly.h"
#include "harness/run_folder.h"
#include "harness/scoring.h"
#include "harness/shards.h"
#include "tasks/code/scorer.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::vector<tasks::Task> load_run_tasks(Backend& backend, const EvalOptions& o) {
  std::vector<tasks::Task> loaded;
  for (const std::string& name : tasks::resolve_task_names(o.tasks, o.specs_dir)) {
    const fs::path dir = data::ensure_dataset(tasks::task_dataset(name, o.specs_dir), o.fetch);
    const auto patch = o.task_overrides.find(name);
    loaded.push_back(tasks::load_task(
        name, {.dataset_dir = dir,
               .num_fewshot = o.num_fewshot,
               .limit = o.limit,
               .specs_dir = o.specs_dir,
               .overrides = patch == o.task_overrides.end() ? json::object() : patch->second,
               .tokenizer = backend.tokenizer(),
               .encode_prompt = [&backend](const std::string& context, const std::string& system) {
                 return backend.encode_prompt(context, system);
               },
               .max_context = backend.max_context(),
               .max_gen_toks = o.gen.max_gen_toks}));
    const tasks::Task& t = loaded.back();
    if (!t.scorer.empty())  // the scorer's options, checked now rather than after the generations (scorer.h)
      tasks::code_scorer_hook(t.scorer, t.name)({}, {.options = t.scorer_options, .pool = nullptr, .spec_file = t.name});
  }
  return loaded;
}

EvalOutcome evaluate(Backend& backend, const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> names = tasks::resolve_task_names(o.tasks, o.specs_dir);
  MLABENCH_CHECK(!o.output_dir.empty(), "no output folder given. HINT: pass --output DIR");
  for (const auto& [task, _] : o.task_overrides)
    MLABENCH_CHECK(std::find(names.begin(), names.end(), task) != names.end(), "--set names task {}, which this run "
                   "does not evaluate (it runs: {}). HINT: --set TASK.KEY=VALUE with TASK among --tasks", task,
                   fmt::join(names, ", "));
  make_run_folder(o.output_dir);
  const RunFolderLock lock(o.output_dir);  // one writer per run folder, held until the results are written

  // The run's identity: --resume continues only the same run.
  const json identity = run_identity(o, names, backend);
  const bool merging = !o.merge_from.empty();
  MLABENCH_CHECK(!merging || o.shard.count == 1, "merge: the merged run is the whole run. HINT: drop --shard");
  if (merging) gather_shards(o, identity, names);  // the shards' samples into output_dir; run.json below
  const bool resume = o.resume || merging;
  check_or_write_run_json(o, identity);

  // Tasks and their data.
  const std::vector<tasks::Task> loaded = load_run_tasks(backend, o);
  int64_t total_docs = 0;
  std::vector<int64_t> task_first_doc;  // each task's first document in the run's order (--check-invariance)
  for (const tasks::Task& task : loaded) {
    task_first_doc.push_back(total_docs);
    for (const tasks::Subtask& s : task.subtasks) total_docs += static_cast<int64_t>(shard_docs(s.docs, o.shard).size());
  }
  // --check-invariance: the documents to re-run, drawn now over the run's order, their lines kept as they are met.
  const std::vector<size_t> picked = o.check_invariance > 0 && !merging
      ? pick_invariance_items(static_cast<size_t>(total_docs), o.check_invariance, o.invariance_seed)
      : std::vector<size_t>{};
  std::vector<InvarianceItem> invariance_items;

  // Model-written code runs in sandboxes, as many at once as there are workers.
  std::unique_ptr<sandbox::Pool> pool;
  for (const tasks::Task& task : loaded)
    if (!task.scorer.empty() && !pool) pool = std::make_unique<sandbox::Pool>(o.sandbox_workers);

  EvalOutcome outcome;
  Progress progress(o.progress, total_docs);
  ResultsAssembly assembly;
  json cost_now = json::object();  // provenance "cost_this_invocation": wall time is not part of the results
  for (size_t ti = 0; ti < loaded.size(); ++ti) {
    const tasks::Task& task = loaded[ti];
    SamplesFile samples(o.output_dir / fmt::format("samples_{}.jsonl", task.name), resume);
    std::vector<json> lines = samples.loaded();
    std::set<std::pair<std::string, int64_t>> done;
    for (const json& l : lines) done.insert({l.at("subtask").get<std::string>(), l.at("doc_id").get<int64_t>()});
    outcome.docs_resumed += static_cast<int64_t>(lines.size());
    progress.skip(static_cast<int64_t>(done.size()));

    const auto task_t0 = std::chrono::steady_clock::now();
    int64_t task_scored = 0, task_tokens_now = 0;  // this invocation's documents and tokens, for tokens/s
    try {
      for (const tasks::Subtask& sub : task.subtasks) {
        std::vector<const tasks::TaskDoc*> pending;  // this shard's documents not in the samples file yet
        for (const tasks::TaskDoc* d : shard_docs(sub.docs, o.shard))
          if (!done.contains({sub.name, d->doc_id})) pending.push_back(d);
        MLABENCH_CHECK(!merging || pending.empty(), "merge: document {} of {} is in no shard's samples. HINT: the "
                       "shards were run on other data or with other options; merge shards of one run",
                       pending.empty() ? 0 : pending[0]->doc_id, sub.name);
        for (size_t at = 0; at < pending.size(); at += static_cast<size_t>(o.batch_docs)) {
          const size_t n = std::min(pending.size() - at, static_cast<size_t>(o.batch_docs));
          std::vector<json> batch =
              score_documents(backend, task, sub, std::span(pending).subspan(at, n), o.gen, pool.get(), o.output_dir);
          samples.append(batch);
          for (json& l : batch) {
            task_tokens_now += l.value("context_tokens", int64_t{0}) + l.value("generated_tokens", int64_t{0});
            lines.push_back(std::move(l));
          }
          task_scored += static_cast<int64_t>(n);
          outcome.docs_scored += static_cast<int64_t>(n);
          progress.advance(task.name, static_cast<int64_t>(n));
        }
      }
    } catch (const BackendRefusal& e) {
      // The backend cannot answer this task's kind of request at all: the task gets an error, not a score; the
      // other tasks still run, and the run ends with the error (cli_run.cpp).
      assembly.add_error(task.name, e.what());
      outcome.errors.push_back(fmt::format("task {}: {}", task.name, e.what()));
      std::fprintf(stderr, "error: task %s refused: %s\n", task.name.c_str(), e.what());
      continue;
    }

    // Aggregate from the samples lines in document order, whichever invocation scored them.
    LinesBySubtask by_subtask;
    std::map<std::pair<std::string, int64_t>, const json*> index;
    for (const json& l : lines) index[{l["subtask"].get<std::string>(), l["doc_id"].get<int64_t>()}] = &l;
    auto at_doc = static_cast<size_t>(task_first_doc[ti]);
    for (const tasks::Subtask& sub : task.subtasks)
      for (const tasks::TaskDoc* d : shard_docs(sub.docs, o.shard)) {
        auto it = index.find({sub.name, d->doc_id});
        MLABENCH_ICHECK(it != index.end(), "document {} of {} was neither resumed nor scored", d->doc_id, sub.name);
        by_subtask[sub.name].push_back(it->second);
        if (std::binary_search(picked.begin(), picked.end(), at_doc++))
          invariance_items.push_back({.task = &task, .subtask = &sub, .doc = d,
                                      .gen = with_overrides(task.generation, o.gen), .line = *it->second});
      }
    assembly.add_task(task, by_subtask);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - task_t0).count();
    cost_now[task.name] = {{"docs_scored", task_scored}, {"wall_seconds", wall},
                           {"tokens", task_tokens_now},
                           {"tokens_per_second", wall > 0 && task_tokens_now > 0
                                                     ? json(static_cast<double>(task_tokens_now) / wall)
                                                     : json(nullptr)}};
  }

  json provenance = o.provenance;
  provenance["total_evaluation_time_seconds_this_invocation"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  provenance["docs_scored_this_invocation"] = outcome.docs_scored;
  provenance["docs_resumed"] = outcome.docs_resumed;
  if (const json st = backend.engine_stats(); !st.is_null()) provenance["engine_this_invocation"] = st;
  provenance["cost_this_invocation"] = cost_now;
  if (merging) {
    json from = json::array();
    for (const fs::path& d : o.merge_from) from.push_back(d.string());
    provenance["merged_from"] = from;
  }
  outcome.results = assembly.finish(o, backend, provenance);
  if (!invariance_items.empty()) outcome.results["invariance"] = check_batch_invariance(backend, invariance_items);
  outcome.warnings = assembly.warnings();
  outcome.results_path = o.output_dir / "results.json";
  write_file_atomically(outcome.results_path, outcome.results.dump(2) + "\n");
  return outcome;
}

}  // namespace mlabench::harness
