// What every bench program's command line shares: whole-number options read strictly (a typo or an out-of-range
// value is refused with exit 2, never clamped or read as 0), and errors as a message with exit 1 instead of an
// uncaught exception's abort (a refused MLABENCH_* setting, a CUDA failure).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace mlabench::bench {

/// `text` as a whole number from lo to hi into *value; false (after a message naming `flag`) otherwise.
inline bool parse_count(const char* flag, const char* text, long lo, long hi, int* value) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "%s %s: a whole number from %ld to %ld\n", flag, text, lo, hi);
    return false;
  }
  *value = static_cast<int>(v);
  return true;
}

/// run(argc, argv)'s exit code, or 1 with "name: what" on stderr when it throws.
template <typename Run>
int main_guarded(const char* name, Run&& run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace mlabench::bench
