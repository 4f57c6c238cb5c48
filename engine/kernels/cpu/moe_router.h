// DeepSeekMoE routing (HF remote code MoEGate): softmax over float32 router logits, top-k by `greedy` or
// `group_limited_greedy` (group score = the MAX expert score in the group; keep topk_group groups; experts
// of other groups masked to 0), then weights = probabilities x routed_scaling_factor, or renormalised to sum 1
// when norm_topk_prob (and then NOT scaled: the remote code's two branches).
#pragma once

#include <cstdint>

#include "engine/model/config.h"

namespace mlabench::cpu {

struct RouterParams {
  int64_t n_experts = 0;
  int64_t top_k = 0;
  TopkMethod method = TopkMethod::GREEDY;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;

  static RouterParams from_config(const ModelConfig& c);
};

/// \brief For each of n_tokens rows of router logits [n_tokens, n_experts] (float32), writes the chosen experts
/// (descending probability; ties to the lower index) and their weights, [n_tokens, top_k] each.
void moe_route(const float* router_logits, int64_t n_tokens, const RouterParams& p, int32_t* topk_idx,
               float* topk_weight);

}  // namespace mlabench::cpu
