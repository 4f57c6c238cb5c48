// The printed summary of a results.json document (format_results_table, harness/evaluator.h).
#include <fmt/format.h>

#include <cmath>

#include "harness/evaluator.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::string format_results_table(const json& r) {
  // Metric is 20 wide: the longest metric name is suspected_tampering (19).
  std::string out = fmt::format("| {:<40} | {:>7} | {:<22} | {:<16} | {:>6} | {:<20} | {:>8} | {:>8} |\n", "Tasks",
                                "Version", "Protocol", "Filter", "n-shot", "Metric", "Value", "Stderr");
  out += fmt::format("|{:-<42}|{:->9}|{:-<24}|{:-<18}|{:->8}|{:-<22}|{:->10}|{:->10}|\n", "", "", "", "", "", "", "",
                     "");
  auto rows = [&](const json& section, const std::string& name, const std::string& task) {
    for (const auto& [key, v] : section.items()) {
      if (key == "alias" || key.find("_stderr,") != std::string::npos) continue;
      const size_t comma = key.find(',');
      const json& se = section.contains(stderr_key(key)) ? section[stderr_key(key)] : json(nullptr);
      out += fmt::format("| {:<40} | {:>7} | {:<22} | {:<16} | {:>6} | {:<20} | {:>8.4f} | {:>8} |\n", name,
                         r["versions"].contains(task) ? r["versions"][task].dump() : "",
                         r["protocols"].contains(task) ? r["protocols"][task].get<std::string>() : "",
                         key.substr(comma + 1),
                         r["n-shot"].contains(task) ? r["n-shot"][task].dump() : "", key.substr(0, comma),
                         v.is_number() ? v.get<double>() : std::nan(""),
                         se.is_number() ? fmt::format("{:.4f}", se.get<double>()) : "n/a");
    }
  };
  for (const auto& [task, _] : r["versions"].items()) {
    if (r["groups"].contains(task)) {
      rows(r["groups"][task], task, task);
      for (const auto& member : r["group_subtasks"][task])
        if (r["groups"].contains(member.get<std::string>()))
          rows(r["groups"][member.get<std::string>()], " - " + member.get<std::string>(), task);
    } else if (r["results"].contains(task)) {
      rows(r["results"][task], task, task);
    }
  }
  return out;
}

}  // namespace mlabench::harness
