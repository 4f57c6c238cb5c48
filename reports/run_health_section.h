// The report's "Run health and cost" part (an <h3> at the end of the Results section: the page's seven sections are
// fixed, tests/browser): per run, the run-health warnings (harness/guards.h), each task's
// checks and stop reasons, and the cost per task (documents, prompt and generated tokens, wall time, tokens/s).
// Kept apart from html_report.cpp, which calls it once.
#pragma once

#include <string>

#include "reports/report_inputs.h"

namespace mlabench::reports {

/// \brief The part's HTML (every string escaped); a note where no run records run health (results.json
/// written before the guards existed).
std::string run_health_section(const ReportInputs& in);

}  // namespace mlabench::reports
