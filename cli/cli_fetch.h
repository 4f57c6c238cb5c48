// The `fetch` subcommand: datasets from the cache, a mirror or their official URLs, verified and extracted
// (harness/data/fetch.h).
#pragma once

#include <CLI/CLI.hpp>

namespace mlabench::cli {

/// \brief Registers `mlabench fetch NAME... [--cache-dir DIR] [--mirror DIR|URL] [--offline] [--timeout S]` and
/// `mlabench fetch --list`. Sets `*exit_code` when it runs.
void add_fetch_command(CLI::App& app, int* exit_code);

}  // namespace mlabench::cli
