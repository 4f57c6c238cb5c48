#include "harness/scoring.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/check.h"
#include "harness/gen_kwargs.h"
#include "metrics/metrics.h"
#include "metrics/registry.h"
#include "tasks/code/scorer.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

// Every metric of `task` on one document through the registry (metrics/registry.h): values keyed "name,filter".
// `implied` is the metric of an output type that names none in its spec (loglikelihood_rolling).
void score_item(const tasks::Task& task, const metrics::Item& item, const std::string& filter, json& out,
                const char* implied = nullptr) {
  const metrics::ItemInput input = metrics::item_input_of(task.output_type, !task.scorer.empty());
  metrics::ItemScores scores;
  auto one = [&](const metrics::MetricDef& def, const tasks::MetricSpec& spec) {
    MLABENCH_CHECK(def.input == input, "task {}: metric \"{}\" does not apply to this task's output ({}). HINT: "
                   "multiple choice takes acc or acc_norm; generate_until takes exact_match, needle_recall or "
                   "needle_score, and pass_at_k with a code scorer (metrics/registry.cpp)",
                   task.name, def.name, task.output_type == tasks::OutputType::MULTIPLE_CHOICE ? "multiple choice"
                                                                                             : "generated answers");
    scores.clear();
    def.score(item, spec, scores);
    for (const auto& [name, value] : scores) out[metric_key(name, filter)] = value;
  };
  if (implied != nullptr) one(*metrics::find_metric(implied), tasks::MetricSpec{.name = implied});
  for (const tasks::MetricSpec& spec : task.metrics) one(metrics::metric(spec.name, task.name), spec);
}

// A document's code verdicts as the pass_at_k metric reads them (metrics/registry.cpp).
void count_verdicts(std::span<const tasks::CodeVerdict> verdicts, metrics::Item& item) {
  item.samples = static_cast<int64_t>(verdicts.size());
  for (const tasks::CodeVerdict& v : verdicts) item.passed += v.passed ? 1 : 0;
  if (!verdicts.front().check_passed) return;
  item.check_passed = 0;
  for (const tasks::CodeVerdict& v : verdicts) {
    *item.check_passed += v.check_passed.value_or(false) ? 1 : 0;
    item.suspected_tampering += v.suspected_tampering ? 1 : 0;
  }
}

// A document's code verdicts as its samples line records them.
json verdicts_json(std::span<const tasks::CodeVerdict> verdicts) {
  json v = json::array();
  for (const tasks::CodeVerdict& verdict : verdicts) {
    json one = {{"passed", verdict.passed}, {"result", verdict.result}};
    if (verdict.check_passed) {
      one["check_passed"] = *verdict.check_passed;
      one["check_result"] = verdict.check_result;
      one["suspected_tampering"] = verdict.suspected_tampering;
    }
    if (!verdict.details.empty()) one["details"] = verdict.details;
    v.push_back(std::move(one));
  }
  return v;
}

// A generated document's token counts, cut context and stop reasons, in the key order samples lines always had.
void add_generation_counts(std::span<const GenerationResult> mine, json& line) {
  int64_t context_tokens = 0, generated = 0, truncated = 0;
  for (const GenerationResult& r : mine) {
    context_tokens = std::max(context_tokens, r.context_tokens);
    generated += r.generated_tokens;
    truncated = std::max(truncated, r.truncated_tokens);
  }
  if (context_tokens > 0) line["context_tokens"] = context_tokens;
  if (generated > 0) line["generated_tokens"] = generated;
  // One per sample, for the stop-reason histogram and the max-tokens guard (harness/guards.h); absent where the
  // backend does not say (a replay), so replayed samples lines stay as they were.
  if (std::any_of(mine.begin(), mine.end(), [](const GenerationResult& r) { return !r.finish_reason.empty(); })) {
    json reasons = json::array();
    for (const GenerationResult& r : mine) reasons.push_back(r.finish_reason);
    line["finish_reasons"] = std::move(reasons);
  }
  if (truncated > 0) line["truncated_tokens"] = truncated;
}

}  // namespace

