// mlabench: evaluation and benchmarking harness with an embedded DeepSeek-V2 (MLA + MoE) / Llama engine.
// Exit codes: 0 success, 1 a checked failure (bad input, bad files; the message says which), 2 usage errors.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string_view>

#include "cli/cli_compare.h"
#include "cli/cli_fetch.h"
#include "cli/cli_model.h"
#include "cli/cli_run.h"
#include "core/utf8.h"

int main(int argc, char** argv) {
  // Every argument ends up in JSON (run.json records the command line; options go into results.json), which holds
  // only UTF-8: refuse a byte sequence that is not, before any work, instead of failing when the results are written.
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    const size_t at = mlabench::unicode::first_invalid(arg);
    if (at == arg.size()) continue;
    std::fprintf(stderr,
                 "error: argument %d is not valid UTF-8 (byte %zu is 0x%02X). HINT: mlabench records its command line "
                 "and options in JSON, which holds only UTF-8; rename the path or re-encode the text\n",
                 i, at, static_cast<unsigned>(static_cast<unsigned char>(arg[at])));
    return 2;
  }
  CLI::App app{"mlabench " MLABENCH_VERSION
               ": DeepSeek-V2 (MLA + MoE) and Llama inference, evaluation and benchmarks in one binary"};
  app.require_subcommand(1);
  app.set_version_flag("--version", MLABENCH_VERSION);
  int exit_code = 0;
  mlabench::cli::add_model_commands(app, &exit_code);
  mlabench::cli::add_bench_command(app, &exit_code);
  mlabench::cli::add_ablate_command(app, &exit_code);
  mlabench::cli::add_fetch_command(app, &exit_code);
  mlabench::cli::add_tasks_command(app, &exit_code);
  mlabench::cli::add_run_command(app, &exit_code, std::vector<std::string>(argv, argv + argc));
  mlabench::cli::add_merge_command(app, &exit_code);
  mlabench::cli::add_report_command(app, &exit_code);
  mlabench::cli::add_compare_command(app, &exit_code);
  mlabench::cli::add_serve_command(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {  // cli::run catches inside each command; this is the last line of defence
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "error: an unknown exception ended the command. HINT: report the command line\n");
    return 1;
  }
  return exit_code;
}
