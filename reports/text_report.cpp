// The Markdown and CSV summaries (terminals, pull requests, spreadsheets), the number formats every writer
// shares, and write_report.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <string_view>
#include <vector>

#include "core/check.h"
#include "core/file_write.h"
#include "reports/report.h"

namespace mlabench::reports {

namespace fs = std::filesystem;

ReportFormat parse_report_format(const std::string& name) {
  if (name == "html") return ReportFormat::HTML;
  if (name == "md" || name == "markdown") return ReportFormat::MARKDOWN;
  if (name == "csv") return ReportFormat::CSV;
  MLABENCH_FAIL("--format \"{}\" is not a report format. HINT: html, md or csv", name);
}

std::string format_metric(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "n/a"; }

std::string format_interval(const MetricValue& m) {
  const auto [lo, hi] = interval95(m);
  return std::isfinite(lo) ? fmt::format("[{}, {}]", format_metric(lo), format_metric(hi)) : "n/a";
}

std::string format_delta(double points) {
  if (!std::isfinite(points)) return "n/a";
  const double r = std::round(points * 10) / 10;
  if (r == 0) return "0.0";
  return fmt::format("{:+.1f}", r);
}

std::string shell_join(const json& argv) {
  std::string out;
  for (const json& a : argv) {
    const std::string s = a.is_string() ? a.get<std::string>() : a.dump();
    const bool plain = !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         "0123456789-_./=:,+@%") == std::string::npos;
    std::string quoted = "'";
    for (char c : s) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += (out.empty() ? "" : " ") + (plain ? s : quoted + "'");
  }
  return out;
}

std::string length_label(int64_t tokens) {
  // Figure 4 truncates (12,545 is "12K"); below 10K a decimal keeps 1,500 from reading as "1K".
  if (tokens >= 10000 || (tokens >= 1000 && tokens % 1000 == 0)) return fmt::format("{}K", tokens / 1000);
  if (tokens >= 1000) return fmt::format("{:.1f}K", static_cast<double>(tokens / 100) / 10);
  return std::to_string(tokens);
}

namespace {

// Control characters in text from a results file (a label, a model name, a task's output) shown as \xHH (C0 and
// DEL) or \u00HH (C1, U+0080..U+009F in UTF-8), so a report written to a terminal or a file cannot carry escape
// sequences; `keep` lists the ones left as they are.
std::string visible_controls(const std::string& s, std::string_view keep = "") {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 || c == 0x7F) && keep.find(static_cast<char>(c)) == std::string_view::npos) {
      out += fmt::format("\\x{:02X}", c);
    } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      out += fmt::format("\\u00{:02X}", static_cast<unsigned char>(s[++i]));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Markdown table cells: a '|' or a line break would end the cell, Markdown renders raw HTML, and control
// characters are made visible.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : visible_controls(s, "\n\r\t")) {
    if (c == '|') out += "\\|";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '\n' || c == '\r' || c == '\t') out += ' ';
    else out += c;
  }
  return out;
}

