// Helpers for the tests that run tasks and the evaluator on the real datasets: fresh scratch folders and one
// dataset cache per test binary, filled from the ../shared/datasets mirror (MLABENCH_SHARED_DIR overrides it).
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "harness/data/fetch.h"
#include "tasks/task.h"
#include "tests/test_util.h"

namespace mlabench::test {

/// An empty folder $TMP/mlabench-test-<name>-<pid>, emptied first if a crashed run left it.
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / fmt::format("mlabench-test-{}-{}", name, ::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline std::string dataset_mirror() { return shared_dir() + "/datasets"; }

/// Offline fetch options over the mirror, with one cache for the whole test binary: each dataset is copied and
/// verified once.
inline data::FetchOptions mirror_fetch() {
  static const std::filesystem::path cache = fresh_dir("dataset-cache");
  data::FetchOptions o;
  o.cache_dir = cache;
  o.mirror = dataset_mirror();
  o.allow_network = false;
  return o;
}

/// Tasks loaded from the mirror as the evaluator loads them (no tokenizer: no generator tasks).
inline std::vector<tasks::Task> load_tasks(const std::vector<std::string>& names,
                                           std::optional<int64_t> limit = std::nullopt,
                                           std::optional<int> num_fewshot = std::nullopt) {
  std::vector<tasks::Task> out;
  for (const std::string& n : names) {
    tasks::TaskLoadOptions o;
    o.dataset_dir = data::ensure_dataset(tasks::task_dataset(n), mirror_fetch());
    o.limit = limit;
    o.num_fewshot = num_fewshot;
    out.push_back(tasks::load_task(n, o));
  }
  return out;
}

}  // namespace mlabench::test

/// Skips a test that needs the real datasets where the ../shared mirror is absent, saying so.
#define MLABENCH_REQUIRE_MIRROR()                                                                         \
  if (!std::filesystem::exists(::mlabench::test::dataset_mirror() + "/mmlu/mmlu.zip"))                  \
  GTEST_SKIP() << "SKIPPED: the dataset mirror " << ::mlabench::test::dataset_mirror()                   \
               << " is absent (it holds the real data)"
