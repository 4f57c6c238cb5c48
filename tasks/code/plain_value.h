// Plain Python values on the host: what a sandboxed program's return values become once they leave its process
// (HumanEval's output grading, tasks/code/humaneval_outputs.cpp). The program's side encodes a value as JSON with
// builtin types only: None, bool, str, list and int64 as themselves, every other type as a one-key tag
// ({"int": "<digits>"} beyond int64, {"float": "nan" | "inf" | "-inf"}, {"tuple": [...]}, {"set": [...]},
// {"dict": [[key, value], ...]}) and anything else as {"opaque": "<type name>"}. Equality here is Python's == over
// those types, computed on the host, so no __eq__ of the program's takes part in it.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mlabench::tasks::plain {

struct Value {
  enum class Kind { NONE, BOOL, INT, FLOAT, STR, LIST, TUPLE, SET, DICT, OPAQUE } kind = Kind::NONE;
  std::string text{};         ///< INT: decimal digits, '-' if negative; STR: the string; OPAQUE: the type's name
  double number = 0.0;        ///< FLOAT; BOOL: 0 or 1
  std::vector<Value> items{}; ///< LIST, TUPLE, SET: the elements; DICT: key, value, key, value, ...
};

/// \brief The value `j` encodes (the format above); std::nullopt when `j` is not in that format.
std::optional<Value> decode(const nlohmann::ordered_json& j);

/// \brief Python's a == b for plain values: bool, int and float compare as numbers (exactly, 1 == 1.0 == True);
/// a list never equals a tuple; sets and dicts compare without order; NaN and OPAQUE equal nothing.
bool python_equal(const Value& a, const Value& b);

/// \brief The float Python's float(v) gives for a bool, int or float (an int beyond double's range: +-inf, where
/// Python raises); std::nullopt for any other kind.
std::optional<double> as_double(const Value& v);

/// \brief Python's repr of `v`, cut to about `limit` bytes (for the samples file).
std::string repr(const Value& v, size_t limit = 200);

/// \brief The exact integer a finite integral double equals, in decimal; std::nullopt when it is not integral.
std::optional<std::string> float_as_integer(double f);

}  // namespace mlabench::tasks::plain
