// Model arithmetic from config.json alone: parameter counts (total and active per token) and KV-cache bytes per
// token, the numbers of the DeepSeek-V2 paper's efficiency tables (engine.md §1, §3).
#pragma once

#include <cstdint>
#include <string>

#include "engine/model/config.h"
#include "mlabench/engine.h"

namespace mlabench {

struct ParamCounts {
  int64_t total = 0;              // every tensor of the checkpoint
  int64_t embedding = 0;          // model.embed_tokens (also the output head when tied)
  int64_t per_routed_expert = 0;  // gate + up + down of one routed expert
  int64_t active_per_token = 0;   // total - input embedding (untied) - idle routed experts
};

struct KvPerToken {
  int64_t elements = 0;               // summed over layers
  int64_t decompressed_elements = 0;  // MLA only: per-head K (qk_head_dim) and V (v_head_dim), as MHA would cache
};

ParamCounts count_params(const ModelConfig& c);
KvPerToken kv_per_token(const ModelConfig& c);

class Checkpoint;

/// \brief The `mlabench info` summary of `c`, read from `model_dir`. `ck`, if given, is described (files, bytes,
/// dtypes, expert layout); pass nullptr when no checkpoint is in use.
ModelSummary summarize(const ModelConfig& c, const std::string& model_dir, const Checkpoint* ck);

/// \brief What summarize_model(model_dir) returns, for a config already read from model_dir (so a caller that
/// also plans with it reads config.json once): the checkpoint and the tokenizer described where they exist.
/// Throws Error (engine/engine.cpp).
ModelSummary summarize_model_dir(const ModelConfig& c, const std::string& model_dir);

}  // namespace mlabench
