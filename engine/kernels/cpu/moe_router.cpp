#include "engine/kernels/cpu/moe_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace mlabench::cpu {

RouterParams RouterParams::from_config(const ModelConfig& c) {
  RouterParams p;
  p.n_experts = c.n_routed_experts;
  p.top_k = c.experts_per_token;
  p.method = c.topk_method;
  p.n_group = c.n_group;
  p.topk_group = c.topk_group;
  p.norm_topk_prob = c.norm_topk_prob;
  p.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  p.scoring = c.scoring_func;
  return p;
}

void moe_route(const float* router_logits, int64_t n_tokens, const RouterParams& p, int32_t* topk_idx,
               float* topk_weight) {
  const int64_t E = p.n_experts;
  std::vector<float> s(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* l = router_logits + t * E;
    if (p.scoring == ScoringFunc::SIGMOID) {
      for (int64_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      const float mx = *std::max_element(l, l + E);
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(l[e] - mx));
      for (int64_t e = 0; e < E; ++e) s[e] /= sum;
    }

    if (p.method == TopkMethod::GROUP_LIMITED_GREEDY) {
      const int64_t per = E / p.n_group;
      std::vector<float> g(static_cast<size_t>(p.n_group));
      for (int64_t gi = 0; gi < p.n_group; ++gi) g[gi] = *std::max_element(&s[gi * per], &s[gi * per] + per);
      std::vector<int32_t> gorder(static_cast<size_t>(p.n_group));
      std::iota(gorder.begin(), gorder.end(), 0);
      std::stable_sort(gorder.begin(), gorder.end(), [&](int32_t a, int32_t b) { return g[a] > g[b]; });
      std::vector<bool> keep(static_cast<size_t>(p.n_group), false);
      for (int64_t k = 0; k < p.topk_group; ++k) keep[gorder[k]] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[e / per]) s[e] = 0.0f;  // masked_fill(0.0), as the reference
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + p.top_k, order.end(),
                      [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    float wsum = 0.0f;
    for (int64_t k = 0; k < p.top_k; ++k) {
      topk_idx[t * p.top_k + k] = order[k];
      topk_weight[t * p.top_k + k] = s[order[k]];
      wsum += s[order[k]];
    }
    for (int64_t k = 0; k < p.top_k; ++k) {
      float& w = topk_weight[t * p.top_k + k];
      w = (p.top_k > 1 && p.norm_topk_prob) ? w / (wsum + 1e-20f) : w * p.routed_scaling_factor;
    }
  }
}

}  // namespace mlabench::cpu
