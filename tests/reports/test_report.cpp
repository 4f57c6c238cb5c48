// The report writers on real runs (replays through the evaluator on the real datasets, and the committed GPU
// bench JSON files): hostile model output and dataset text stay text; the page has only its own markup, script
// and style; the same inputs give the same bytes; Markdown and CSV carry the numbers; the paper's numbers are
// kept with their table and page and compared in percentage points; `mlabench run` writes report.html.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <set>

#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "reports/html_escape.h"
#include "reports/report.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::reports {
namespace {

namespace fs = std::filesystem;
using test::fresh_dir;
using test::mirror_fetch;

const std::string kHostile =
    "<script>alert(\"pwned\")</script> </textarea><img src=x onerror=alert(1)> \"double\" 'single' "
    "<a href=\"javascript:alert(2)\">click</a> javascript:alert(3) & &amp; The answer is 18.";

const fs::path kBaselines = fs::path(MLABENCH_TEST_DATA).parent_path().parent_path() / "reports" / "baselines";

// A run folder from a replay: gold answers, or every generation answered with `response`.
fs::path replay_run(const fs::path& dir, const std::vector<std::string>& names, int64_t limit,
                    const std::string& response = "", const std::string& model = "") {
  const fs::path replay = dir / "replay.jsonl";
  harness::write_oracle_replay(test::load_tasks(names, limit), harness::OracleAnswer::GOLD, replay);
  if (!response.empty()) {
    std::string text;
    std::ifstream in(replay);
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      if (j.contains("responses")) j["responses"] = {response};
      text += j.dump() + "\n";
    }
    std::ofstream(replay) << text;
  }
  auto backend = harness::make_replay_backend(replay.string());
  harness::EvalOptions o;
  o.tasks = fmt::format("{}", fmt::join(names, ","));
  o.limit = limit;
  o.output_dir = dir / "run";
  o.fetch = mirror_fetch();
  o.progress = false;
  o.config = {{"backend", "replay:" + replay.string()}};
  if (!model.empty()) o.config["model"] = model;
  o.provenance = {{"mlabench_version", "test"}, {"commit", "abc1234"}, {"date", "2026-11-23T00:00:00Z"},
                  {"command_line", {"mlabench", "run", "--tasks", o.tasks, "--system-prompt", "it's <b>"}}};
  harness::evaluate(*backend, o);
  return o.output_dir;
}

// Every tag in the page: the report's own vocabulary only. Markup from data would add a tag outside it. (A scan
// by hand: GCC 12 under ASan warns inside std::regex.)
std::set<std::string> tag_names(const std::string& html) {
  std::set<std::string> out;
  for (size_t at = html.find('<'); at != std::string::npos; at = html.find('<', at + 1)) {
    size_t end = at + 1;
    if (end < html.size() && html[end] == '/') ++end;
    if (end >= html.size() || !(std::isalpha(static_cast<unsigned char>(html[end])) || html[end] == '!')) continue;
    while (end < html.size() && (std::isalnum(static_cast<unsigned char>(html[end])) || html[end] == '!')) ++end;
    out.insert(html.substr(at + 1, end - at - 1));
  }
  return out;
}

