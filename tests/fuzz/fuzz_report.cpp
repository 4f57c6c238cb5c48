// Fuzzes what `mlabench report` reads from a run folder: results.json, then samples_<task>.jsonl of every task it
// lists. Input layout: the results.json text, \x1e, the samples lines (written for each listed task).
#include <nlohmann/json.hpp>

#include "mlabench/result.h"
#include "reports/report_inputs.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  namespace fs = std::filesystem;
  std::string_view text = fz::as_text(data, size);
  size_t sep = text.find('\x1e');
  std::string_view results = text.substr(0, sep);
  std::string_view samples = sep == std::string_view::npos ? std::string_view() : text.substr(sep + 1);
  const fs::path dir = fz::scratch_dir() / "run";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fz::write_file(dir / "results.json", results);
  // The samples files the loader will look for: the task names as run_tasks lists them (names that would leave the
  // folder are left out; the loader then reports the file missing, which is an Error as well).
  auto j = nlohmann::json::parse(results, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    try {
      int written = 0;
      for (const auto& task : mlabench::reports::run_tasks(j)) {
        if (task.empty() || task.find('/') != std::string::npos || task.size() > 100 || ++written > 8) continue;
        fz::write_file(dir / ("samples_" + task + ".jsonl"), samples);
      }
    } catch (const mlabench::Error&) {
    }
  }
  try {
    mlabench::reports::LoadOptions opt;
    opt.paper_file = MLABENCH_FUZZ_PAPER_FILE;
    auto in = mlabench::reports::load_report_inputs({(dir / "results.json").string()}, opt);
    for (const auto& run : in.runs)
      for (const auto& task : mlabench::reports::run_tasks(run.results))
        (void)mlabench::reports::headline_metric(in, run, task);
  } catch (const mlabench::Error&) {
  }
  return 0;
}
