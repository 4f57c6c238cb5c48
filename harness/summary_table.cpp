// The printed summary of a results.json document (format_results_table, harness/evaluator.h): one row per metric
// that matters for each task as named on the command line: a group's own estimate (its categories' are in
// results.json and the report), the macro mean in a column, metrics with equal values in one row; with the task's
// documents and its run-health warnings (harness/guards.h).
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "harness/evaluator.h"

namespace mlabench::harness {

using json = nlohmann::ordered_json;

namespace {

// "ok", "2 warn" (see the warnings below the table), or "" for a results.json without run health.
std::string health_cell(const json& r, const std::string& task) {
  const json& health = r.value("run_health", json::object());
  if (!health.contains(task)) return "";
  int64_t n = 0;
  const json checks = health[task].value("checks", json::object());  // a copy: items() of a temporary dangles
  for (const auto& [_, c] : checks.items())
    n += c.value("status", "") == "warning" ? 1 : 0;
  return n == 0 ? "ok" : fmt::format("{} warn", n);
}

}  // namespace

std::string format_results_table(const json& r) {
  constexpr const char* kRow = "| {:<32} | {:>7} | {:<22} | {:<16} | {:>6} | {:<24} | {:>8} | {:>8} | {:>8} | {:>6} | {:<7} |\n";
  std::string out = fmt::format(fmt::runtime(kRow), "Tasks", "Version", "Protocol", "Filter", "n-shot", "Metric",
                                "Value", "Stderr", "Macro", "Docs", "Health");
  out += fmt::format("|{:-<34}|{:->9}|{:-<24}|{:-<18}|{:->8}|{:-<26}|{:->10}|{:->10}|{:->10}|{:->8}|{:-<9}|\n", "", "",
                     "", "", "", "", "", "", "", "", "");
  auto number = [](const json& v) { return v.is_number() ? fmt::format("{:.4f}", v.get<double>()) : std::string("n/a"); };
  for (const auto& [task, _] : r["versions"].items()) {
    const json& section = r["groups"].contains(task) ? r["groups"][task] : r["results"].value(task, json::object());
    const json& cost = r.value("cost", json::object());
    const std::string docs = cost.contains(task) ? cost[task].value("docs", json()).dump() : "";
    // One row per metric and filter: its macro mean in a column rather than a row of its own, and a metric whose
    // values equal an earlier one's (acc_norm on MMLU's one-letter choices is acc) named in that row.
    struct Row {
      std::string filter, metric;
      json value, stderr_, macro;
    };
    std::vector<Row> rows;
    for (const auto& [key, v] : section.items()) {
      if (key == "alias" || key.find("_stderr,") != std::string::npos || key.find("_macro,") != std::string::npos)
        continue;
      const size_t comma = key.find(',');
      const std::string metric = key.substr(0, comma), filter = key.substr(comma + 1);
      const std::string macro_key = metric + "_macro," + filter;
      const json macro = section.contains(macro_key) ? section[macro_key] : json(nullptr);
      const json se = section.contains(stderr_key(key)) ? section[stderr_key(key)] : json(nullptr);
      const json value = v;  // a copy: a lambda may not capture a structured binding before C++20's P1091 (clang 14)
      auto same = [&](const Row& x) { return x.filter == filter && x.value == value && x.macro == macro; };
      if (auto it = std::find_if(rows.begin(), rows.end(), same); it != rows.end() && v.is_number()) {
        it->metric += " = " + metric;
        continue;
      }
      rows.push_back({filter, metric, v, se, macro});
    }
    for (const Row& row : rows)
      out += fmt::format(fmt::runtime(kRow), task, r["versions"][task].dump(),
                         r["protocols"].contains(task) ? r["protocols"][task].get<std::string>() : "", row.filter,
                         r["n-shot"].contains(task) ? r["n-shot"][task].dump() : "", row.metric, number(row.value),
                         number(row.stderr_), row.macro.is_null() ? "" : number(row.macro), docs, health_cell(r, task));
  }
  return out;
}

}  // namespace mlabench::harness