// The value of every href="..." in the page.
std::vector<std::string> hrefs(const std::string& html) {
  std::vector<std::string> out;
  for (size_t at = html.find("href=\""); at != std::string::npos; at = html.find("href=\"", at + 1))
    out.push_back(html.substr(at + 6, html.find('"', at + 6) - at - 6));
  return out;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

TEST(HtmlEscape, MarkupQuotesControlBytesAndBrokenUtf8) {
  EXPECT_EQ(escape_html("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
  EXPECT_EQ(escape_html("a\x01" "b\x7f"), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
  EXPECT_EQ(escape_html("\xff\xc3"), "\xEF\xBF\xBD\xEF\xBF\xBD");           // invalid lead byte, cut sequence
  EXPECT_EQ(escape_html("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate is not UTF-8
  EXPECT_EQ(escape_html("\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x99\x82\t\n"), "\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x99\x82\t\n");
}

TEST(Report, HostileOutputAndLabelsStayText) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("report-hostile");
  const fs::path run = replay_run(dir, {"gsm8k_cot"}, 2, kHostile);
  const ReportInputs in = load_report_inputs({"<b>x</b>=" + run.string()});
  ASSERT_EQ(in.runs.size(), 1u);
  EXPECT_EQ(in.runs[0].label, "<b>x</b>");
  const std::string html = render_html(in, {.paper_model = "", .generator = "mlabench test", .sample_chars = 2000});

  EXPECT_EQ(count(html, "<script"), 1u);  // the report's own, at the end
  EXPECT_EQ(count(html, "</textarea"), 0u);
  EXPECT_EQ(count(html, "<img"), 0u);
  EXPECT_EQ(count(html, "<b>"), 0u);
  EXPECT_EQ(count(html, "href=\"javascript"), 0u);
  EXPECT_EQ(count(html, "onerror=alert(1)&gt;"), 2u);  // the response of each of the 2 documents
  EXPECT_GE(count(html, "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"), 1u);
  EXPECT_GE(count(html, "&lt;/textarea&gt;"), 1u);
  EXPECT_GE(count(html, "&#39;single&#39;"), 1u);
  EXPECT_GE(count(html, "&lt;a href=&quot;javascript:alert(2)&quot;&gt;"), 1u);
  EXPECT_GE(count(html, "&lt;b&gt;x&lt;/b&gt;"), 3u);  // summary, results, samples headings
  EXPECT_GE(count(html, "&#39;s &lt;b&gt;&#39;"), 1u);  // the command line, shell-quoted
  const std::set<std::string> allowed = {
      "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "h4", "nav", "a",
      "main", "section", "p", "table", "thead", "tbody", "tr", "th", "td", "details", "summary", "div", "pre",
      "span", "figure", "button", "footer", "script", "svg", "g", "text", "line", "rect", "circle", "polyline",
      "path", "defs", "pattern", "tspan", "linearGradient", "stop", "clipPath"};
  for (const std::string& t : tag_names(html)) {
    const std::string name = t[0] == '/' ? t.substr(1) : t;
    EXPECT_TRUE(allowed.contains(name)) << "tag <" << t << "> in the page";
  }
  // Links only jump within the page.
  const std::vector<std::string> links = hrefs(html);
  EXPECT_EQ(links.size(), 8u);  // the navigation bar
  for (const std::string& link : links) EXPECT_EQ(link.substr(0, 1), "#") << link;
  EXPECT_EQ(count(html, "style=\""), 0u);  // the CSP forbids style attributes

  // Markdown cells and CSV fields cannot be broken by the label either.
  const std::string md = render_markdown(in, {.paper_model = "", .generator = "t", .sample_chars = 10});
  EXPECT_NE(md.find("| &lt;b&gt;x&lt;/b&gt; | gsm8k_cot | exact_match | strict-match |"), std::string::npos) << md;
  const ReportInputs formula = load_report_inputs({"@SUM(A1),\"x\"=" + run.string()});
  const std::string csv = render_csv(formula, {.paper_model = "", .generator = "t", .sample_chars = 10});
  EXPECT_NE(csv.find("metric,\"'@SUM(A1),\"\"x\"\"\",gsm8k_cot,gsm8k_cot,exact_match,strict-match,"),
            std::string::npos) << csv;
  const ReportInputs esc = load_report_inputs({"\x1b]0;t\x07=" + run.string()});
  const std::string esc_csv = render_csv(esc, {.paper_model = "", .generator = "t", .sample_chars = 10});
  EXPECT_EQ(esc_csv.find('\x1b'), std::string::npos) << esc_csv;
  EXPECT_NE(esc_csv.find("metric,\\x1B]0;t\\x07,gsm8k_cot,"), std::string::npos) << esc_csv;
}

TEST(Report, CspHashesTheInlineStyleAndScript) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path run = replay_run(fresh_dir("report-csp"), {"gsm8k_cot"}, 1);
  const std::string html = render_html(load_report_inputs({run.string()}), {});
  const size_t csp = html.find("Content-Security-Policy\" content=\"");
  ASSERT_NE(csp, std::string::npos);
  const std::string policy = html.substr(csp, html.find('"', csp + 35) - csp);
  EXPECT_NE(policy.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(policy.find("connect-src 'none'"), std::string::npos);
  EXPECT_EQ(policy.find("unsafe-inline"), std::string::npos);
  EXPECT_EQ(count(policy, "'sha256-"), 2u);  // the browser test proves they match: a wrong hash blocks the script
}

TEST(Report, GoldRunAgainstThePaperAndBenchesSideBySide) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("report-gold");
  const fs::path run = replay_run(dir, {"mmlu", "ceval", "gsm8k_cot"}, 2, "", "/models/DeepSeek-V2-Lite");
  const fs::path bench = kBaselines / "2026-11-23_h100_d697413_bench_dsv2_lite.json";
  const fs::path gqa = kBaselines / "2026-11-23_h100_d697413_bench_llama3_8b.json";
  const ReportInputs in = load_report_inputs({run.string(), bench.string(), "GQA=" + gqa.string()});
  ASSERT_EQ(in.labels, (std::vector<std::string>{"deepseek-v2-lite", "GQA"}));  // run and bench paired by name
  ASSERT_NE(match_paper_model(in.paper, in.runs[0]), nullptr);
  EXPECT_EQ(match_paper_model(in.paper, in.runs[0])->name, "DeepSeek-V2-Lite");
  EXPECT_DOUBLE_EQ(kv_bytes_per_token(in, "deepseek-v2-lite"), 31104);
  EXPECT_DOUBLE_EQ(kv_bytes_per_token(in, "GQA"), 131072);

  const std::vector<PaperComparison> rows = paper_comparisons(in, "");
  ASSERT_EQ(rows.size(), 3u);  // MMLU, C-Eval, GSM8K (the 8-shot CoT task)
  for (const PaperComparison& c : rows) {
    ASSERT_NE(c.number, nullptr) << c.benchmark->name;
    EXPECT_EQ(c.number->table, "Table 6");
    EXPECT_EQ(c.number->page, 29);
    EXPECT_DOUBLE_EQ(c.ours.value, 1.0);  // gold answers
  }
  EXPECT_EQ(rows[0].benchmark->name, "MMLU");
  EXPECT_DOUBLE_EQ(rows[0].number->value, 58.3);

  const ReportOptions o{.paper_model = "", .generator = "mlabench test", .sample_chars = 2000};
  const std::string html = render_html(in, o);
  for (const char* id : {"summary", "results", "paper", "compare", "niah", "performance", "samples"})
    EXPECT_EQ(count(html, fmt::format("<section id=\"{}\">", id)), 1u) << id;
  EXPECT_NE(html.find("<td class=\"num off\" data-v=\"41.7\">+41.7</td>"), std::string::npos);  // 100.0 - 58.3
  EXPECT_NE(html.find("Table 6, p. 29"), std::string::npos);
  EXPECT_EQ(count(html, "data-chart=\"line\""), 2u);     // decode and prefill tokens/s against batch size
  EXPECT_EQ(count(html, "data-chart=\"bar\""), 5u);      // TTFT and TPOT per bench, KV bytes per token
  EXPECT_EQ(count(html, "data-chart=\"heatmap\""), 0u);  // no NIAH run
  EXPECT_NE(html.find("STEM"), std::string::npos);       // MMLU's categories, collapsible
  EXPECT_NE(html.find("mmlu_abstract_algebra"), std::string::npos);
  // The first 5 of each task (gsm8k_cot has 2); the first of each task open.
  EXPECT_EQ(count(html, "<details class=\"sample\">"), 4u + 4u + 1u);
  EXPECT_EQ(count(html, "<details class=\"sample\" open>"), 3u);

  // The same inputs, the same bytes; and write_report gives what render_html gives.
  EXPECT_EQ(render_html(load_report_inputs({run.string(), bench.string(), "GQA=" + gqa.string()}), o), html);
  write_report({run.string(), bench.string(), "GQA=" + gqa.string()}, dir / "a.html", ReportFormat::HTML, {}, o);
  EXPECT_EQ(test::read_file(dir / "a.html"), html);

  const std::string md = render_markdown(in, o);
  EXPECT_NE(md.find("| deepseek-v2-lite | MMLU (mmlu) | 100.0 | DeepSeek-V2-Lite | 58.3 | +41.7 | Table 6, p. 29 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| GQA | 64 | "), std::string::npos);
  const std::string csv = render_csv(in, o);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "kind,label,task,section,metric,filter,value,stderr,ci95_low,ci95_high,n,"
                                           "paper_model,paper_value,difference_points,paper_source");
  EXPECT_NE(csv.find("metric,deepseek-v2-lite,mmlu,mmlu,acc,none,1,0,1,1,114,DeepSeek-V2-Lite,58.3,41.7,"
                     "\"Table 6, p. 29\""), std::string::npos) << csv.substr(0, 2000);
  EXPECT_NE(csv.find("metric,deepseek-v2-lite,mmlu,mmlu_stem,acc,none,1,"), std::string::npos);
  EXPECT_NE(csv.find("bench,GQA,configs/llama-3-8b,batch=64,decode_tokens_per_s,"), std::string::npos);

  // --paper-model forces the comparison; an unknown name lists the known ones.
  EXPECT_EQ(paper_comparisons(in, "DeepSeek-V2")[0].number->value, 78.5);
  EXPECT_EQ(paper_comparisons(in, "DeepSeek-V2")[0].number->table, "Table 2");
  EXPECT_NE(test::error_of([&] { paper_comparisons(in, "GPT-5"); }).find("HINT: one of: DeepSeek 67B,"),
            std::string::npos);
}

TEST(Report, NiahCellsBecomeAHeatmapBesideThePapersFigure) {
  const fs::path dir = fresh_dir("report-niah");
  // A results.json as the evaluator writes NIAH breakdowns (keys LENGTH@DEPTH).
  json cells = json::object();
  for (int L : {1000, 12545, 24091})
    for (int D : {0, 50, 100})
      cells[fmt::format("{}@{}", L, D)] = {{"needle_recall,none", L == 12545 ? 0.5 : 1.0},
                                            {"needle_score,none", L == 12545 ? 5.0 : 10.0}, {"n", 1}};
  const json results = {{"results", {{"niah", {{"alias", "niah"}, {"needle_score,none", 8.3}}}}},
                        {"versions", {{"niah", 1}}},
                        {"n-samples", {{"niah", {{"original", 9}, {"effective", 9}}}}},
                        {"breakdowns", {{"niah", {{"cell", cells}}}}},
                        {"config", {{"backend", "engine"}, {"model", "/m/tiny"}}},
                        {"provenance", {{"commit", "x"}}}};
  fs::create_directories(dir / "run");
  std::ofstream(dir / "run" / "results.json") << results.dump();
  const std::string html = render_html(load_report_inputs({(dir / "run").string()}), {});
  EXPECT_EQ(count(html, "data-chart=\"heatmap\""), 2u);  // ours and the paper's Figure 4
  EXPECT_NE(html.find(">12K<"), std::string::npos);      // lengths labelled as Figure 4 labels them
  EXPECT_NE(html.find("Figure 4 (DeepSeek-V2, p. 13)"), std::string::npos);
  EXPECT_EQ(length_label(128000), "128K");
  EXPECT_EQ(length_label(800), "800");
  EXPECT_EQ(length_label(1500), "1.5K");
  EXPECT_EQ(length_label(12545), "12K");
}

TEST(Report, InputErrorsSayWhatWasExpected) {
  const fs::path dir = fresh_dir("report-errors");
  std::ofstream(dir / "bad.json") << "{\"hello\": 1}";
  std::ofstream(dir / "text.json") << "not json";
  EXPECT_NE(test::error_of([&] { load_report_inputs({(dir / "bad.json").string()}); })
                .find("not a results.json of `mlabench run`. HINT:"), std::string::npos);
  EXPECT_NE(test::error_of([&] { load_report_inputs({(dir / "text.json").string()}); }).find("is not JSON"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_report_inputs({(dir / "missing").string()}); }).find("does not exist"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_report_inputs({}); }).find("no inputs"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_report_format("pdf"); }).find("HINT: html, md or csv"), std::string::npos);
  // A minimal results.json reads (the optional sections default to empty); a malformed NIAH cell is named.
  fs::create_directories(dir / "run");
  std::ofstream(dir / "run" / "results.json")
      << R"({"results": {}, "versions": {"niah": 1}, "n-samples": {}, "config": {}, "provenance": {},
            "breakdowns": {"niah": {"cell": {"1000@x": {}}}}})";
  const ReportInputs in = load_report_inputs({(dir / "run").string()});
  EXPECT_NE(render_markdown(in, {}).find("## Results"), std::string::npos);
  EXPECT_NE(test::error_of([&] { render_html(in, {}); }).find("\"1000@x\" is not LENGTH@DEPTH"), std::string::npos);
  // What is not a file is named for what it is (a device, a FIFO, a directory with no results.json).
  EXPECT_NE(test::error_of([&] { load_report_inputs({"/dev/null"}); }).find("/dev/null is a character device"),
            std::string::npos);
  ASSERT_EQ(::mkfifo((dir / "fifo.json").c_str(), 0600), 0);
  EXPECT_NE(test::error_of([&] { load_report_inputs({(dir / "fifo.json").string()}); }).find("is a FIFO"),
            std::string::npos);
  // Terminal escapes and C1 controls in a label do not reach the Markdown as bytes (CSV: the hostile test).
  const ReportInputs esc = load_report_inputs({"\x1b[31mred\xc2\x9b=" + (dir / "run").string()});
  const std::string md = render_markdown(esc, {});
  EXPECT_EQ(md.find('\x1b'), std::string::npos) << md;
  EXPECT_EQ(md.find("\xc2\x9b"), std::string::npos) << md;
  EXPECT_NE(md.find("# mlabench report: \\x1B[31mred\\u009B"), std::string::npos) << md;
}

