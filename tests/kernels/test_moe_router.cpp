// DeepSeekMoE routing on hand-made router logits where greedy and group-limited choices differ, with both
// weight rules (scaled probabilities; renormalised when norm_topk_prob), and sigmoid scoring on logits whose
// sigmoids are exact quarters and tenths.
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

// Logits ln(1), ln(3), ln(1/3), ln(9), ln(1/9): sigmoid(ln r) = r / (1 + r) = 0.5, 0.75, 0.25, 0.9, 0.1. Softmax
// would give 9/14.44.. = 0.623 for e3, so every weight below tells the scoring apart.
const std::vector<float> kSigmoidLogits = {0.0f, std::log(3.0f), -std::log(3.0f), std::log(9.0f), -std::log(9.0f)};

cpu::RouterParams sigmoid_params(int64_t k, bool norm) {
  cpu::RouterParams p;
  p.n_experts = 5;
  p.top_k = k;
  p.scoring = ScoringFunc::SIGMOID;
  p.norm_topk_prob = norm;
  p.routed_scaling_factor = 2.0f;
  return p;
}

TEST(MoeRouter, SigmoidScoresEachLogitOnItsOwn) {
  std::vector<int32_t> idx(3);
  std::vector<float> w(3);
  cpu::moe_route(kSigmoidLogits.data(), 1, sigmoid_params(3, false), idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{3, 1, 0}));
  EXPECT_NEAR(w[0], 2.0f * 0.9f, 1e-6) << "sigmoid(ln 9) = 0.9, x2";
  EXPECT_NEAR(w[1], 2.0f * 0.75f, 1e-6);
  EXPECT_NEAR(w[2], 2.0f * 0.5f, 1e-6);

  cpu::moe_route(kSigmoidLogits.data(), 1, sigmoid_params(3, true), idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{3, 1, 0}));
  EXPECT_NEAR(w[0], 0.9f / 2.15f, 1e-6) << "renormalised over the top 3 (sum 2.15), not scaled";
  EXPECT_NEAR(w[1], 0.75f / 2.15f, 1e-6);
  EXPECT_NEAR(w[2], 0.5f / 2.15f, 1e-6);

  cpu::RouterParams p = sigmoid_params(1, true);  // top_k 1: no renormalisation, scaled
  cpu::moe_route(kSigmoidLogits.data(), 1, p, idx.data(), w.data());
  EXPECT_EQ(idx[0], 3);
  EXPECT_NEAR(w[0], 1.8f, 1e-6);
}

TEST(MoeRouter, SigmoidGroupLimitedUsesGroupMax) {
  // 6 experts in 3 groups of 2: group maxima sigmoid(ln 9) = 0.9 (g1), 0.75 (g0), 0.5 (g2). Keeping 2 groups drops
  // g2, whose e5 (0.5) greedy takes third; e3 (0.1, in g1) comes in instead.
  const std::vector<float> l = {std::log(3.0f),  -std::log(3.0f), std::log(9.0f),
                                -std::log(9.0f), -std::log(9.0f), 0.0f};
  cpu::RouterParams p = sigmoid_params(4, false);
  p.n_experts = 6;
  p.method = TopkMethod::GROUP_LIMITED_GREEDY;
  p.n_group = 3;
  p.topk_group = 2;
  std::vector<int32_t> idx(4);
  std::vector<float> w(4);
  cpu::moe_route(l.data(), 1, p, idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{2, 0, 1, 3}));
  EXPECT_NEAR(w[2], 2.0f * 0.25f, 1e-6);
  EXPECT_NEAR(w[3], 2.0f * 0.1f, 1e-6);
  p.method = TopkMethod::GREEDY;
  cpu::moe_route(l.data(), 1, p, idx.data(), w.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{2, 0, 5, 1}));
}

TEST(MoeRouter, FromConfigCarriesTheScoringFunction) {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.experts_per_token = 2;
  EXPECT_EQ(cpu::RouterParams::from_config(c).scoring, ScoringFunc::SOFTMAX);
  c.scoring_func = ScoringFunc::SIGMOID;
  EXPECT_EQ(cpu::RouterParams::from_config(c).scoring, ScoringFunc::SIGMOID);
}

}  // namespace
}  // namespace mlabench
