// The metric registry (metrics/registry.h): every metric a spec may name has a per-item function that gives the
// values the closed-form functions give, the names it reports, its direction and range; unknown names are refused
// with the list; the spec parser and the evaluator reach metrics only through it.
#include <gtest/gtest.h>

#include <set>

#include "metrics/metrics.h"
#include "metrics/registry.h"
#include "tasks/niah/niah.h"
#include "tests/test_util.h"

namespace mlabench::metrics {
namespace {

TEST(MetricRegistry, EveryMetricScoresAsItsFunctionAndNamesWhatItReports) {
  std::set<std::string> names;
  for (const MetricDef& d : registry()) {
    EXPECT_TRUE(names.insert(d.name).second) << d.name << " twice";
    EXPECT_TRUE(static_cast<bool>(d.score)) << d.name;
    EXPECT_TRUE(static_cast<bool>(d.reported)) << d.name;
    EXPECT_FALSE(d.stderr_kind.empty()) << d.name;
    EXPECT_EQ(find_metric(d.name), &d);
  }
  EXPECT_EQ(spec_metric_names(), "acc, acc_norm, exact_match, needle_recall, needle_score, pass_at_k");

  const std::vector<double> lp = {-3.0, -1.0, -2.0};
  const std::vector<std::string> choices = {" a", " bbbbbbbbbb", " c"};
  ItemScores s;
  metric("acc", "test").score({.logprobs = lp, .choices = choices, .gold = 1}, {}, s);
  metric("acc_norm", "test").score({.logprobs = lp, .choices = choices, .gold = 1}, {}, s);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], (std::pair<std::string, double>("acc", acc(lp, 1))));
  EXPECT_EQ(s[1], (std::pair<std::string, double>("acc_norm", acc_norm(lp, choices, 1))));

  s.clear();
  const tasks::MetricSpec fold{.name = "exact_match", .ignore_case = true};
  metric("exact_match", "test").score({.answer = "ABC", .target = "abc"}, fold, s);
  metric("needle_score", "test").score({.answer = "dolores park", .target = "Dolores Park sandwich"}, {}, s);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].second, 1.0);
  EXPECT_EQ(s[1].second, tasks::niah::score_1_10(tasks::niah::needle_recall("dolores park", "Dolores Park sandwich")));

  // pass_at_k: one value per k not above the samples, and the second verdict's when the scorer grades twice.
  s.clear();
  const tasks::MetricSpec k{.name = "pass_at_k", .k = {1, 5, 20}};
  metric("pass_at_k", "test").score({.samples = 10, .passed = 3, .check_passed = 2, .suspected_tampering = 1}, k, s);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].first, "pass@1");
  EXPECT_DOUBLE_EQ(s[1].second, pass_at_k(10, 3, 5));
  EXPECT_EQ(s[3].first, "check_pass@5");
  EXPECT_EQ(s[4], (std::pair<std::string, double>("suspected_tampering", 0.1)));
  EXPECT_EQ(metric("pass_at_k", "t").reported(k, true),
            (std::vector<std::string>{"pass@1", "pass@5", "pass@20", "check_pass@1", "check_pass@5", "check_pass@20",
                                      "suspected_tampering"}));
  EXPECT_EQ(metric("acc", "t").reported({.name = "acc"}, false), std::vector<std::string>{"acc"});
}

TEST(MetricRegistry, DirectionRangeGuardsAndUnknownNames) {
  EXPECT_TRUE(reported_higher_is_better("pass@10"));
  EXPECT_FALSE(reported_higher_is_better("suspected_tampering"));
  EXPECT_TRUE(reported_is_proportion("acc_macro"));
  EXPECT_FALSE(reported_is_proportion("needle_score"));
  EXPECT_FALSE(reported_is_proportion("loglikelihood"));
  EXPECT_EQ(metric_of_reported("check_pass@1"), find_metric("pass_at_k"));
  EXPECT_EQ(metric_of_reported("nonsense"), nullptr);
  const std::vector<Guard>& g = metric("acc", "t").guards;
  EXPECT_NE(std::find(g.begin(), g.end(), Guard::ONE_LETTER), g.end());
  EXPECT_EQ(guard_name(Guard::CHANCE), "chance");
  EXPECT_EQ(item_input_of(tasks::OutputType::GENERATE_UNTIL, true), ItemInput::CODE_VERDICTS);
  // loglikelihood is implied by loglikelihood_rolling, never named by a spec.
  EXPECT_NE(find_metric("loglikelihood"), nullptr);
  test::expect_error_with([] { metric("loglikelihood", "spec.json"); }, {"spec.json", "'loglikelihood'", "acc, "});
  test::expect_error_with([] { metric("f1", "spec.json"); }, {"spec.json", "'f1' is not one of", "HINT"});
}

}  // namespace
}  // namespace mlabench::metrics
