// The HTML report's architecture-ablation section (reports/ablation_section.cpp), from `mlabench ablate` JSON.
#pragma once

#include <string>

#include "reports/report_inputs.h"

namespace mlabench::reports {

/// \brief The section's body: per ablation document, the variants' table, the Pareto and KV charts, Figure 1(b)
/// beside the paper's and Table 1; a HINT line when no ablation was given.
std::string ablation_section(const ReportInputs& in);

}  // namespace mlabench::reports
