// Checks that carry their location.
//   MLABENCH_CHECK(cond, fmt, args...)  bad input or data: throws mlabench::Error with the message, the
//                                       condition and file:line. Put "HINT: ..." in the message for the fix.
//   MLABENCH_ICHECK(cond, fmt, args...) a broken internal invariant (a bug): prints and aborts.
//   MLABENCH_FAIL(fmt, args...)         an unconditional MLABENCH_CHECK failure.
#pragma once

#include <fmt/format.h>

#include <string>

#include "mlabench/result.h"

namespace mlabench::detail {

[[noreturn]] void throw_check_failure(const char* file, int line, const char* cond, const std::string& msg);
[[noreturn]] void abort_invariant(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace mlabench::detail

#define MLABENCH_CHECK(cond, ...)                                                                              \
  do {                                                                                                         \
    if (!(cond)) ::mlabench::detail::throw_check_failure(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

#define MLABENCH_FAIL(...) \
  ::mlabench::detail::throw_check_failure(__FILE__, __LINE__, nullptr, fmt::format(__VA_ARGS__))

#define MLABENCH_ICHECK(cond, ...)                                                                         \
  do {                                                                                                     \
    if (!(cond)) ::mlabench::detail::abort_invariant(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)
