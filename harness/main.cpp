// mlabench: evaluation and benchmarking harness with an embedded DeepSeek-V2 (MLA + MoE) / Llama engine.
// Exit codes: 0 success, 1 a checked failure (bad input, bad files; the message says which), 2 usage errors.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "harness/cli_fetch.h"
#include "harness/cli_model.h"
#include "harness/cli_run.h"

int main(int argc, char** argv) {
  CLI::App app{"mlabench " MLABENCH_VERSION
               ": DeepSeek-V2 (MLA + MoE) and Llama inference, evaluation and benchmarks in one binary"};
  app.require_subcommand(1);
  app.set_version_flag("--version", MLABENCH_VERSION);
  int exit_code = 0;
  mlabench::cli::add_model_commands(app, &exit_code);
  mlabench::cli::add_bench_command(app, &exit_code);
  mlabench::cli::add_fetch_command(app, &exit_code);
  mlabench::cli::add_tasks_command(app, &exit_code);
  mlabench::cli::add_run_command(app, &exit_code, std::vector<std::string>(argv, argv + argc));
  mlabench::cli::add_report_command(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
