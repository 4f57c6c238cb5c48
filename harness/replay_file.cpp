#include "harness/replay_file.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"

namespace mlabench::harness {

ReplayEntry parse_replay_line(std::string_view text, const std::string& path, int64_t line) {
  nlohmann::json j;
  try {
    j = parse_json_bounded(text, path + ":" + std::to_string(line));
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("{}:{}: not a JSON object ({}). HINT: one object per line: {{\"task\": T, \"doc_id\": N, "
                  "\"logprobs\": [...]}} or {{..., \"responses\": [\"...\"]}}",
                  path, line, e.what());
  }
  MLABENCH_CHECK(j.is_object() && j.contains("task") && j["task"].is_string() && j.contains("doc_id") &&
                     j["doc_id"].is_number_integer() && (j.contains("logprobs") || j.contains("responses")),
                 "{}:{}: a replay line needs \"task\" (string), \"doc_id\" (integer) and \"logprobs\" or "
                 "\"responses\". HINT: task is the subtask name (mmlu_anatomy), doc_id the 0-based row",
                 path, line);
  ReplayEntry e;
  e.line = line;
  e.task = j["task"].get<std::string>();
  // A doc_id past int64 (an unsigned JSON number) would wrap negative; rows are numbered from 0.
  const bool in_range = j["doc_id"].is_number_unsigned() ? j["doc_id"].get<uint64_t>() <= uint64_t{INT64_MAX}
                                                          : j["doc_id"].get<int64_t>() >= 0;
  MLABENCH_CHECK(in_range, "{}: doc_id {} is not a document row. HINT: doc_id is the 0-based row of the document in "
                 "its split (0 .. 2^63-1)", path + ":" + std::to_string(line), j["doc_id"].dump());
  e.doc_id = j["doc_id"].get<int64_t>();
  if (j.contains("logprobs")) {
    MLABENCH_CHECK(j["logprobs"].is_array(), "{}:{}: \"logprobs\" must be an array of numbers", path, line);
    for (const auto& v : j["logprobs"]) {
      MLABENCH_CHECK(v.is_number(), "{}:{}: \"logprobs\" must be an array of numbers", path, line);
      e.logprobs.push_back(v.get<double>());
    }
  }
  if (j.contains("responses")) {
    MLABENCH_CHECK(j["responses"].is_array() && !j["responses"].empty(),
                   "{}:{}: \"responses\" must be a non-empty array of strings", path, line);
    for (const auto& v : j["responses"]) {
      MLABENCH_CHECK(v.is_string(), "{}:{}: \"responses\" must be a non-empty array of strings", path, line);
      e.responses.push_back(v.get<std::string>());
    }
  }
  return e;
}

std::map<ReplayKey, ReplayEntry> read_replay_file(const std::string& path) {
  refuse_non_regular_file(path, "replay file");
  std::ifstream in(path);
  MLABENCH_CHECK(in.good(), "cannot read the replay file {}. HINT: --backend replay:FILE.jsonl takes a JSONL file "
                 "of recorded outputs (docs/harness.md)",
                 path);
  std::map<ReplayKey, ReplayEntry> entries;
  std::string text;
  int64_t n = 0;
  while (std::getline(in, text)) {
    ++n;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    ReplayEntry e = parse_replay_line(text, path, n);
    ReplayKey key{e.task, e.doc_id};
    const auto it = entries.find(key);
    MLABENCH_CHECK(it == entries.end(), "{}:{}: a second line for task {} doc_id {} (the first is line {}). "
                   "HINT: one line per document",
                   path, n, key.first, key.second, it->second.line);
    entries.emplace(std::move(key), std::move(e));
  }
  return entries;
}

}  // namespace mlabench::harness
