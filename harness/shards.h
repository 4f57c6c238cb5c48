// Sharded runs (`mlabench run --shard K/N`, `mlabench merge`): which documents a shard takes, and the gathering of
// N shard folders into one run folder that the evaluator then aggregates as a resumed run with nothing left to
// score. The evaluator's side of it (docs/scale-out.md describes the workflow).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "harness/evaluator.h"

namespace mlabench::harness {

/// \brief "K/N" as results.json and run.json record a shard.
std::string shard_name(const Shard& s);

/// \brief A shard's documents of one subtask: positions index, index + count, ... of `docs` (document order).
template <class Doc>
std::vector<const Doc*> shard_docs(const std::vector<Doc>& docs, const Shard& s) {
  std::vector<const Doc*> out;
  for (size_t i = static_cast<size_t>(s.index); i < docs.size(); i += static_cast<size_t>(s.count)) out.push_back(&docs[i]);
  return out;
}

/// \brief For mlabench merge: checks that `o.merge_from` are the N finished shards of the run `identity` describes
/// (each folder's run.json identity equal to it but for "shard", shards 0..N-1 each once, results.json written), and
/// writes every task's samples_<task>.jsonl in o.output_dir as the union of the shards' lines (a document in two
/// shards is refused). Throws Error naming the folder and what differs.
void gather_shards(const EvalOptions& o, const nlohmann::ordered_json& identity,
                   const std::vector<std::string>& task_names);

}  // namespace mlabench::harness