TEST(Report, PaperNumbersAreTheTablesWithPages) {
  const PaperNumbers p = load_paper_numbers(fs::path(MLABENCH_TEST_DATA).parent_path().parent_path() / "reports" /
                                            "paper" / "deepseek_v2.json");
  // Spot checks against the PDF (deepseek-ai/DeepSeek-V2 @ec98ee3c).
  const std::vector<std::tuple<std::string, std::string, double, std::string, int>> want = {
      {"MMLU", "DeepSeek-V2", 78.5, "Table 2", 15},        {"C-Eval", "Mixtral 8x22B", 59.6, "Table 2", 15},
      {"LiveCodeBench", "DeepSeek-V2 Chat (RL)", 32.5, "Table 3", 19}, {"GSM8K", "DeepSeek-V2-Lite", 41.1, "Table 6", 29},
      {"HumanEval", "DeepSeek-V2-Lite Chat (SFT)", 57.3, "Table 7", 30}, {"C-Eval", "Dense 7B w/ MHA", 42.9, "Table 8", 32},
      {"KV cache per token (elements)", "Small MoE w/ MLA", 15600, "Table 9", 32}};
  for (const auto& [bench, model, value, table, page] : want) {
    const PaperNumber* n = find_paper_number(p, bench, model);
    ASSERT_NE(n, nullptr) << bench << " " << model;
    EXPECT_DOUBLE_EQ(n->value, value);
    EXPECT_EQ(n->table, table);
    EXPECT_EQ(n->page, page);
  }
  EXPECT_EQ(p.numbers.size(), 92u);
  EXPECT_EQ(p.figure4["values"].size(), 12u);
}

