// The body of every subcommand runs through cli::run: whatever it throws becomes a message and an exit code.
#pragma once

#include <cstdio>
#include <exception>
#include <new>

#include "core/check.h"

namespace mlabench::cli {

/// \brief Runs a subcommand body; a checked failure becomes "error: ..." on stderr and exit code 1. So does any
/// other exception (an input no check anticipated, memory running out): a clear error, never an abort.
template <class F>
void run(int* exit_code, F&& body) {
  try {
    body();
    *exit_code = 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    *exit_code = 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory. HINT: lower the sizes this command was given (--limit, --max-batch, "
                         "--kv-cache-gib, repeats) or free memory\n");
    *exit_code = 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s. HINT: no check named this input; report the command line with the message\n",
                 e.what());
    *exit_code = 1;
  }
}

}  // namespace mlabench::cli
