#include "metrics/paired_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "core/check.h"

namespace mlabench::metrics {

double normal_quantile(double p) {
  MLABENCH_CHECK(p >= 0 && p <= 1, "normal_quantile: probability {} is outside [0, 1]. HINT: pass a probability "
                 "such as 0.975 (alpha and power options must lie strictly between 0 and 1)", p);
  if (p == 0) return -std::numeric_limits<double>::infinity();
  if (p == 1) return std::numeric_limits<double>::infinity();
  // Wichura (1988), Algorithm AS 241 (PPND16): rational approximations in three regions, ~1e-16 relative. The
  // coefficients are the published ones (also in CPython's statistics.NormalDist.inv_cdf).
  const double q = p - 0.5;
  if (std::fabs(q) <= 0.425) {
    const double r = 0.180625 - q * q;
    const double num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r +
                             6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r +
                           1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r +
                         1.3314166789178437745e+2) * r + 3.3871328727963666080e+0) * q;
    const double den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r +
                             3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r +
                           5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r +
                         4.2313330701600911252e+1) * r + 1.0);
    return num / den;
  }
  double r = q <= 0 ? p : 1.0 - p;
  r = std::sqrt(-std::log(r));
  double x;
  if (r <= 5.0) {
    r -= 1.6;
    const double num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r +
                             2.41780725177450611770e-1) * r + 1.27045825245236838258e+0) * r +
                           3.64784832476320460504e+0) * r + 5.76949722146069140550e+0) * r +
                         4.63033784615654529590e+0) * r + 1.42343711074968357734e+0);
    const double den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r +
                             1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r +
                           6.89767334985100004550e-1) * r + 1.67638483018380384940e+0) * r +
                         2.05319162663775882187e+0) * r + 1.0);
    x = num / den;
  } else {
    r -= 5.0;
    const double num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r +
                             1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r +
                           2.96560571828504891230e-1) * r + 1.78482653991729133580e+0) * r +
                         5.46378491116411436990e+0) * r + 6.65790464350110377720e+0);
    const double den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r +
                             1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r +
                           1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r +
                         5.99832206555887937690e-1) * r + 1.0);
    x = num / den;
  }
  return q < 0 ? -x : x;
}

namespace {

void check_paired(std::span<const double> a, std::span<const double> b, const char* what) {
  MLABENCH_CHECK(a.size() == b.size(), "{}: {} scores for A but {} for B. HINT: pair the items first (one score per "
                 "item in each run, same order)", what, a.size(), b.size());
}

}  // namespace

bool is_binary(std::span<const double> values) {
  return std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0 || v == 1.0; });
}

DiscordantCounts count_discordant(std::span<const double> a, std::span<const double> b) {
  check_paired(a, b, "McNemar's table");
  DiscordantCounts c;
  for (size_t i = 0; i < a.size(); ++i) {
    MLABENCH_CHECK((a[i] == 0 || a[i] == 1) && (b[i] == 0 || b[i] == 1), "McNemar's table: item {} scores {} and "
                   "{}, not 0 or 1. HINT: McNemar's test is for binary (right/wrong) metrics; use the bootstrap "
                   "interval for others", i, a[i], b[i]);
    if (a[i] == 1 && b[i] == 1) ++c.both;
    else if (a[i] == 1) ++c.a_only;
    else if (b[i] == 1) ++c.b_only;
    else ++c.neither;
  }
  return c;
}

double mcnemar_exact_p(int64_t a_only, int64_t b_only) {
  MLABENCH_CHECK(a_only >= 0 && b_only >= 0, "McNemar's test: negative counts {} and {}. HINT: pass the numbers "
                 "of discordant pairs", a_only, b_only);
  const int64_t n = a_only + b_only, k = std::min(a_only, b_only);
  if (n == 0) return 1.0;  // as statsmodels: binom.cdf(0, 0, 0.5) = 1
  // P(X <= k) for X ~ Binomial(n, 1/2) = pmf(k) * sum_{j<=k} pmf(j) / pmf(k). pmf(k) from lgamma in long double
  // (64-bit mantissa: lgamma(n + 1) near 1e5 keeps ~1e-14 absolute, so pmf(k) ~1e-14 relative); the sum by the
  // recurrence pmf(j - 1) / pmf(j) = j / (n - j + 1), whose terms shrink from 1, so nothing underflows early.
  using ld = long double;
  const ld log_pmf_k = std::lgamma(static_cast<ld>(n) + 1) - std::lgamma(static_cast<ld>(k) + 1) -
                       std::lgamma(static_cast<ld>(n - k) + 1) - static_cast<ld>(n) * std::log(static_cast<ld>(2));
  ld term = 1, sum = 1;
  for (int64_t j = k; j > 0 && term > std::numeric_limits<ld>::epsilon() * sum * 1e-3L; --j) {
    term *= static_cast<ld>(j) / static_cast<ld>(n - j + 1);
    sum += term;
  }
  const ld p = 2 * std::exp(log_pmf_k) * sum;
  return p >= 1 ? 1.0 : static_cast<double>(p);
}

