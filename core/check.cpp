// Formatting of check failures (see check.h). The condition and location go last, after the message, so the
// first line a user reads says what is wrong in their terms.
#include "core/check.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace mlabench::detail {

namespace {
std::string where(const char* file, int line, const char* cond) {
  std::string loc = fmt::format("{}:{}", std::filesystem::path(file).filename().string(), line);
  return cond ? fmt::format("(checked: {} at {})", cond, loc) : fmt::format("(at {})", loc);
}
}  // namespace

void throw_check_failure(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(fmt::format("{}\n  {}", msg, where(file, line, cond)));
}

void abort_invariant(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "mlabench internal error: %s\n  %s\nThis is a bug in mlabench; please report it.\n", msg.c_str(),
               where(file, line, cond).c_str());
  std::abort();
}

}  // namespace mlabench::detail
