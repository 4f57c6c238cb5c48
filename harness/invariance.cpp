// The batch-invariance check (harness/invariance.h).
#include "harness/invariance.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "metrics/metrics.h"

namespace mlabench::harness {

namespace {

using ojson = nlohmann::ordered_json;

// Per task (and for the whole check): what was compared and what differed.
struct Tally {
  int64_t items = 0, argmax_flips = 0, generations = 0, diverged = 0;
  double max_abs_dlogprob = 0;
  ojson json() const {
    return {{"items_checked", items}, {"max_abs_dlogprob", max_abs_dlogprob}, {"argmax_flips", argmax_flips},
            {"generations_compared", generations}, {"generations_diverged", diverged}};
  }
};

std::vector<double> recorded_logprobs(const ojson& line) {
  std::vector<double> v;
  if (line.contains("logprobs") && line["logprobs"].is_array())
    for (const auto& x : line["logprobs"]) v.push_back(x.is_number() ? x.get<double>() : std::nan(""));
  return v;
}

// The first sample's text the batched run recorded: "response", or responses[0] for tasks with repeats or a scorer.
std::string recorded_text(const ojson& line) {
  if (line.contains("response") && line["response"].is_string()) return line["response"].get<std::string>();
  if (line.contains("responses") && line["responses"].is_array() && !line["responses"].empty())
    return line["responses"][0].get<std::string>();
  return {};
}

// |a - b| with NaN on either side counted as infinite: a NaN that appears or disappears is a difference.
double abs_diff(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return 0.0;
  if (std::isnan(a) || std::isnan(b)) return INFINITY;
  if (a == b) return 0.0;  // both -inf
  return std::fabs(a - b);
}

ojson check_choices(Backend& backend, const InvarianceItem& it, Tally& t) {
  const ChoiceRequest rq{it.subtask->name, it.doc->doc_id, it.doc->context, it.doc->choices};
  const std::vector<ChoiceResult> res = backend.loglikelihood(std::span(&rq, 1));
  const std::vector<double> batched = recorded_logprobs(it.line);
  const std::vector<double>& alone = res.at(0).logprobs;
  double worst = batched.size() == alone.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < std::min(batched.size(), alone.size()); ++i) worst = std::max(worst, abs_diff(batched[i], alone[i]));
  const bool flip = batched.empty() || metrics::argmax_first(batched) != metrics::argmax_first(alone);
  t.max_abs_dlogprob = std::max(t.max_abs_dlogprob, worst);
  t.argmax_flips += flip ? 1 : 0;
  return {{"kind", "multiple_choice"}, {"max_abs_dlogprob", worst}, {"argmax_flip", flip},
          {"pred_batched", batched.empty() ? -1 : metrics::argmax_first(batched)},
          {"pred_alone", metrics::argmax_first(alone)}};
}

ojson check_generation(Backend& backend, const InvarianceItem& it, Tally& t) {
  const GenerationRequest rq{.subtask = it.subtask->name, .doc_id = it.doc->doc_id, .context = it.doc->context,
                             .gen = it.gen, .sample = 0, .system_prompt = it.doc->system_prompt};
  const std::vector<GenerationResult> res = backend.generate(std::span(&rq, 1));
  const std::string batched = recorded_text(it.line), alone = res.at(0).text;
  const auto at = static_cast<int64_t>(
      std::mismatch(batched.begin(), batched.end(), alone.begin(), alone.end()).first - batched.begin());
  const bool diverged = batched != alone;
  ++t.generations;
  t.diverged += diverged ? 1 : 0;
  ojson j = {{"kind", "generation"}, {"diverged", diverged}, {"greedy", it.gen.temperature == 0.0}};
  if (diverged) j["diverged_at_char"] = at;
  return j;
}

ojson check_rolling(Backend& backend, const InvarianceItem& it, Tally& t) {
  const RollingRequest rq{it.subtask->name, it.doc->doc_id, it.doc->context};
  const double alone = backend.loglikelihood_rolling(std::span(&rq, 1)).at(0);
  const double batched = it.line.contains("loglikelihood") && it.line["loglikelihood"].is_number()
                             ? it.line["loglikelihood"].get<double>() : std::nan("");
  const double d = abs_diff(batched, alone);
  t.max_abs_dlogprob = std::max(t.max_abs_dlogprob, d);
  return {{"kind", "loglikelihood_rolling"}, {"max_abs_dlogprob", d}};
}

// JSON has no infinity: a difference that is one (a NaN on one side only) is written as the string "inf".
ojson finite_or_inf(double v) { return std::isfinite(v) ? ojson(v) : ojson("inf"); }

}  // namespace

