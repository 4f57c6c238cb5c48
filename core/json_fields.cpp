#include "core/json_fields.h"

#include <cmath>
#include <cstdint>

#include "core/check.h"

namespace mlabench {

JsonFields::JsonFields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {
  MLABENCH_CHECK(j_.is_object(), "{}: expected a JSON object, found {}", where_, j_.type_name());
}

bool JsonFields::has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

const nlohmann::json& JsonFields::raw(const std::string& key) const {
  MLABENCH_CHECK(has(key), "{}: required field '{}' is missing", where_, key);
  return j_.at(key);
}

void JsonFields::type_error(const std::string& key, const char* expected) const {
  MLABENCH_FAIL("{}: field '{}' must be {}, found {}", where_, key, expected, j_.at(key).dump());
}

int64_t JsonFields::integer(const std::string& key) const {
  const auto& v = raw(key);
  // Past int64 (an unsigned 2^64 - 1, a float 1e30) is refused rather than wrapped to a value the range checks
  // would then report wrongly.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    type_error(key, "an integer within 64-bit range");
  if (v.is_number_integer()) return v.get<int64_t>();
  // Some writers emit 4096.0 for integers; accept exact integral floats.
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
    if (std::fabs(v.get<double>()) >= 9.2e18) type_error(key, "an integer within 64-bit range");
    return static_cast<int64_t>(v.get<double>());
  }
  type_error(key, "an integer");
}

std::optional<int64_t> JsonFields::opt_integer(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return integer(key);
}

int64_t JsonFields::integer_or(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

double JsonFields::number(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_number()) type_error(key, "a number");
  return v.get<double>();
}

double JsonFields::number_or(const std::string& key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

std::optional<double> JsonFields::opt_number(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return number(key);
}

bool JsonFields::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = j_.at(key);
  if (!v.is_boolean()) type_error(key, "true or false");
  return v.get<bool>();
}

std::string JsonFields::string(const std::string& key) const {
  const auto& v = raw(key);
  if (!v.is_string()) type_error(key, "a string");
  return v.get<std::string>();
}

std::string JsonFields::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

std::vector<int64_t> JsonFields::integers_or_empty(const std::string& key) const {
  if (!has(key)) return {};
  const auto& v = j_.at(key);
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (!v.is_array()) type_error(key, "an integer or a list of integers");
  std::vector<int64_t> out;
  for (const auto& e : v) {
    if (!e.is_number_integer()) type_error(key, "an integer or a list of integers");
    out.push_back(e.get<int64_t>());
  }
  return out;
}

}  // namespace mlabench
