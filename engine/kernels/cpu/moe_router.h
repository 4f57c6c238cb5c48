// DeepSeekMoE routing (HF remote code MoEGate): per-expert scores of float32 router logits (softmax over the
// experts, or each logit's sigmoid), top-k by `greedy` or `group_limited_greedy` (group score = the MAX expert
// score in the group; keep topk_group groups; experts of other groups masked to 0), then weights = scores x
// routed_scaling_factor, or renormalised to sum 1 when norm_topk_prob (and then NOT scaled: the remote code's
// two branches). Only the scores depend on the scoring function.
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
  ScoringFunc scoring = ScoringFunc::SOFTMAX;  // SIGMOID: score_e = 1 / (1 + exp(-logit_e)) in float32

  static RouterParams from_config(const ModelConfig& c);
};

/// \brief For each of n_tokens rows of router logits [n_tokens, n_experts] (float32), writes the chosen experts
/// (descending score; ties to the lower index) and their weights, [n_tokens, top_k] each.
void moe_route(const float* router_logits, int64_t n_tokens, const RouterParams& p, int32_t* topk_idx,
               float* topk_weight);

}  // namespace mlabench::cpu
