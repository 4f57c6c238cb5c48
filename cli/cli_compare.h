// The `compare` subcommand: paired statistics of two or more runs (harness/compare.h, docs/harness.md).
#pragma once

#include <CLI/CLI.hpp>

namespace mlabench::cli {

/// \brief Registers `mlabench compare RUN_A RUN_B [RUN_C ...] [--resamples N] [--seed S] [--alpha A] [--subtasks]
/// [--out FILE.json]`. Sets `*exit_code` when it runs.
void add_compare_command(CLI::App& app, int* exit_code);

}  // namespace mlabench::cli
