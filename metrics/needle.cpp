// The needle-in-a-haystack scores (needle_recall, score_1_10), apart from the generator (tasks/niah): the metric
// registry (metrics/registry.cpp) calls them, and the parsers the fuzz targets build (cmake/fuzz.cmake) reach the
// registry through the report reader without the generator's tokenizer and hook dependencies.
#include "metrics/needle.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"

namespace mlabench::metrics {

// Lower-cased runs of ASCII letters and digits; bytes of multi-byte UTF-8 characters count as letters, so
// non-Latin words stay whole.
std::vector<std::string> needle_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      word += static_cast<char>(std::tolower(c));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

double needle_recall(const std::string& response, const std::string& answer) {
  const auto wanted = needle_words(answer);
  MLABENCH_CHECK(!wanted.empty(),
                 "needle_recall: the answer \"{}\" has no words. HINT: set the niah generator's "
                 "\"answer\" to the needle's key phrase.",
                 answer);
  const auto got = needle_words(response);
  const std::set<std::string> present(got.begin(), got.end());
  const auto found = std::count_if(wanted.begin(), wanted.end(), [&](const auto& w) { return present.contains(w); });
  return static_cast<double>(found) / static_cast<double>(wanted.size());
}

int score_1_10(double recall) {
  if (recall >= 1.0) return 10;
  if (recall >= 0.75) return 7;
  if (recall >= 0.5) return 5;
  if (recall >= 0.25) return 3;
  return 1;
}

}  // namespace mlabench::metrics
