// The model subcommands of the mlabench CLI (info, logits, score, generate, tokenize; bench in cli_bench.cpp) and
// the engine options they share.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "mlabench/engine.h"

namespace mlabench::cli {

struct ModelArgs {
  std::string model_dir = MLABENCH_DEFAULT_MODEL;
  int64_t random_seed = -1;
  int threads = 0;
  std::string mla = "auto";
  std::string device = "cpu";
  double kv_cache_gib = 0;
  int64_t max_batch = 256;
  int64_t max_step_tokens = 4096;
  int64_t max_context = 0;
  int64_t block_size = 16;
  bool no_prefix_sharing = false;
  bool no_cuda_graphs = false;
  std::string precision = "native";
};

/// \brief --model, and with engine_options the engine flags (--device, --random-weights, GPU limits, ...).
void add_model_args(CLI::App* cmd, ModelArgs& a, bool engine_options);
/// \brief Opens the engine the flags describe; throws Error.
std::unique_ptr<Engine> open_engine(const ModelArgs& a);

/// \brief Runs a subcommand body; a checked failure becomes "error: ..." on stderr and exit code 1.
template <class F>
void run(int* exit_code, F&& body) {
  try {
    body();
    *exit_code = 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    *exit_code = 1;
  }
}

/// \brief Registers the subcommands on `app`. Each sets `*exit_code` when it runs.
void add_model_commands(CLI::App& app, int* exit_code);
/// \brief Registers `bench` (harness/cli_bench.cpp).
void add_bench_command(CLI::App& app, int* exit_code);

}  // namespace mlabench::cli