TEST(Report, NumberFormatsAndIntervals) {
  EXPECT_EQ(format_delta(41.7), "+41.7");
  EXPECT_EQ(format_delta(-0.04), "0.0");
  EXPECT_EQ(format_delta(-3.35), "-3.4");  // -33.5 rounds away from zero
  EXPECT_EQ(format_metric(std::nan("")), "n/a");
  EXPECT_EQ(shell_join(json{"run", "--set", "a=[1, 2]", "it's"}), "run --set 'a=[1, 2]' 'it'\\''s'");
  const auto [lo, hi] = interval95({.task = "t", .metric = "acc", .filter = "none", .value = 0.98, .stderr_ = 0.02, .n = 50});
  EXPECT_DOUBLE_EQ(hi, 1.0);  // a proportion's interval is clipped to [0, 1]
  EXPECT_NEAR(lo, 0.98 - 1.96 * 0.02, 1e-12);
  const auto [slo, shi] =
      interval95({.task = "t", .metric = "needle_score", .filter = "none", .value = 9.5, .stderr_ = 0.5, .n = 9});
  EXPECT_NEAR(shi, 9.5 + 0.98, 1e-12);  // the 1-10 score is not a proportion
  EXPECT_NEAR(slo, 9.5 - 0.98, 1e-12);
}

