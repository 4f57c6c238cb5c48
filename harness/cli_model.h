// The model subcommands of the mlabench CLI: info, logits, score, generate.
#pragma once

#include <CLI/CLI.hpp>

namespace mlabench::cli {

/// \brief Registers the subcommands on `app`. Each sets `*exit_code` when it runs.
void add_model_commands(CLI::App& app, int* exit_code);

}  // namespace mlabench::cli
