// The environment settings of the A/B benchmarks (MLABENCH_PDL, MLABENCH_MOE_GEMM, MLABENCH_COLLECTIVES, ...), read
// by one parser each kind so that a typo is refused by name and never silently measures the wrong path. Host code
// with no CUDA: the CPU engine's settings use it too, and CI tests it. Callers read a setting once (a static).
#pragma once

#include <initializer_list>
#include <string_view>

namespace mlabench {

/// An on/off switch: "1" is on, "0" off, unset is default_on; any other value is refused, naming the variable.
bool env_switch(const char* name, bool default_on = true);
/// A small numbered setting (MLABENCH_FUSE_NORM: 0 off, 1 or 2 rows): one digit from 0 to max_level, unset is
/// default_level; any other value is refused, naming the variable and the range. env_switch is the 0/1 case.
int env_level(const char* name, int default_level, int max_level);
/// A named choice (MLABENCH_MLA_FP8_DECODE: bf16 or f16): the index of the value among choices, -1 where the variable
/// is unset or empty (the caller's default); any other value is refused, naming the variable and the choices.
int env_choice(const char* name, std::initializer_list<std::string_view> choices);

}  // namespace mlabench
