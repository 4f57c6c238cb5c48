// The HTML report: one page, sections in this order - run summary, results, the paper's numbers, side by side,
// needle in a haystack, throughput/latency/KV cache, samples. Every section is always present (with a line that
// says what input would fill it) so readers and the browser test find the same structure in every report.
//
// Safety: every string from an input goes through escape_html; the page's Content-Security-Policy allows only
// its own inline style and script (by SHA-256), no connections, no images but data: URLs, no forms. So model
// output can neither run script nor make the page fetch anything, even if an escape were missed.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/check.h"
#include "core/digest.h"
#include "reports/ablation_section.h"
#include "reports/compare_section.h"
#include "reports/html_escape.h"
#include "reports/report.h"
#include "reports/run_health_section.h"
#include "reports/svg_chart.h"

namespace mlabench::reports {

namespace {

std::string esc(std::string_view s) { return escape_html(s); }

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return fallback;
  return v.dump();
}

double num(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

// A cut at or before `at` that does not split a UTF-8 sequence.
size_t utf8_floor(const std::string& s, size_t at) {
  while (at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return at;
}

// Long texts (a 128K-token NIAH prompt is ~500 KB) keep their head and tail; the middle is elided and says how
// much, so the page stays small and the ends - where prompts put the question - stay readable.
std::string elide(const std::string& s, size_t keep) {
  if (s.size() <= 2 * keep + 200) return s;
  const size_t head = utf8_floor(s, keep);
  const size_t tail = utf8_floor(s, s.size() - keep);
  return s.substr(0, head) + fmt::format("\n[... {} bytes not shown ...]\n", tail - head) + s.substr(tail);
}

std::string td_num(double v, const std::string& text) {
  if (!std::isfinite(v)) return "<td class=\"num\" data-v=\"NaN\">n/a</td>";
  return fmt::format("<td class=\"num\" data-v=\"{:.6g}\">{}</td>", v, esc(text));
}

std::string td(const std::string& text) { return "<td>" + esc(text) + "</td>"; }

std::string note(const std::string& text) { return "<p class=\"note\">" + esc(text) + "</p>\n"; }

// ---------------------------------------------------------------------------------------------------- summary

std::string weights_text(const json& prov) {
  if (!prov.contains("weights")) return "n/a (replay: no weights)";
  const json& w = prov["weights"];
  if (str(w, "kind") == "random") return fmt::format("random (seed {})", str(w, "seed"));
  std::string t = fmt::format("sha256 {} over {} file(s)", str(w, "sha256"), str(w, "files"));
  if (w.contains("stored_dtypes")) t += ", stored " + w["stored_dtypes"].dump();
  return t;
}

std::string tokenizer_text(const json& prov) {
  if (!prov.contains("tokenizer") || !prov["tokenizer"].is_object() || prov["tokenizer"].empty()) return "n/a";
  std::string t;
  for (const auto& [file, digest] : prov["tokenizer"].items())
    t += (t.empty() ? "" : "; ") + file + " sha256 " + (digest.is_string() ? digest.get<std::string>() : digest.dump());
  return t;
}

std::vector<std::pair<std::string, std::string>> run_summary_rows(const RunInput& run) {
  const json& r = run.results;
  const json& c = r["config"];
  const json& p = r["provenance"];
  int64_t effective = 0, original = 0;
  for (const auto& [_, n] : r["n-samples"].items()) {
    effective += n.value("effective", int64_t{0});
    original += n.value("original", int64_t{0});
  }
  std::string device = str(c, "device", "n/a");
  if (p.contains("device_info")) device += " (" + str(p["device_info"], "gpu") + ")";
  std::vector<std::pair<std::string, std::string>> rows = {
      {"model", str(c, "model", str(c, "backend"))},
      {"architecture", str(c, "architecture", "n/a")},
      {"backend", str(r["backend"], "backend", str(c, "backend"))},
      {"weights", weights_text(p)},
      {"tokenizer", tokenizer_text(p)},
      {"device", device},
      {"precision", str(c, "precision", "n/a")},
      {"mlabench", str(p, "mlabench_version") + " commit " + str(p, "commit")},
      {"date", str(p, "date")},
      {"command line", p.contains("command_line") ? shell_join(p["command_line"]) : "n/a"},
      {"tasks", fmt::format("{}", fmt::join(run_tasks(r), ", "))},
      {"documents", fmt::format("{} scored of {} in the datasets{}", effective, original,
                                effective < original ? " (a subset: --limit)" : "")},
  };
  rows.push_back({"generation overrides", r.contains("gen_kwargs") && !r["gen_kwargs"].empty() ? r["gen_kwargs"].dump()
                                                                                              : "none"});
  rows.push_back({"evaluation time", p.contains("total_evaluation_time_seconds_this_invocation")
                                         ? fmt::format("{:.1f} s (last invocation)",
                                                       num(p, "total_evaluation_time_seconds_this_invocation"))
                                         : "n/a"});
  rows.push_back({"results file", run.path.string()});
  return rows;
}

std::vector<std::pair<std::string, std::string>> bench_summary_rows(const BenchInput& b) {
  const json& j = b.bench;
  const json& d = j.value("device_info", json::object());
  const json& params = j.value("params", json::object());
  std::vector<std::pair<std::string, std::string>> rows = {
      {"model", str(j, "model")},
      {"architecture", str(j, "architecture") + ", attention " + str(j, "attention", "n/a")},
      {"weights", str(j, "weights", "n/a")},
      {"device", str(j, "device") + (d.contains("gpu") ? " (" + str(d, "gpu") + ")" : "")},
      {"precision", str(d, "dtype", str(params, "precision", "n/a")) + ", KV cache " + str(d, "kv_cache_dtype", "n/a")},
      {"mlabench", "commit " + str(j, "commit") + ", " + str(j, "build") + " build"},
      {"date", str(j, "date")},
      {"parameters", params.dump()},
      {"bench file", b.path.string()},
  };
  return rows;
}

// One table, one column per input: fields line up across runs, so differences show at a glance.
std::string summary_table(const std::vector<std::string>& labels,
                          const std::vector<std::vector<std::pair<std::string, std::string>>>& columns) {
  if (columns.empty()) return "";
  std::string h = "<table class=\"kv\"><thead><tr><th></th>";
  for (const std::string& l : labels) h += "<th>" + esc(l) + "</th>";
  h += "</tr></thead><tbody>\n";
  for (size_t row = 0; row < columns[0].size(); ++row) {
    h += "<tr><th scope=\"row\">" + esc(columns[0][row].first) + "</th>";
    for (const auto& c : columns) h += td(c[row].second);
    h += "</tr>\n";
  }
  return h + "</tbody></table>\n";
}

// ---------------------------------------------------------------------------------------------------- results

const char* kMetricHead =
    "<thead><tr><th>Task</th><th>Metric</th><th>Filter</th><th>Value</th><th>Stderr</th><th>95% CI</th>"
    "<th>n</th></tr></thead>\n";
const char* kTaskHead =
    "<thead><tr><th>Task</th><th>Metric</th><th>Filter</th><th>Value</th><th>Stderr</th><th>95% CI</th>"
    "<th>n</th><th>Shots</th><th>Protocol</th><th>Version</th></tr></thead>\n";

// A task's own rows carry its protocol (`task_of` set); breakdown rows do not.
std::string metric_rows(const json& r, const std::string& name, const std::string& shown,
                        const std::string& task_of = "") {
  std::string h;
  for (const MetricValue& m : section_metrics(r, name)) {
    h += "<tr>" + td(shown) + td(m.metric) + td(m.filter) + td_num(m.value, format_metric(m.value)) +
         td_num(m.stderr_ ? *m.stderr_ : std::nan(""), m.stderr_ ? format_metric(*m.stderr_) : "n/a") +
         td(format_interval(m)) + td_num(static_cast<double>(m.n), std::to_string(m.n));
    if (!task_of.empty())
      h += td_num(num(r["n-shot"], task_of.c_str()), str(r["n-shot"], task_of.c_str(), "0")) +
           td(str(r["protocols"], task_of.c_str(), "n/a")) + td(str(r["versions"], task_of.c_str(), "n/a"));
    h += "</tr>\n";
  }
  return h;
}

std::string alias_of(const json& r, const std::string& name) {
  for (const char* where : {"groups", "results"})
    if (r[where].contains(name)) return str(r[where][name], "alias", name);
  return name;
}

std::string breakdown_tables(const json& r, const std::string& task) {
  const std::vector<BreakdownValue> all = breakdown_values(r, task);  // field by field
  std::string h;
  for (size_t i = 0, end = 0; i < all.size(); i = end) {
    const std::string& field = all[i].field;
    for (end = i; end < all.size() && all[end].field == field; ++end) {}
    if (field == "cell") continue;  // the NIAH heatmap shows it
    h += "<details class=\"breakdown\"><summary>" + esc(task) + " by " + esc(field) + " (" + std::to_string(end - i) +
         " values)</summary>\n<table class=\"sortable\"><thead><tr><th>" + esc(field) +
         "</th><th>Metric</th><th>Value</th><th>Stderr</th><th>n</th></tr></thead><tbody>\n";
    for (size_t k = i; k < end; ++k)
      for (const MetricValue& m : all[k].metrics)
        h += "<tr>" + td(all[k].value) + td(m.metric + "," + m.filter) + td_num(m.value, format_metric(m.value)) +
             td_num(m.stderr_ ? *m.stderr_ : std::nan(""), m.stderr_ ? format_metric(*m.stderr_) : "n/a") +
             td_num(static_cast<double>(m.n), std::to_string(m.n)) + "</tr>\n";
    h += "</tbody></table></details>\n";
  }
  return h;
}

std::string run_results(const RunInput& run) {
  const json& r = run.results;
  std::string h = "<h3>" + esc(run.label) + "</h3>\n<table class=\"metrics sortable\">" + kTaskHead + "<tbody>\n";
  for (const std::string& task : run_tasks(r)) h += metric_rows(r, task, task, task);
  h += "</tbody></table>\n";
  for (const std::string& task : run_tasks(r)) {
    const json& members = r.value("group_subtasks", json::object());
    if (members.contains(task)) {
      // Categories (each with its subjects) or subjects directly.
      size_t leaves = 0;
      for (const json& m : members[task])
        leaves += members.contains(m.get<std::string>()) ? members[m.get<std::string>()].size() : 1;
      h += "<details class=\"breakdown\"><summary>" + esc(task) + " by category and subject (" +
           std::to_string(members[task].size()) + " groups, " + std::to_string(leaves) +
           " subjects)</summary>\n<table class=\"metrics sortable\">" + kMetricHead + "<tbody>\n";
      for (const json& m : members[task]) h += metric_rows(r, m.get<std::string>(), alias_of(r, m.get<std::string>()));
      h += "</tbody></table>\n";
      for (const json& m : members[task]) {
        const std::string cat = m.get<std::string>();
        if (!members.contains(cat)) continue;
        h += "<details class=\"breakdown\"><summary>" + esc(alias_of(r, cat)) + ": " +
             std::to_string(members[cat].size()) + " subjects</summary>\n<table class=\"metrics sortable\">" +
             kMetricHead + "<tbody>\n";
        for (const json& s : members[cat]) h += metric_rows(r, s.get<std::string>(), alias_of(r, s.get<std::string>()));
        h += "</tbody></table></details>\n";
      }
      h += "</details>\n";
    }
    h += breakdown_tables(r, task);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------- paper

std::string cite(const ReportInputs& in, const std::string& table) {
  const int page = in.paper.tables.contains(table) ? in.paper.tables[table].value("page", 0) : 0;
  return fmt::format("{}, p. {}", table, page);
}

std::string paper_section(const ReportInputs& in, const ReportOptions& o) {
  const json& src = in.paper.source;
  std::string h = "<p>" + esc(str(src, "title")) + " (arXiv " + esc(str(src, "arxiv")) + "; " +
                  esc(str(src, "file")) + " of " + esc(str(src, "repository")) + " @" + esc(str(src, "commit")) +
                  "). " + esc(str(src, "note")) +
                  " Ours are shown in percent (value x 100) like the paper's; the difference is in percentage "
                  "points.</p>\n";
  const std::vector<PaperComparison> rows = paper_comparisons(in, o.paper_model);
  if (rows.empty()) h += note("No run here has a task the paper reports (mmlu, ceval, gsm8k_cot, humaneval, "
                              "livecodebench). HINT: mlabench run --tasks deepseek-v2-paper");
  for (const RunInput& run : in.runs) {
    const PaperModel* model = match_paper_model(in.paper, run, o.paper_model);
    std::string rows_html;
    for (const PaperComparison& c : rows) {
      if (c.label != run.label) continue;
      const double ours = 100 * c.ours.value;
      const auto [lo, hi] = interval95(c.ours);
      const std::string ci = std::isfinite(lo) ? fmt::format("[{:.1f}, {:.1f}]", 100 * lo, 100 * hi) : "n/a";
      std::string paper_cells;
      if (c.number) {
        const double delta = ours - c.number->value;
        const bool inside = std::isfinite(lo) && c.number->value >= 100 * lo && c.number->value <= 100 * hi;
        paper_cells = td(c.model->name) + td_num(c.number->value, fmt::format("{:.1f}", c.number->value)) +
                      fmt::format("<td class=\"num {}\" data-v=\"{:.6g}\">{}</td>", inside ? "ok" : "off", delta,
                                  esc(format_delta(delta))) +
                      td(inside ? "yes" : "no") + td(cite(in, c.number->table));
      } else {
        paper_cells = td(c.model ? c.model->name : "none matched") + td(c.model ? "not published" : "") + td("") +
                      td("") + td("");
      }
      rows_html += "<tr>" + td(c.benchmark->name) + td(fmt::format("{} ({}-shot)", c.benchmark->metric,
                                                                   c.benchmark->shots)) +
                   td(c.benchmark->task + " " + c.benchmark->value_key) + td_num(ours, fmt::format("{:.1f}", ours)) +
                   td(ci) + paper_cells + td(c.benchmark->note) + "</tr>\n";
    }
    if (rows_html.empty()) continue;
    h += "<h3>" + esc(run.label) + "</h3>\n";
    if (!model)
      h += note("No paper model matched this run's model folder, so there is no difference column. HINT: "
                "--paper-model \"DeepSeek-V2-Lite\" (any model of the tables below)");
    else
      h += note("Compared with the paper's \"" + model->name + "\" (" + model->kind + ", " + model->attention + ").");
    h += "<table class=\"sortable\"><thead><tr><th>Benchmark</th><th>Metric</th><th>Our task and metric</th>"
         "<th>Ours (%)</th><th>95% CI (%)</th><th>Paper model</th><th>Paper (%)</th><th>Difference</th>"
         "<th>Paper inside our CI</th><th>Source</th><th>Protocol note</th></tr></thead><tbody>\n" +
         rows_html + "</tbody></table>\n";
  }
  // The published tables themselves, as data, so a reader can compare with any model of the paper.
  h += "<details class=\"breakdown\"><summary>Every number of the paper kept in reports/paper/ (" +
       std::to_string(in.paper.numbers.size()) + " values)</summary>\n";
  for (const auto& [table, meta] : in.paper.tables.items()) {
    std::vector<std::string> models, benches;
    for (const PaperNumber& n : in.paper.numbers) {
      if (n.table != table) continue;
      if (std::find(models.begin(), models.end(), n.model) == models.end()) models.push_back(n.model);
      if (std::find(benches.begin(), benches.end(), n.benchmark) == benches.end()) benches.push_back(n.benchmark);
    }
    if (models.empty()) continue;
    h += "<h4>" + esc(table) + " (p. " + esc(str(meta, "page")) + "): " + esc(str(meta, "caption")) +
         "</h4>\n<table><thead><tr><th>Benchmark</th>";
    for (const std::string& m : models) h += "<th>" + esc(m) + "</th>";
    h += "</tr></thead><tbody>\n";
    for (const std::string& b : benches) {
      h += "<tr>" + td(b);
      for (const std::string& m : models) {
        const PaperNumber* n = find_paper_number(in.paper, b, m);
        h += n && n->table == table ? td_num(n->value, svg::compact_number(n->value)) : td("");
      }
      h += "</tr>\n";
    }
    h += "</tbody></table>\n";
  }
  return h + "</details>\n";
}

// ---------------------------------------------------------------------------------------------------- side by side

// Rows of the bench inputs, by (batch, prompt tokens): one bench may hold several prompt lengths (long-context
// shapes), so batch alone does not name a row.
using BenchKey = std::pair<double, double>;

BenchKey bench_key(const json& row) { return {bench_number(row, "batch"), bench_number(row, "prompt_tokens")}; }

std::vector<BenchKey> bench_keys(const ReportInputs& in) {
  std::set<BenchKey> s;
  for (const BenchInput& b : in.benches)
    for (const json& row : b.bench["rows"]) s.insert(bench_key(row));
  return {s.begin(), s.end()};
}

double bench_value(const BenchInput* b, const BenchKey& key, const char* metric) {
  if (!b) return std::nan("");
  for (const json& row : b->bench["rows"])
    if (bench_key(row) == key) return bench_number(row, metric);
  return std::nan("");
}

std::string compare_section(const ReportInputs& in) {
  if (in.labels.size() < 2)
    return note("One model in this report. HINT: pass several runs and bench JSON files, labelled alike for one "
                "model: mlabench report MLA=runs/lite MLA=bench_lite.json GQA=runs/llama GQA=bench_llama.json");
  std::string h = "<table class=\"sortable\"><thead><tr><th>Row</th>";
  for (const std::string& l : in.labels) h += "<th>" + esc(l) + "</th>";
  h += "</tr></thead><tbody>\n";
  auto row = [&](const std::string& name, auto value_of, auto text_of) {
    h += "<tr>" + td(name);
    for (const std::string& l : in.labels) {
      const double v = value_of(l);
      h += std::isfinite(v) ? td_num(v, text_of(l, v)) : td("");
    }
    h += "</tr>\n";
  };
  // Attention kind, then the accuracy of every task any run has, then cost.
  h += "<tr>" + td("attention (bench) or architecture (run)");
  for (const std::string& l : in.labels) {
    const BenchInput* b = bench_for(in, l);
    const RunInput* r = run_for(in, l);
    h += td(b ? str(b->bench, "attention", "n/a") : r ? str(r->results["config"], "architecture", "n/a") : "n/a");
  }
  h += "</tr>\n";
  std::vector<std::string> tasks;
  for (const RunInput& r : in.runs)
    for (const std::string& t : run_tasks(r.results))
      if (std::find(tasks.begin(), tasks.end(), t) == tasks.end()) tasks.push_back(t);
  svg::BarChart acc{.title = "Headline metric per task", .value_title = "value (0-1)", .series = {}, .groups = {}};
  std::vector<std::string> run_labels;
  for (const std::string& l : in.labels)
    if (run_for(in, l)) run_labels.push_back(l);
  acc.series = run_labels;
  for (const std::string& t : tasks) {
    // Each run's headline metric of the task, kept where it is the same metric as the first run's.
    std::map<std::string, MetricValue> by_label;
    std::string metric;
    svg::BarGroup g{.label = t, .values = {}};
    for (const std::string& l : run_labels) {
      const auto m = headline_metric(in, *run_for(in, l), t);
      if (m && metric.empty()) metric = m->metric + "," + m->filter;
      if (m && m->metric + "," + m->filter == metric) by_label.emplace(l, *m);
      g.values.push_back(by_label.contains(l) ? by_label.at(l).value : std::nan(""));
    }
    acc.groups.push_back(g);
    row(t + " " + metric,
        [&](const std::string& l) { return by_label.contains(l) ? by_label.at(l).value : std::nan(""); },
        [&](const std::string& l, double v) {
          const MetricValue& m = by_label.at(l);
          return m.stderr_ ? format_metric(v) + " \u00b1 " + format_metric(*m.stderr_) : format_metric(v);
        });
  }
  row("KV cache bytes per token", [&](const std::string& l) { return kv_bytes_per_token(in, l); },
      [](const std::string&, double v) { return fmt::format("{:.0f}", v); });
  const bool by_prompt = bench_prompts_vary(in);
  for (const BenchKey& key : bench_keys(in)) {
    const std::string name = bench_row_name({{"batch", key.first}, {"prompt_tokens", key.second}}, by_prompt);
    row("decode tokens/s, " + name,
        [&](const std::string& l) { return bench_value(bench_for(in, l), key, "decode_tokens_per_s"); },
        [](const std::string&, double v) { return fmt::format("{:.1f}", v); });
    row("prefill tokens/s, " + name,
        [&](const std::string& l) { return bench_value(bench_for(in, l), key, "prefill_tokens_per_s"); },
        [](const std::string&, double v) { return fmt::format("{:.1f}", v); });
  }
  h += "</tbody></table>\n";
  if (run_labels.size() >= 2) h += "<figure>" + svg::bar_chart(acc) + "</figure>\n";
  return h;
}

// ---------------------------------------------------------------------------------------------------- NIAH

std::string niah_heatmap(const std::string& title, const json& cells, const std::string& metric) {
  // Cells are "LENGTH@DEPTH"; rows are depths (top: 0%), columns lengths, as in the paper's Figure 4.
  std::set<int64_t> lengths, depths;
  std::map<std::pair<int64_t, int64_t>, double> value;
  auto digits = [](const std::string& s) {
    return !s.empty() && s.size() < 12 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  for (const auto& [key, est] : cells.items()) {
    const size_t at = key.find('@');
    MLABENCH_CHECK(at != std::string::npos && digits(key.substr(0, at)) && digits(key.substr(at + 1)),
                   "NIAH breakdown cell \"{}\" is not LENGTH@DEPTH. HINT: the results.json was edited or comes from "
                   "another tool", key);
    const int64_t L = std::stoll(key.substr(0, at)), D = std::stoll(key.substr(at + 1));
    lengths.insert(L);
    depths.insert(D);
    value[{D, L}] = num(est, metric.c_str());
  }
  svg::Heatmap hm;
  hm.title = title;
  hm.x_title = "context length (tokens)";
  hm.y_title = "needle depth (%)";
  for (const int64_t L : lengths) hm.x_labels.push_back(length_label(L));
  for (const int64_t D : depths) {
    hm.y_labels.push_back(std::to_string(D));
    std::vector<double> row;
    for (const int64_t L : lengths) row.push_back(value.contains({D, L}) ? value[{D, L}] : std::nan(""));
    hm.values.push_back(row);
  }
  hm.lo = 1, hm.hi = 10;
  hm.scale_title = "score (1-10)";
  hm.width = std::max(560, 140 + 56 * static_cast<int>(lengths.size()));
  return "<figure>" + svg::heatmap(hm) + "</figure>\n";
}

std::string niah_section(const ReportInputs& in) {
  std::string h;
  int shown = 0;
  for (const RunInput& run : in.runs) {
    const json& b = run.results.value("breakdowns", json::object());
    if (!b.contains("niah") || !b["niah"].contains("cell")) continue;
    ++shown;
    h += "<h3>" + esc(run.label) + "</h3>\n" +
         niah_heatmap("Needle score by context length and depth", b["niah"]["cell"], "needle_score,none");
    h += note("Colour and number: gkamradt's 1-10 score from the needle recall (10: the whole answer was in the "
              "response). Grey: a cell not run (longer than the model's window). The recall per cell is in the "
              "CSV export.");
  }
  if (shown == 0) {
    h += note("No run here has the niah task. HINT: mlabench run --tasks niah (the paper's 1K-128K grid) or "
              "--set niah.generator.context_lengths=[1000,4000] for a small one");
    return h;
  }
  const json& f = in.paper.figure4;
  if (f.contains("values")) {
    svg::Heatmap hm{.title = "The paper's Figure 4 (" + str(f, "model") + ", p. " + str(f, "page") + "), read off the figure",
                    .x_title = "context length (tokens)", .y_title = "needle depth (%)",
                    .x_labels = f["x_labels"].get<std::vector<std::string>>(),
                    .y_labels = f["y_labels"].get<std::vector<std::string>>(),
                    .values = f["values"].get<std::vector<std::vector<double>>>(),
                    .lo = 1, .hi = 10, .scale_title = "score (1-10)"};
    hm.width = std::max(560, 140 + 56 * static_cast<int>(hm.x_labels.size()));
    h += "<h3>The paper</h3>\n<figure>" + svg::heatmap(hm) + "</figure>\n" + note(str(f, "note"));
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------- performance

std::string bench_table(const BenchInput& b) {
  std::string h =
      "<table class=\"sortable\"><thead><tr><th>Batch</th><th>Prompt</th><th>Gen</th><th>Passes</th>"
      "<th>Prefill tok/s</th><th>Prefill TFLOP/s</th><th>Decode tok/s (all decoding)</th><th>TTFT p50 ms</th>"
      "<th>TTFT p99 ms</th><th>TPOT p50 ms</th><th>TPOT p99 ms</th><th>Decode GB/s</th><th>Roofline</th>"
      "<th>KV B/token</th><th>Prefix tokens reused</th></tr></thead><tbody>\n";
  for (const json& row : b.bench["rows"]) {
    // One cell: the number for sorting, the text with `digits` decimals (`scale` for percentages).
    auto cell = [&](const char* key, const char* pct, int digits, double scale = 1, const char* unit = "") {
      const double v = bench_number(row, key, pct);
      return td_num(v, fmt::format("{:.{}f}{}", scale * v, digits, unit));
    };
    h += "<tr>" + cell("batch", nullptr, 0) + cell("prompt_tokens", nullptr, 0) + cell("gen_tokens", nullptr, 0) +
         td(str(row, "mode", "prefill+decode")) + cell("prefill_tokens_per_s", nullptr, 1) +
         cell("prefill_tflop_per_s", nullptr, 1) + cell("decode_tokens_per_s", nullptr, 1) + cell("ttft_ms", "p50", 1) +
         cell("ttft_ms", "p99", 1) + cell("tpot_ms", "p50", 2) + cell("tpot_ms", "p99", 2) +
         cell("decode_achieved_gb_per_s", nullptr, 1) + cell("roofline_share", nullptr, 0, 100, "%") +
         cell("kv_bytes_per_token", nullptr, 0) + cell("prefix_tokens_reused", nullptr, 0) + "</tr>\n";
  }
  return h + "</tbody></table>\n";
}

// What the columns measure: the file's own "measures" (schema 2), or what schema 1 measured.
std::string bench_measures_note(const BenchInput& b) {
  if (bench_schema(b.bench) < 2)
    return note("Bench schema 1: TTFT came from a second pass over prompts already in the prefix cache, so it "
                "understates the time to first token of a new prompt (prefill tok/s was measured on uncached "
                "prompts). Decode tok/s counts the steps in which every sequence was decoding.");
  const json& m = b.bench.value("measures", json::object());
  std::string h = "<details><summary>What each column measures</summary><ul>\n";
  for (const auto& [key, what] : m.items())
    h += "<li><code>" + esc(key) + "</code>: " + esc(what.is_string() ? what.get<std::string>() : what.dump()) +
         "</li>\n";
  return h + "</ul></details>\n";
}

// One line per bench label, or per (label, prompt length) when the rows have several prompt lengths.
svg::LineChart throughput_chart(const ReportInputs& in, const char* key, const std::string& title) {
  svg::LineChart c;
  c.width = 600;
  c.title = title;
  c.x = {"batch size (sequences)", svg::Scale::LOG2};
  c.y = {"tokens/s", svg::Scale::LINEAR};
  const bool by_prompt = bench_prompts_vary(in);
  for (const BenchInput& b : in.benches) {
    std::map<double, svg::Series> by_length;
    for (const json& row : b.bench["rows"]) {
      const double prompt = bench_number(row, "prompt_tokens"), v = bench_number(row, key);
      if (!std::isfinite(v)) continue;  // a row without this pass (prefill-only, decode-only)
      svg::Series& s = by_length[by_prompt ? prompt : 0];
      s.name = by_prompt ? fmt::format("{}, prompt {:.0f}", b.label, prompt) : b.label;
      s.x.push_back(bench_number(row, "batch"));
      s.y.push_back(v);
    }
    for (auto& [_, s] : by_length) c.series.push_back(std::move(s));
  }
  return c;
}

svg::BarChart percentile_chart(const BenchInput& b, const char* key, const std::string& what, bool by_prompt) {
  svg::BarChart c{.title = b.label + ": " + what + " by shape", .value_title = "milliseconds",
                  .series = {"p50", "p90", "p99"}, .groups = {}, .value_labels = true, .width = 600, .height = 360};
  for (const json& row : b.bench["rows"])
    if (std::isfinite(bench_number(row, key, "p50")))
      c.groups.push_back({.label = bench_row_name(row, by_prompt),
                          .values = {bench_number(row, key, "p50"), bench_number(row, key, "p90"),
                                     bench_number(row, key, "p99")}});
  return c;
}

std::string performance_section(const ReportInputs& in) {
  std::string h;
  if (in.benches.empty())
    h += note("No bench JSON given. HINT: mlabench bench --model M --device cuda --out bench.json, then pass "
              "bench.json to mlabench report");
  for (const BenchInput& b : in.benches) {
    const json& params = b.bench.value("params", json::object());
    h += "<h3>" + esc(b.label) + "</h3>\n" +
         note(fmt::format("{} on {}; prompt {} tokens, {} generated per sequence in decode passes; commit {}.",
                          str(b.bench, "model"),
                          str(b.bench.value("device_info", json::object()), "gpu", str(b.bench, "device")),
                          str(params, "prompt"), str(params, "gen"), str(b.bench, "commit"))) +
         bench_table(b) + bench_measures_note(b);
  }
  if (!in.benches.empty()) {
    h += "<div class=\"charts\">\n<figure>" +
         svg::line_chart(throughput_chart(in, "decode_tokens_per_s", "Decode throughput (generated tokens/s)")) +
         "</figure>\n<figure>" +
         svg::line_chart(throughput_chart(in, "prefill_tokens_per_s", "Prefill throughput (prompt tokens/s)")) +
         "</figure>\n";
    const bool by_prompt = bench_prompts_vary(in);
    for (const BenchInput& b : in.benches) {
      const std::string ttft = bench_schema(b.bench) < 2 ? "time to first token (schema 1: prompt already cached)"
                                                         : "time to first token (uncached prompt, with queueing)";
      for (const auto& [key, what] : {std::pair<const char*, std::string>{"ttft_ms", ttft}, {"tpot_ms", "time per output token"}}) {
        const svg::BarChart chart = percentile_chart(b, key, what, by_prompt);
        if (!chart.groups.empty()) h += "<figure>" + svg::bar_chart(chart) + "</figure>\n";
      }
    }
    h += "</div>\n";
  }
  svg::BarChart kv{.title = "KV-cache bytes per token", .value_title = "bytes per token",
                   .series = {"KV cache"}, .groups = {}};
  for (const std::string& l : in.labels) {
    const double v = kv_bytes_per_token(in, l);
    if (std::isfinite(v)) kv.groups.push_back({.label = l, .values = {v}});
  }
  if (!kv.groups.empty()) h += "<figure>" + svg::bar_chart(kv) + "</figure>\n";
  // The paper counts KV-cache elements per token (any precision); bytes = elements x bytes per element.
  std::string paper_kv;
  for (const PaperNumber& n : in.paper.numbers)
    if (n.benchmark.starts_with("KV cache"))
      paper_kv += fmt::format("{}{} {}", paper_kv.empty() ? "" : ", ", n.model, svg::compact_number(n.value));
  if (!paper_kv.empty())
    h += note("The paper's KV cache per token, in elements (" + cite(in, "Table 9") + "): " + paper_kv +
              ". In BF16 a token's bytes are twice its elements.");
  return h;
}

// ---------------------------------------------------------------------------------------------------- samples

std::string field(const std::string& name, const std::string& text, size_t keep) {
  return "<div class=\"field\"><div class=\"fname\">" + esc(name) + "</div><pre>" + esc(elide(text, keep)) +
         "</pre></div>\n";
}

std::string text_of(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string sample_html(const json& line, size_t keep, bool open) {
  std::string score;
  if (line.contains("metrics"))
    for (const auto& [k, v] : line["metrics"].items())
      score += (score.empty() ? "" : ", ") + k + " = " + (v.is_number() ? format_metric(v.get<double>()) : v.dump());
  std::string h = std::string(open ? "<details class=\"sample\" open>" : "<details class=\"sample\">") +
                  "<summary>" + esc(str(line, "subtask")) + " #" + esc(str(line, "doc_id")) +
                  " <span class=\"score\">" + esc(score) + "</span></summary>\n";
  h += field("prompt", str(line, "context"), keep);
  if (line.contains("choices")) {
    h += "<table><thead><tr><th>Choice</th><th>Log-probability</th><th>Greedy</th><th></th></tr></thead><tbody>\n";
    const json& choices = line["choices"];
    for (size_t i = 0; i < choices.size(); ++i) {
      const bool has_lp = line.contains("logprobs") && i < line["logprobs"].size() && line["logprobs"][i].is_number();
      const double lp = has_lp ? line["logprobs"][i].get<double>() : std::nan("");
      std::string mark;
      if (line.value("gold", int64_t{-1}) == static_cast<int64_t>(i)) mark += "gold ";
      if (line.value("pred", int64_t{-1}) == static_cast<int64_t>(i)) mark += "predicted";
      h += "<tr>" + td(text_of(choices[i])) + td_num(lp, fmt::format("{:.4f}", lp)) +
           td(line.contains("is_greedy") && i < line["is_greedy"].size() ? text_of(line["is_greedy"][i]) : "") +
           td(mark) + "</tr>\n";
    }
    h += "</tbody></table>\n";
  }
  if (line.contains("response")) h += field("response", str(line, "response"), keep);
  if (line.contains("responses"))
    for (size_t i = 0; i < line["responses"].size(); ++i)
      h += field(fmt::format("response {}", i), text_of(line["responses"][i]), keep);
  if (line.contains("filtered"))
    for (const auto& [f, v] : line["filtered"].items()) h += field("extracted answer (" + f + ")", text_of(v), keep);
  if (line.contains("target")) h += field("target", text_of(line["target"]), keep);
  if (line.contains("verdicts"))
    for (size_t i = 0; i < line["verdicts"].size(); ++i)
      h += field(fmt::format("verdict {}", i), str(line["verdicts"][i], "result"), keep);
  h += field("score", score, keep);
  return h + "</details>\n";
}

std::string samples_section(const ReportInputs& in, const ReportOptions& o) {
  std::string h =
      "<p><button type=\"button\" data-expand=\"open\" data-scope=\"samples\">Expand all</button> "
      "<button type=\"button\" data-expand=\"close\" data-scope=\"samples\">Collapse all</button></p>\n";
  if (in.runs.empty()) h += note("No run folders given, so no samples. HINT: pass a folder written by mlabench run");
  for (const RunInput& run : in.runs) {
    h += "<h3>" + esc(run.label) + "</h3>\n";
    for (const std::string& task : run_tasks(run.results)) {
      const std::vector<json>& lines = run.samples.at(task);
      const int64_t total = run.samples_total.at(task);
      // Open by default: a reader (and the screenshot) sees each task's first sample and the others' scores.
      h += "<details class=\"task\" open><summary>" + esc(task) + ": the first " + std::to_string(lines.size()) + " of " +
           (total < 0 ? std::string("? (no samples file)") : std::to_string(total)) + " samples</summary>\n";
      for (size_t i = 0; i < lines.size(); ++i) h += sample_html(lines[i], o.sample_chars, i == 0);
      h += "</details>\n";
    }
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------- page

const char* kStyle = R"(
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; --ok: #1a7f37; --off: #bc4c00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--fg); background: #fff; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 18px; border-bottom: 1px solid var(--line); }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 20px; margin: 28px 0 10px; padding-top: 8px; border-top: 2px solid var(--fg); }
h3 { font-size: 16px; margin: 18px 0 8px; }
h4 { font-size: 14px; margin: 14px 0 6px; }
nav a { margin-right: 14px; color: #0550ae; text-decoration: none; }
nav { padding: 6px 0 12px; }
.src { font-weight: normal; color: var(--muted); font-size: 13px; }
.note, .proto { color: var(--muted); font-size: 13px; margin: 6px 0; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { background: var(--bg2); position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; }
th[aria-sort="ascending"]::after { content: " \25B2"; }
th[aria-sort="descending"]::after { content: " \25BC"; }
table.kv th { background: var(--bg2); white-space: nowrap; }
table.kv td { word-break: break-all; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ok { color: var(--ok); } td.off { color: var(--off); }
tbody tr:nth-child(even) { background: #fbfcfd; }
details { margin: 4px 0; }
details > summary { cursor: pointer; padding: 2px 0; }
details.breakdown, details.task { border-left: 3px solid var(--line); padding-left: 10px; }
details.sample { border: 1px solid var(--line); border-radius: 4px; padding: 4px 8px; margin: 6px 0; }
.score { color: var(--muted); font-size: 12px; }
.field { margin: 6px 0; }
.fname { font-size: 12px; font-weight: 600; color: var(--muted); }
pre { margin: 2px 0; padding: 6px 8px; background: var(--bg2); border: 1px solid var(--line); border-radius: 3px; white-space: pre-wrap; word-break: break-word; max-height: 360px; overflow: auto; font-size: 12px; }
figure { margin: 8px 0 16px; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 24px; }
svg.chart { max-width: 100%; height: auto; background: #fff; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
button { font: inherit; font-size: 13px; padding: 2px 10px; }
footer { color: var(--muted); font-size: 12px; padding: 18px 24px 30px; border-top: 1px solid var(--line); margin-top: 30px; }
@media print { details { display: block; } thead th { position: static; } }
)";

const char* kScript = R"(
(function () {
  'use strict';
  function key(cell) {
    var v = cell ? cell.getAttribute('data-v') : null;
    if (v !== null) { var x = parseFloat(v); return isNaN(x) ? -Infinity : x; }
    return cell ? cell.textContent.trim().toLowerCase() : '';
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var head = table.tHead, body = table.tBodies[0];
    if (!head || !body || !head.rows.length) return;
    var ths = head.rows[0].cells;
    Array.prototype.forEach.call(ths, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var up = th.getAttribute('aria-sort') !== 'ascending';
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
          return up ? c : -c;
        });
        Array.prototype.forEach.call(ths, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') { sort(); } });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('button[data-expand]'), function (button) {
    button.addEventListener('click', function () {
      var scope = document.getElementById(button.getAttribute('data-scope'));
      var open = button.getAttribute('data-expand') === 'open';
      if (!scope) return;
      Array.prototype.forEach.call(scope.querySelectorAll('details'), function (d) { d.open = open; });
    });
  });
})();
)";

std::string section(const char* id, const char* title, const std::string& body) {
  return fmt::format("<section id=\"{}\">\n<h2>{}</h2>\n{}</section>\n", id, title, body);
}

}  // namespace

std::string render_html(const ReportInputs& in, const ReportOptions& o) {
  std::vector<std::string> run_labels, bench_labels;
  std::vector<std::vector<std::pair<std::string, std::string>>> run_columns, bench_columns;
  for (const RunInput& r : in.runs) run_labels.push_back(r.label), run_columns.push_back(run_summary_rows(r));
  for (const BenchInput& b : in.benches) bench_labels.push_back(b.label), bench_columns.push_back(bench_summary_rows(b));
  std::string summary;
  if (!run_columns.empty()) summary += "<h3>Evaluation runs</h3>\n" + summary_table(run_labels, run_columns);
  if (!bench_columns.empty()) summary += "<h3>Benchmarks</h3>\n" + summary_table(bench_labels, bench_columns);
  std::string results;
  for (const RunInput& r : in.runs) results += run_results(r);
  if (in.runs.empty()) results = note("No run folders given. HINT: mlabench run ... --output DIR, then pass DIR");
  else results += run_health_section(in);  // reports/run_health_section.cpp

  const std::string title = fmt::format("mlabench report: {}", fmt::join(in.labels, ", "));
  const std::string csp = "default-src 'none'; style-src 'sha256-" + data::sha256_base64(kStyle) +
                          "'; script-src 'sha256-" + data::sha256_base64(kScript) +
                          "'; img-src data:; font-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'";
  std::string page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"" + csp + "\">\n"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                     "<meta name=\"generator\" content=\"" + esc(o.generator) + "\">\n"
                     "<title>" + esc(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<header>\n"
                     "<h1>" + esc(title) + "</h1>\n<nav><a href=\"#summary\">Runs</a><a href=\"#results\">Results</a>"
                     "<a href=\"#paper\">Paper</a><a href=\"#compare\">Side by side</a><a href=\"#niah\">Needle in a "
                     "haystack</a><a href=\"#performance\">Throughput and KV cache</a><a href=\"#ablation\">Ablation</a><a href=\"#samples\">Samples</a>" +
                     std::string(in.comparisons.empty() ? "" : "<a href=\"#paired\">Paired comparison</a>") +
                     "</nav>\n</header>\n<main>\n";
  page += section("summary", "Runs", summary);
  page += section("results", "Results", note("Value, standard error and a 95% interval (value \u00b1 1.96 stderr, the "
                                             "normal approximation; clipped to [0, 1] for proportions). Click a "
                                             "column to sort.") + results);
  page += section("paper", "The paper's numbers beside ours", paper_section(in, o));
  page += section("compare", "Side by side", compare_section(in));
  page += section("niah", "Needle in a haystack", niah_section(in));
  page += section("performance", "Throughput, latency and KV cache", performance_section(in));
  page += section("ablation", "Architecture ablation: MLA, MHA, GQA, MQA at one shape", ablation_section(in));
  page += section("samples", "Samples", samples_section(in, o));
  // Only with report --compare: the runs alone do not say which pairs to compare (compare_section.cpp).
  if (!in.comparisons.empty()) page += section("paired", "Paired comparison", paired_comparison_section(in.comparisons));
  page += "</main>\n<footer>Made by " + esc(o.generator) +
          " from the inputs listed under Runs. The page fetches nothing: every style, script and chart is inline."
          "</footer>\n<script>" + kScript + "</script>\n</body>\n</html>\n";
  return page;
}

}  // namespace mlabench::reports
