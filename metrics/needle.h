// The needle-in-a-haystack scores (docs/tasks.md "niah"): needle_recall and the original test's 1..10 scale,
// scored without a judge model. The generator is tasks/niah/niah.h.
#pragma once

#include <string>
#include <vector>

namespace mlabench::metrics {

/// \brief Lower-cased runs of ASCII letters and digits (bytes of multi-byte UTF-8 characters count as letters, so
/// non-Latin words stay whole): the words needle_recall compares.
std::vector<std::string> needle_words(const std::string& text);

/// \brief Fraction (0..1) of the answer's words (lower-cased runs of letters and digits) found among the
/// response's words, each answer word counted as often as it occurs; 1.0 when every word is there, 0.0 for an
/// empty response. Throws Error for an answer without words.
double needle_recall(const std::string& response, const std::string& answer);

/// \brief The original test's 1..10 judge scale from recall: 10 (all words), 7 (>= 0.75), 5 (>= 0.5),
/// 3 (>= 0.25), 1 (below).
int score_1_10(double recall);

}  // namespace mlabench::metrics
