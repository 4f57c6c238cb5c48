// Parsing JSON inputs with a bound on nesting. Every document mlabench reads (config.json, tokenizer.json and
// tokenizer_config.json, safetensors headers and indexes, task specs, results.json and samples lines, replay lines,
// --set values) nests under 20 levels. A hostile one nested 10,000 deep (a tokenizer's pre-tokenizer Sequence, a
// --set value) would exhaust the stack in whatever walks it recursively; refused at parse time, nothing downstream
// ever sees one (issue 17, class 3).
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

namespace mlabench {

inline constexpr int kMaxJsonDepth = 100;

/// json::parse(text) that throws Error, naming `what`, for a document nested deeper than kMaxJsonDepth or with a
/// number beyond double's range (nlohmann's out_of_range 406, which is not a parse_error). Syntax
/// errors throw nlohmann's parse_error as json::parse does, for the caller to report in its own words.
nlohmann::json parse_json_bounded(std::string_view text, std::string_view what);
nlohmann::ordered_json parse_ordered_json_bounded(std::string_view text, std::string_view what);

}  // namespace mlabench