std::vector<json> score_documents(Backend& backend, const tasks::Task& task, const tasks::Subtask& sub,
                                  std::span<const tasks::TaskDoc* const> docs, const GenerationOverrides& overrides,
                                  sandbox::Pool* pool, const fs::path& run_dir) {
  std::vector<json> lines;
  auto base = [&](const tasks::TaskDoc& d) {
    return json{{"subtask", sub.name}, {"doc_id", d.doc_id}, {"doc", d.doc}, {"context", d.context}};
  };
  switch (task.output_type) {
    case tasks::OutputType::MULTIPLE_CHOICE: {
      std::vector<ChoiceRequest> rq;
      for (const tasks::TaskDoc* d : docs) rq.push_back({sub.name, d->doc_id, d->context, d->choices});
      const std::vector<ChoiceResult> res = backend.loglikelihood(rq);
      for (size_t i = 0; i < docs.size(); ++i) {
        const tasks::TaskDoc& d = *docs[i];
        json m = json::object();
        const metrics::Item item{.logprobs = res[i].logprobs, .choices = d.choices, .gold = d.gold};
        score_item(task, item, "none", m);
        json line = base(d);
        line["choices"] = d.choices;
        line["gold"] = d.gold;
        line["target"] = d.choices.at(static_cast<size_t>(d.gold));
        line["logprobs"] = res[i].logprobs;
        line["is_greedy"] = res[i].is_greedy;
        line["pred"] = metrics::argmax_first(res[i].logprobs);
        if (res[i].context_tokens > 0) line["context_tokens"] = res[i].context_tokens;
        if (res[i].truncated_tokens > 0) line["truncated_tokens"] = res[i].truncated_tokens;
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
    case tasks::OutputType::GENERATE_UNTIL: {
      const tasks::GenerationKwargs g = with_overrides(task.generation, overrides);
      const auto repeats = static_cast<size_t>(g.repeats);
      std::vector<GenerationRequest> rq;
      for (const tasks::TaskDoc* d : docs)
        for (size_t k = 0; k < repeats; ++k)
          rq.push_back({.subtask = sub.name, .doc_id = d->doc_id, .context = d->context, .gen = g,
                        .sample = static_cast<int64_t>(k), .system_prompt = d->system_prompt});
      const std::vector<GenerationResult> res = backend.generate(rq);
      // Code tasks: every completion of the batch graded at once, so the sandbox pool runs them in parallel.
      std::vector<tasks::CodeVerdict> verdicts;
      if (!task.scorer.empty()) {
        std::vector<tasks::CodeSample> code;
        for (size_t i = 0; i < rq.size(); ++i)
          code.push_back({.doc = docs[i / repeats], .sample = rq[i].sample,
                          .completion = metrics::apply_filter(task.filters.front(), res[i].text)});
        MLABENCH_CHECK(pool != nullptr, "task {} runs code but the evaluator has no sandbox pool", task.name);
        verdicts = tasks::code_scorer_hook(task.scorer, task.name)(
            code, {.options = task.scorer_options, .pool = pool, .spec_file = task.name, .cache_dir = run_dir});
        MLABENCH_ICHECK(verdicts.size() == code.size(), "scorer {} returned {} verdicts for {} completions",
                        task.scorer, verdicts.size(), code.size());
      }
      for (size_t i = 0; i < docs.size(); ++i) {
        const tasks::TaskDoc& d = *docs[i];
        const std::span<const GenerationResult> mine(res.data() + i * repeats, repeats);
        json filtered = json::object(), m = json::object();
        for (const tasks::FilterPipeline& f : task.filters) {
          const std::string answer = metrics::apply_filter(f, mine[0].text);
          filtered[f.name] = answer;
          metrics::Item item{.answer = answer, .target = d.target};
          if (!task.scorer.empty()) count_verdicts(std::span(verdicts).subspan(i * repeats, repeats), item);
          score_item(task, item, f.name, m);
        }
        json line = base(d);
        line["target"] = d.target;
        if (repeats == 1 && task.scorer.empty()) {
          line["response"] = mine[0].text;
          line["filtered"] = filtered;
        } else {
          json texts = json::array();
          for (const GenerationResult& r : mine) texts.push_back(r.text);
          line["responses"] = texts;
        }
        if (!task.scorer.empty()) line["verdicts"] = verdicts_json(std::span(verdicts).subspan(i * repeats, repeats));
        add_generation_counts(mine, line);
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
    case tasks::OutputType::LOGLIKELIHOOD_ROLLING: {
      std::vector<RollingRequest> rq;
      for (const tasks::TaskDoc* d : docs) rq.push_back({sub.name, d->doc_id, d->context});
      const std::vector<double> res = backend.loglikelihood_rolling(rq);
      for (size_t i = 0; i < docs.size(); ++i) {
        json line = base(*docs[i]);
        line["loglikelihood"] = res[i];
        json m = json::object();
        score_item(task, {.loglikelihood = res[i]}, "none", m, "loglikelihood");
        line["metrics"] = m;
        lines.push_back(std::move(line));
      }
      break;
    }
  }
  return lines;
}

}  // namespace mlabench::harness
