#include "harness/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace mlabench::harness {

Progress::Progress(bool enabled, int64_t total) : enabled_(enabled), total_(total), tty_(::isatty(2) != 0) {}

void Progress::advance(const std::string& task, int64_t docs) {
  done_ += docs;
  if (!enabled_) return;
  const double t = seconds();
  if (!tty_ && t - last_ < 10.0 && done_ < total_) return;
  last_ = t;
  const double rate = t > 0 ? static_cast<double>(done_ - start_done_) / t : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
  const double share = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  if (tty_) {
    const int width = 30, filled = static_cast<int>(share * width);
    std::fprintf(stderr, "\r%-24s [%s%s] %lld/%lld docs %5.1f%% %7.1f docs/s ETA %s   ", task.c_str(),
                 std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), 100.0 * share, rate, duration(eta).c_str());
    if (done_ >= total_) std::fprintf(stderr, "\n");
  } else {
    std::fprintf(stderr, "progress: %s %lld/%lld docs (%.1f%%), %.1f docs/s, ETA %s\n", task.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), 100.0 * share, rate,
                 duration(eta).c_str());
  }
  std::fflush(stderr);
}

void Progress::skip(int64_t docs) {
  done_ += docs;
  start_done_ += docs;
}

double Progress::seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

std::string Progress::duration(double s) {
  const auto x = static_cast<int64_t>(s);
  return x >= 3600 ? fmt::format("{}h{:02}m", x / 3600, x / 60 % 60) : fmt::format("{}m{:02}s", x / 60, x % 60);
}

}  // namespace mlabench::harness
