#include "harness/aggregation.h"

#include <algorithm>
#include <cctype>

#include "core/check.h"
#include "harness/evaluator.h"
#include "metrics/metrics.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) out += c == ' ' || c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

json estimate_json(const std::map<std::string, metrics::Estimate>& est, const std::string& alias) {
  json j = {{"alias", alias}};
  for (const auto& [key, e] : est) {
    j[key] = e.value;
    j[stderr_key(key)] = e.stderr_;
  }
  return j;
}

}  // namespace

void aggregate(const tasks::Task& task, const LinesBySubtask& by_subtask,
               json& results, json& groups, json& group_subtasks, json& n_samples) {
  std::map<std::string, std::map<std::string, metrics::Estimate>> sub_est;  // subtask -> metric -> estimate
  std::vector<std::string> keys;
  for (const tasks::Subtask& sub : task.subtasks) {
    std::map<std::string, std::vector<double>> values;
    auto it = by_subtask.find(sub.name);
    const std::vector<const json*> empty;
    const std::vector<const json*>& lines = it == by_subtask.end() ? empty : it->second;
    for (const json* line : lines)
      for (const auto& [k, v] : (*line)["metrics"].items()) values[k].push_back(v.get<double>());
    for (auto& [k, v] : values) {
      sub_est[sub.name][k] = metrics::mean_with_stderr(v);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
    n_samples[sub.name] = {{"original", sub.n_docs_total}, {"effective", static_cast<int64_t>(lines.size())}};
  }
  const bool leaf = task.subtasks.size() == 1 && task.subtasks[0].name == task.name;
  for (const tasks::Subtask& sub : task.subtasks) results[sub.name] = estimate_json(sub_est[sub.name], sub.display);
  if (leaf) return;

  auto combine = [&](const std::vector<const tasks::Subtask*>& members, bool macro) {
    std::map<std::string, metrics::Estimate> out;
    for (const std::string& k : keys) {
      std::vector<metrics::Estimate> parts;
      for (const tasks::Subtask* s : members)
        if (sub_est[s->name].contains(k)) parts.push_back(sub_est[s->name][k]);
      out[k] = metrics::aggregate_micro(parts);
      if (macro) {
        const size_t comma = k.find(',');
        out[k.substr(0, comma) + "_macro" + k.substr(comma)] = metrics::aggregate_macro(parts);
      }
    }
    return out;
  };
  std::vector<const tasks::Subtask*> all;
  std::map<std::string, std::vector<const tasks::Subtask*>> by_category;
  for (const tasks::Subtask& sub : task.subtasks) {
    all.push_back(&sub);
    if (!sub.category.empty()) by_category[sub.category].push_back(&sub);
  }
  json members = json::array();
  for (const auto& [category, subs] : by_category) {
    const std::string name = task.name + "_" + slug(category);
    groups[name] = estimate_json(combine(subs, task.group_macro), category);
    json names = json::array();
    for (const tasks::Subtask* s : subs) names.push_back(s->name);
    group_subtasks[name] = names;
    members.push_back(name);
  }
  if (by_category.empty())
    for (const tasks::Subtask* s : all) members.push_back(s->name);
  groups[task.name] = estimate_json(combine(all, task.group_macro), task.name);
  group_subtasks[task.name] = members;
}

json breakdown(const tasks::Task& task, const LinesBySubtask& by_subtask) {
  json out = json::object();
  for (const std::string& field : task.breakdowns) {
    std::map<std::string, std::map<std::string, std::vector<double>>> values;  // value -> metric -> per doc
    std::vector<std::string> order;  // values in first-seen document order
    for (const auto& [_, lines] : by_subtask)
      for (const json* line : lines) {
        const json& doc = (*line)["doc"];
        MLABENCH_CHECK(doc.contains(field), "task {}: breakdown field '{}' is not in document {}'s fields. HINT: "
                       "fix the spec's \"breakdowns\"", task.name, field, (*line)["doc_id"].dump());
        const std::string value = doc[field].is_string() ? doc[field].get<std::string>() : doc[field].dump();
        if (!values.contains(value)) order.push_back(value);
        for (const auto& [k, v] : (*line)["metrics"].items()) values[value][k].push_back(v.get<double>());
      }
    json per_value = json::object();
    for (const std::string& value : order) {
      std::map<std::string, metrics::Estimate> est;
      int64_t n = 0;
      for (const auto& [k, v] : values[value]) {
        est[k] = metrics::mean_with_stderr(v);
        n = static_cast<int64_t>(v.size());
      }
      json j = estimate_json(est, value);
      j["n"] = n;
      per_value[value] = std::move(j);
    }
    out[field] = std::move(per_value);
  }
  return out;
}

json code_grading(const LinesBySubtask& by_subtask) {
  constexpr size_t kNamed = 100;
  int64_t samples = 0, passed = 0, check_passed = 0, tampering = 0, check_only_failed = 0;
  json flagged = json::array();
  for (const auto& [subtask, lines] : by_subtask)
    for (const json* line : lines) {
      if (!line->contains("verdicts")) continue;
      int64_t k = 0;
      for (const json& v : (*line)["verdicts"]) {
        if (!v.contains("check_passed")) return json();
        ++samples;
        const bool outputs = v.value("passed", false), check = v.value("check_passed", false);
        passed += outputs ? 1 : 0;
        check_passed += check ? 1 : 0;
        check_only_failed += outputs && !check ? 1 : 0;
        if (v.value("suspected_tampering", false)) {
          ++tampering;
          if (flagged.size() < kNamed)
            flagged.push_back({{"subtask", subtask}, {"doc_id", (*line)["doc_id"]}, {"sample", k}});
        }
        ++k;
      }
    }
  if (samples == 0) return json();
  return {{"samples", samples}, {"passed", passed}, {"check_passed", check_passed},
          {"suspected_tampering", tampering}, {"outputs_passed_check_failed", check_only_failed},
          {"suspected_tampering_samples", flagged}};
}

}  // namespace mlabench::harness
