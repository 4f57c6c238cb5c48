#include "reports/compare_section.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "reports/html_escape.h"

namespace mlabench::reports {

namespace {

std::string esc(const std::string& s) { return escape_html(s); }

std::string td(const std::string& text) { return "<td>" + esc(text) + "</td>"; }

// A numeric cell that sorts by its value (the page's sortable tables read data-v).
std::string td_num(const json& v, const std::string& text) {
  if (!v.is_number()) return "<td class=\"num\" data-v=\"NaN\">n/a</td>";
  return fmt::format("<td class=\"num\" data-v=\"{:.6g}\">{}</td>", v.get<double>(), esc(text));
}

std::string fixed(const json& v, const char* spec) {
  return v.is_number() ? fmt::format(fmt::runtime(spec), v.get<double>()) : "n/a";
}

std::string p_text(const json& v) {
  if (!v.is_number()) return "-";
  const double p = v.get<double>();
  return p >= 1e-4 ? fmt::format("{:.4f}", p) : fmt::format("{:.1e}", p);
}

std::string str(const json& row, const char* key) {
  return row.contains(key) && row[key].is_string() ? row[key].get<std::string>() : std::string();
}

constexpr const char* kHead =
    "<thead><tr><th>Task / group / subtask</th><th>Metric</th><th>n</th><th>A</th><th>B</th><th>B \u2212 A</th>"
    "<th>95% CI (bootstrap)</th><th>Agreement</th><th>McNemar p</th><th>BH p</th><th>MDD</th><th>Verdict</th>"
    "</tr></thead>";

std::string row_html(const json& row) {
  const std::string level = str(row, "level");
  const std::string ci = row.contains("ci") && row["ci"].is_array() && row["ci"].size() == 2 &&
                                 row["ci"][0].is_number() && row["ci"][1].is_number()
                             ? fmt::format("[{:+.4f}, {:+.4f}]", row["ci"][0].get<double>(), row["ci"][1].get<double>())
                             : "n/a";
  const std::string verdict = str(row, "verdict");
  const char* cls = verdict == "B better" ? " class=\"ok\"" : verdict == "A better" ? " class=\"off\"" : "";
  return "<tr>" + td((level == "task" ? "" : "\u2003") + str(row, "name")) + td(str(row, "metric")) +
         td_num(row.value("n", json()), row.contains("n") ? row["n"].dump() : "n/a") +
         td_num(row.value("mean_a", json()), fixed(row.value("mean_a", json()), "{:.4f}")) +
         td_num(row.value("mean_b", json()), fixed(row.value("mean_b", json()), "{:.4f}")) +
         td_num(row.value("difference", json()), fixed(row.value("difference", json()), "{:+.4f}")) + td(ci) +
         td_num(row.value("agreement", json()), fixed(row.value("agreement", json()), "{:.3f}")) +
         td_num(row.value("mcnemar_p", json()), p_text(row.value("mcnemar_p", json()))) +
         td_num(row.value("p_bh", json()), p_text(row.value("p_bh", json()))) +
         td_num(row.value("mdd", json()), fixed(row.value("mdd", json()), "{:.4f}")) + "<td" + cls + ">" +
         esc(verdict) + "</td></tr>\n";
}

std::string comparison_html(const json& doc, const json& c) {
  const json& opt = doc.value("options", json::object());
  std::string h = "<h3>A = " + esc(str(c, "a")) + ", B = " + esc(str(c, "b")) + "</h3>\n";
  h += "<p class=\"note\">" +
       esc(fmt::format("Items paired by (subtask, document). Differences are B \u2212 A; the interval is the paired "
                       "bootstrap percentile interval ({} resamples, seed {}); McNemar's exact test for right/wrong "
                       "metrics, Benjamini-Hochberg adjusted across tasks (and within a task's groups and "
                       "subtasks); MDD is the smallest difference detectable at alpha {} with power {} at this n. "
                       "Made by {}.",
                       opt.value("resamples", json()).dump(), opt.value("seed", json()).dump(),
                       opt.value("alpha", json()).dump(), opt.value("power", json()).dump(),
                       str(doc, "generator"))) +
       "</p>\n";
  h += std::string("<table class=\"metrics sortable\">") + kHead + "<tbody>\n";
  std::string folded;
  for (const json& t : c["tasks"]) {
    std::string subtasks;
    for (const json& row : t["rows"]) (str(row, "level") == "subtask" ? subtasks : h) += row_html(row);
    if (!subtasks.empty())
      folded += "<details><summary>" + esc(str(t, "task")) + ": subtasks</summary>\n<table class=\"metrics "
                "sortable\">" + kHead + "<tbody>\n" + subtasks + "</tbody></table>\n</details>\n";
  }
  h += "</tbody></table>\n" + folded;
  for (const json& t : c["tasks"]) {
    const json lp = t.value("logprobs", json());
    if (lp.is_object())
      h += "<p class=\"note\">" +
           esc(fmt::format("{}: log-probabilities of the {} choices of {} items: the same top choice in {:.1f}% of "
                           "items; |log p B \u2212 log p A| at most {:.3g}, {:.3g} on average.",
                           str(t, "task"), lp.value("values", 0), lp.value("items", 0),
                           100 * lp.value("argmax_agreement", 0.0), lp.value("max_abs_difference", 0.0),
                           lp.value("mean_abs_difference", 0.0))) +
           "</p>\n";
  }
  for (const json& t : c["tasks"])
    if (t.value("only_in_a", 0) > 0 || t.value("only_in_b", 0) > 0)
      h += "<p class=\"note\">" + esc(fmt::format("{}: {} documents only in A and {} only in B are left out; the rows "
                                                  "pair the {} both runs scored.", str(t, "task"),
                                                  t.value("only_in_a", 0), t.value("only_in_b", 0),
                                                  t.value("paired", 0))) + "</p>\n";
  return h;
}

}  // namespace

json load_compare_document(const std::filesystem::path& file) {
  refuse_non_regular_file(file, "report --compare");
  std::ifstream in(file, std::ios::binary);
  MLABENCH_CHECK(in.good(), "report --compare: cannot open {}. HINT: write it with mlabench compare A B --out FILE",
                 file.string());
  json doc;
  try {
    doc = parse_ordered_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), file.string());
  } catch (const nlohmann::json::exception& e) {
    MLABENCH_FAIL("report --compare: {} is not JSON ({}). HINT: pass the file `mlabench compare --out` wrote",
                  file.string(), e.what());
  }
  MLABENCH_CHECK(doc.is_object() && doc.value("tool", std::string()) == "mlabench compare" &&
                     doc.value("schema_version", 0) == 1 && doc.contains("comparisons") &&
                     doc["comparisons"].is_array(),
                 "report --compare: {} is not a compare document (tool \"mlabench compare\", schema_version 1, "
                 "comparisons). HINT: pass the file `mlabench compare --out` wrote", file.string());
  for (const json& c : doc["comparisons"]) {
    MLABENCH_CHECK(c.is_object() && c.contains("tasks") && c["tasks"].is_array(), "report --compare: {}: a "
                   "comparison without \"tasks\". HINT: the file was edited; write it again", file.string());
    for (const json& t : c["tasks"])
      MLABENCH_CHECK(t.is_object() && t.contains("rows") && t["rows"].is_array(), "report --compare: {}: a task "
                     "without \"rows\". HINT: the file was edited; write it again", file.string());
  }
  return doc;
}

std::string paired_comparison_section(const std::vector<json>& documents) {
  std::string h;
  for (const json& doc : documents)
    for (const json& c : doc["comparisons"]) h += comparison_html(doc, c);
  return h;
}

}  // namespace mlabench::reports
