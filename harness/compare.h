// `mlabench compare RUN_A RUN_B [RUN_C ...]`: whether two runs really differ. Items are paired by (subtask, doc_id)
// from the runs' samples_<task>.jsonl (one line per document; a generation task's repeats are inside its line, so
// the line's metrics are the item's), and every task, MMLU-style group and subtask gets, per metric: the paired n,
// both means, the difference B - A, the agreement rate, McNemar's exact p (binary metrics), a seeded paired
// bootstrap interval, the minimal detectable difference at this n, Benjamini-Hochberg adjusted p-values and a
// verdict (metrics/paired_stats.h). Runs whose prompts or protocol differ are refused, naming the task and field.
// docs/harness.md ("mlabench compare") explains every column.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mlabench::harness {

struct CompareOptions {
  int64_t resamples = 10000;   ///< bootstrap resamples
  uint64_t seed = 1234;        ///< the bootstrap's std::mt19937_64 seed
  double alpha = 0.05;         ///< significance level of the verdicts (after BH), and of the MDD
  double power = 0.8;          ///< the MDD's power
  double confidence = 0.95;    ///< the bootstrap interval's level
  std::string generator;       ///< "mlabench 0.1.0 (commit ...)", recorded in the JSON
};

/// \brief Compares every run after the first with the first (A = runs[0], B = runs[i]). Each entry is a run folder
/// (or its results.json), optionally "LABEL=PATH". Returns the compare document (schema_version 1): options, runs,
/// and per pair its tasks with rows per (level, name, metric). Throws Error for unreadable runs, fewer than two
/// runs, no task in common, or runs whose prompts or protocol differ (naming the task, the field and both values).
nlohmann::ordered_json compare_runs(const std::vector<std::string>& runs, const CompareOptions& options);

/// \brief The console table of a compare document: per pair, the task and group rows (subtask rows as well with
/// `with_subtasks`), and notes on unpaired items.
std::string format_compare_table(const nlohmann::ordered_json& doc, bool with_subtasks);

}  // namespace mlabench::harness
