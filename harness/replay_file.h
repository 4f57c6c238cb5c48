// Replay files (`--backend replay:FILE.jsonl`): one JSON object per line holding a document's recorded outputs,
// {"task": T, "doc_id": N, "logprobs": [...]} and/or {..., "responses": ["..."]}. The reader has no engine
// dependency (the ReplayBackend in harness/backend.cpp answers from what it returns), so tests/fuzz/fuzz_replay.cpp
// fuzzes it alone.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlabench::harness {

/// One line of a replay file.
struct ReplayEntry {
  std::string task;                     ///< the subtask name (mmlu_anatomy)
  int64_t doc_id = 0;                   ///< the 0-based row
  int64_t line = 0;                     ///< 1-based line of the file, for error messages
  std::vector<double> logprobs;         ///< one per choice (or one for a rolling loglikelihood)
  std::vector<std::string> responses;   ///< one per sample of a generation task
};

using ReplayKey = std::pair<std::string, int64_t>;  ///< (task, doc_id)

/// \brief Parses one non-blank line. `path` and `line` name it in errors ("PATH:LINE: ..."). Throws Error for a
/// line that is not a JSON object with "task" (string), "doc_id" (integer) and "logprobs" (numbers) or
/// "responses" (a non-empty list of strings).
ReplayEntry parse_replay_line(std::string_view text, const std::string& path, int64_t line);

/// \brief Reads a whole replay file: every non-blank line, keyed by (task, doc_id). Throws Error for a file that
/// cannot be read, a malformed line, or a second line for one (task, doc_id).
std::map<ReplayKey, ReplayEntry> read_replay_file(const std::string& path);

}  // namespace mlabench::harness
