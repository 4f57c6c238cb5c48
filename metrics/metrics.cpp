#include "metrics/metrics.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "core/check.h"

namespace mlabench::metrics {

Estimate mean_with_stderr(std::span<const double> xs) {
  Estimate e;
  e.n = static_cast<int64_t>(xs.size());
  if (xs.empty()) {
    e.value = e.stderr_ = std::numeric_limits<double>::quiet_NaN();
    return e;
  }
  double sum = 0.0;
  for (double x : xs) sum += x;
  e.value = sum / static_cast<double>(xs.size());
  if (xs.size() < 2) {
    e.stderr_ = std::numeric_limits<double>::quiet_NaN();
    return e;
  }
  double ss = 0.0;
  for (double x : xs) ss += (x - e.value) * (x - e.value);
  e.stderr_ = std::sqrt(ss / static_cast<double>(xs.size() - 1)) / std::sqrt(static_cast<double>(xs.size()));
  return e;
}

Estimate aggregate_micro(std::span<const Estimate> subtasks) {
  Estimate e;
  double weighted = 0.0, pooled = 0.0;
  for (const Estimate& s : subtasks) {
    e.n += s.n;
    weighted += s.value * static_cast<double>(s.n);
    const double se = std::isnan(s.stderr_) ? 0.0 : s.stderr_;
    pooled += static_cast<double>(s.n - 1) * se * se * static_cast<double>(s.n);
  }
  const auto k = static_cast<int64_t>(subtasks.size());
  e.value = e.n > 0 ? weighted / static_cast<double>(e.n) : std::numeric_limits<double>::quiet_NaN();
  e.stderr_ = e.n > k ? std::sqrt(pooled / static_cast<double>(e.n - k) / static_cast<double>(e.n))
                      : std::numeric_limits<double>::quiet_NaN();
  return e;
}

Estimate aggregate_macro(std::span<const Estimate> subtasks) {
  Estimate e;
  double sum = 0.0, var = 0.0;
  bool all_se = true;
  for (const Estimate& s : subtasks) {
    e.n += s.n;
    sum += s.value;
    all_se = all_se && !std::isnan(s.stderr_);
    var += s.stderr_ * s.stderr_;
  }
  const auto k = static_cast<double>(subtasks.size());
  e.value = subtasks.empty() ? std::numeric_limits<double>::quiet_NaN() : sum / k;
  e.stderr_ = subtasks.empty() || !all_se ? std::numeric_limits<double>::quiet_NaN() : std::sqrt(var) / k;
  return e;
}

int64_t argmax_first(std::span<const double> v) {
  MLABENCH_CHECK(!v.empty(), "argmax of no values. HINT: a multiple-choice document needs at least one choice");
  int64_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int64_t>(i);
  return best;
}

double acc(std::span<const double> logprobs, int64_t gold) { return argmax_first(logprobs) == gold ? 1.0 : 0.0; }

namespace {

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// Compiled patterns, shared by all documents of a run (a filter runs once per generated response).
class PatternCache {
 public:
  pcre2_code* get(const std::string& pattern) {
    std::lock_guard lock(mu_);
    auto it = codes_.find(pattern);
    if (it != codes_.end()) return it->second.get();
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      MLABENCH_FAIL("regex \"{}\" does not compile at offset {}: {}. HINT: filter and metric patterns use Python re "
                    "syntax that PCRE2 accepts; fix the task spec",
                    pattern, offset, reinterpret_cast<const char*>(msg));
    }
    return codes_.emplace(pattern, std::unique_ptr<pcre2_code, void (*)(pcre2_code*)>(code, pcre2_code_free))
        .first->second.get();
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<pcre2_code, void (*)(pcre2_code*)>> codes_;
};

PatternCache& patterns() {
  static PatternCache cache;
  return cache;
}

// Calls fn(ovector, n_pairs) for every non-overlapping match, left to right; an empty match advances one code
// point, as Python does. The subject's UTF-8 is validated by the first call only: PCRE2 checks the whole subject on
// every call unless told not to, which made finding the k matches of a long response O(k x length) (200,000 commas
// took 17 s under a "," pattern). A response that reaches one of PCRE2's limits (10 million backtracking steps
// from one start position: 20 MB of commas under "(-?[0-9.,]*[0-9]+)") ends the search there: what was found so
// far stands, a warning names the pattern, and the evaluation goes on. The shipped specs' patterns match in linear
// time on such input (measured: 200 KB of commas, digits or dots in under 3 ms each).
template <class Fn>
void for_each_match(const std::string& pattern, const std::string& text, Fn&& fn) {
  pcre2_code* code = patterns().get(pattern);
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create_from_pattern(code, nullptr), pcre2_match_data_free);
  size_t at = 0;
  uint32_t options = 0;
  while (at <= text.size()) {
    const int rc =
        pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at, options, md.get(), nullptr);
    options = PCRE2_NO_UTF_CHECK;  // validated by the call above (an invalid subject fails there)
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
      static std::atomic<int> warned{0};
      if (warned.fetch_add(1) < 5)
        std::fprintf(stderr,
                     "warning: regex \"%s\" reached PCRE2's match limit at byte %zu of a %zu-byte response; the "
                     "matches after it are not looked for (a pathological response)\n",
                     pattern.c_str(), at, text.size());
      return;
    }
    MLABENCH_CHECK(rc > 0, "regex \"{}\" failed while matching (PCRE2 error {}). HINT: the response may not be "
                   "valid UTF-8; report the task and document",
                   pattern, rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    fn(ov, rc);
    if (ov[1] > ov[0]) {
      at = ov[1];
    } else {
      at = ov[1] + 1;
      while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
    }
  }
}

