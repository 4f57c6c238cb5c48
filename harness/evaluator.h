// The evaluator: tasks -> requests -> backend -> filters -> metrics -> results.json, with every scored document
// appended to samples_<task>.jsonl as the run goes, so a run killed at any moment resumes (--resume) without
// recomputing what was recorded and ends with the results of an uninterrupted run. docs/harness.md describes
// the files. The implementation, one file per job: evaluator.cpp (the run loop), gen_kwargs.cpp, run_folder.cpp
// (run.json, the samples journal, the lock), progress.cpp, scoring.cpp (one batch through the metric registry),
// aggregation.cpp, results_assembly.cpp (results.json), summary_table.cpp (the printed table).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/file_write.h"
#include "harness/backend.h"
#include "harness/data/fetch.h"
#include "harness/task_override.h"

namespace mlabench::harness {

/// --gen-kwargs: overrides of every generation task's defaults.
struct GenerationOverrides {
  std::optional<double> temperature, top_p;
  std::optional<int64_t> max_gen_toks;
  std::optional<uint64_t> seed;
  std::optional<int64_t> repeats;  ///< samples per document (pass@k)
  std::optional<std::vector<std::string>> until;
};
/// \brief Parses "temperature=0.7,top_p=0.95,max_gen_toks=512,seed=3,repeats=20,until=\n\n|Q:" (until: '|'-separated,
/// with \n and \t escapes). Throws Error naming a bad key or value.
GenerationOverrides parse_gen_kwargs(const std::string& text);

/// One of N deterministic parts of a run (`--shard K/N`): every subtask's documents at positions K, K + N, ...
struct Shard {
  int64_t index = 0, count = 1;  ///< 0 <= index < count; count 1 = the whole run
  bool operator==(const Shard&) const = default;
};
/// \brief "K/N" (0 <= K < N <= 100000), or "env": the index and count from the job scheduler's environment, in this
/// order: SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT; JOB_COMPLETION_INDEX (a
/// Kubernetes Indexed Job) of `count_hint`; RANK of WORLD_SIZE. `count_hint` (--shards N, 0 = not given) must agree
/// with a count the environment gives. `getenv` is injectable for tests. Throws Error naming what is missing.
Shard parse_shard(const std::string& spec, int64_t count_hint,
                  const std::function<const char*(const char*)>& getenv = [](const char* n) { return std::getenv(n); });

struct EvalOptions {
  std::string tasks;                    ///< --tasks: names, globs, suites, comma-separated
  std::optional<int> num_fewshot;       ///< --num-fewshot
  std::optional<int64_t> limit;         ///< --limit: documents per subtask
  std::filesystem::path output_dir;     ///< results.json, samples_<task>.jsonl, run.json
  bool resume = false;                  ///< continue the run in output_dir
  data::FetchOptions fetch;             ///< dataset cache and mirror
  std::filesystem::path specs_dir;      ///< task specs (default: the source tree's)
  GenerationOverrides gen;              ///< --gen-kwargs
  /// --set TASK.KEY=VALUE: per task, a JSON merge patch applied to its resolved spec (e.g. niah's grid)
  std::map<std::string, nlohmann::ordered_json> task_overrides;
  int sandbox_workers = 0;              ///< parallel code executions (0: one per core)
  int64_t batch_docs = 64;              ///< documents per backend call
  bool progress = true;                 ///< a bar on a terminal, periodic lines otherwise (stderr)
  nlohmann::ordered_json config;        ///< how the run was configured (model, device, ...): results.json "config"
  nlohmann::ordered_json provenance;    ///< commit, command line, digests: results.json "provenance"
  Shard shard;                          ///< --shard: this invocation's part of the documents
  /// mlabench merge: the run folders of all N shards of this run. The evaluator checks that they are one run (the
  /// same identity but for the shard), complete, and every shard once; gathers their samples into output_dir and
  /// aggregates the whole run from them without scoring anything.
  std::vector<std::filesystem::path> merge_from;
  std::vector<std::string> command_line;  ///< recorded in run.json (mlabench merge re-runs it)
  /// --check-invariance N: after the run, N documents drawn at random (seeded by invariance_seed) are sent again one
  /// at a time and compared with the batched answers (harness/invariance.h); results.json "invariance". 0 = off.
  int64_t check_invariance = 0;
  uint64_t invariance_seed = 0;
};

struct EvalOutcome {
  nlohmann::ordered_json results;  ///< the results.json document
  std::filesystem::path results_path;
  int64_t docs_scored = 0;   ///< documents sent to the backend by this invocation
  int64_t docs_resumed = 0;  ///< documents read back from samples files (--resume)
  /// Tasks the backend refused (BackendRefusal), "task NAME: message"; also results.json "errors" {task: message}.
  /// The other tasks' results are complete; the CLI exits with an error after writing them.
  std::vector<std::string> errors;
  /// Run-health warnings (harness/guards.h), "task T: check: message"; also results.json "warnings". The CLI
  /// prints them and, under --strict, exits with an error after writing the results.
  std::vector<std::string> warnings;
};

/// \brief Runs the tasks on `backend`; writes output_dir/{run.json, samples_<task>.jsonl, results.json}.
EvalOutcome evaluate(Backend& backend, const EvalOptions& options);

/// \brief The tasks `options` names, their data fetched, loaded as `evaluate` loads them for `backend`
/// (generators measure prompts with its tokenizer and window): what a replay of gold answers must cover.
std::vector<tasks::Task> load_run_tasks(Backend& backend, const EvalOptions& options);

/// \brief The results.json key of a metric key's standard error: "acc,none" -> "acc_stderr,none".
/// Inline so the report loader's fuzz target (cmake/fuzz.cmake) links without the evaluator.
inline std::string stderr_key(const std::string& metric_key) {
  const size_t comma = metric_key.find(',');
  if (comma == std::string::npos) return metric_key + "_stderr";
  return metric_key.substr(0, comma) + "_stderr" + metric_key.substr(comma);
}

// Atomic writes are core's (core/file_write.h); named here too because the harness's callers and tests spell it
// harness::write_file_atomically.
using ::mlabench::write_file_atomically;

/// \brief An exclusive flock on DIR/.lock holding this process's PID, for as long as the object lives: a second
/// writer to the same run folder (a --resume started while the run goes on) is refused with the holder's PID.
/// Throws Error.
class RunFolderLock {
 public:
  explicit RunFolderLock(const std::filesystem::path& dir);
  ~RunFolderLock();
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

 private:
  int fd_ = -1;
};

/// \brief The console table of a results.json document (Tasks | Version | Protocol | Filter | n-shot | Metric |
/// Value | Stderr).
std::string format_results_table(const nlohmann::ordered_json& results);

}  // namespace mlabench::harness
