// Typed reads of JSON object fields with errors that name the file, the field, what was found and what is
// accepted. Used for config.json and the safetensors header.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlabench {

class JsonFields {
 public:
  /// `where` names the document in messages, e.g. "config.json in models/x".
  JsonFields(const nlohmann::json& j, std::string where);

  bool has(const std::string& key) const;  ///< present and not null
  const nlohmann::json& raw(const std::string& key) const;

  int64_t integer(const std::string& key) const;  ///< required
  std::optional<int64_t> opt_integer(const std::string& key) const;
  int64_t integer_or(const std::string& key, int64_t fallback) const;
  double number(const std::string& key) const;
  double number_or(const std::string& key, double fallback) const;
  std::optional<double> opt_number(const std::string& key) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  /// An integer or a list of integers (eos_token_id may be either).
  std::vector<int64_t> integers_or_empty(const std::string& key) const;

  const std::string& where() const { return where_; }

 private:
  [[noreturn]] void type_error(const std::string& key, const char* expected) const;
  const nlohmann::json& j_;
  std::string where_;
};

}  // namespace mlabench
