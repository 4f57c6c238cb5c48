// parse_json_bounded (engine/core/json_limits.h): nlohmann's parser callback sees each value's depth as the
// (iterative) parser reaches it, before anything deeper is built.
#include "engine/core/json_limits.h"

#include "engine/core/check.h"

namespace mlabench {
namespace {

template <class J>
J parse_bounded(std::string_view text, std::string_view what) {
  const typename J::parser_callback_t limit = [what](int depth, typename J::parse_event_t, J&) {
    MLABENCH_CHECK(depth <= kMaxJsonDepth,
                   "{}: JSON nested deeper than {} levels. HINT: no input mlabench reads nests this deep; the file "
                   "is damaged or hostile",
                   what, kMaxJsonDepth);
    return true;
  };
  return J::parse(text, limit);
}

}  // namespace

nlohmann::json parse_json_bounded(std::string_view text, std::string_view what) {
  return parse_bounded<nlohmann::json>(text, what);
}

nlohmann::ordered_json parse_ordered_json_bounded(std::string_view text, std::string_view what) {
  return parse_bounded<nlohmann::ordered_json>(text, what);
}

}  // namespace mlabench
