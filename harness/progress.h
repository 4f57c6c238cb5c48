// The evaluator's progress on stderr: a bar on a terminal, a line every 10 s otherwise (a log file), with the
// documents per second of this invocation and the time left.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mlabench::harness {

class Progress {
 public:
  Progress(bool enabled, int64_t total);
  /// \brief `docs` more documents of `task` scored.
  void advance(const std::string& task, int64_t docs);
  /// \brief `docs` documents read back from samples files (--resume): done, but not in the rate.
  void skip(int64_t docs);

 private:
  double seconds() const;
  static std::string duration(double s);
  bool enabled_;
  int64_t total_, done_ = 0, start_done_ = 0;
  bool tty_;
  double last_ = -1e9;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace mlabench::harness
