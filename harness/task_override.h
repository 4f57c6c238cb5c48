// `mlabench run --set TASK.KEY[.KEY...]=VALUE`: the item parser, kept apart from the evaluator (no engine, no data
// fetching) so that tests/fuzz/fuzz_task_spec.cpp runs it as the CLI does. tasks::check_set_overrides checks the
// patch against the spec's fields when the task loads.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace mlabench::harness {

/// \brief Adds one --set item, "TASK.KEY[.KEY...]=VALUE", to `overrides` (task -> JSON merge patch). VALUE is
/// JSON when it parses as JSON, else a string. Throws Error naming the item otherwise.
void add_task_override(std::map<std::string, nlohmann::ordered_json>& overrides, const std::string& item);

}  // namespace mlabench::harness
