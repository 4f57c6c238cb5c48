// `mlabench run --check-invariance N` (issue 21): after the batched run, N documents drawn at random (seeded) are
// sent to the backend again one at a time (batch 1) and their answers compared with what the batched run recorded
// in samples_<task>.jsonl: the largest |difference| of a log-probability, multiple-choice predictions that flip,
// and generations that diverge (where they first differ). lm-evaluation-harness users report scores that move with
// the batch size (DeepSeek-V2-Lite BoolQ 0.780 at batch 16 against 0.802 at 32); this measures it for a run.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "harness/backend.h"
#include "tasks/task.h"

namespace mlabench::harness {

/// One document of the batched run: its task, subtask and document, the generation settings it ran with, and the
/// samples line the run wrote for it.
struct InvarianceItem {
  const tasks::Task* task = nullptr;
  const tasks::Subtask* subtask = nullptr;
  const tasks::TaskDoc* doc = nullptr;
  tasks::GenerationKwargs gen;  ///< GENERATE_UNTIL: the task's kwargs with the run's --gen-kwargs applied
  nlohmann::ordered_json line;  ///< the samples line of the batched run
};

/// \brief `n` distinct indices of [0, total), drawn with a seeded generator, ascending (all when n >= total).
std::vector<size_t> pick_invariance_items(size_t total, int64_t n, uint64_t seed);

/// \brief Re-runs each item alone and compares it with its line. Returns the results.json "invariance" object:
/// items_checked, max_abs_dlogprob, argmax_flips, generations_compared, generations_diverged, per task the same,
/// and one entry per item (task, subtask, doc_id, kind, max_abs_dlogprob, argmax_flip | diverged_at_char).
nlohmann::ordered_json check_batch_invariance(Backend& backend, std::span<const InvarianceItem> items);

/// \brief One line for the printed summary: "batch invariance: N documents re-run one at a time: ...".
std::string invariance_summary(const nlohmann::ordered_json& invariance);

}  // namespace mlabench::harness
