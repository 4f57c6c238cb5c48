// LiveCodeBench (code generation scenario, livecodebench/code_generation_lite): problems read from its JSONL
// shards by release and date window, rendered in its chat or base prompt style, and graded as its
// testing_util.py grades them, every test in its own sandbox run (sandbox/). docs/tasks.md
// "livecodebench" lists the options and where we differ from the original.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tasks/code/scorer.h"
#include "tasks/hooks.h"

namespace mlabench::tasks::livecodebench {

/// One test case as the problem stores it.
struct TestCase {
  std::string input, output;
  std::string testtype;  ///< "stdin" | "functional"
};

/// \brief Decodes private_test_cases: a JSON string holding a list of test cases, or, when that is not JSON,
/// base64(zlib(pickle(str))) where the pickle holds exactly one str (protocol 0..5: PROTO, FRAME,
/// (SHORT_)BIN(UNI)CODE(8), MEMOIZE/PUT, STOP). Any other pickle opcode is refused with an Error naming it; the
/// pickle is never executed.
std::vector<TestCase> decode_test_cases(const std::string& field, const std::string& where);

/// \brief The text between the last two lines containing ``` (LiveCodeBench's extract_code); "" if fewer than two.
std::string extract_code(const std::string& model_output);

/// \brief LiveCodeBench's stdin comparison: both outputs stripped and split into lines, line counts equal, each
/// line equal as a string or, failing that, token by token as decimals.
bool stdin_output_matches(const std::string& produced, const std::string& expected);

/// \brief The "livecodebench" generator hook: one Subtask; each TaskDoc: context = the prompt for
/// config "prompt_style" ("chat" | "base"); system_prompt (chat); doc = {question_id, question_title, platform,
/// difficulty, contest_id, contest_date, starter_code, fn_name}; payload = {tests: [{input, output, testtype}],
/// fn_name, starter_code, prompt_style}. Config: release ("release_v1".."release_v6", "release_latest"), start_date and
/// end_date (inclusive, "YYYY-MM-DD"; empty = open).
std::vector<Subtask> generate(const GeneratorContext& context);

/// \brief The "livecodebench" scorer hook: extracts the code (chat style: the last fenced block; base style: the
/// raw output), runs the tests in order, stops at the first failure. Options: timeout_s (6), prompt_style (default:
/// the document's payload.prompt_style).
std::vector<CodeVerdict> score(std::span<const CodeSample> samples, const CodeScorerContext& context);

}  // namespace mlabench::tasks::livecodebench
