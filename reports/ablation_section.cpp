// The report's "Architecture ablation" section, from `mlabench ablate` documents (cli/cli_ablate.cpp): the
// variants' table, a Pareto chart of tokens/s per sequence against tokens/s per GPU over the batch sweep, KV bytes
// per token, Figure 1(b) beside the paper's, and Table 1 for the paper's configs.
#include "reports/ablation_section.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "reports/html_escape.h"
#include "reports/svg_chart.h"

namespace mlabench::reports {

namespace {

double number(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

std::string cell(double v, int digits, double scale = 1, const char* unit = "") {
  if (!std::isfinite(v)) return "<td class=\"num\" data-v=\"NaN\">n/a</td>";
  return fmt::format("<td class=\"num\" data-v=\"{:.6g}\">{:.{}f}{}</td>", v, scale * v, digits, unit);
}

std::string text_cell(const json& j, const char* key) {
  return "<td>" + escape_html(j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "") + "</td>";
}

std::string p(const std::string& text) { return "<p class=\"note\">" + escape_html(text) + "</p>\n"; }

// The batch-1 row's TTFT or TPOT percentile.
double latency_at_batch1(const json& row, const char* key, const char* pct) {
  for (const json& l : row.value("latency", json::array()))
    if (number(l, "batch") == 1 && l.contains(key) && l[key].is_object()) return number(l[key], pct);
  return std::nan("");
}

std::string variants_table(const json& a) {
  std::string h =
      "<table class=\"sortable\"><thead><tr><th>Variant</th><th>Kind</th><th>Attention</th><th>FFN</th>"
      "<th>Params (B)</th><th>Active (B)</th><th>KV elements / token</th><th>KV B / token (allocated)</th>"
      "<th>B / element</th><th>Sequences at context</th><th>Max generation tok/s</th><th>At batch</th>"
      "<th>Prefill tok/s</th><th>TTFT p50 ms (b1)</th><th>TPOT p50 ms (b1)</th><th>TPOT p99 ms (b1)</th>"
      "<th>KV vs first</th><th>First's max throughput / this</th></tr></thead><tbody>\n";
  for (const json& r : a["rows"]) {
    h += "<tr>" + text_cell(r, "label") + text_cell(r, "kind") + text_cell(r, "attention") + text_cell(r, "ffn") +
         cell(number(r, "params_total") / 1e9, 2) + cell(number(r, "params_active_per_token") / 1e9, 2) +
         cell(number(r, "kv_elements_per_token"), 0) + cell(number(r, "kv_bytes_per_token_allocated"), 0) +
         cell(number(r, "kv_bytes_per_element_allocated"), 0) + cell(number(r, "concurrent_sequences_at_context"), 0) +
         cell(number(r, "max_generation_tokens_per_s"), 1) + cell(number(r, "max_generation_at_batch"), 0) +
         cell(number(r, "prefill_tokens_per_s"), 0) + cell(latency_at_batch1(r, "ttft_ms", "p50"), 1) +
         cell(latency_at_batch1(r, "tpot_ms", "p50"), 2) + cell(latency_at_batch1(r, "tpot_ms", "p99"), 2) +
         cell(number(r, "kv_bytes_vs_first"), 2, 1, "x") + cell(number(r, "first_max_throughput_over_this"), 2, 1, "x") +
         "</tr>\n";
  }
  return h + "</tbody></table>\n";
}

// One line per variant over its decode rows in batch order: x = generated tokens/s of the GPU, y = of one sequence.
svg::LineChart pareto_chart(const json& a) {
  svg::LineChart c;
  c.width = 640;
  c.title = "Tokens/s per sequence against tokens/s per GPU (batch sweep)";
  c.x = {"generated tokens/s per GPU", svg::Scale::LINEAR};
  c.y = {"generated tokens/s per sequence", svg::Scale::LINEAR};
  for (const json& r : a["rows"]) {
    std::vector<std::pair<double, const json*>> pts;
    for (const json& s : r["decode_sweep"]) pts.emplace_back(number(s, "batch"), &s);
    std::sort(pts.begin(), pts.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    svg::Series s{.name = r["label"].get<std::string>(), .x = {}, .y = {}};
    for (const auto& [batch, pt] : pts) {  // a batch both listed and in the max sweep appears twice: both drawn
      s.x.push_back(number(*pt, "tokens_per_s"));
      s.y.push_back(number(*pt, "tokens_per_s_per_sequence"));
    }
    c.series.push_back(std::move(s));
  }
  return c;
}

svg::BarChart kv_chart(const json& a) {
  svg::BarChart c{.title = "KV-cache bytes per token by variant", .value_title = "bytes per token",
                  .series = {"analytic (BF16)", "as allocated"}, .groups = {}, .value_labels = true,
                  .width = 640, .height = 360};
  for (const json& r : a["rows"])
    c.groups.push_back({.label = r["label"].get<std::string>(),
                        .values = {number(r, "kv_bytes_per_token_bf16"), number(r, "kv_bytes_per_token_allocated")}});
  return c;
}

std::string figure1b_table(const json& a) {
  const json& f = a.value("figure1b", json::object());
  std::string h = "<table><thead><tr><th>Pair</th><th>KV-cache reduction</th><th>Maximum generation throughput "
                  "ratio</th><th>Hardware and precision</th></tr></thead><tbody>\n";
  const std::string ours_hw = fmt::format("{} ({}), {} weights and cache, random weights; {}",
                                          a.value("device", std::string("?")),
                                          a.value("gpu", std::string("GPU not recorded")), a.value("precision", std::string("?")),
                                          "same run, same cache budget for every row");
  for (const json& o : f.value("ours", json::array()))
    h += "<tr>" + text_cell(o, "pair") + cell(number(o, "kv_reduction"), 1, 100, "%") +
         cell(number(o, "max_throughput_ratio"), 2, 1, "x") + "<td>" + escape_html(ours_hw) + "</td></tr>\n";
  if (f.contains("paper")) {
    const json& pp = f["paper"];
    h += "<tr><td>" + escape_html("paper: " + pp.value("pair", std::string())) + "</td>" +
         cell(number(pp, "kv_reduction"), 1, 100, "%") + cell(number(pp, "max_throughput_ratio"), 2, 1, "x") +
         text_cell(pp, "hardware") + "</tr>\n";
  }
  h += "</tbody></table>\n";
  if (f.contains("kv_from_configs")) {
    const json& k = f["kv_from_configs"];
    h += p(fmt::format("From the configs: DeepSeek-V2's cache against DeepSeek 67B's in BF16 is {:.1f}% smaller in "
                       "BF16, {:.1f}% in FP8 and {:.1f}% at ~6 bits per element (the paper: {:.1f}%). {}",
                       100 * number(k, "reduction_v2_bf16"), 100 * number(k, "reduction_v2_fp8"),
                       100 * number(k, "reduction_v2_6bit"), 100 * number(k, "paper_reduction"),
                       k.value("note", std::string())));
  }
  return h;
}

std::string table1(const json& a) {
  const json& pk = a.value("paper_kv", json::object());
  std::string h = "<table class=\"sortable\"><thead><tr><th>Model (config)</th><th>Mechanism</th><th>Formula</th>"
                  "<th>Terms</th><th>Elements / token</th><th>Elements / (d_h l)</th><th>BF16 bytes</th>"
                  "<th>Paper</th><th>Paper's source</th></tr></thead><tbody>\n";
  for (const json& m : pk.value("table1", json::array()))
    for (const json& r : m["rows"])
      h += "<tr><td>" + escape_html(m.value("model", std::string()) + (r.value("mechanism", std::string()) ==
                                    m.value("own_mechanism", std::string()) ? " (its own)" : "")) + "</td>" +
           text_cell(r, "mechanism") + text_cell(r, "formula") + text_cell(r, "terms") + cell(number(r, "elements"), 0) +
           cell(number(r, "elements_over_dh_l"), 2) + cell(number(r, "bf16_bytes"), 0) +
           cell(number(r, "paper_elements"), 0) + text_cell(r, "paper_source") + "</tr>\n";
  h += "</tbody></table>\n";
  if (pk.contains("paper_table1")) {
    const json& t = pk["paper_table1"];
    h += p(fmt::format("The paper's Table 1: MHA {}, GQA {}, MQA {}, MLA {} ({}).", t.value("MHA", ""),
                       t.value("GQA", ""), t.value("MQA", ""), t.value("MLA", ""), t.value("source", "")));
  }
  return h;
}

}  // namespace

std::string ablation_section(const ReportInputs& in) {
  if (in.ablations.empty())
    return p("No ablation JSON given. HINT: mlabench ablate --model configs/deepseek-v2-lite --device cuda --out DIR, "
             "then pass DIR/ablation.json to mlabench report");
  std::string h;
  for (const AblationInput& ab : in.ablations) {
    const json& a = ab.ablation;
    const json& params = a.value("params", json::object());
    h += "<h3>" + escape_html(a.value("base_model", std::string("?"))) + "</h3>\n" +
         p(fmt::format("Random weights at the base's hidden size, layers, heads and FFN; {} on {}; prompt {} tokens, {} "
                       "generated, batch sweep {}, KV cache budget {} GiB (0: what the GPU has left), sequences counted "
                       "at a {}-token context; commit {}, {}.{}",
                       a.value("precision", std::string("?")), a.value("device", std::string("?")),
                       params.value("prompt", 0), params.value("gen", 0), params.value("batch", std::string("?")),
                       params.value("kv_cache_gib", 0.0), params.value("context", 0),
                       a.value("commit", std::string("?")), a.value("date", std::string("?")),
                       a.value("complete", true) ? "" : " INCOMPLETE: the run stopped before its last variant.")) +
         variants_table(a) +
         "<div class=\"charts\">\n<figure>" + svg::line_chart(pareto_chart(a)) + "</figure>\n<figure>" +
         svg::bar_chart(kv_chart(a)) + "</figure>\n</div>\n" + "<h3>Figure 1(b): ours beside the paper's</h3>\n" +
         figure1b_table(a) + "<h3>Table 1: KV cache per token for the paper's configs</h3>\n" + table1(a);
  }
  return h;
}

}  // namespace mlabench::reports
