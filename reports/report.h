// `mlabench report`: one self-contained HTML page (every style, script and chart inline, a Content-Security-
// Policy that forbids any fetch), or a Markdown or CSV summary, from run folders and bench JSON files. The same
// inputs give the same bytes: nothing in the output depends on the time, the locale or the machine.
// docs/reports.md describes the page.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "reports/report_inputs.h"

namespace mlabench::reports {

enum class ReportFormat { HTML, MARKDOWN, CSV };

/// \brief "html", "md" (or "markdown") or "csv"; anything else throws with the list.
ReportFormat parse_report_format(const std::string& name);

struct ReportOptions {
  std::string paper_model;   ///< --paper-model: compare every run with this paper model (default: matched by name)
  std::string generator;     ///< "mlabench 0.1.0 (abc1234)": printed in the page's footer
  size_t sample_chars = 2000;  ///< per prompt or response shown in the sample browser: head and tail, middle elided
};

std::string render_html(const ReportInputs& in, const ReportOptions& options);
std::string render_markdown(const ReportInputs& in, const ReportOptions& options);
std::string render_csv(const ReportInputs& in, const ReportOptions& options);

/// \brief Loads `inputs` (see load_report_inputs), renders them in `format` and writes `out` atomically
/// ("-" writes to standard output).
void write_report(const std::vector<std::string>& inputs, const std::filesystem::path& out, ReportFormat format,
                  const LoadOptions& load, const ReportOptions& options);

// Shared by the writers.

/// \brief "0.2690", "n/a" for NaN: four decimals, as lm-evaluation-harness prints metrics.
std::string format_metric(double v);
/// \brief "[0.2001, 0.3613]": the 95% interval (interval95) with format_metric's precision; "n/a" without stderr.
std::string format_interval(const MetricValue& m);
/// \brief "+1.2" / "-3.4" / "0.0": a difference in percentage points, one decimal, always signed.
std::string format_delta(double points);
/// \brief The command line as a shell would take it back (arguments with spaces or quotes single-quoted).
std::string shell_join(const json& argv);
/// \brief A context length as the paper's Figure 4 labels it: 1000 -> "1K", 12545 -> "12K", 800 -> "800".
std::string length_label(int64_t tokens);

}  // namespace mlabench::reports