std::vector<double> benjamini_hochberg(std::span<const double> p) {
  const size_t m = p.size();
  for (double v : p)
    MLABENCH_CHECK(v >= 0 && v <= 1, "Benjamini-Hochberg: p-value {} is outside [0, 1]. HINT: pass p-values only "
                   "(leave out tests that have none)", v);
  std::vector<size_t> order(m);
  std::iota(order.begin(), order.end(), size_t{0});
  // A stable sort keeps tied p-values in input order, as numpy's mergesort in statsmodels does; ties end up with
  // equal adjusted values either way, because the running minimum from the top covers them.
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] < p[y]; });
  std::vector<double> adjusted(m);
  double running = 1.0;
  for (size_t r = m; r-- > 0;) {
    const double raw = p[order[r]] / (static_cast<double>(r + 1) / static_cast<double>(m));
    running = std::min(running, raw);
    adjusted[order[r]] = running;
  }
  return adjusted;
}

double percentile_linear(std::vector<double>& values, double q) {
  MLABENCH_CHECK(!values.empty(), "percentile of no values. HINT: there must be at least one resample");
  MLABENCH_CHECK(q >= 0 && q <= 1, "percentile: quantile {} is outside [0, 1]. HINT: 0.025 for a 2.5th percentile", q);
  std::sort(values.begin(), values.end());
  // numpy's "linear": position h = (n - 1) q between the order statistics floor(h) and floor(h) + 1.
  const double h = static_cast<double>(values.size() - 1) * q;
  const auto lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= values.size()) return values.back();
  const double frac = h - static_cast<double>(lo);
  // numpy computes lerp as below (a + (b - a) t, switching to b - (b - a)(1 - t) for t >= 0.5) to stay monotone.
  const double a = values[lo], b = values[lo + 1], diff = b - a;
  return frac >= 0.5 ? b - diff * (1 - frac) : a + diff * frac;
}

Interval paired_bootstrap_interval(std::span<const double> a, std::span<const double> b, int64_t resamples,
                                   uint64_t seed, double confidence) {
  check_paired(a, b, "the paired bootstrap");
  MLABENCH_CHECK(!a.empty(), "the paired bootstrap needs at least one paired item. HINT: the runs share no item");
  MLABENCH_CHECK(resamples >= 1, "the paired bootstrap needs at least one resample, got {}. HINT: --resamples "
                 "10000", resamples);
  MLABENCH_CHECK(confidence > 0 && confidence < 1, "confidence {} is not in (0, 1). HINT: 0.95", confidence);
  const uint64_t n = a.size();
  std::vector<double> diff(n);
  for (size_t i = 0; i < n; ++i) diff[i] = b[i] - a[i];
  std::mt19937_64 rng(seed);
  // Rejection sampling: the largest multiple of n below 2^64 maps uniformly onto [0, n) by the remainder.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  auto index = [&]() {
    uint64_t x;
    do x = rng();
    while (x >= limit);
    return x % n;
  };
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double sum = 0;
    for (uint64_t i = 0; i < n; ++i) sum += diff[index()];
    m = sum / static_cast<double>(n);
  }
  const double tail = (1 - confidence) / 2;
  Interval out;
  out.low = percentile_linear(means, tail);
  out.high = percentile_linear(means, 1 - tail);
  return out;
}

double minimal_detectable_difference(std::span<const double> a, std::span<const double> b, bool binary, double alpha,
                                     double power) {
  check_paired(a, b, "the minimal detectable difference");
  MLABENCH_CHECK(alpha > 0 && alpha < 1 && power > 0 && power < 1, "alpha {} and power {} must lie in (0, 1). "
                 "HINT: --alpha 0.05 (power is 0.8)", alpha, power);
  const size_t n = a.size();
  if (n < 2) return std::nan("");
  double sd;
  if (binary) {
    const DiscordantCounts c = count_discordant(a, b);
    sd = std::sqrt(static_cast<double>(c.a_only + c.b_only) / static_cast<double>(n));
  } else {
    double mean = 0;
    for (size_t i = 0; i < n; ++i) mean += b[i] - a[i];
    mean /= static_cast<double>(n);
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += (b[i] - a[i] - mean) * (b[i] - a[i] - mean);
    sd = std::sqrt(ss / static_cast<double>(n - 1));
  }
  return (normal_quantile(1 - alpha / 2) + normal_quantile(power)) * sd / std::sqrt(static_cast<double>(n));
}

double agreement_rate(std::span<const double> a, std::span<const double> b) {
  check_paired(a, b, "the agreement rate");
  if (a.empty()) return std::nan("");
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i] ? 1 : 0;
  return static_cast<double>(same) / static_cast<double>(a.size());
}

}  // namespace mlabench::metrics
