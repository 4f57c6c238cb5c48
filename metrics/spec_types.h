// The parts of a task spec the metrics read: the task's output type, the filter pipelines applied to generated
// answers and the metric options (lm-evaluation-harness's output_type, filter_list and metric_list). They are
// fields of a task (tasks/task.h) and keep the tasks namespace, but live here, in the metrics library below tasks,
// so that metrics/ can score an item without depending on the task loader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlabench::tasks {

enum class OutputType {
  MULTIPLE_CHOICE,        ///< one loglikelihood request per choice: log P(choice | context)
  GENERATE_UNTIL,         ///< one generation per doc, stopped at `until` strings or max_gen_toks
  LOGLIKELIHOOD_ROLLING,  ///< the whole text's loglikelihood (perplexity-style tasks)
};

/// One step of a filter pipeline applied to a generated response (lm-evaluation-harness's filter_list).
struct FilterStep {
  std::string kind;                    ///< "regex" | "take_first" | "strip" | "remove_whitespace" | "lowercase"
  std::string pattern{};               ///< regex: PCRE2 pattern
  int group_select = 0;                ///< regex: which match (0 first, -1 last)
  std::string fallback = "[invalid]";  ///< regex: the answer when nothing matches
};

struct FilterPipeline {
  std::string name;  ///< e.g. "strict-match", "flexible-extract", "none"
  std::vector<FilterStep> steps{};
};

/// How a metric is computed (exact_match options as in lm-evaluation-harness).
struct MetricSpec {
  /// "acc" | "acc_norm" (multiple choice); "exact_match" | "needle_recall" | "needle_score" (generation);
  /// "pass_at_k" (a task with a code scorer)
  std::string name;
  std::vector<int64_t> k{};  ///< pass_at_k: the k reported (only those <= repeats)
  bool ignore_case = false;
  bool ignore_punctuation = false;
  std::vector<std::string> regexes_to_ignore{};  ///< removed from prediction and gold before comparing
};

}  // namespace mlabench::tasks