std::string strip(std::string_view s) {
  // Python str.strip(): whitespace at both ends (ASCII whitespace is what responses carry here).
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

double acc_norm(std::span<const double> logprobs, std::span<const std::string> choices, int64_t gold) {
  MLABENCH_CHECK(logprobs.size() == choices.size(), "acc_norm: {} loglikelihoods for {} choices. HINT: one "
                 "loglikelihood per choice, in choice order",
                 logprobs.size(), choices.size());
  std::vector<double> norm(logprobs.size());
  for (size_t i = 0; i < norm.size(); ++i)
    norm[i] = logprobs[i] / static_cast<double>(std::max<int64_t>(1, code_points(choices[i])));
  return argmax_first(norm) == gold ? 1.0 : 0.0;
}

std::vector<std::vector<std::string>> regex_findall(const std::string& pattern, const std::string& text) {
  std::vector<std::vector<std::string>> out;
  uint32_t groups = 0;
  pcre2_pattern_info(patterns().get(pattern), PCRE2_INFO_CAPTURECOUNT, &groups);
  for_each_match(pattern, text, [&](const PCRE2_SIZE* ov, int rc) {
    std::vector<std::string> m;
    if (groups == 0) {
      m.emplace_back(text.substr(ov[0], ov[1] - ov[0]));
    } else {
      for (uint32_t g = 1; g <= groups; ++g) {
        // A group that did not take part in the match is unset (PCRE2_UNSET), or beyond rc: Python gives "".
        const bool set = static_cast<int>(g) < rc && ov[2 * g] != PCRE2_UNSET;
        m.emplace_back(set ? text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]) : std::string());
      }
    }
    out.push_back(std::move(m));
  });
  return out;
}

std::string regex_replace_all(const std::string& pattern, const std::string& text, const std::string& replacement) {
  std::string out;
  size_t last = 0;
  for_each_match(pattern, text, [&](const PCRE2_SIZE* ov, int) {
    out.append(text, last, ov[0] - last);
    out += replacement;
    last = ov[1];
  });
  out.append(text, last, std::string::npos);
  return out;
}

std::string apply_filter(const tasks::FilterPipeline& pipeline, const std::string& response) {
  std::string r = response;
  for (const tasks::FilterStep& step : pipeline.steps) {
    if (step.kind == "regex") {
      const auto matches = regex_findall(step.pattern, r);
      if (matches.empty()) {
        r = step.fallback;
        continue;
      }
      const auto n = static_cast<int64_t>(matches.size());
      const int64_t at = step.group_select < 0 ? n + step.group_select : step.group_select;
      if (at < 0 || at >= n) {
        r = step.fallback;
        continue;
      }
      // One group (or none): that string. Several: the first non-empty one (lm-eval's tuple handling).
      const std::vector<std::string>& m = matches[static_cast<size_t>(at)];
      std::string pick;
      bool found = false;
      for (const std::string& g : m)
        if (!g.empty()) {
          pick = g;
          found = true;
          break;
        }
      r = found ? strip(pick) : (m.size() == 1 ? std::string() : step.fallback);
    } else if (step.kind == "take_first") {
      // One response per document in this harness: nothing to drop.
    } else if (step.kind == "strip") {
      r = strip(r);
    } else if (step.kind == "remove_whitespace") {
      // lm-eval's WhitespaceFilter: leading spaces only.
      r.erase(0, r.find_first_not_of(' ') == std::string::npos ? r.size() : r.find_first_not_of(' '));
    } else if (step.kind == "lowercase") {
      for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      MLABENCH_FAIL("filter \"{}\" has an unknown step kind \"{}\". HINT: use regex, take_first, strip, "
                    "remove_whitespace or lowercase",
                    pipeline.name, step.kind);
    }
  }
  return r;
}

double exact_match(const std::string& prediction, const std::string& gold, const tasks::MetricSpec& spec) {
  std::string p = prediction, g = gold;
  for (const std::string& re : spec.regexes_to_ignore) {
    p = regex_replace_all(re, p, "");
    g = regex_replace_all(re, g, "");
  }
  auto fold = [&](std::string& s) {
    if (spec.ignore_case)
      for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (spec.ignore_punctuation)
      std::erase_if(s, [](char c) { return std::ispunct(static_cast<unsigned char>(c)) != 0; });
  };
  fold(p);
  fold(g);
  return p == g ? 1.0 : 0.0;
}

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  MLABENCH_CHECK(n > 0 && c >= 0 && c <= n && k > 0 && k <= n, "pass@k with n={} samples, c={} correct, k={}: "
                 "needs 0 <= c <= n and 1 <= k <= n. HINT: raise generation_kwargs.repeats to at least k", n, c, k);
  if (n - c < k) return 1.0;
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - fail;
}

}  // namespace mlabench::metrics
