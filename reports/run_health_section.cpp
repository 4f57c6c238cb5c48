#include "reports/run_health_section.h"

#include <fmt/format.h>

#include <cmath>

#include "reports/html_escape.h"

namespace mlabench::reports {

namespace {

using json = nlohmann::ordered_json;

std::string td(const std::string& text, const char* cls = nullptr) {
  return cls ? fmt::format("<td class=\"{}\">{}</td>", cls, escape_html(text)) : "<td>" + escape_html(text) + "</td>";
}
std::string note(const std::string& text) { return "<p class=\"note\">" + escape_html(text) + "</p>\n"; }

std::string number(const json& v, const char* format) {
  return v.is_number() ? fmt::format(fmt::runtime(format), v.get<double>()) : "n/a";
}

std::string checks_table(const json& health) {
  std::string h = "<table class=\"sortable\"><thead><tr><th>Task</th><th>Check</th><th>Status</th><th>Value</th>"
                  "<th>Limit</th><th>Stop reasons</th></tr></thead><tbody>\n";
  for (const auto& [task, t] : health.items()) {
    std::string reasons;
    // Copies: items() of the temporary value() returns would dangle.
    const json stop_reasons = t.value("stop_reasons", json::object()), checks = t.value("checks", json::object());
    for (const auto& [reason, n] : stop_reasons.items())
      reasons += (reasons.empty() ? "" : ", ") + reason + " " + n.dump();
    for (const auto& [check, c] : checks.items()) {
      const std::string status = c.value("status", "");
      h += "<tr>" + td(task) + td(check) + td(status, status == "warning" ? "off" : nullptr) +
           td(number(c.value("value", json()), "{:.4f}")) + td(number(c.value("limit", json()), "{:.4f}")) +
           td(reasons) + "</tr>\n";
    }
  }
  return h + "</tbody></table>\n";
}

std::string cost_table(const json& results) {
  const json& cost = results.value("cost", json::object());
  const json& now = results.value("provenance", json::object()).value("cost_this_invocation", json::object());
  std::string h = "<table class=\"sortable\"><thead><tr><th>Task</th><th>Docs</th><th>Prompt tokens</th>"
                  "<th>Generated tokens</th><th>Wall s (this invocation)</th><th>Tokens/s (this invocation)</th>"
                  "</tr></thead><tbody>\n";
  for (const auto& [task, c] : cost.items()) {
    const json& inv = now.value(task, json::object());
    h += "<tr>" + td(task) + td(c.value("docs", json()).dump()) + td(c.value("prompt_tokens", json()).dump()) +
         td(c.value("generated_tokens", json()).dump()) + td(number(inv.value("wall_seconds", json()), "{:.2f}")) +
         td(number(inv.value("tokens_per_second", json()), "{:.1f}")) + "</tr>\n";
  }
  return h + "</tbody></table>\n";
}

// --check-invariance: documents re-run one at a time against the batched run, per task.
std::string invariance_table(const json& inv) {
  std::string h = "<table><thead><tr><th>Batch invariance (documents re-run alone)</th><th>Documents</th>"
                  "<th>Max |d log-prob|</th><th>Argmax flips</th><th>Generations diverged</th></tr></thead><tbody>\n";
  auto row = [&](const std::string& name, const json& t) {
    const json d = t.value("max_abs_dlogprob", json(nullptr));
    const std::string dtext = d.is_number() ? fmt::format("{:.3g}", d.get<double>()) : d.is_string() ? d.get<std::string>() : "";
    const bool bad = t.value("argmax_flips", int64_t{0}) > 0 || t.value("generations_diverged", int64_t{0}) > 0;
    h += "<tr>" + td(name) + td(std::to_string(t.value("items_checked", int64_t{0}))) + td(dtext) +
         td(std::to_string(t.value("argmax_flips", int64_t{0})), bad ? "off" : "ok") +
         td(fmt::format("{} of {}", t.value("generations_diverged", int64_t{0}), t.value("generations_compared", int64_t{0})),
            bad ? "off" : "ok") + "</tr>\n";
  };
  row("all", inv);
  const json tasks = inv.value("tasks", json::object());  // a named copy: items() of a temporary would dangle
  for (const auto& [name, t] : tasks.items()) row(name, t);
  return h + "</tbody></table>\n";
}

}  // namespace

std::string run_health_section(const ReportInputs& in) {
  std::string h = "<h3>Run health and cost</h3>\n" + note("Guards on each task's samples (docs/harness.md \"Run health\"): one choice predicted for "
                       ">= 95% of documents, accuracy within 2 binomial stderrs of chance, contexts truncated for "
                       "more than 1% of documents, empty or max-tokens generations above 5%, missing or NaN "
                       "log-probabilities. A warning here is an error under mlabench run --strict.");
  bool any = false;
  for (const RunInput& run : in.runs) {
    const json& r = run.results;
    if (!r.contains("run_health")) continue;
    any = true;
    h += "<h4>" + escape_html(run.label) + "</h4>\n";
    const json& warnings = r.value("warnings", json::array());
    if (warnings.empty()) {
      h += note("No warnings.");
    } else {
      h += "<table><thead><tr><th>Warning</th></tr></thead><tbody>\n";
      for (const json& w : warnings) h += "<tr>" + td(w.is_string() ? w.get<std::string>() : w.dump(), "off") + "</tr>\n";
      h += "</tbody></table>\n";
    }
    h += "<details class=\"breakdown\"><summary>Checks and stop reasons per task</summary>\n" +
         checks_table(r["run_health"]) + "</details>\n";
    if (r.contains("cost")) h += cost_table(r);
    if (r.contains("invariance")) h += invariance_table(r["invariance"]);
  }
  if (!any) h += note("No run here records run health (its results.json predates the guards).");
  return h;
}

}  // namespace mlabench::reports
