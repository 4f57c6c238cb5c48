// Fuzzes task specs with `--set` patches: load_task's steps up to (not including) reading the data. Input layout:
// a spec file (tasks/specs/*.json form), then optionally a line "----" and one --set item per line
// ("gsm8k.generation_kwargs.temperature=0.5"). The spec is written as <scratch>/specs/fuzz.json beside copies of
// the real include-only defaults (_*.json); the items are parsed by add_task_override as `mlabench run --set` does,
// the spec entries loaded, every item's patch checked (check_set_overrides) and merged, and the spec parsed against
// the real hook registries. The task name in an item is not matched against the spec's (evaluate checks it against
// --tasks, no parser): every patch applies, so the fuzzer need not guess names.
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "harness/task_override.h"
#include "mlabench/result.h"
#include "tasks/spec.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

namespace fs = std::filesystem;

const fs::path& specs_dir() {
  static const fs::path dir = [] {
    const fs::path d = mlabench::fuzz::scratch_dir() / "specs";
    fs::create_directories(d);
    for (const auto& item : fs::directory_iterator(MLABENCH_FUZZ_SPECS_DIR)) {
      if (item.path().filename().string().starts_with("_")) fs::copy_file(item.path(), d / item.path().filename());
    }
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  namespace tasks = mlabench::tasks;
  const std::string_view text = fz::as_text(data, size);
  std::string_view spec = text, items;
  if (text.starts_with("----\n")) {
    spec = {};
    items = text.substr(5);
  } else if (const size_t sep = text.find("\n----\n"); sep != std::string_view::npos) {
    spec = text.substr(0, sep + 1);
    items = text.substr(sep + 6);
  }
  fz::write_file(specs_dir() / "fuzz.json", spec);
  try {
    std::map<std::string, nlohmann::ordered_json> overrides;
    while (!items.empty()) {
      const size_t nl = items.find('\n');
      const std::string_view item = items.substr(0, nl);
      items = nl == std::string_view::npos ? std::string_view() : items.substr(nl + 1);
      if (!item.empty()) mlabench::harness::add_task_override(overrides, std::string(item));
    }
    for (tasks::SpecEntry& entry : tasks::load_spec_entries(specs_dir())) {
      if (entry.kind == tasks::SpecKind::SUITE) continue;
      for (const auto& [task, patch] : overrides) {  // as load_task: checked, then merged
        tasks::check_set_overrides(patch, task);
        entry.resolved.merge_patch(patch);
      }
      const tasks::TaskSpec parsed = tasks::parse_task_spec(entry);
      (void)parsed;
    }
  } catch (const mlabench::Error&) {
  }
  return 0;
}
