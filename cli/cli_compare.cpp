// mlabench compare: is the difference between two runs real? Prints a table per pair (A = the first run, B = each
// other) and writes the full document with --out, which `mlabench report --compare FILE` renders.
#include "cli/cli_compare.h"

#include <cstdio>
#include <memory>

#include "cli/cli_guard.h"
#include "cli/cli_run.h"
#include "core/file_write.h"
#include "harness/compare.h"

namespace mlabench::cli {

void add_compare_command(CLI::App& app, int* exit_code) {
  struct CompareArgs {
    std::vector<std::string> runs;
    std::string out;
    bool subtasks = false;
    harness::CompareOptions options;
  };
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand("compare", "paired statistics of runs on the same items: agreement, McNemar, "
                                     "bootstrap interval, minimal detectable difference, BH-adjusted verdicts");
  cmd->add_option("runs", a->runs, "run folders (or their results.json), LABEL=PATH to name one; each run after the "
                  "first is compared with the first")->required()->expected(2, -1);
  cmd->add_option("--resamples", a->options.resamples, "bootstrap resamples")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  cmd->add_option("--seed", a->options.seed, "the bootstrap's seed (std::mt19937_64)")->capture_default_str();
  cmd->add_option("--alpha", a->options.alpha, "significance level of the verdicts (after Benjamini-Hochberg) and "
                  "of the minimal detectable difference")->capture_default_str()->check(CLI::Range(1e-12, 0.5));
  cmd->add_flag("--subtasks", a->subtasks, "print the subtask rows too (the JSON always has them)");
  cmd->add_option("--out", a->out, "write the comparison as JSON (mlabench report --compare FILE renders it)");
  cmd->callback([a, exit_code]() {
    run(exit_code, [&] {
      a->options.generator = report_generator();
      const nlohmann::ordered_json doc = harness::compare_runs(a->runs, a->options);
      const std::string table = harness::format_compare_table(doc, a->subtasks);
      std::fwrite(table.data(), 1, table.size(), stdout);
      if (!a->out.empty()) {
        write_file_atomically(a->out, doc.dump(2) + "\n");
        std::fprintf(stderr, "compare: %s\n", a->out.c_str());
      }
    });
  });
}

}  // namespace mlabench::cli
