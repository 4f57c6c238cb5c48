// DeepSeekMoE routing on hand-made router logits where greedy and group-limited choices differ, with both
// weight rules (scaled probabilities; renormalised when norm_topk_prob).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "engine/kernels/cpu/moe_router.h"

namespace mlabench {
namespace {

std::vector<float> softmax(const std::vector<float>& l) {
  double mx = *std::max_element(l.begin(), l.end()), s = 0;
  std::vector<float> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) s += std::exp(l[i] - mx);
  for (size_t i = 0; i < l.size(); ++i) p[i] = static_cast<float>(std::exp(l[i] - mx) / s);
  return p;
}

// 8 experts in 4 groups of 2. Group maxima: g0 = 3.0 (e0), g1 = 2.9 (e2), g2 = 2.5 (e5), g3 = 1.0.
// Greedy top-3 takes e0, e1 (2.95), e2. Group-limited with 2 groups keeps g0, g1 (by MAX, although
// g2's sum 2.5 + 2.4 beats g1's 2.9 + 0.0): e0, e1, e2 then e3; with 3 experts: e0, e1, e2.
const std::vector<float> kLogits = {3.0f, 2.95f, 2.9f, 0.0f, 2.4f, 2.5f, 1.0f, 0.5f};

cpu::RouterParams params(TopkMethod m, int64_t k, int64_t topk_group) {
  cpu::RouterParams p;
  p.n_experts = 8;
  p.top_k = k;
  p.method = m;
  p.n_group = 4;
  p.topk_group = topk_group;
  p.routed_scaling_factor = 16.0f;
  return p;
}

TEST(MoeRouter, GreedyTopKScaledProbabilities) {
  std::vector<int32_t> idx(3);
  std::vector<float> w(3);
  cpu::moe_route(kLogits.data(), 1, params(TopkMethod::GREEDY, 3, 1), idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 2}));
  const auto p = softmax(kLogits);
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(w[k], p[idx[k]] * 16.0f, 1e-6) << "no renormalisation, x16";
}

TEST(MoeRouter, GroupLimitedUsesGroupMaxAndMasksOtherGroups) {
  std::vector<int32_t> idx(4);
  std::vector<float> w(4);
  cpu::moe_route(kLogits.data(), 1, params(TopkMethod::GROUP_LIMITED_GREEDY, 4, 2), idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 2, 3})) << "e5 (2.5) is in a dropped group; e3 (0.0) is not";
  // Greedy would have taken e5 as the 4th expert.
  cpu::moe_route(kLogits.data(), 1, params(TopkMethod::GREEDY, 4, 1), idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 2, 5}));
  // Keeping only the best group: both of its experts, then nothing else can be chosen but zeros; configs
  // that would need them are refused at parse time (num_experts_per_tok <= topk_group * group size).
  cpu::moe_route(kLogits.data(), 1, params(TopkMethod::GROUP_LIMITED_GREEDY, 2, 1), idx.data(), w.data());
  EXPECT_EQ((std::vector<int32_t>{idx[0], idx[1]}), (std::vector<int32_t>{0, 1}));
}

TEST(MoeRouter, NormTopkProbRenormalisesAndDoesNotScale) {
  auto p = params(TopkMethod::GREEDY, 3, 1);
  p.norm_topk_prob = true;
  std::vector<int32_t> idx(3);
  std::vector<float> w(3);
  cpu::moe_route(kLogits.data(), 1, p, idx.data(), w.data());
  EXPECT_NEAR(w[0] + w[1] + w[2], 1.0f, 1e-6);
  const auto s = softmax(kLogits);
  EXPECT_NEAR(w[0], s[0] / (s[0] + s[1] + s[2]), 1e-6);
  p.top_k = 1;  // the remote code renormalises only when top_k > 1
  cpu::moe_route(kLogits.data(), 1, p, idx.data(), w.data());
  EXPECT_NEAR(w[0], s[0] * 16.0f, 1e-5);
}

TEST(MoeRouter, SeveralTokensAndTiesToLowerIndex) {
  const std::vector<float> l = {1, 1, 1, 1, 0, 0, 0, 0,  // ties: lowest indices win
                                0, 0, 0, 0, 0, 0, 0, 5};
  std::vector<int32_t> idx(4);
  std::vector<float> w(4);
  cpu::moe_route(l.data(), 2, params(TopkMethod::GREEDY, 2, 1), idx.data(), w.data());
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 1);
  EXPECT_EQ(idx[2], 7);
  EXPECT_EQ(idx[3], 0);
}

}  // namespace
}  // namespace mlabench
