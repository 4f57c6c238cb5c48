#include "harness/task_override.h"

#include <sstream>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/json_limits.h"

namespace mlabench::harness {

using json = nlohmann::ordered_json;

void add_task_override(std::map<std::string, json>& overrides, const std::string& item) {
  const size_t eq = item.find('=');
  const size_t dot = item.find('.');
  MLABENCH_CHECK(eq != std::string::npos && dot != std::string::npos && dot > 0 && dot + 1 < eq,
                 "--set \"{}\" is not TASK.KEY=VALUE. HINT: e.g. --set niah.generator.context_lengths=[1000,4000]",
                 item);
  const std::string text = item.substr(eq + 1);
  json value;
  try {
    value = parse_json_bounded(text, "--set " + item.substr(0, eq));
  } catch (const nlohmann::json::parse_error&) {
    value = text;  // not JSON: the value is the text itself
  }
  std::vector<std::string> path;
  const std::string key_path = item.substr(dot + 1, eq - dot - 1);
  // getline drops an empty last piece ("a.=1"), so a trailing dot is checked here.
  MLABENCH_CHECK(key_path.back() != '.', "--set \"{}\": an empty key after the last dot. HINT: keys are separated "
                 "by single dots, e.g. --set gsm8k_cot.generation_kwargs.max_gen_toks=512", item);
  std::stringstream keys(key_path);
  for (std::string key; std::getline(keys, key, '.');) {
    MLABENCH_CHECK(!key.empty(), "--set \"{}\": an empty key. HINT: keys are separated by single dots", item);
    path.push_back(key);
  }
  MLABENCH_CHECK(path.size() <= 16, "--set {}: {} keys deep; a task spec nests its settings at most a few levels. "
                 "HINT: --set TASK.KEY=VALUE or TASK.KEY.SUBKEY=VALUE (docs/tasks.md lists the keys)",
                 item.substr(0, eq), path.size());
  json patch = std::move(value);
  for (auto it = path.rbegin(); it != path.rend(); ++it) patch = json{{*it, std::move(patch)}};
  json& task = overrides[item.substr(0, dot)];
  if (!task.is_object()) task = json::object();
  // Several --set items for one task combine; a later one wins where they name the same key.
  task.merge_patch(patch);
}

}  // namespace mlabench::harness
