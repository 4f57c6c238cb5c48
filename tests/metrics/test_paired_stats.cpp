// The paired statistics of `mlabench compare` (metrics/paired_stats.h) against SciPy, statsmodels and numpy:
// tests/data/compare/stats_cases.json, written by tools/make_compare_cases.py. Tolerances: McNemar's exact test
// and Benjamini-Hochberg 1e-12 relative (both are exact formulas; the binomial tail in long double), the normal
// quantile 1e-14 relative (AS 241 is accurate to ~1e-16; SciPy uses a different algorithm), percentiles 1e-15
// relative. The bootstrap is checked by its properties: the resample indices come from std::mt19937_64, which numpy
// does not offer, so its intervals cannot be reproduced there.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "metrics/paired_stats.h"
#include "tests/test_util.h"

namespace mlabench::metrics {
namespace {

const nlohmann::json& cases() {
  static const nlohmann::json doc = test::read_json(test::data_dir() + "/compare/stats_cases.json");
  return doc;
}

void expect_relative(double got, double want, double tol, const std::string& what) {
  if (want == 0) {
    EXPECT_EQ(got, 0.0) << what;
    return;
  }
  EXPECT_LE(std::fabs(got - want) / std::fabs(want), tol) << what << ": got " << got << ", want " << want;
}

TEST(PairedStats, McNemarExactMatchesStatsmodels) {
  ASSERT_GE(cases()["mcnemar"].size(), 15u);
  for (const auto& c : cases()["mcnemar"]) {
    const int64_t a = c["a_only"], b = c["b_only"];
    expect_relative(mcnemar_exact_p(a, b), c["p"].get<double>(), 1e-12, fmt::format("mcnemar({}, {})", a, b));
    EXPECT_EQ(mcnemar_exact_p(a, b), mcnemar_exact_p(b, a)) << "the two-sided test is symmetric";
  }
  test::expect_error_with([] { mcnemar_exact_p(-1, 2); }, {"negative", "HINT"});
}

TEST(PairedStats, DiscordantCountsAndBinaryCheck) {
  const std::vector<double> a{1, 1, 0, 0, 1}, b{1, 0, 1, 0, 0};
  const DiscordantCounts c = count_discordant(a, b);
  EXPECT_EQ(c.both, 1);
  EXPECT_EQ(c.a_only, 2);
  EXPECT_EQ(c.b_only, 1);
  EXPECT_EQ(c.neither, 1);
  EXPECT_TRUE(is_binary(a));
  const std::vector<double> half{1, 0.5};
  EXPECT_FALSE(is_binary(half));
  test::expect_error_with([&] { count_discordant(half, half); }, {"not 0 or 1", "HINT"});
  test::expect_error_with([&] { count_discordant(a, half); }, {"5 scores for A but 2 for B", "HINT"});
}

TEST(PairedStats, BenjaminiHochbergMatchesStatsmodels) {
  ASSERT_GE(cases()["bh"].size(), 6u);
  for (const auto& c : cases()["bh"]) {
    const std::vector<double> p = c["p"], want = c["adjusted"];
    const std::vector<double> got = benjamini_hochberg(p);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      expect_relative(got[i], want[i], 1e-12, fmt::format("bh {} [{}]", c["p"].dump(), i));
  }
  EXPECT_TRUE(benjamini_hochberg(std::vector<double>{}).empty());
  test::expect_error_with([] { benjamini_hochberg(std::vector<double>{0.1, 1.5}); }, {"1.5", "HINT"});
  test::expect_error_with([] { benjamini_hochberg(std::vector<double>{std::nan("")}); }, {"outside [0, 1]"});
}

TEST(PairedStats, NormalQuantileMatchesScipy) {
  ASSERT_GE(cases()["normal_ppf"].size(), 20u);
  for (const auto& c : cases()["normal_ppf"])
    expect_relative(normal_quantile(c["p"].get<double>()), c["x"].get<double>(), 1e-14,
                    fmt::format("ppf({})", c["p"].get<double>()));
  EXPECT_EQ(normal_quantile(0), -INFINITY);
  EXPECT_EQ(normal_quantile(1), INFINITY);
  test::expect_error_with([] { normal_quantile(1.5); }, {"outside [0, 1]", "HINT"});
}

TEST(PairedStats, PercentileMatchesNumpyLinear) {
  for (const auto& c : cases()["percentile"]) {
    const std::vector<double> qs = c["q"], want = c["percentile"];
    for (size_t i = 0; i < qs.size(); ++i) {
      std::vector<double> v = c["values"];
      const double got = percentile_linear(v, qs[i]);
      if (want[i] == 0) EXPECT_NEAR(got, 0.0, 1e-15);
      else expect_relative(got, want[i], 1e-15, fmt::format("percentile q={}", qs[i]));
    }
  }
  std::vector<double> none;
  test::expect_error_with([&] { percentile_linear(none, 0.5); }, {"no values", "HINT"});
}

// n items where A is right with probability 0.5 and B on top of A's right answers also gets `gain` of A's wrong
// ones right: the true mean difference is 0.5 * gain.
std::pair<std::vector<double>, std::vector<double>> paired_scores(size_t n, double gain, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = (rng() >> 11) * 0x1.0p-53 < 0.5 ? 1 : 0;
    b[i] = a[i] == 1 || (rng() >> 11) * 0x1.0p-53 < gain ? 1 : 0;
  }
  return {a, b};
}

TEST(PairedStats, BootstrapIsSeededCoversTheTrueDifferenceAndNarrowsWithN) {
  const auto [a, b] = paired_scores(2000, 0.2, 1);  // true difference 0.1
  const Interval one = paired_bootstrap_interval(a, b, 2000, 7), again = paired_bootstrap_interval(a, b, 2000, 7);
  EXPECT_EQ(one.low, again.low);
  EXPECT_EQ(one.high, again.high);
  const Interval other = paired_bootstrap_interval(a, b, 2000, 8);
  EXPECT_NE(one.low, other.low) << "another seed draws other resamples";
  EXPECT_LT(one.low, 0.1);
  EXPECT_GT(one.high, 0.1);
  EXPECT_GT(one.low, 0.0) << "a 10-point gain on 2000 items is clear";
  const auto [a4, b4] = paired_scores(8000, 0.2, 2);
  const Interval wide = one, narrow = paired_bootstrap_interval(a4, b4, 2000, 7);
  // The width goes as 1/sqrt(n): four times the items, about half the width.
  EXPECT_NEAR((narrow.high - narrow.low) / (wide.high - wide.low), 0.5, 0.1);
  // Identical runs: every resample's difference is 0.
  const Interval zero = paired_bootstrap_interval(a, a, 100, 1);
  EXPECT_EQ(zero.low, 0.0);
  EXPECT_EQ(zero.high, 0.0);
  test::expect_error_with([&] { paired_bootstrap_interval(a, b, 0, 1); }, {"at least one resample", "HINT"});
  test::expect_error_with([] { paired_bootstrap_interval({}, {}, 10, 1); }, {"at least one paired item"});
}

TEST(PairedStats, MinimalDetectableDifferenceFormula) {
  // Binary: (z_0.975 + z_0.8) * sqrt(discordant share / n), 4 discordant of 10.
  const std::vector<double> a{1, 1, 0, 0, 1, 1, 1, 0, 0, 1}, b{0, 1, 1, 0, 1, 0, 1, 1, 0, 1};
  const double z = normal_quantile(0.975) + normal_quantile(0.8);
  EXPECT_NEAR(z, 2.8015852181129683, 1e-14);  // scipy: norm.ppf(0.975) + norm.ppf(0.8)
  EXPECT_NEAR(minimal_detectable_difference(a, b, true), z * std::sqrt(0.4 / 10), 1e-15);
  // Other scores: the sample standard deviation of b - a (n - 1): differences {1, -1, 0, 0} -> sd sqrt(2/3).
  const std::vector<double> x{0.5, 1.5, 2, 3}, y{1.5, 0.5, 2, 3};
  EXPECT_NEAR(minimal_detectable_difference(x, y, false), z * std::sqrt(2.0 / 3.0) / 2.0, 1e-15);
  EXPECT_EQ(minimal_detectable_difference(a, a, true), 0.0);
  EXPECT_TRUE(std::isnan(minimal_detectable_difference(std::vector<double>{1}, std::vector<double>{0}, true)));
  // HumanEval's 164 problems, two models disagreeing on a quarter of them: about 11 points, the point
  // that small benchmarks only show large differences.
  std::vector<double> h1(164, 1), h2(164, 1);
  for (size_t i = 0; i < 41; ++i) h2[i] = 0;
  EXPECT_NEAR(minimal_detectable_difference(h1, h2, true), z * std::sqrt(41.0 / 164) / std::sqrt(164.0), 1e-15);
}

TEST(PairedStats, AgreementRate) {
  const std::vector<double> a{1, 0, 1, 0}, b{1, 1, 1, 0};
  EXPECT_DOUBLE_EQ(agreement_rate(a, b), 0.75);
  EXPECT_DOUBLE_EQ(agreement_rate(a, a), 1.0);
  EXPECT_TRUE(std::isnan(agreement_rate({}, {})));
}

}  // namespace
}  // namespace mlabench::metrics
