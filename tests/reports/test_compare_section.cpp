// The report's Paired comparison section (reports/compare_section.cpp) from a real `mlabench compare` document:
// present only with --compare, linked from the navigation bar, labels from the command line kept as text, subtask
// rows folded per task; a file that is not a compare document is refused by name.
#include <gtest/gtest.h>

#include "harness/compare.h"
#include "harness/evaluator.h"
#include "harness/oracle.h"
#include "reports/compare_section.h"
#include "reports/report.h"
#include "tests/harness/eval_test_util.h"

namespace mlabench::reports {
namespace {

namespace fs = std::filesystem;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

fs::path replay_run(const fs::path& dir, harness::OracleAnswer answer, const std::string& name) {
  const fs::path replay = dir / (name + ".jsonl");
  harness::write_oracle_replay(test::load_tasks({"mmlu"}, 1), answer, replay);
  auto backend = harness::make_replay_backend(replay.string());
  harness::EvalOptions o;
  o.tasks = "mmlu";
  o.limit = 1;
  o.output_dir = dir / name;
  o.fetch = test::mirror_fetch();
  o.progress = false;
  o.config = {{"backend", "replay:" + replay.string()}};  // what `mlabench run` records; the report needs both
  o.provenance = {{"mlabench_version", "test"}, {"commit", "abc1234"}};
  harness::evaluate(*backend, o);
  return o.output_dir;
}

TEST(CompareSection, RendersACompareDocumentAsEscapedTables) {
  MLABENCH_REQUIRE_MIRROR();
  const fs::path dir = test::fresh_dir("compare-section");
  const fs::path gold = replay_run(dir, harness::OracleAnswer::GOLD, "gold");
  const fs::path a = replay_run(dir, harness::OracleAnswer::FIRST_CHOICE, "always_a");
  harness::CompareOptions co;
  co.resamples = 200;
  const json doc = harness::compare_runs({gold.string(), "<b>x</b>=" + a.string()}, co);
  harness::write_file_atomically(dir / "cmp.json", doc.dump(2));

  const ReportOptions ro{.paper_model = "", .generator = "mlabench test", .sample_chars = 2000};
  const std::string plain = render_html(load_report_inputs({gold.string()}), ro);
  EXPECT_EQ(count(plain, "id=\"paired\""), 0u) << "no section without --compare";

  LoadOptions lo;
  lo.compare_files = {dir / "cmp.json"};
  const ReportInputs in = load_report_inputs({gold.string()}, lo);
  ASSERT_EQ(in.comparisons.size(), 1u);
  const std::string html = render_html(in, ro);
  EXPECT_EQ(count(html, "<section id=\"paired\">"), 1u);
  EXPECT_EQ(count(html, "<a href=\"#paired\">"), 1u);
  EXPECT_EQ(count(html, "<b>x</b>"), 0u);
  EXPECT_EQ(count(html, "B = &lt;b&gt;x&lt;/b&gt;"), 1u);
  const std::string section = html.substr(html.find("<section id=\"paired\">"));
  EXPECT_NE(section.find("<td class=\"off\">A better</td>"), std::string::npos);  // always A loses to gold
  EXPECT_EQ(count(section, "<details><summary>mmlu: subtasks</summary>"), 1u);
  EXPECT_EQ(count(section, "<tr><td>\u2003mmlu_anatomy</td>"), 2u);  // acc and acc_norm
  // The oracles' log-probabilities (0 for their answer, -1 for the others) differ by exactly 1 where gold is not A.
  EXPECT_EQ(count(section, "mmlu: log-probabilities of the 228 choices of 57 items"), 1u) << section.substr(0, 3000);
  EXPECT_NE(section.find("at most 1, "), std::string::npos);

  std::ofstream(dir / "not.json") << R"({"tool": "mlabench run", "results": {}})";
  LoadOptions bad;
  bad.compare_files = {dir / "not.json"};
  test::expect_error_with([&] { load_report_inputs({gold.string()}, bad); },
                          {"not.json", "is not a compare document", "HINT"});
}

}  // namespace
}  // namespace mlabench::reports