TEST(Report, MlabenchRunWritesTheReportUnlessToldNot) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = fresh_dir("report-cli");
  harness::write_oracle_replay(test::load_tasks({"gsm8k_cot"}, 2), harness::OracleAnswer::GOLD, dir / "gold.jsonl");
  auto run = [&](const std::string& out, const std::string& extra) {
    const std::string cmd = fmt::format("{} run --backend replay:{} --tasks gsm8k_cot --limit 2 --output {} --mirror {} "
                                        "--data-dir {} --offline --no-progress {} > {}/log.txt 2>&1",
                                        MLABENCH_BINARY, (dir / "gold.jsonl").string(), (dir / out).string(),
                                        test::dataset_mirror(), (dir / "datasets").string(), extra, dir.string());
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(run("with", ""), 0) << test::read_file(dir / "log.txt");
  EXPECT_NE(test::read_file(dir / "log.txt").find("report: "), std::string::npos);
  const std::string html = test::read_file(dir / "with" / "report.html");
  EXPECT_NE(html.find("<section id=\"samples\">"), std::string::npos);
  EXPECT_NE(html.find("The answer is 18."), std::string::npos);  // a gold response in the sample browser
  ASSERT_EQ(run("without", "--no-report"), 0) << test::read_file(dir / "log.txt");
  EXPECT_FALSE(fs::exists(dir / "without" / "report.html"));
  EXPECT_TRUE(fs::exists(dir / "without" / "results.json"));

  // mlabench report: Markdown to standard output, and the HTML file byte-identical to the one run wrote.
  const std::string md = fmt::format("{} report {} --format md > {}/out.md", MLABENCH_BINARY, (dir / "with").string(),
                                     dir.string());
  ASSERT_EQ(std::system(md.c_str()), 0);
  EXPECT_NE(test::read_file(dir / "out.md").find("| replay:gold | gsm8k_cot | exact_match | strict-match | 1.0000 |"),
            std::string::npos) << test::read_file(dir / "out.md");
  const std::string again = fmt::format("{} report {} --out {}/again.html 2>/dev/null", MLABENCH_BINARY,
                                        (dir / "with").string(), dir.string());
  ASSERT_EQ(std::system(again.c_str()), 0);
  EXPECT_EQ(test::read_file(dir / "again.html"), html);
}

}  // namespace
}  // namespace mlabench::reports
