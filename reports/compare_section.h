// The report's "Paired comparison" section: `mlabench compare --out FILE.json` documents (harness/compare.h)
// given to `mlabench report --compare FILE.json`. Kept apart from html_report.cpp so that file only hooks it in.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "reports/report_inputs.h"

namespace mlabench::reports {

/// \brief Reads a compare document and checks it is one (tool "mlabench compare", schema_version 1, comparisons
/// with rows). Throws Error naming the file and what it lacks.
json load_compare_document(const std::filesystem::path& file);

/// \brief The section's body: per comparison (A against B) a table of the task and group rows and, folded per
/// task, the subtask rows; every text escaped.
std::string paired_comparison_section(const std::vector<json>& documents);

}  // namespace mlabench::reports
