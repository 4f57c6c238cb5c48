// The engine benchmark behind `mlabench bench` (cli/cli_bench.cpp), callable by other commands: `mlabench ablate`
// runs it once per architecture variant.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "cli/cli_model.h"

namespace mlabench::cli {

/// What one bench invocation measures (the flags of `mlabench bench`, docs/harness.md).
struct BenchArgs {
  ModelArgs model;
  std::string batches = "1,16,64,256";  ///< batch sizes at `prompt` tokens, both passes; "max": the --batch max sweep
  int64_t prompt = 512, gen = 128;
  std::string shapes;  ///< instead of batches: PROMPTxBATCH[:prefill|decode|both],...
  int64_t warmup = 1;
  std::string out;  ///< also write the JSON document here (bench_command only)
  uint64_t seed = 0;
  bool profile = false;
};

/// \brief Opens the engine, runs every shape (printing the table as rows finish) and returns the bench JSON
/// document (schema 2: "rows", "measures", "max_generation_throughput" with --batch max, "kv_cache" of the engine).
/// Throws Error.
nlohmann::ordered_json run_bench(const BenchArgs& a);

}  // namespace mlabench::cli