std::vector<size_t> pick_invariance_items(size_t total, int64_t n, uint64_t seed) {
  std::vector<size_t> all(total);
  std::iota(all.begin(), all.end(), size_t{0});
  if (n < 0 || static_cast<size_t>(n) >= total) return all;
  std::mt19937_64 rng(seed);
  // A partial Fisher-Yates shuffle: the first n positions are a uniform sample without replacement.
  for (size_t i = 0; i < static_cast<size_t>(n); ++i)
    std::swap(all[i], all[i + static_cast<size_t>(rng() % (total - i))]);
  all.resize(static_cast<size_t>(n));
  std::sort(all.begin(), all.end());
  return all;
}

nlohmann::ordered_json check_batch_invariance(Backend& backend, std::span<const InvarianceItem> items) {
  Tally all;
  std::map<std::string, Tally> per_task;
  ojson entries = ojson::array();
  for (const InvarianceItem& it : items) {
    Tally& t = per_task[it.task->name];
    Tally before = t;
    ojson e;
    switch (it.task->output_type) {
      case tasks::OutputType::MULTIPLE_CHOICE: e = check_choices(backend, it, t); break;
      case tasks::OutputType::GENERATE_UNTIL: e = check_generation(backend, it, t); break;
      case tasks::OutputType::LOGLIKELIHOOD_ROLLING: e = check_rolling(backend, it, t); break;
    }
    ++t.items;
    all.items += 1;
    all.argmax_flips += t.argmax_flips - before.argmax_flips;
    all.generations += t.generations - before.generations;
    all.diverged += t.diverged - before.diverged;
    all.max_abs_dlogprob = std::max(all.max_abs_dlogprob, t.max_abs_dlogprob);
    if (e.contains("max_abs_dlogprob")) e["max_abs_dlogprob"] = finite_or_inf(e["max_abs_dlogprob"].get<double>());
    ojson head = {{"task", it.task->name}, {"subtask", it.subtask->name}, {"doc_id", it.doc->doc_id}};
    head.update(e);
    entries.push_back(std::move(head));
  }
  ojson j = all.json();
  j["max_abs_dlogprob"] = finite_or_inf(all.max_abs_dlogprob);
  j["measures"] = "each document re-sent to the backend alone (batch 1) after the batched run and compared with "
                  "what the batched run recorded: the largest |difference| of a log-probability, predictions that "
                  "changed (argmax flips), generations whose first sample's text differs (and at which character)";
  ojson tasks = ojson::object();
  for (const auto& [name, t] : per_task) {
    tasks[name] = t.json();
    tasks[name]["max_abs_dlogprob"] = finite_or_inf(t.max_abs_dlogprob);
  }
  j["tasks"] = tasks;
  j["items"] = entries;
  return j;
}

std::string invariance_summary(const nlohmann::ordered_json& inv) {
  const ojson& d = inv["max_abs_dlogprob"];
  return fmt::format("batch invariance: {} documents re-run one at a time: max |d log-prob| {}, {} argmax flips, {} of "
                     "{} generations diverged",
                     inv["items_checked"].get<int64_t>(), d.is_number() ? fmt::format("{:.3g}", d.get<double>()) : "inf",
                     inv["argmax_flips"].get<int64_t>(), inv["generations_diverged"].get<int64_t>(),
                     inv["generations_compared"].get<int64_t>());
}

}  // namespace mlabench::harness
