// Statistics of two systems scored on the same items (`mlabench compare`): agreement, McNemar's exact test, a
// paired bootstrap interval of the mean difference, the minimal detectable difference at the sample size, and
// Benjamini-Hochberg adjusted p-values. Pure functions with no harness dependency; tools/make_compare_cases.py
// writes the SciPy/statsmodels values the tests check them against (tests/data/compare/stats_cases.json).
// docs/harness.md ("mlabench compare") states the formulas.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace mlabench::metrics {

/// \brief The standard normal quantile Phi^-1(p) for 0 < p < 1 (Wichura's AS 241, about 1e-16 relative);
/// -inf at 0 and +inf at 1. Throws Error for p outside [0, 1] or NaN.
double normal_quantile(double p);

/// Discordant pairs of two binary scores on the same items.
struct DiscordantCounts {
  int64_t a_only = 0;  ///< items A got right (1) and B wrong (0)
  int64_t b_only = 0;  ///< items B got right and A wrong
  int64_t both = 0;    ///< items both got right
  int64_t neither = 0; ///< items both got wrong
};
/// \brief Counts the four cells of the paired 2x2 table. `a` and `b` hold 0 or 1, one per item, paired by index.
/// Throws Error for unequal lengths or a value other than 0 or 1.
DiscordantCounts count_discordant(std::span<const double> a, std::span<const double> b);

/// \brief McNemar's exact test, two-sided, as statsmodels' mcnemar(table, exact=True): with k = min(a_only,
/// b_only) and n = a_only + b_only, p = min(1, 2 * P(Binomial(n, 1/2) <= k)); 1 when there is no discordant pair.
/// Computed in long double (lgamma and a recurrence from the largest term) so large n keeps ~1e-13 relative accuracy.
double mcnemar_exact_p(int64_t a_only, int64_t b_only);

/// \brief Benjamini-Hochberg adjusted p-values (false discovery rate), as statsmodels' multipletests(p,
/// method='fdr_bh'): p_(i) * m / i over the ascending order, made monotone from the largest down, capped at 1, in
/// the input's order. Throws Error for a value outside [0, 1] or NaN.
std::vector<double> benjamini_hochberg(std::span<const double> p);

/// \brief The q-quantile (0 <= q <= 1) of `values` by linear interpolation between order statistics (Hyndman and
/// Fan type 7, numpy's default method "linear"). `values` is sorted in place. Throws Error for an empty input.
double percentile_linear(std::vector<double>& values, double q);

/// A two-sided interval.
struct Interval {
  double low = 0, high = 0;
};

/// \brief The paired bootstrap percentile interval of mean(b - a) at `confidence` (0.95: the 2.5th and 97.5th
/// percentiles, percentile_linear) over `resamples` resamples of the n item indices drawn with replacement.
/// Indices come from std::mt19937_64(seed) reduced by rejection sampling (not std::uniform_int_distribution, whose
/// algorithm differs between standard libraries), so one seed gives the same interval on every platform.
/// Throws Error for unequal lengths, n = 0 or resamples < 1.
Interval paired_bootstrap_interval(std::span<const double> a, std::span<const double> b, int64_t resamples,
                                   uint64_t seed, double confidence = 0.95);

/// \brief The smallest true mean difference a two-sided paired test at level `alpha` detects with probability
/// `power` at this n: (z_{1-alpha/2} + z_{power}) * sd / sqrt(n), the normal approximation. For binary scores sd
/// is sqrt(discordant share), the per-item variance of b - a when A and B are equally good (the variance McNemar's
/// test works under); for other scores it is the sample standard deviation of b - a (n - 1 denominator).
/// 0 when every difference is 0 (nothing varies, so any real difference would show); NaN for n < 2.
double minimal_detectable_difference(std::span<const double> a, std::span<const double> b, bool binary,
                                     double alpha = 0.05, double power = 0.8);

/// \brief The share of items where a[i] == b[i] (exactly: per-item scores are 0/1 or copied values); NaN for n = 0.
double agreement_rate(std::span<const double> a, std::span<const double> b);

/// \brief True when every value is exactly 0 or 1.
bool is_binary(std::span<const double> values);

}  // namespace mlabench::metrics
