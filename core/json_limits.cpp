// parse_json_bounded (core/json_limits.h): nlohmann's parser callback sees each value's depth as the
// (iterative) parser reaches it, before anything deeper is built.
#include "core/json_limits.h"

#include "core/check.h"

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
  try {
    return J::parse(text, limit);
  } catch (const typename J::out_of_range& e) {
    // A number beyond double's range (1e999) is not a parse_error but out_of_range 406, which callers that catch
    // parse_error for their own message let escape (found by tests/fuzz/fuzz_safetensors).
    MLABENCH_FAIL("{}: a JSON number out of range ({}). HINT: the file is damaged or hostile", what, e.what());
  }
}

}  // namespace

nlohmann::json parse_json_bounded(std::string_view text, std::string_view what) {
  return parse_bounded<nlohmann::json>(text, what);
}

nlohmann::ordered_json parse_ordered_json_bounded(std::string_view text, std::string_view what) {
  return parse_bounded<nlohmann::ordered_json>(text, what);
}

}  // namespace mlabench
