// The run folder's files apart from results.json: run.json (the run's identity, which --resume must match), the
// samples journal samples_<task>.jsonl (one line per scored document, fsynced per batch, read back on --resume),
// the folder lock (RunFolderLock is declared in harness/evaluator.h; atomic file writes are core/file_write.h). docs/harness.md "Resume" describes the files.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "harness/backend.h"
#include "harness/evaluator.h"

namespace mlabench::harness {

/// A samples file: read back on --resume (a line cut by a kill is dropped and truncated away), appended to after
/// every batch and made durable with fsync before the next batch starts.
class SamplesFile {
 public:
  SamplesFile(std::filesystem::path path, bool resume);
  ~SamplesFile();
  SamplesFile(const SamplesFile&) = delete;
  SamplesFile& operator=(const SamplesFile&) = delete;

  const std::vector<nlohmann::ordered_json>& loaded() const { return loaded_; }
  /// \brief Appends the lines and fsyncs. Throws Error when the disk refuses them.
  void append(const std::vector<nlohmann::ordered_json>& lines);

 private:
  void load();

  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<nlohmann::ordered_json> loaded_;
};

/// \brief What makes two invocations the same run (tasks, overrides, limit, shots, gen kwargs, backend, config,
/// shard): run.json's "identity".
nlohmann::ordered_json run_identity(const EvalOptions& o, const std::vector<std::string>& names, const Backend& backend);

/// \brief Creates the run folder (checking that --output is a folder). Throws Error.
void make_run_folder(const std::filesystem::path& dir);

/// \brief With run.json present: checks that --resume was given and that its identity equals `identity`; without:
/// writes it (with the command line mlabench merge re-runs). Throws Error naming what differs.
void check_or_write_run_json(const EvalOptions& o, const nlohmann::ordered_json& identity);

}  // namespace mlabench::harness
