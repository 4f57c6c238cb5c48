#include "tasks/code/scorer.h"

#include <map>

#include <fmt/format.h>

#include "core/check.h"
#include "tasks/code/humaneval.h"
#include "tasks/code/livecodebench.h"

namespace mlabench::tasks {

const CodeScorerHook& code_scorer_hook(const std::string& name, const std::filesystem::path& spec_file) {
  static const std::map<std::string, CodeScorerHook> registry = {
      {"humaneval", humaneval::score},
      {"livecodebench", livecodebench::score},
  };
  const auto it = registry.find(name);
  if (it != registry.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& kv : registry) names.push_back(kv.first);
  MLABENCH_FAIL("{}: unknown scorer hook '{}' (registered: {}). HINT: use one of those names, or register the "
                "function in tasks/code/scorer.cpp",
                spec_file.string(), name, fmt::join(names, ", "));
}

}  // namespace mlabench::tasks
