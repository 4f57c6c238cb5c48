// mlabench report: run folders and bench JSON files -> one self-contained HTML page, or a Markdown or CSV summary.
// docs/reports.md describes the page.
#include <fmt/format.h>

#include "cli/cli_run.h"
#include "reports/report.h"

namespace mlabench::cli {

std::string report_generator() { return fmt::format("mlabench {} (commit {})", MLABENCH_VERSION, mlabench_commit()); }

void add_report_command(CLI::App& app, int* exit_code) {
  struct ReportArgs {
    std::vector<std::string> inputs;
    std::string out;
    std::string format = "html";
    std::string paper_model;
    std::string paper_file;
    int samples = 5;
    size_t sample_chars = 2000;
    std::vector<std::string> compare_files;
  };
  auto a = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand("report", "one HTML page (or Markdown/CSV) from run folders and bench JSON");
  cmd->add_option("inputs", a->inputs,
                  "run folders, results.json or `mlabench bench` JSON files; LABEL=PATH names the column (a run and "
                  "a bench JSON with one label are one model)")
      ->required();
  cmd->add_option("--out", a->out, "output file, - for standard output (default: report.html; md and csv: standard "
                  "output)");
  cmd->add_option("--format", a->format, "html, md or csv")->capture_default_str();
  cmd->add_option("--paper-model", a->paper_model,
                  "compare every run with this model of the paper's tables (default: matched by model folder name)");
  cmd->add_option("--paper-numbers", a->paper_file, "the paper-numbers file (default reports/paper/deepseek_v2.json)");
  cmd->add_option("--samples", a->samples, "samples per task in the sample browser")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--sample-chars", a->sample_chars, "bytes shown from each end of a long prompt or response")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--compare", a->compare_files,
                  "a `mlabench compare --out` JSON: adds the Paired comparison section (repeatable)");
  cmd->callback([a, exit_code]() {
    run(exit_code, [&] {
      const reports::ReportFormat format = reports::parse_report_format(a->format);
      const std::string out = !a->out.empty() ? a->out : format == reports::ReportFormat::HTML ? "report.html" : "-";
      reports::write_report(a->inputs, out, format,
                            {.samples_per_task = a->samples, .paper_file = a->paper_file,
                             .compare_files = {a->compare_files.begin(), a->compare_files.end()}},
                            {.paper_model = a->paper_model, .generator = report_generator(),
                             .sample_chars = a->sample_chars});
      if (out != "-") std::fprintf(stderr, "report: %s\n", out.c_str());
    });
  });
}

}  // namespace mlabench::cli
