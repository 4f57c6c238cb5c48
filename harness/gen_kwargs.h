// --gen-kwargs: the parser (declared in harness/evaluator.h), and how the overrides apply to a task's generation
// defaults and appear in run.json and results.json.
#pragma once

#include <nlohmann/json.hpp>

#include "harness/evaluator.h"
#include "tasks/task.h"

namespace mlabench::harness {

/// \brief A task's generation defaults with the run's --gen-kwargs applied.
tasks::GenerationKwargs with_overrides(tasks::GenerationKwargs g, const GenerationOverrides& o);
/// \brief The overrides given, as run.json's identity and results.json's "gen_kwargs" record them.
nlohmann::ordered_json gen_overrides_json(const GenerationOverrides& o);

}  // namespace mlabench::harness
