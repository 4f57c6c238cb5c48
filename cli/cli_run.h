// The `run` subcommand (the evaluator), `report`, and the build's commit, which results and benchmark rows record.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "cli/cli_model.h"

namespace mlabench::cli {

/// \brief `mlabench run`; command_line is recorded in results.json.
void add_run_command(CLI::App& app, int* exit_code, std::vector<std::string> command_line);
/// \brief `mlabench merge DIR... --output DIR`: the shards of a `run --shard K/N` as one run (cli_run.cpp).
void add_merge_command(CLI::App& app, int* exit_code);
/// \brief `mlabench tasks`: every task, group and suite name.
void add_tasks_command(CLI::App& app, int* exit_code);
/// \brief $MLABENCH_COMMIT, else the git commit the build was configured at (+ "-dirty" for local changes).
std::string mlabench_commit();
/// \brief The current UTC time formatted by strftime (e.g. "%Y-%m-%dT%H:%M:%SZ"): the date of results and bench JSON.
std::string utc_now(const char* fmt_str);
/// \brief `mlabench report`: HTML, Markdown or CSV from run folders and bench JSON (cli/cli_report.cpp).
void add_report_command(CLI::App& app, int* exit_code);
/// \brief `mlabench serve`: the OpenAI-compatible HTTP server (cli/cli_serve.cpp, docs/serve.md).
void add_serve_command(CLI::App& app, int* exit_code);
/// \brief "mlabench VERSION (commit HASH)": what made a report.
std::string report_generator();

}  // namespace mlabench::cli
