// The model subcommands of the mlabench CLI (info, logits, score, generate, tokenize; bench in cli_bench.cpp) and
// the engine options they share.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_guard.h"
#include "mlabench/engine.h"

namespace mlabench::cli {

/// \brief The model and engine flags of a subcommand: they bind straight to EngineOptions' fields, whose member
/// initialisers are the only defaults (--help shows them).
struct ModelArgs {
  EngineOptions engine{.model_dir = MLABENCH_DEFAULT_MODEL};
};

/// \brief --model, and with engine_options the engine flags (--device, --random-weights, --max-batch, ...).
void add_model_args(CLI::App* cmd, ModelArgs& a, bool engine_options);
/// \brief Opens the engine `options` describe; throws Error. MLABENCH_TIMING_SKIP (a timing experiment whose
/// outputs are wrong, engine/kernels/cuda/cuda_check.h) is refused unless timing_experiment (bench) says it may run.
std::unique_ptr<Engine> open_engine(const EngineOptions& options, bool timing_experiment = false);
/// \brief The environment variables that change what the engine runs (MLABENCH_*, NCCL_*, CUDA_VISIBLE_DEVICES),
/// name to value, those set only, never one whose name says KEY, TOKEN, SECRET, PASS, AUTH or CRED (a credential):
/// nor `exclude` (run's --api-key-env): bench JSON and results.json record them beside the options.
nlohmann::ordered_json engine_environment(const std::string& exclude = "");

/// \brief Registers the subcommands on `app`. Each sets `*exit_code` when it runs.
void add_model_commands(CLI::App& app, int* exit_code);
/// \brief Registers `bench` (cli/cli_bench.cpp).
void add_bench_command(CLI::App& app, int* exit_code);
/// \brief Registers `ablate` (cli/cli_ablate.cpp).
void add_ablate_command(CLI::App& app, int* exit_code);

}  // namespace mlabench::cli
