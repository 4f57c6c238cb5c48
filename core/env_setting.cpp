#include "core/env_setting.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/check.h"

namespace mlabench {

bool env_switch(const char* name, bool default_on) {
  const char* env = std::getenv(name);
  const std::string e = env ? env : (default_on ? "1" : "0");
  MLABENCH_CHECK(e == "0" || e == "1", "{}={}: not 0 or 1. HINT: 0 turns the path off, 1 on (unset: {}), for an A/B "
                 "run", name, e, default_on ? "on" : "off");
  return e == "1";
}

int env_level(const char* name, int default_level, int max_level) {
  const char* env = std::getenv(name);
  if (env == nullptr) return default_level;
  const std::string e = env;
  MLABENCH_CHECK(e.size() == 1 && e[0] >= '0' && e[0] - '0' <= max_level, "{}={}: not a number from 0 to {}. HINT: "
                 "unset it for the default ({})", name, e, max_level, default_level);
  return e[0] - '0';
}

int env_choice(const char* name, std::initializer_list<std::string_view> choices) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == 0) return -1;
  const std::string_view e = env;
  const auto it = std::find(choices.begin(), choices.end(), e);
  MLABENCH_CHECK(it != choices.end(), "{}={}: not one of {}. HINT: unset it for the default", name, e,
                 fmt::join(choices, ", "));
  return static_cast<int>(it - choices.begin());
}

}  // namespace mlabench
