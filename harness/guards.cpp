#include "harness/guards.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "metrics/registry.h"

namespace mlabench::harness {

using json = nlohmann::ordered_json;

namespace {

// The guards of a task: the union of its metrics' (loglikelihood for a rolling task, which names none).
std::set<metrics::Guard> guards_of(const tasks::Task& task) {
  std::set<metrics::Guard> out;
  auto add = [&](const metrics::MetricDef* d) {
    if (d != nullptr) out.insert(d->guards.begin(), d->guards.end());
  };
  for (const tasks::MetricSpec& m : task.metrics) add(metrics::find_metric(m.name));
  if (task.output_type == tasks::OutputType::LOGLIKELIHOOD_ROLLING) add(metrics::find_metric("loglikelihood"));
  return out;
}

struct Recorder {
  const std::string& task;
  json& checks;
  std::vector<std::string>& warnings;
  void operator()(const std::string& check, bool tripped, double value, double limit, const std::string& message) {
    checks[check] = {{"status", tripped ? "warning" : "ok"}, {"value", value}, {"limit", limit}};
    if (!tripped) return;
    checks[check]["message"] = message;
    warnings.push_back(fmt::format("task {}: {}: {}", task, check, message));
  }
};

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
}

// A finite number: NaN and infinities are written to samples lines as null by the JSON library.
bool finite_number(const json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

void choice_guards(const std::vector<const json*>& lines, const std::set<metrics::Guard>& guards,
                   const GuardLimits& limits, Recorder& record) {
  const auto n = static_cast<int64_t>(lines.size());
  if (n < limits.min_choice_docs) {
    for (const metrics::Guard g : {metrics::Guard::ONE_LETTER, metrics::Guard::CHANCE})
      if (guards.contains(g))
        record.checks[std::string(metrics::guard_name(g))] = {
            {"status", "too_few"}, {"documents", n}, {"minimum", limits.min_choice_docs}};
    return;
  }
  if (guards.contains(metrics::Guard::ONE_LETTER)) {
    std::map<int64_t, int64_t> preds;
    for (const json* l : lines)
      if (l->contains("pred")) ++preds[(*l)["pred"].get<int64_t>()];
    int64_t top = -1, top_n = 0;
    for (const auto& [p, c] : preds)
      if (c > top_n) top = p, top_n = c;
    const double share = static_cast<double>(top_n) / static_cast<double>(n);
    const std::string letter = top >= 0 && top < 26 ? std::string(1, static_cast<char>('A' + top)) : "?";
    record("one_letter", share >= limits.one_letter_share, share, limits.one_letter_share,
           fmt::format("choice {} (index {}) is the prediction for {:.1f}% of {} documents: the scores say nothing "
                       "about the model. HINT: check the log-probabilities the backend returns (a constant or "
                       "missing score picks the first choice) and the prompt format",
                       letter, top, 100.0 * share, n));
  }
  if (guards.contains(metrics::Guard::CHANCE)) {
    // Chance: the mean of 1/k over documents with k choices; its noise the binomial stderr of a mean of n
    // Bernoulli(1/k_i) outcomes, sqrt(sum p_i (1 - p_i)) / n.
    double chance = 0.0, var = 0.0;
    for (const json* l : lines) {
      const double p = 1.0 / static_cast<double>(std::max<size_t>(1, (*l)["choices"].size()));
      chance += p;
      var += p * (1.0 - p);
    }
    chance /= static_cast<double>(n);
    const double se = std::sqrt(var) / static_cast<double>(n);
    for (const char* key : {"acc,none", "acc_norm,none"}) {
      double sum = 0.0;
      int64_t have = 0;
      for (const json* l : lines)
        if ((*l)["metrics"].contains(key)) sum += (*l)["metrics"][key].get<double>(), ++have;
      if (have == 0) continue;
      const double acc = sum / static_cast<double>(have);
      const double sigmas = se > 0 ? std::abs(acc - chance) / se : INFINITY;
      const std::string check = std::string("chance_") + std::string(key).substr(0, std::string(key).find(','));
      record(check, sigmas < limits.chance_sigmas, acc, chance,
             fmt::format("{} {:.4f} is within {:.1f} binomial stderrs ({:.4f}) of chance {:.4f} over {} documents: "
                         "the model does no better than guessing. HINT: check the prompt format, the model and "
                         "the backend's log-probabilities",
                         key, acc, limits.chance_sigmas, se, chance, n));
      record.checks[check]["chance_stderr"] = se;
    }
  }
}

void logprob_guard(const std::vector<const json*>& lines, bool rolling, Recorder& record) {
  int64_t bad = 0;
  for (const json* l : lines) {
    bool ok = true;
    if (rolling) {
      ok = finite_number(l->value("loglikelihood", json()));
    } else {
      const json& lp = l->value("logprobs", json());
      ok = lp.is_array() && lp.size() == l->value("choices", json::array()).size() &&
           std::all_of(lp.begin(), lp.end(), finite_number);
    }
  bad += ok ? 0 : 1;
  }
  const double share = lines.empty() ? 0.0 : static_cast<double>(bad) / static_cast<double>(lines.size());
  record("logprobs", bad > 0, share, 0.0,
         fmt::format("{} of {} documents have missing or NaN log-probabilities. HINT: the backend did not score the "
                     "choices (an endpoint without prompt logprobs, or a model producing NaN); the scores are not "
                     "comparable",
                     bad, lines.size()));
}

}  // namespace

json task_health(const tasks::Task& task, const LinesBySubtask& by_subtask, std::vector<std::string>& warnings,
                 const GuardLimits& limits) {
  std::vector<const json*> lines;
  for (const auto& [_, ls] : by_subtask) lines.insert(lines.end(), ls.begin(), ls.end());
  const std::set<metrics::Guard> guards = guards_of(task);
  json health = {{"checks", json::object()}};
  Recorder record{task.name, health["checks"], warnings};
  const auto n = static_cast<double>(std::max<size_t>(1, lines.size()));

  if (task.output_type == tasks::OutputType::MULTIPLE_CHOICE) choice_guards(lines, guards, limits, record);
  if (guards.contains(metrics::Guard::LOGPROBS))
    logprob_guard(lines, task.output_type == tasks::OutputType::LOGLIKELIHOOD_ROLLING, record);
  if (guards.contains(metrics::Guard::TRUNCATION)) {
    int64_t cut = 0;
    for (const json* l : lines) cut += l->value("truncated_tokens", int64_t{0}) > 0 ? 1 : 0;
    const double share = static_cast<double>(cut) / n;
    record("truncation", share > limits.truncated_share, share, limits.truncated_share,
           fmt::format("{} of {} documents ({:.1f}%) lost context tokens to fit the model's window. HINT: raise "
                       "--max-length, lower --num-fewshot or max_gen_toks",
                       cut, lines.size(), 100.0 * share));
  }
  if (guards.contains(metrics::Guard::GENERATION)) {
    int64_t samples = 0, empty = 0, length = 0;
    json reasons = json::object();
    for (const json* l : lines) {
      std::vector<std::string> texts;
      if (l->contains("response")) texts.push_back((*l)["response"].get<std::string>());
      if (l->contains("responses"))
        for (const json& t : (*l)["responses"]) texts.push_back(t.get<std::string>());
      const json& fr = l->value("finish_reasons", json::array());
      for (size_t i = 0; i < texts.size(); ++i) {
        ++samples;
        empty += blank(texts[i]) ? 1 : 0;
        const std::string reason = i < fr.size() && fr[i].is_string() ? fr[i].get<std::string>() : "unknown";
        length += reason == "length" ? 1 : 0;
        reasons[reason] = reasons.value(reason, int64_t{0}) + 1;
      }
    }
    const double ns = static_cast<double>(std::max<int64_t>(1, samples));
    const double empty_share = static_cast<double>(empty) / ns, length_share = static_cast<double>(length) / ns;
    record("empty_generations", empty_share > limits.empty_share, empty_share, limits.empty_share,
           fmt::format("{} of {} generations ({:.1f}%) are empty. HINT: check the stop strings (until), the chat "
                       "template and the endpoint",
                       empty, samples, 100.0 * empty_share));
    record("max_tokens", length_share > limits.max_tokens_share, length_share, limits.max_tokens_share,
           fmt::format("{} of {} generations ({:.1f}%) stopped at max tokens. HINT: raise max_gen_toks "
                       "(--gen-kwargs), or check that the stop strings match what the model writes",
                       length, samples, 100.0 * length_share));
    health["stop_reasons"] = reasons;
  }
  return health;
}

json task_tokens(const LinesBySubtask& by_subtask) {
  int64_t docs = 0, prompt = 0, generated = 0;
  for (const auto& [_, lines] : by_subtask)
    for (const json* l : lines) {
      ++docs;
      prompt += l->value("context_tokens", int64_t{0});
      generated += l->value("generated_tokens", int64_t{0});
    }
  return {{"docs", docs}, {"prompt_tokens", prompt}, {"generated_tokens", generated}};
}

std::string format_health_warnings(const json& results) {
  const json& w = results.value("warnings", json::array());
  if (w.empty()) return "";
  std::string out = fmt::format("\nRun health: {} warning(s) (mlabench run --strict makes them errors)\n", w.size());
  for (const json& line : w) out += "  warning: " + line.get<std::string>() + "\n";
  return out;
}

std::string format_cost_table(const json& results) {
  const json& cost = results.value("cost", json::object());
  if (cost.empty()) return "";
  const json& now = results.value("provenance", json::object()).value("cost_this_invocation", json::object());
  std::string out = fmt::format("\n| {:<40} | {:>7} | {:>12} | {:>12} | {:>9} | {:>10} |\n", "Cost", "Docs",
                                "Prompt tok", "Gen tok", "Wall s", "tok/s");
  out += fmt::format("|{:-<42}|{:->9}|{:->14}|{:->14}|{:->11}|{:->12}|\n", "", "", "", "", "", "");
  for (const auto& [task, c] : cost.items()) {
    const json& inv = now.value(task, json::object());
    const json& tps = inv.value("tokens_per_second", json());
    out += fmt::format("| {:<40} | {:>7} | {:>12} | {:>12} | {:>9.2f} | {:>10} |\n", task, c.value("docs", int64_t{0}),
                       c.value("prompt_tokens", int64_t{0}), c.value("generated_tokens", int64_t{0}),
                       inv.value("wall_seconds", 0.0),
                       tps.is_number() ? fmt::format("{:.1f}", tps.get<double>()) : "n/a");
  }
  out += "(Docs and tokens: the whole run; wall time and tokens/s: this invocation's scoring)\n";
  return out;
}

}  // namespace mlabench::harness