// RFC 4180 quoting; a text cell that a spreadsheet would read as a formula (= + - @ first) gets a leading quote.
std::string csv_cell(const std::string& s, bool text = true) {
  std::string v = visible_controls(s, "\n\r\t");
  if (text && !v.empty() && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@')) v = "'" + v;
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_num(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : ""; }

std::string stderr_text(const MetricValue& m) { return m.stderr_ ? format_metric(*m.stderr_) : "n/a"; }

}  // namespace

std::string render_markdown(const ReportInputs& in, const ReportOptions& o) {
  std::vector<std::string> labels;
  for (const std::string& l : in.labels) labels.push_back(md_cell(l));
  std::string md = fmt::format("# mlabench report: {}\n\n", fmt::join(labels, ", "));
  md += "## Runs\n\n| label | model | weights | device | precision | commit | date |\n|---|---|---|---|---|---|---|\n";
  for (const RunInput& r : in.runs) {
    const json& c = r.results["config"];
    const json& p = r.results["provenance"];
    std::string weights = "n/a";
    if (p.contains("weights"))
      weights = p["weights"].value("kind", "") == "random"
                    ? fmt::format("random (seed {})", p["weights"].value("seed", int64_t{0}))
                    : "sha256 " + p["weights"].value("sha256", std::string()).substr(0, 16);
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", md_cell(r.label), md_cell(c.value("model", c.value("backend", ""))),
                      md_cell(weights), md_cell(c.value("device", "n/a")), md_cell(c.value("precision", "n/a")),
                      md_cell(p.value("commit", "")), md_cell(p.value("date", "")));
  }
  for (const BenchInput& b : in.benches) {
    // A CPU bench writes "device_info": null.
    const json& d = b.bench.contains("device_info") && b.bench["device_info"].is_object() ? b.bench["device_info"]
                                                                                          : json::object();
    md += fmt::format("| {} | {} (bench) | {} | {} | {} | {} | {} |\n", md_cell(b.label),
                      md_cell(b.bench.value("model", "")), md_cell(b.bench.value("weights", "")),
                      md_cell(d.value("gpu", b.bench.value("device", ""))), md_cell(d.value("dtype", "")),
                      md_cell(b.bench.value("commit", "")), md_cell(b.bench.value("date", "")));
  }

  md += "\n## Results\n\n| label | task | metric | filter | value | stderr | 95% CI | n |\n|---|---|---|---|---:|---:|---|---:|\n";
  for (const RunInput& r : in.runs)
    for (const std::string& task : run_tasks(r.results))
      for (const MetricValue& m : section_metrics(r.results, task))
        md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", md_cell(r.label), md_cell(task), md_cell(m.metric),
                          md_cell(m.filter), format_metric(m.value), stderr_text(m), format_interval(m), m.n);

  const std::vector<PaperComparison> rows = paper_comparisons(in, o.paper_model);
  if (!rows.empty()) {
    md += "\n## The paper's numbers beside ours (percent)\n\n| label | benchmark | ours | paper model | paper | "
          "difference | source |\n|---|---|---:|---|---:|---:|---|\n";
    for (const PaperComparison& c : rows) {
      const double ours = 100 * c.ours.value;
      md += fmt::format("| {} | {} ({}) | {:.1f} | {} | {} | {} | {} |\n", md_cell(c.label), md_cell(c.benchmark->name),
                        md_cell(c.benchmark->task), ours, md_cell(c.model ? c.model->name : "none matched"),
                        c.number ? fmt::format("{:.1f}", c.number->value) : "n/a",
                        c.number ? format_delta(ours - c.number->value) : "n/a",
                        c.number ? fmt::format("{}, p. {}", c.number->table, c.number->page) : "");
    }
  }

  if (!in.benches.empty()) {
    // TTFT is of uncached prompts from bench schema 2 on; schema 1 files measured it on cached ones (marked).
    md += "\n## Throughput and KV cache\n\n| label | batch | prompt | prefill tok/s | decode tok/s | TTFT p50 ms | "
          "TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | KV bytes/token |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    auto number = [](double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "n/a"; };
    bool schema1 = false;
    for (const BenchInput& b : in.benches)
      for (const json& row : b.bench["rows"]) {
        const std::string mark = bench_schema(b.bench) < 2 ? " (cached)" : "";
        schema1 = schema1 || !mark.empty();
        md += fmt::format("| {} | {} | {} | {} | {} | {}{} | {}{} | {} | {} | {} |\n", md_cell(b.label),
                          number(bench_number(row, "batch"), 0), number(bench_number(row, "prompt_tokens"), 0),
                          number(bench_number(row, "prefill_tokens_per_s"), 1),
                          number(bench_number(row, "decode_tokens_per_s"), 1),
                          number(bench_number(row, "ttft_ms", "p50"), 1), mark,
                          number(bench_number(row, "ttft_ms", "p99"), 1), mark,
                          number(bench_number(row, "tpot_ms", "p50"), 2), number(bench_number(row, "tpot_ms", "p99"), 2),
                          number(bench_number(row, "kv_bytes_per_token"), 0));
      }
    md += "\nTTFT: time to first token of an uncached prompt, the batch submitted at once (includes queueing); decode "
          "tok/s: over the steps in which every sequence decodes.";
    if (schema1) md += " (cached): a bench schema 1 file, whose TTFT came from prompts already in the prefix cache.";
    md += "\n";
  }
  md += fmt::format("\nMade by {}.\n", o.generator);
  return md;
}

std::string render_csv(const ReportInputs& in, const ReportOptions& o) {
  std::string csv = "kind,label,task,section,metric,filter,value,stderr,ci95_low,ci95_high,n,paper_model,paper_value,"
                    "difference_points,paper_source\n";
  const std::vector<PaperComparison> paper = paper_comparisons(in, o.paper_model);
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t i = 0; i < cells.size(); ++i) l += (i ? "," : "") + cells[i];
    csv += l + "\n";
  };
  for (const RunInput& r : in.runs) {
    for (const std::string& task : run_tasks(r.results)) {
      // The task's own metrics, then every group and subtask under it.
      std::vector<std::string> sections = {task};
      const json& members = r.results.value("group_subtasks", json::object());
      for (size_t i = 0; i < sections.size(); ++i)
        if (members.contains(sections[i]))
          for (const json& m : members[sections[i]])
            if (m.get<std::string>() != sections[i]) sections.push_back(m.get<std::string>());
      for (const std::string& s : sections)
        for (const MetricValue& m : section_metrics(r.results, s)) {
          const auto [lo, hi] = interval95(m);
          std::vector<std::string> row = {"metric", csv_cell(r.label), csv_cell(task), csv_cell(s), csv_cell(m.metric),
                                          csv_cell(m.filter), csv_num(m.value), m.stderr_ ? csv_num(*m.stderr_) : "",
                                          csv_num(lo), csv_num(hi), std::to_string(m.n), "", "", "", ""};
          for (const PaperComparison& c : paper)
            if (s == task && c.label == r.label && c.benchmark->task == task && c.ours.metric == m.metric &&
                c.ours.filter == m.filter && c.number) {
              row[11] = csv_cell(c.model->name);
              row[12] = csv_num(c.number->value);
              row[13] = csv_num(std::round((100 * m.value - c.number->value) * 100) / 100);
              row[14] = csv_cell(fmt::format("{}, p. {}", c.number->table, c.number->page));
            }
          line(row);
        }
      // Breakdowns (LiveCodeBench by difficulty, NIAH per cell): section "field=value".
      for (const BreakdownValue& b : breakdown_values(r.results, task))
        for (const MetricValue& m : b.metrics)
          line({"breakdown", csv_cell(r.label), csv_cell(task), csv_cell(b.field + "=" + b.value), csv_cell(m.metric),
                csv_cell(m.filter), csv_num(m.value), m.stderr_ ? csv_num(*m.stderr_) : "", "", "",
                std::to_string(m.n), "", "", "", ""});
    }
  }
  for (const BenchInput& b : in.benches)
    for (const json& row : b.bench["rows"]) {
      // Rows are told apart by batch, and by prompt length too where a file's rows have several.
      std::set<double> prompts;
      for (const json& r : b.bench["rows"]) prompts.insert(bench_number(r, "prompt_tokens"));
      const std::string at = "batch=" + row["batch"].dump() +
                             (prompts.size() > 1 ? ";prompt=" + row.value("prompt_tokens", json()).dump() : "");
      auto add = [&](const std::string& metric, double v) {
        if (std::isfinite(v)) line({"bench", csv_cell(b.label), csv_cell(b.bench.value("model", "")), at, metric, "",
                                    csv_num(v), "", "", "", "", "", "", "", ""});
      };
      for (const char* k : {"prefill_tokens_per_s", "prefill_tflop_per_s", "decode_tokens_per_s",
                            "decode_achieved_gb_per_s", "roofline_share", "kv_bytes_per_token"})
        add(k, bench_number(row, k));
      for (const char* k : {"ttft_ms", "tpot_ms"})
        for (const char* p : {"p50", "p90", "p99"}) add(std::string(k) + "_" + p, bench_number(row, k, p));
    }
  return csv;
}

void write_report(const std::vector<std::string>& inputs, const fs::path& out, ReportFormat format,
                  const LoadOptions& load, const ReportOptions& options) {
  const ReportInputs in = load_report_inputs(inputs, load);
  const std::string text = format == ReportFormat::HTML       ? render_html(in, options)
                           : format == ReportFormat::MARKDOWN ? render_markdown(in, options)
                                                              : render_csv(in, options);
  if (out == "-")
    std::fwrite(text.data(), 1, text.size(), stdout);
  else
    write_file_atomically(out, text);
}

}  // namespace mlabench::reports
